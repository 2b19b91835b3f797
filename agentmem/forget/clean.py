"""The agent's own files without it, computed in memory: JSON values (every string, key and
string holding JSON), log.jsonl line by line (an event's id, time, session and kind kept, so
evidence links still resolve) and state.json (its sleep cursors moved with their events)."""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentmem.forget.gitobjects import decode, encode
from agentmem.journal import FILE as LOG_FILE
from agentmem.journal import encode_event

if TYPE_CHECKING:
    from agentmem.forget.findings import Findings
    from agentmem.forget.target import Target

EVENT_KEYS = ("id", "time", "session", "kind")       # an event's structure, never rewritten


@dataclass
class NewLog:
    """log.jsonl without it, and where the old log's byte offsets are in it."""

    size: int                     # the bytes of log.jsonl this was computed on
    old: str                      # their sha256
    new: bytes                    # what replaces them
    shifts: list[tuple[int, int]]  # (old end of a changed line, bytes added up to there)

    def offset(self, old: int) -> int:
        """Where a byte offset of the old log (a cursor) is in the new one."""
        at = bisect.bisect_right([end for end, _ in self.shifts], old) - 1
        return old + (self.shifts[at][1] if at >= 0 else 0)


def load_json(data: bytes) -> Any:
    """The JSON value in `data`, None when it is not JSON."""
    try:
        return json.loads(data)
    except ValueError:
        return None


def dump_like(value: Any, original: bytes) -> bytes:
    """JSON written as agentmem writes that file: indented (state, kept outputs) or not."""
    if original.lstrip().startswith((b"{\n", b"[\n")):
        return (json.dumps(value, indent=2) + "\n").encode()
    return json.dumps(value).encode()


def walk(value: Any, target: Target, keep: tuple[str, ...] = ()) -> tuple[Any, int]:
    """A JSON value without it: every string, key and string holding JSON (a tool call's
    arguments) included; keys in `keep` are left as they are."""
    if isinstance(value, str):
        if value[:1] in "{[":
            try:
                inner = json.loads(value)
            except ValueError:
                inner = None
            if isinstance(inner, (dict, list)):
                new, count = walk(inner, target)
                if count:
                    return json.dumps(new, ensure_ascii=False), count
        return target.sub(value)
    if isinstance(value, list):
        items = [walk(item, target) for item in value]
        return [item for item, _ in items], sum(n for _, n in items)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        total = 0
        for key, item in value.items():
            if key in keep:
                out[key] = item
                continue
            new_key, n = target.sub(key)
            out[new_key], m = walk(item, target)
            total += n + m
        return out, total
    return value, 0


def holds_json(value: Any, target: Target) -> bool:
    if isinstance(value, str):
        return target.search(value)
    if isinstance(value, list):
        return any(holds_json(item, target) for item in value)
    if isinstance(value, dict):
        return any(target.search(k) or holds_json(v, target) for k, v in value.items())
    return False


def clean_log(data: bytes, target: Target, found: Findings | None = None,
              problems: list[str] | None = None) -> tuple[bytes, list[tuple[int, int]]]:
    """Log lines without it, and (old end of each changed line, bytes added up to there).
    With `found`, the events (or unreadable lines) that held it are listed there; with
    `problems`, the lines that still hold it once it goes (in a field forget keeps)."""
    out: list[bytes] = []
    shifts: list[tuple[int, int]] = []
    at = delta = 0
    for number, line in enumerate(data.splitlines(keepends=True), 1):
        at += len(line)
        new, event, left = _clean_line(line, target)
        if new is None:
            out.append(line)
            continue
        if found is not None:
            if event:
                found.events.append(event)
            else:
                found.log_lines.append(number)
        if problems is not None and left:
            problems.append(f"log event {event}'s id, time, session or kind" if event else
                            f"{LOG_FILE} line {number}")
        out.append(new)
        delta += len(new) - len(line)
        shifts.append((at, delta))
    return b"".join(out), shifts


def _clean_line(line: bytes, target: Target) -> tuple[bytes | None, str | None, bool]:
    """A log line without it, ids and structure kept (None: it holds none), its event id,
    and whether the new line still holds it (in a field forget keeps)."""
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict):        # an unreadable line: as text
        text, count = target.sub(decode(line))
        return (encode(text), None, target.search(text)) if count else (None, None, False)
    if not holds_json(event, target):
        return None, None, False
    clean, _ = walk(event, target, keep=EVENT_KEYS)
    new = encode_event(clean).encode("utf-8")
    if not line.endswith(b"\n"):
        new = new.rstrip(b"\n")
    event_id = event.get("id")
    return new, event_id if isinstance(event_id, str) else None, holds_json(clean, target)


def clean_state(data: bytes, target: Target, log: NewLog | None) -> bytes:
    """state.json without it, its sleep cursors moved to where their events are in the new log."""
    state = load_json(data)
    if not isinstance(state, dict):
        return data
    clean, count = walk(state, target)
    moved = False
    if log is not None:
        for key in ("sleep_cursor", "pending_sleep_cursor"):
            cursor = clean.get(key)
            if isinstance(cursor, dict) and isinstance(cursor.get("offset"), int):
                offset = log.offset(cursor["offset"])
                if offset != cursor["offset"]:
                    clean[key] = {**cursor, "offset": offset}
                    moved = True
    if not (count or moved):
        return data
    return (json.dumps(clean, indent=2) + "\n").encode()
