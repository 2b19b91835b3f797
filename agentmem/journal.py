"""log.jsonl: the append-only record of everything that happened.

One JSON object per line: id (e1, e2, ...), time, session, kind, content and extra fields.
A torn or corrupt line is skipped with a warning and never causes other lines to be lost.
Reading from a cursor (event number + byte offset) costs what the new events cost, not the log.

An agent that syncs (agentmem.sync) has a machine tag, and the events it appends from then on
are numbered `e<N>-<tag>` (e14-k3f9qa): N is one past the highest number in the log, whichever
machine wrote it, and the tag keeps two machines' event N apart. Plain `eN` ids stay valid.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentmem.fsutil import fsync, write_all
from agentmem.locks import FileLock
from agentmem.redact import env_secrets, redact_obj

FILE = "log.jsonl"
# kinds that record agentmem's own bookkeeping, not experience: no sleep pass learns from them,
# and they do not count as new since the last sleep
BOOKKEEPING = frozenset({"session_start", "session_end", "sleep", "sync"})
MACHINE_FILE = "machine"       # in .agentmem/: this copy's tag, host and folder (JSON)
EVENT_ID = re.compile(r"e(\d+)(?:-([a-z0-9]{4,16}))?")
_TAIL_CHUNK = 64 * 1024


def encode_event(event: dict[str, Any]) -> str:
    """One event as its log line, newline included, exactly as append writes it. Text that is
    not valid Unicode (a lone surrogate, from a model or from bytes on a command line) is
    written \\u-escaped, so the line is still UTF-8 and reads back as it was."""
    line = json.dumps(event, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(event)
    return line + "\n"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_number(event_id: Any) -> int | None:
    """N of an event id `eN` or `eN-TAG`; None for anything else."""
    if isinstance(event_id, str) and event_id[:1] == "e":
        if event_id[1:].isdigit():
            return int(event_id[1:])
        found = EVENT_ID.fullmatch(event_id)
        if found:
            return int(found.group(1))
    return None


def _machine_of(event_id: str) -> str:
    """The tag of an id `eN-TAG` ("" for a plain `eN`)."""
    found = EVENT_ID.fullmatch(event_id)
    return (found.group(2) or "") if found else ""


def consumed(events: list[dict[str, Any]]) -> list[str]:
    """The newest id of each machine among `events` (plain `eN` ids count as one machine):
    the high-water marks a `sleep` event records of the events its pass moved the cursor past.
    Every event of a machine up to its mark was in that log, and so was read by that pass or
    an earlier one there (sync merges whole logs)."""
    top: dict[str, tuple[int, str]] = {}
    for event in events:
        number = event_number(event.get("id"))
        if number is not None:
            tag = _machine_of(event["id"])
            if tag not in top or number > top[tag][0]:
                top[tag] = (number, event["id"])
    return [top[tag][1] for tag in sorted(top)]


def learnable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events a sleep pass learns from, of `events` (those after its cursor): bookkeeping
    left out, and so is every event that a `sleep` event among them says its pass consumed
    (another machine's pass whose events and version arrived by sync: what it learnt is in
    the merged memory already). A `sleep` event without `consumed` (older agentmem) skips
    nothing."""
    marks: dict[str, int] = {}
    for event in events:
        if event.get("kind") == "sleep" and isinstance(event.get("consumed"), list):
            for mark in event["consumed"]:
                number = event_number(mark)
                if number is not None:
                    tag = _machine_of(mark)
                    marks[tag] = max(marks.get(tag, 0), number)
    return [e for e in events if e.get("kind") not in BOOKKEEPING
            and (event_number(e.get("id")) or 0) > marks.get(_machine_of(str(e.get("id"))), 0)]


@dataclass
class Cursor:
    """A position in the log: the last event read and the byte offset just after it."""

    event: int = 0
    offset: int = 0

    def to_json(self) -> dict[str, int]:
        return {"event": self.event, "offset": self.offset}

    @classmethod
    def from_json(cls, data: Any) -> Cursor:
        if isinstance(data, dict):
            return cls(int(data.get("event", 0)), int(data.get("offset", 0)))
        return cls()


@dataclass
class ReadResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    end: Cursor = field(default_factory=Cursor)


