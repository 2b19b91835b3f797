"""The only module that uses rich: rendering for the commands.

When a stream is not a terminal (pipes, scripts, tests), output is plain text written directly,
and rich is never imported: that keeps `agentmem history | head` and friends instant.

Nothing a model or a tool wrote is interpreted by the terminal. `literal()` makes control
characters, escape sequences, `\\r` and invisible formatting characters (bidi overrides,
zero-width and tag characters) visible as `\\x1b`, `\\u202e`, ...; every string printed through
`out()`, `err()`, `line()`, `info()`, `warn()`, `error()` and `diff()` goes through it. Such text
must still never be put inside a markup string: print it with `line()` (parts with styles, no
markup) or `print(..., markup=False)`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

_MARKUP = re.compile(r"\[/?(?:bold|dim|italic|red|green|yellow|cyan|magenta|blue)"
                     r"(?: (?:bold|dim|italic|red|green|yellow|cyan|magenta|blue))*\]|\[/\]")
_cache: dict[str, Any] = {}

# What a terminal acts on or does not show: C0 and C1 controls and DEL (escape sequences, \r,
# backspace, the 8-bit CSI), format characters (bidi embeddings, overrides and isolates, marks,
# zero-width characters, tag characters), lone surrogates and the line and paragraph separators.
# That is Unicode's categories Cc, Cf, Cs, Zl and Zp (through Unicode 15.1; a test compares
# these ranges with the running Python's unicodedata).
_INVISIBLE = ("\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891"
              "\u08e2\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ud800-\udfff\ufeff"
              "\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
              "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f")
# a single-line field (a tool argument, a reason) also shows line breaks, tabs and the spaces
# that look like a space but are not one
_SPACES = "\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
_HIDDEN_MULTILINE = re.compile(f"[{_INVISIBLE}]")
_HIDDEN_ONE_LINE = re.compile(f"[\n\t{_INVISIBLE}{_SPACES}]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    named = _NAMED.get(char)
    if named:
        return named
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def literal(text: str, *, multiline: bool = False) -> str:
    """`text` as it must be shown when a model or a tool wrote it: every character the terminal
    would act on or hide, written as a Python-style escape (`\\x1b`, `\\r`, `\\u202e`).
    `multiline` keeps line breaks and tabs (a reply, a diff); otherwise they are shown too (a
    tool argument, a reason: one line, exactly). Printable text comes back unchanged, so applying
    it twice is the same as once."""
    pattern = _HIDDEN_MULTILINE if multiline else _HIDDEN_ONE_LINE
    return pattern.sub(_visible, text)


def strip_markup(text: str) -> str:
    return _MARKUP.sub("", text)


class Plain:
    """The subset of rich's Console the commands use, for streams that are not terminals."""

    is_terminal = False

    def __init__(self, stream: Callable[[], TextIO]) -> None:
        self._stream = stream

    def print(self, *objects: Any, markup: bool = True, end: str = "\n", **_: Any) -> None:
        text = literal(" ".join(str(o) for o in objects), multiline=True)
        _settle()
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
    """A real rich Console (for Live, Progress and tables). Its print() shows strings through
    literal(); Text objects must be built from literal() text (line() does that)."""
    key = "err" if stderr else "out"
    if key not in _cache:
        from rich.console import Console

        class Guarded(Console):
            def print(self, *objects: Any, **kwargs: Any) -> None:
                _settle()
                super().print(*(literal(o, multiline=True) if isinstance(o, str) else o
                                for o in objects), **kwargs)

        _cache[key] = Guarded(stderr=stderr, highlight=False, soft_wrap=True)
    return _cache[key]


def out() -> Any:
    return rich_console() if _tty(sys.stdout) else Plain(lambda: sys.stdout)


def err() -> Any:
    return rich_console(stderr=True) if _tty(sys.stderr) else Plain(lambda: sys.stderr)


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xd800 + (code >> 10):04x}\\u{0xdc00 + (code & 0x3ff):04x}"


def print_json(data: Any) -> None:
    """`data` as JSON on stdout; characters a terminal would act on or hide are JSON escapes
    (the same JSON, and a lone surrogate cannot fail the write)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    _settle()
    sys.stdout.write(_HIDDEN_MULTILINE.sub(_json_escape, text) + "\n")
    sys.stdout.flush()


Part = str | tuple[str, str]


def line(*parts: Part, stderr: bool = False) -> None:
    """One line from parts, each a string or (string, rich style), with no markup: any text,
    a model's included, is shown literally. On stdout, or on stderr with `stderr`."""
    stream = err() if stderr else out()
    pieces = [(p, "") if isinstance(p, str) else p for p in parts]
    if isinstance(stream, Plain):
        stream.print("".join(text for text, _ in pieces), markup=False)
        return
    from rich.text import Text

    joined = Text()
    for text, style in pieces:
        joined.append(literal(text, multiline=True), style=style or None)
    stream.print(joined)


def info(message: str) -> None:
    line((message, "dim"), stderr=True)


def warn(message: str) -> None:
    line(("warning: ", "yellow bold"), message, stderr=True)


def retrying(error: Any, wait: float) -> None:
    """The on_retry callback of llm.complete: a transient model error, retried after `wait`."""
    warn(f"{error.message}; retrying in {wait:g} s")


def error(message: str, hint: str | None = None) -> None:
    for n, text in enumerate(message.split("\n")):
        line(("Error: " if n == 0 else "  ", "red bold"), text, stderr=True)
    if hint:
        line(("hint: ", "cyan"), hint, stderr=True)


