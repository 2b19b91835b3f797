"""Times as people read them. A leaf module: the core and the commands both use it."""

from __future__ import annotations

from datetime import UTC, datetime


def ago(when: datetime) -> str:
    """How long before now `when` was, in its largest whole unit: "3 hours ago", "just now"."""
    seconds = int((datetime.now(UTC) - when).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"
