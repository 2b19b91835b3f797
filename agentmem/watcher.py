"""Follow agent folders: record hand edits live, and sleep agents that have gone idle.

The only module that imports watchfiles. Own writes are recognised by content (the file equals
the latest version, or matches a write agentmem has announced in .agentmem/intent.json), not
by a time window, so they are never recorded twice.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agentmem.agent import STATE_DIR, Agent
from agentmem.errors import AgentmemError, InvalidAgent, Locked, Problem
from agentmem.history import TRACKED, Version
from agentmem.journal import FILE as LOG_FILE
from agentmem.memory import validate

if TYPE_CHECKING:
    from agentmem.sleep import PassResult

DEBRIS = ("*~", "*.swp", "*.swo", "*.swx", ".#*", "4913", "*.tmp", "#*#", ".DS_Store")
WATCHED = set(TRACKED) | {LOG_FILE}


def relevant(path: str, roots: list[Path]) -> bool:
    """True for a memory file or log.jsonl directly inside one of the agent folders."""
    p = Path(path)
    name = p.name
    if any(fnmatch.fnmatch(name, pattern) for pattern in DEBRIS):
        return False
    if STATE_DIR in p.parts:
        return False
    return name in WATCHED and any(p.parent == root for root in roots)


@dataclass
class Classification:
    kind: str                     # none | own | invalid | hand
    files: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def classify(agent: Agent) -> Classification:
    """What the files on disk are, compared with the latest version."""
    dirty = agent.history.dirty()
    if not dirty:
        return Classification("none")
    if agent.is_own_write(dirty):
        return Classification("own", dirty)
    _, problems = validate(agent.read_texts())
    if problems:
        return Classification("invalid", dirty, problems)
    return Classification("hand", dirty)


@dataclass
class WatchEvent:
    kind: str   # recorded | settled | invalid | sleep | warning | sleep_failed | error | started
    agent: Agent
    message: str
    diff: str = ""
    version: Version | None = None


class Watcher:
    def __init__(self, agents: list[Agent], emit: Callable[[WatchEvent], None], *,
                 model: str | None = None, idle_minutes: float | None = None,
                 min_events: int | None = None, auto_sleep: bool = True,
                 force_polling: bool | None = None, poll_delay_ms: int = 300,
                 debounce_ms: int = 300, tick_ms: int = 1000) -> None:
        self.agents = agents
        self.emit = emit
        self.model = model
        self.idle_minutes = idle_minutes
        self.min_events = min_events
        self.auto_sleep = auto_sleep
        self.force_polling = force_polling
        self.poll_delay_ms = poll_delay_ms
        self.debounce_ms = debounce_ms
        self.tick_ms = tick_ms
        self.stop_event = threading.Event()
        self.ready = threading.Event()     # set once file events are being delivered
        self._invalid: dict[Path, str] = {}
        self._attempted: dict[Path, int] = {}

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        from watchfiles import watch

        roots = [a.folder for a in self.agents]
        by_root = {a.folder: a for a in self.agents}
        for agent in self.agents:           # edits made while nobody was watching
            self.check(agent)
        for changes in watch(*roots, watch_filter=lambda _c, path: relevant(path, roots),
                             stop_event=self.stop_event, debounce=self.debounce_ms, step=50,
                             rust_timeout=self.tick_ms, yield_on_timeout=True,
                             force_polling=self.force_polling, poll_delay_ms=self.poll_delay_ms,
                             raise_interrupt=False):
            if not self.ready.is_set():
                self.ready.set()
                for agent in self.agents:   # edits made while the watch was starting
                    self.check(agent)
            touched = {Path(path).parent for _, path in changes}
            for root in touched:
                owner = by_root.get(root)
                if owner is not None and any(Path(p).name in TRACKED for _, p in changes
                                             if Path(p).parent == root):
                    self.check(owner)
            if self.auto_sleep and not self.stop_event.is_set():
                for agent in self.agents:
                    self.maybe_sleep(agent)
            if self.stop_event.is_set():
                break

    # -- hand edits ------------------------------------------------------------------------
    def check(self, agent: Agent) -> None:
        try:
            found = classify(agent)
            if found.kind == "invalid":
                text = "\n".join(str(p) for p in found.problems)
                if self._invalid.get(agent.folder) != text:
                    self._invalid[agent.folder] = text
                    self.emit(WatchEvent("invalid", agent, text + "\n(not recorded: the last good "
                                         "version stays; fix the file)"))
                return
            self._invalid.pop(agent.folder, None)
            if found.kind == "own":
                self.settle(agent, found)
                return
            if found.kind != "hand":
                return
            version = agent.record_hand_edits()
            if version is None:
                return
            parent = agent.history.parent(version)
            self.emit(WatchEvent("recorded", agent, "hand edit of "
                                 f"{', '.join(agent.history.changed_files(version))} "
                                 f"recorded as version {version.number}",
                                 diff=agent.history.diff(parent, version), version=version))
        except AgentmemError as exc:
            self.emit(WatchEvent("error", agent, exc.message))

    def settle(self, agent: Agent, found: Classification) -> None:
        """Files an agentmem write announced (`found`, of kind "own"): left alone while the
        write is under way; if its process died, recorded under its author (complete) or put
        back (half-done). Nothing is settled when the files changed since `found` was taken:
        the next check() sees them afresh."""
        settled, version = agent.settle_if_idle()
        if not settled:
            return
        if version is not None:
            parent = agent.history.parent(version)
            self.emit(WatchEvent("recorded", agent, f"an interrupted write by {version.author} "
                                 f"recorded as version {version.number}",
                                 diff=agent.history.diff(parent, version), version=version))
        else:
            self.emit(WatchEvent("settled", agent, "an interrupted write was undone: "
                                 f"{', '.join(found.files)} back as the last version has them"))

    # -- sleep-time compute ----------------------------------------------------------------
    def due(self, agent: Agent) -> tuple[bool, str]:
        settings = agent.load().persona.settings.get("sleep") or {}
        idle_minutes = self.idle_minutes if self.idle_minutes is not None else float(
            settings.get("idle_minutes", 30))
        min_events = self.min_events if self.min_events is not None else int(
            settings.get("min_events", 20))
        last = agent.journal.last_event_number()
        new = agent.journal.count_new(agent.sleep_cursor())   # a pass's own event is not new
        if new < max(1, min_events):
            return False, f"{new} new events (needs {min_events})"
        if self._attempted.get(agent.folder) == last:
            return False, "the last pass over these events failed; waiting for new events"
        try:
            idle = time.time() - agent.journal.path.stat().st_mtime
        except FileNotFoundError:
            return False, "no log"
        if idle < idle_minutes * 60:
            return False, f"active {idle:.0f} s ago"
        return True, f"{new} new events, idle {idle / 60:.1f} min"

    def maybe_sleep(self, agent: Agent) -> None:
        try:
            due, why = self.due(agent)
            if not due:
                return
        except InvalidAgent:
            return      # reported by check(); sleep waits until the files are fixed
        try:
            result = self._sleep(agent)
        except AgentmemError as exc:
            self._attempted[agent.folder] = agent.journal.last_event_number()
            self.emit(WatchEvent("sleep_failed", agent, exc.message + (
                f" ({exc.hint})" if exc.hint else "")))
            return
        if result is None:
            return
        if result.ok:
            self._attempted.pop(agent.folder, None)
            diff = ""
            if result.version is not None:
                diff = agent.history.diff(agent.history.parent(result.version), result.version)
            self.emit(WatchEvent("sleep", agent, f"slept ({why}): {result.message}", diff=diff,
                                 version=result.version))
            for warning in result.proposal.warnings if result.proposal else []:
                self.emit(WatchEvent("warning", agent, warning))
        else:
            self.emit(WatchEvent("sleep_failed", agent, result.message))

    def _sleep(self, agent: Agent) -> PassResult | None:
        """One pass, holding the agent's session lock, so that no chat starts meanwhile; None
        when a chat session (or another watcher's pass) holds it."""
        from agentmem import sleep as core
        from agentmem.sleep import check as checking

        session = agent.session_lock()
        try:
            session.acquire()
        except Locked:
            return None
        try:
            spec = core.prepare(agent, self.model)
            self._attempted[agent.folder] = agent.journal.last_event_number()
            # persona.md's `sleep: check:` holds here as in `agentmem sleep` (None when off)
            return core.run_pass(agent, spec, apply_it=True,
                                 check=checking.settings(agent, spec))
        finally:
            session.release()