def ask(prompt: str) -> str | None:
    """A person's answer to `prompt`, typed on stdin (the terminal echoes it); None at the end of
    input. A reply that is streaming ends its line first, so the prompt is shown whole."""
    _settle()
    try:
        return input(prompt)
    except EOFError:
        return None


def diff(text: str, *, stderr: bool = False) -> None:
    """Print a unified diff, coloured on a terminal. Redirected stdout gets the diff exactly (a
    patch); on a terminal, or on stderr, what a model wrote in it is shown literally."""
    stream_file = sys.stderr if stderr else sys.stdout
    terminal = _tty(stream_file)
    if not terminal or os.environ.get("NO_COLOR"):
        _settle()
        stream_file.write(text if not terminal and not stderr else literal(text, multiline=True))
        stream_file.flush()
        return
    from rich.text import Text

    o = err() if stderr else out()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for row in lines:
        style = ""
        if row.startswith(("+++", "---", "diff --git", "index ", "new file", "deleted file")):
            style = "bold"
        elif row.startswith("+"):
            style = "green"
        elif row.startswith("-"):
            style = "red"
        elif row.startswith("@@"):
            style = "cyan"
        o.print(Text(literal(row, multiline=True), style=style))


# -- a streaming reply -----------------------------------------------------------------------
_open: list[ReplyStream] = []      # the reply being streamed to stdout now, if any


def _settle() -> None:
    """End the line of a reply that is streaming, before anything else is written."""
    for reply in _open:
        reply.settle()


class ReplyStream:
    """A model's reply on stdout, written as it streams in: `with ReplyStream() as reply:` then
    `reply.write(piece)` for each piece; the last line is ended on the way out.

    On a terminal every character is shown (literal()) and nothing is cropped or redrawn: the
    cursor never moves back up. Prose is word-wrapped at the width the terminal has when each
    word arrives, so a resize applies from the next word on; code blocks, indented lines and
    tables are written as they are and left for the terminal to wrap. Elsewhere (a pipe, a
    file) the text is written exactly as received."""

    def __init__(self) -> None:
        self.terminal = _tty(sys.stdout)
        self.written = ""            # the last character written ("" before any)
        self._col = 0                # cells used on the terminal's current row
        self._head = ""              # the start of the current line (fences, indentation)
        self._fence = False          # inside a ``` or ~~~ code block
        self._word = ""              # a word not yet written: it may need a new row
        self._word_cells = 0
        self._long = False           # the held word filled a row: the rest follows unbroken
        self._w = 80                 # the terminal's width, read at each write
        self._cells: Callable[[str], int] = len
        if self.terminal:
            from rich.cells import cell_len

            self._cells = cell_len

    def __enter__(self) -> ReplyStream:
        _open.append(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _open.remove(self)
        self.end()

    def write(self, text: str) -> None:
        if not text:
            return
        if not self.terminal:
            self._emit(text)
            return
        self._w = self._width()
        pieces: list[str] = []
        for char in literal(text, multiline=True):
            self._take(char, pieces)
        self._emit("".join(pieces))

    def settle(self) -> None:
        """Show the held word and end the current row (something else is about to be printed)."""
        if self.terminal:
            pieces: list[str] = []
            self._w = self._width()
            self._flush_word(pieces)
            self._emit("".join(pieces))
        if self.terminal and self.written not in ("", "\n"):
            self._emit("\n")

    def end(self) -> None:
        """Show the held word and end the last line: the next prompt starts on its own line."""
        if self.terminal:
            self.settle()
        elif self.written not in ("", "\n"):
            self._emit("\n")

    # -- the terminal ---------------------------------------------------------------------
    def _emit(self, text: str) -> None:
        if not text:
            return
        sys.stdout.write(text)
        sys.stdout.flush()
        self.written = text[-1]
        if text.endswith("\n"):
            self._col = 0

    def _width(self) -> int:
        try:
            return os.get_terminal_size(sys.stdout.fileno()).columns or 80
        except (OSError, ValueError, AttributeError):
            import shutil

            return shutil.get_terminal_size().columns or 80

    def _wraps(self) -> bool:
        """Whether the current line is prose (may be broken between words)."""
        return not self._fence and not self._head.startswith(("    ", "\t", "|"))

    def _take(self, char: str, pieces: list[str]) -> None:
        if char == "\n":
            self._flush_word(pieces)
            pieces.append("\n")
            self._col, self._long = 0, False
            stripped = self._head.lstrip(" ")
            if len(self._head) - len(stripped) < 4 and stripped.startswith(("```", "~~~")):
                self._fence = not self._fence
            self._head = ""
            return
        if len(self._head) < 8:
            self._head += char
        if char != " " and (self._long or not self._wraps()):
            # a code line, or a word longer than a row: shown as it comes, the terminal wraps it
            self._flush_word(pieces)
            pieces.append(char)
            self._advance(self._cells(char))
            return
        if char != " ":
            self._word += char
            self._word_cells += self._cells(char)
            if self._word_cells >= self._w:
                self._flush_word(pieces)
                self._long = True
            return
        self._long = False
        self._flush_word(pieces)
        if self._wraps() and self._col >= self._w:
            pieces.append("\n")           # the space becomes the line break
            self._col = 0
        else:
            pieces.append(" ")
            self._col += 1

    def _flush_word(self, pieces: list[str]) -> None:
        if not self._word:
            return
        cells = self._word_cells
        if self._wraps() and 0 < self._col and self._col + cells > self._w:
            pieces.append("\n")
            self._col = 0
        pieces.append(self._word)
        self._word, self._word_cells = "", 0
        self._advance(cells)

    def _advance(self, cells: int) -> None:
        self._col += cells
        if self._col > self._w:               # the terminal wrapped the row
            self._col = (self._col - 1) % self._w + 1