class Journal:
    def __init__(self, path: Path, lock_path: Path) -> None:
        self.path = path
        self._lock_path = lock_path
        self._tag: str | None = None        # this copy's machine tag, once read
        self._machine = str(lock_path.parent / MACHINE_FILE)

    # -- the machine tag -------------------------------------------------------------------
    def machine_tag(self, *, create: bool = False) -> str | None:
        """This copy's tag for new event ids (None: it has never synced, ids stay `eN`). A
        tag recorded for another host or folder (the folder was copied) is replaced by a new
        one, so that two copies never mint the same id. Until there is a tag the file is looked
        at on every append (one stat): a sync in another process may create it meanwhile."""
        if self._tag is not None:
            return self._tag
        if not create and not os.path.exists(self._machine):
            return None                   # never synced
        path = Path(self._machine)
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if not create:
                return None               # removed since the stat above
            saved = None
        except (OSError, ValueError):
            saved = None
        # imported here, not with the module (the start-up of every command): only a copy
        # that syncs gets this far
        import socket

        here = {"host": socket.gethostname(), "folder": str(self.path.parent.resolve())}
        if isinstance(saved, dict) and isinstance(saved.get("tag"), str) and \
                {k: saved.get(k) for k in here} == here and EVENT_ID.fullmatch(f"e1-{saved['tag']}"):
            self._tag = saved["tag"]
        elif saved is not None or create:
            import secrets

            from agentmem.fsutil import atomic_write

            alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
            self._tag = "".join(secrets.choice(alphabet) for _ in range(6))
            atomic_write(path, json.dumps({"tag": self._tag, **here}) + "\n")
        return self._tag

    # -- writing ---------------------------------------------------------------------------
    def locked(self) -> FileLock:
        """The lock append takes: held, no event is appended (to rewrite the file whole)."""
        return FileLock(str(self._lock_path), timeout=30)

    def append(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        """Append events (redacted), assigning ids and times. Durable when this returns."""
        env = env_secrets()      # scanned once per append, not once per string
        with self.locked():
            last = self.last_event_number()
            tag = self.machine_tag()
            suffix = f"-{tag}" if tag else ""
            stored = []
            for offset, event in enumerate(events, start=1):
                record = {"id": f"e{last + offset}{suffix}", "time": now_iso()}
                record.update({k: v for k, v in event.items() if k not in ("id",)})
                stored.append(redact_obj(record, env))
            data = "".join(encode_event(e) for e in stored)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if not self._ends_with_newline(fd):
                    data = "\n" + data   # isolate a torn last line instead of extending it
                write_all(fd, data.encode("utf-8"))
                fsync(fd)
            finally:
                os.close(fd)
            return stored

    def _ends_with_newline(self, fd: int) -> bool:
        size = os.fstat(fd).st_size
        if size == 0:
            return True
        return os.pread(fd, 1, size - 1) == b"\n"

    # -- reading ---------------------------------------------------------------------------
    def last_event_number(self) -> int:
        """The number of the newest readable event, read from the end of the file (O(1))."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            end = os.fstat(fd).st_size
            carry = b""
            step = 4096                  # the last line is usually short: read little first
            while end > 0:
                start = max(0, end - step)
                chunk = os.pread(fd, end - start, start) + carry
                lines = chunk.split(b"\n")
                carry = lines[0] if start > 0 else b""
                for raw in reversed(lines[1:] if start > 0 else lines):
                    number = _number_of(raw)
                    if number is not None:
                        return number
                end = start
                step = min(step * 4, _TAIL_CHUNK)
        finally:
            os.close(fd)
        return 0

    def end_cursor(self) -> Cursor:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return Cursor()
        return Cursor(self.last_event_number(), size)

    def count_new(self, after: Cursor) -> int:
        """Events after `after` that a sleep pass would learn from (learnable)."""
        return len(learnable(self.read(after).events))

    def read(self, after: Cursor | None = None) -> ReadResult:
        """Events with a number above `after.event`, starting at `after.offset` when it is sane."""
        after = after or Cursor()
        result = ReadResult(end=Cursor(after.event, after.offset))
        if not self.path.exists():
            return result
        start = after.offset if self._offset_ok(after.offset) else 0
        for event, warning, end in self._scan(start):
            if warning:
                result.warnings.append(warning)
                continue
            assert event is not None
            number = event_number(event.get("id"))
            if number is not None and number > after.event:
                result.events.append(event)
                result.end = Cursor(number, end)
            else:
                result.end = Cursor(result.end.event, end)
        return result

    def find(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The events with these ids (scans until all are found)."""
        wanted = {i for i in ids if event_number(i) is not None}
        found: dict[str, dict[str, Any]] = {}
        if not wanted or not self.path.exists():
            return found
        for event, _, _ in self._scan(0):
            if event is not None and event.get("id") in wanted:
                found[event["id"]] = event
                if len(found) == len(wanted):
                    break
        return found

    def _offset_ok(self, offset: int) -> bool:
        if offset <= 0:
            return False
        try:
            with open(self.path, "rb") as fh:
                fh.seek(offset - 1)
                return fh.read(1) == b"\n"
        except OSError:
            return False

    def _scan(self, start: int) -> Iterator[tuple[dict[str, Any] | None, str | None, int]]:
        with open(self.path, "rb") as fh:
            fh.seek(start)
            position = start
            line_no = 1 if start == 0 else None
            for raw in fh:
                position += len(raw)
                where = f"{FILE}:{line_no}" if line_no else f"{FILE} (byte {position - len(raw)})"
                if line_no:
                    line_no += 1
                if not raw.strip():
                    continue
                complete = raw.endswith(b"\n")
                try:
                    event = json.loads(raw)
                    if not isinstance(event, dict) or event_number(event.get("id")) is None:
                        raise ValueError("not an event object with an id like e12 or e12-k3f9qa")
                except ValueError as exc:
                    reason = "torn line (no newline at the end)" if not complete else str(exc)
                    yield None, f"{where}: skipped an unreadable log line: {reason}", position
                    continue
                if not complete:
                    # a valid JSON object without its newline: a write still in flight or torn
                    yield None, f"{where}: skipped an incomplete last line", position
                    continue
                yield event, None, position


def _number_of(raw: bytes) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    return event_number(event.get("id")) if isinstance(event, dict) else None
