"""Crash recovery: what a killed agentmem write leaves behind, found and settled.

A write announces itself in `.agentmem/intent.json` (its author, message, the hash of each
file it will write, and the state.json values it will set) before it touches a memory file,
and removes the intent once the version and the state are recorded. Under the write lock, an
intent that is still there belongs to a process that died; this module decides what it
means: a write complete on disk is recorded under its author, one that stopped half-way is
put back, and a sleep pass whose version was recorded keeps its cursor. It also clears git's
locks and temp files a killed write left (see History.recover).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from agentmem.fsutil import TMP_SUFFIX, atomic_delete, atomic_write, file_digest, read_json
from agentmem.gitstore import Unsupported
from agentmem.journal import Cursor

if TYPE_CHECKING:
    from agentmem.agent import Agent
    from agentmem.history import Version

INTENT = "intent.json"     # in the state folder: the write under way (see Agent.update)
FORGET_INTENT = "forget/intent.json"   # in the state folder: a forget past its commit point


def is_own_write(agent: Agent, dirty: list[str]) -> bool:
    """Whether every changed file is one the write in intent.json announced, as it wrote
    it (agentmem's own write, under way or interrupted), rather than a person's edit."""
    files = read_json(agent.state_dir / INTENT).get("files") or {}
    return bool(dirty) and all(n in files and file_digest(agent.folder / n) == files[n]
                               for n in dirty)


def landed_intent(agent: Agent, state: dict[str, Any]) -> dict[str, Any] | None:
    """The state values of an interrupted sleep write whose version was recorded but whose
    state.json write was not. The history is the proof (the version's message names the
    cursor), not the files, which a person may have edited since."""
    intent = read_json(agent.state_dir / INTENT)
    values = intent.get("state")
    if not isinstance(values, dict) or not intent.get("id") or \
            state.get("last_intent") == intent["id"] or not values.get("sleep_cursor"):
        return None
    announced = Cursor.from_json(values["sleep_cursor"])
    if announced.event <= Cursor.from_json(state.get("sleep_cursor")).event or \
            not agent.history.has_sleep_cursor(announced.event, announced.offset):
        return None       # older than the cursor (it never moves back), or never recorded
    return values


def settle_intent(agent: Agent) -> Version | None:
    """The write named in intent.json did not finish (its process died): record it when
    its files are all on disk, put back those it wrote when it stopped half-way."""
    intent_path = agent.state_dir / INTENT
    dirty = agent.history.dirty()
    intent = read_json(intent_path)
    files = intent.get("files", {})
    version = None
    written = {n for n, h in files.items() if file_digest(agent.folder / n) == h}
    if written == set(files) and any(n in dirty for n in files):
        # the interrupted write was complete on disk: commit it as its author; anything
        # else that changed is recorded as the person's own version afterwards
        version = agent.history.commit(intent.get("author", "human"),
                                       intent.get("message", "Recovered write"),
                                       agent.journal.last_event_number(),
                                       paths=[n for n in files if n in dirty])
    elif written & set(dirty) and set(files) - set(dirty):
        # it died part-way through its files (one it was to change is still as the last
        # version has it): a write is all or nothing, so the files it did write go back to
        # the last version, and a sleep pass is offered again, as its cursor never moved.
        # A file that matches neither is a person's and stays.
        put_back(agent, {n: files[n] for n in sorted(written & set(dirty))})
    landed = landed_intent(agent, agent.read_state())
    if landed is not None:        # and the state.json write it was followed by
        agent.update_state(**landed, last_intent=intent["id"])
    atomic_delete(intent_path)
    return version


def put_back(agent: Agent, written: dict[str, str | None]) -> None:
    """Files a write that died half-way wrote (name -> the hash it wrote) get the exact
    bytes they have in the latest version back (absent there: removed). One that changed
    again since, or that is a symbolic link in that version, is left as it is."""
    latest = agent.history.latest()
    if latest is None:
        return
    for name, digest in written.items():
        try:
            data = agent.history.bytes_at(latest, name)
        except Unsupported:
            continue
        if file_digest(agent.folder / name) != digest:
            continue                  # saved again meanwhile: a person's, kept
        if data is None:
            atomic_delete(agent.folder / name)
        else:
            atomic_write(agent.folder / name, data)


def clear_debris(agent: Agent) -> list[os.DirEntry[str]] | None:
    """What a killed write left: git's locks and half-written objects (History.recover),
    and temp files in the agent folder. Under the write lock no live write owns them (a
    temp file in the state folder may be a lock-free writer's: only old ones go). Returns the
    state folder's entries as listed (for reclaim_saves), None when it could not be listed."""
    agent.history.recover()
    now = time.time()
    entries: list[os.DirEntry[str]] | None = None
    for folder, min_age in ((agent.folder, 0.0), (agent.state_dir, 60.0)):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            entries = None
            continue
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX):
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime >= min_age:
                        os.unlink(entry.path)
                except OSError:
                    pass
    return entries


def settle_forget(agent: Agent) -> bool:
    """Finish a forget whose process died after its commit point (see agentmem.forget.apply): its
    intent names every new ref and file, all written before it, so the rest is rolled
    forward. Call it holding the write lock, before anything reads the memory files (which
    may still hold what the forget removes from the history). False when there is none."""
    if not (agent.state_dir / FORGET_INTENT).exists():
        return False
    clear_debris(agent)
    from agentmem import forget

    forget.finish(agent)
    return True
