"""Pinned (human-owned) text: `<!-- pin -->` ... `<!-- /pin -->` in persona.md or lessons.md.

No agent edit and no sleep pass may change, remove or add a pinned block; only people can.
"""

from __future__ import annotations

import re

from agentmem.errors import Problem

PIN_OPEN = re.compile(r"^\s*<!--\s*pin\b(?!\s*/)[^>]*-->\s*$")
PIN_CLOSE = re.compile(r"^\s*<!--\s*/\s*pin\s*-->\s*$")


def pinned_spans(text: str, file: str) -> tuple[list[tuple[int, int]], list[Problem]]:
    """Return 1-based inclusive (first, last) line spans of pinned blocks, markers included."""
    spans: list[tuple[int, int]] = []
    problems: list[Problem] = []
    start: int | None = None
    if "pin" not in text:         # both markers contain it
        return spans, problems
    for no, line in enumerate(text.splitlines(), start=1):
        if "pin" not in line:
            continue
        if PIN_OPEN.match(line):
            if start is not None:
                problems.append(Problem(file, no, f"pin opened again before the pin opened on "
                                        f"line {start} was closed with <!-- /pin -->"))
            else:
                start = no
        elif PIN_CLOSE.match(line):
            if start is None:
                problems.append(Problem(file, no, "<!-- /pin --> without an opening <!-- pin -->"))
            else:
                spans.append((start, no))
                start = None
    if start is not None:
        problems.append(Problem(file, start, "pin is never closed: add <!-- /pin --> after the "
                                "pinned text"))
    return spans, problems


def pinned_blocks(text: str) -> list[str]:
    """The exact text of every pinned block, in order (markers included)."""
    lines = text.splitlines()
    spans, _ = pinned_spans(text, "")
    return ["\n".join(lines[a - 1:b]) for a, b in spans]


def pins_preserved(old: str, new: str) -> bool:
    """True when `new` keeps every pinned block of `old` verbatim and adds none."""
    _, problems = pinned_spans(new, "")
    return not problems and pinned_blocks(old) == pinned_blocks(new)
