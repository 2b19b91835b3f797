"""The only module that uses rich: rendering for the commands.

When a stream is not a terminal (pipes, scripts, tests), output is plain text written directly,
and rich is never imported: that keeps `agentmem history | head` and friends instant.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

_MARKUP = re.compile(r"\[/?(?:bold|dim|italic|red|green|yellow|cyan|magenta|blue)"
                     r"(?: (?:bold|dim|italic|red|green|yellow|cyan|magenta|blue))*\]|\[/\]")
_cache: dict[str, Any] = {}


def strip_markup(text: str) -> str:
    return _MARKUP.sub("", text)


class Plain:
    """The subset of rich's Console the commands use, for streams that are not terminals."""

    is_terminal = False

    def __init__(self, stream: Callable[[], TextIO]) -> None:
        self._stream = stream

    def print(self, *objects: Any, markup: bool = True, end: str = "\n", **_: Any) -> None:
        text = " ".join(str(o) for o in objects)
        stream = self._stream()
        stream.write((strip_markup(text) if markup else text) + end)
        stream.flush()


def _tty(stream: TextIO) -> bool:
    try:
        return stream.isatty() or bool(os.environ.get("FORCE_COLOR"))
    except (AttributeError, ValueError):
        return False


def stdin_is_tty() -> bool:
    """Whether a person can answer prompts: stdin is a terminal (not a pipe or a file)."""
    return sys.stdin.isatty()


def rich_console(stderr: bool = False) -> Any:
    """A real rich Console (for Live, Progress and tables)."""
    key = "err" if stderr else "out"
    if key not in _cache:
        from rich.console import Console

        _cache[key] = Console(stderr=stderr, highlight=False, soft_wrap=True)
    return _cache[key]


def out() -> Any:
    return rich_console() if _tty(sys.stdout) else Plain(lambda: sys.stdout)


def err() -> Any:
    return rich_console(stderr=True) if _tty(sys.stderr) else Plain(lambda: sys.stderr)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def _styled(parts: list[tuple[str, str]]) -> None:
    """Write (text, style) parts as one line on stderr."""
    stream = err()
    if isinstance(stream, Plain):
        stream.print("".join(text for text, _ in parts), markup=False)
        return
    from rich.text import Text

    line = Text()
    for text, style in parts:
        line.append(text, style=style or None)
    stream.print(line)


def info(message: str) -> None:
    _styled([(message, "dim")])


def warn(message: str) -> None:
    _styled([("warning: ", "yellow bold"), (message, "")])


def retrying(error: Any, wait: float) -> None:
    """The on_retry callback of llm.complete: a transient model error, retried after `wait`."""
    warn(f"{error.message}; retrying in {wait:g} s")


def error(message: str, hint: str | None = None) -> None:
    for n, line in enumerate(message.splitlines() or [message]):
        _styled([("Error: " if n == 0 else "  ", "red bold"), (line, "")])
    if hint:
        _styled([("hint: ", "cyan"), (hint, "")])


def diff(text: str) -> None:
    """Print a unified diff, coloured when stdout is a terminal."""
    o = out()
    if isinstance(o, Plain) or os.environ.get("NO_COLOR"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from rich.text import Text

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
        o.print(Text(line, style=style))

