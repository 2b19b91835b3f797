"""The only module that uses rich: rendering for the commands."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.text import Text

_out: Console | None = None
_err: Console | None = None


def out() -> Console:
    global _out
    if _out is None:
        _out = Console(highlight=False, soft_wrap=True)
    return _out


def err() -> Console:
    global _err
    if _err is None:
        _err = Console(stderr=True, highlight=False, soft_wrap=True)
    return _err


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    err().print(Text(message, style="dim"))


def warn(message: str) -> None:
    err().print(Text("warning: ", style="yellow bold") + Text(message))


def error(message: str, hint: str | None = None) -> None:
    for n, line in enumerate(message.splitlines() or [message]):
        prefix = Text("Error: ", style="red bold") if n == 0 else Text("  ")
        err().print(prefix + Text(line))
    if hint:
        err().print(Text("hint: ", style="cyan") + Text(hint))


def diff(text: str) -> None:
    """Print a unified diff, coloured when stdout is a terminal."""
    if not out().is_terminal or os.environ.get("NO_COLOR"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    for line in text.splitlines():
        style = ""
        if line.startswith(("+++", "---", "diff --git", "index ", "new file", "deleted file")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        out().print(Text(line, style=style))


def ago(when: datetime) -> str:
    seconds = int((datetime.now(UTC) - when).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"
