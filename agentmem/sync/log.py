"""Merging two machines' log.jsonl by event id.

The merged log is the union of both sides' events. The part of this machine's log that its
last sleep pass already read (up to the sleep cursor's byte offset) is kept byte for byte;
after it come the other events, this machine's unread ones and those that arrived, ordered
by number, then time, then id. Numbers work as a logical clock (each event is numbered one
past the highest number its log held), so that order puts an event after every event its
machine had seen, and the last line carries the highest number, which the next event
appended is numbered past. Only when every arrived event is numbered below what this machine
had already read does a `sync` event close the tail, numbered past both sides' events. The
sleep cursor is moved to the start of the tail, so the next sleep pass reads each arrived
event exactly once.

One id holding two different events (a `forget` on one side only, or two copies of one
folder that both wrote before either synced) is refused: nothing is changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentmem.errors import Conflict
from agentmem.journal import Cursor, encode_event, event_number, now_iso
from agentmem.redact import redact_obj


@dataclass
class Event:
    id: str
    data: dict[str, Any]
    raw: bytes                   # the line as written, newline included

    @property
    def order(self) -> tuple[int, str, str]:
        return (event_number(self.id) or 0, str(self.data.get("time", "")), self.id)


@dataclass
class LogMerge:
    data: bytes                     # the merged log (unchanged when nothing arrived)
    arrived: int = 0                # events the other side had and this one did not
    sent: int = 0                   # events this side had and the other did not
    cursor: Cursor | None = None    # the new sleep cursor (None: keep it)
    skipped: list[str] = field(default_factory=list)   # unreadable lines of the other side's


def parse(data: bytes) -> tuple[list[Event], list[bytes]]:
    """Events (in file order) and the lines that are not events."""
    events: list[Event] = []
    other: list[bytes] = []
    for raw in data.splitlines(keepends=True):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or event_number(obj.get("id")) is None or \
                not raw.endswith(b"\n"):
            other.append(raw)
            continue
        events.append(Event(obj["id"], obj, raw))
    return events, other


def merge(local: bytes, remote: bytes | None, cursor: Cursor, tag: str,
          sync_fields: dict[str, Any]) -> LogMerge:
    """The union of both logs, laid out as the module's text says."""
    theirs, skipped = parse(remote or b"")
    ours_all, _ = parse(local)
    known: dict[str, Event] = {e.id: e for e in ours_all}
    for event in theirs:
        mine = known.get(event.id)
        if mine is not None and mine.data != event.data:
            raise Conflict(f"log.jsonl: event {event.id} differs here and on the remote "
                           "(forgotten on one side only?); nothing was changed",
                           "run the same 'agentmem forget' on both machines, or sync this one "
                           "to a new, empty remote")
    their_ids = {e.id for e in theirs}
    sent = sum(1 for e in ours_all if e.id not in their_ids)
    arrived = [e for e in theirs if e.id not in known]
    arrived = list({e.id: e for e in arrived}.values())         # the remote's own duplicates
    if not arrived:
        return LogMerge(local, 0, sent, None, [s.decode("utf-8", "replace") for s in skipped])
    offset = cursor.offset if 0 < cursor.offset <= len(local) and \
        local[cursor.offset - 1:cursor.offset] == b"\n" else 0
    prefix, rest = local[:offset], local[offset:]
    tail, unreadable = parse(rest)
    if rest and not rest.endswith(b"\n"):            # a torn last line stays, isolated
        unreadable = [*unreadable[:-1], unreadable[-1] + b"\n"] if unreadable else unreadable
    ordered = sorted([*tail, *arrived], key=lambda e: e.order)
    top = max(event_number(e.id) or 0 for e in [*ours_all, *theirs])
    body = prefix + b"".join(unreadable) + b"".join(e.raw for e in ordered)
    if (event_number(ordered[-1].id) or 0) < top:
        sync_event = redact_obj({"id": f"e{top + 1}-{tag}", "time": now_iso(), "kind": "sync",
                                 **sync_fields, "arrived": len(arrived), "sent": sent})
        body += encode_event(sync_event).encode("utf-8")
    first = min(event_number(e.id) or 0 for e in ordered)
    return LogMerge(body, len(arrived), sent, Cursor(max(first - 1, 0), len(prefix)),
                    [s.decode("utf-8", "replace") for s in skipped])
