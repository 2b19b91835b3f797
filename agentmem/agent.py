"""The agent folder: load and validate it, and write it atomically as recorded versions."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentmem import baton, config, recovery
from agentmem.errors import (
    AgentmemError,
    Conflict,
    InvalidAgent,
    Locked,
    NotFound,
    Problem,
    UsageError,
)
from agentmem.fsutil import (
    Changed,
    NotRegular,
    TooLarge,
    Unsettled,
    atomic_write,
    decode_text,
    read_json,
    read_settled,
    reclaim_saves,
    replace_files,
)
from agentmem.history import TRACKED, History, Version
from agentmem.journal import FILE as LOG_FILE
from agentmem.journal import Cursor, Journal
from agentmem.locks import AgentLock, FileLock, LockTimeout
from agentmem.memory import ARCHIVE, MEMORY_FILES, Memory, validate
from agentmem.recovery import FORGET_INTENT, INTENT
from agentmem.samples import find_sample

STATE_DIR = ".agentmem"
# The largest memory file agentmem reads: budgets keep persona.md and lessons.md to a few
# thousand tokens, and parsing a file of tens of megabytes would take minutes.
MAX_BYTES = {"persona.md": 1 << 20, "lessons.md": 1 << 20, "tools.yaml": 1 << 20,
             "archive.md": 8 << 20}
WRITE_TRIES = 5        # a write computed again after a person's save landed under it
BLANK_PERSONA = """---
{name_line}
description: A new agent.
budgets:
  persona: 2000
  lessons: 4000
---
# {name}

You are {name}, a helpful assistant. Be direct and precise. When you are corrected, or notice
a repeated mistake or a stable preference, record it as a lesson with the memory tool.
"""
Compute = Callable[[dict[str, "str | None"]], dict[str, "str | None"]]
Check = Callable[[dict[str, "str | None"], dict[str, "str | None"]], None]
BLANK_ARCHIVE = ("# Archive\n\nLessons retired by sleep passes, and the text of lessons before a "
                 "merge, kept for\nthe record.\n")


class Agent:
    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self.state_dir = self.folder / STATE_DIR
        self.history = History(self.folder)
        self.journal = Journal(self.folder / LOG_FILE, self.state_dir / "log.lock")
        self._lock: FileLock | None = None

    @property
    def _write_lock(self) -> FileLock:
        if self._lock is None:
            self._lock = FileLock(str(self.state_dir / "write.lock"), timeout=30)
        return self._lock

    @property
    def name(self) -> str:
        return self.folder.name

    # -- finding ---------------------------------------------------------------------------
    @classmethod
    def open(cls, spec: str | Path) -> Agent:
        """Open an agent by path, or by bare name under $AGENTMEM_HOME."""
        path = Path(spec).expanduser()
        candidates = [path]
        if isinstance(spec, str) and "/" not in spec and not spec.startswith("."):
            candidates.append(config.agents_home() / spec)
        for candidate in candidates:
            if (candidate / "persona.md").is_file():
                agent = cls(candidate)
                agent._ensure_state()
                if (agent.state_dir / FORGET_INTENT).exists():   # a forget died: finish it
                    with agent.locked():
                        recovery.settle_forget(agent)
                return agent
        if path.is_dir():
            raise NotFound(f"{path} is not an agent folder (no persona.md)",
                           f"create one with: agentmem new {path}")
        raise NotFound(f"no agent '{spec}' (looked in {', '.join(str(c) for c in candidates)})",
                       "give a path to an agent folder, or create one with: agentmem new NAME")

    @classmethod
    def create(cls, spec: str, sample: str | None = None) -> Agent:
        path = Path(spec).expanduser()
        if "/" not in spec and not spec.startswith("."):
            path = config.agents_home() / spec
        if path.exists() and not path.is_dir():
            raise UsageError(f"{path} exists and is not a folder", "choose another name")
        if path.exists() and any(path.iterdir()):
            raise UsageError(f"{path} already exists and is not empty",
                             "choose another name or remove the folder")
        texts: dict[str, str] = {}
        log_text = ""
        if sample:
            source = find_sample(sample)
            for name in (*MEMORY_FILES, ARCHIVE):
                if (source / name).is_file():
                    texts[name] = (source / name).read_text(encoding="utf-8")
            if (source / LOG_FILE).is_file():
                log_text = (source / LOG_FILE).read_text(encoding="utf-8")
        else:
            from agentmem import lessons as lessons_fmt
            from agentmem import tooldefs, yamlutil

            name = path.name
            persona_text = BLANK_PERSONA.format(name=name,
                                                name_line=yamlutil.dump({"name": name}).strip())
            texts = {"persona.md": persona_text, "lessons.md": lessons_fmt.BLANK_DOC,
                     "tools.yaml": tooldefs.BLANK}
        _, problems = validate(dict(texts))
        if problems:
            raise InvalidAgent(problems)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AgentmemError(f"cannot create {path}: {exc.strerror}",
                                "choose another location") from None
        agent = cls(path)
        agent._ensure_state()
        for name, text in texts.items():
            atomic_write(path / name, text)
        if log_text:
            atomic_write(path / LOG_FILE, log_text)
        else:
            (path / LOG_FILE).touch()
        message = f"Create agent from sample '{sample}'" if sample else "Create agent"
        agent.history.commit("new", message, agent.journal.last_event_number())
        return agent

    def _ensure_state(self) -> None:
        if not self.state_dir.exists():
            self.state_dir.mkdir(parents=True)
        ignore = self.state_dir / ".gitignore"
        if not ignore.exists():
            # keeps an enclosing repository from seeing our history as files to commit
            atomic_write(ignore, "# agentmem's own state; never committed by an outer repo\n*\n")
        if not self.history.exists:
            self.history.init()

    # -- reading ---------------------------------------------------------------------------
    def read_texts(self) -> dict[str, str | None]:
        return self._decode(self.read_raw())

    def read_raw(self) -> dict[str, bytes | None]:
        """The memory files' bytes (None: absent), each read only once it holds still (see
        fsutil.read_settled): never half of a save a person's editor is making."""
        return {name: self._read_file(name) for name in TRACKED}

    def _read_file(self, name: str) -> bytes | None:
        path = self.folder / name

        def shrunk(size: int) -> bool:
            last = self.history.size_in_latest(name)
            return size == 0 or (last is not None and size < last)

        try:
            return read_settled(path, limit=MAX_BYTES[name], shrunk=shrunk)[0]
        except FileNotFoundError:
            return None
        except NotRegular as exc:
            raise InvalidAgent([Problem(name, None, f"is {exc.strerror}; it must be a plain "
                                        "text file")]) from None
        except TooLarge as exc:
            raise InvalidAgent([Problem(name, None, f"is too large to read ({exc.strerror})")],
                               "shorten it (move old text elsewhere); nothing was changed") from None
        except Unsettled:
            raise Conflict(f"{path} kept changing while agentmem read it; nothing was changed",
                           "try again once it is saved") from None
        except PermissionError:
            raise AgentmemError(f"cannot read {path}: permission denied",
                                "give your user read and write access to the agent's files "
                                "(chmod u+rw)") from None
        except OSError as exc:
            raise AgentmemError(f"cannot read {path}: {exc.strerror or exc}") from None

    @staticmethod
    def _decode(raw: dict[str, bytes | None]) -> dict[str, str | None]:
        texts: dict[str, str | None] = {}
        for name, data in raw.items():
            try:
                texts[name] = None if data is None else decode_text(data)
            except UnicodeDecodeError:
                raise InvalidAgent([Problem(name, None, "file is not valid UTF-8 text")]) from None
        return texts

    def load(self) -> Memory:
        memory, problems = validate(self.read_texts())
        if problems or memory is None:
            raise InvalidAgent(problems)
        return memory

    # -- state -----------------------------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        return read_json(self.state_dir / "state.json")

    def update_state(self, **values: Any) -> None:
        with self.locked():
            state = self.read_state()
            state.update(values)
            state = {k: v for k, v in state.items() if v is not None}   # None removes a key
            atomic_write(self.state_dir / "state.json", json.dumps(state, indent=2) + "\n")

    def sleep_cursor(self) -> Cursor:
        """Where the last sleep pass stopped reading the log.

        A pass that writes a version names its new cursor in the write's intent (see update),
        and state.json takes it once the version is recorded. If the process died in between,
        the recorded version is the proof that the pass landed, so its cursor counts.
        """
        state = self.read_state()
        cursor = Cursor.from_json(state.get("sleep_cursor"))
        landed = recovery.landed_intent(self, state)
        if landed:
            return Cursor.from_json(landed["sleep_cursor"])
        # a state key written by an older agentmem format: the cursor a pass announced before
        # its version, honoured only once the history shows that version
        pending = state.get("pending_sleep_cursor")
        if pending:
            announced = Cursor.from_json(pending)
            if announced.event > cursor.event and self.history.has_sleep_cursor(
                    announced.event, announced.offset):
                return announced
        return cursor

    # -- writing ---------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        lock = self._write_lock
        if not self._take_lock_now():
            try:
                with baton.waiting():       # another holds it: let other passes compute
                    lock.acquire()
            except LockTimeout:
                raise Locked(f"{self.folder} is busy: another agentmem process holds its write "
                             "lock", "wait for it to finish and try again") from None
        try:
            yield
        finally:
            lock.release()

    def session_lock(self) -> AgentLock:
        """Held while a chat session is open; a background sleep pass does not start then."""
        return AgentLock(self.state_dir / "session.lock",
                         f"another chat session, or a background sleep pass, is open for "
                         f"{self.name}", "wait for it to end and try again")

    def sleep_lock(self) -> AgentLock:
        """Held by a sleep pass from its plan to its write: one pass at a time."""
        return AgentLock(self.state_dir / "sleep.lock",
                         "a sleep pass is already running for this agent", "wait for it to finish")

    def record_hand_edits(self) -> Version | None:
        with self.locked():
            return self._record_pending()[0]

    def _take_lock_now(self) -> bool:
        """The write lock if it is free (or already this thread's), without waiting."""
        try:
            self._write_lock.acquire(timeout=0)
        except LockTimeout:
            return False
        return True

    def is_own_write(self, dirty: list[str]) -> bool:
        """Whether every changed file is one an announced write wrote (see recovery)."""
        return recovery.is_own_write(self, dirty)

    def settle_if_idle(self) -> tuple[bool, Version | None]:
        """For the watcher, which sees a dead write's files as agentmem's own: settle them
        (see _record_pending) if no write is under way and every changed file is one the
        write announced, as written. (True, the version recorded, or None when they were put
        back); (False, None) when a write holds the lock, or when there is nothing of the sort
        (the write finished meanwhile, or a person's edit is among them: the hand-edit path,
        with its checks, takes those)."""
        if not self._take_lock_now():
            return False, None
        try:
            if not self.is_own_write(self.history.dirty()):
                return False, None
            return True, self._record_pending()[0]
        finally:
            self._write_lock.release()

    def _record_pending(self) -> tuple[Version | None, dict[str, bytes | None]]:
        """Commit what is on disk but not yet versioned: what a killed write left, then hand
        edits. Returns the version recorded (if any) and the files as read and recorded, the
        ground every write computes its change on. Call it holding the write lock."""
        recovery.settle_forget(self)     # first: it may still have memory files to replace
        reclaim_saves(self.state_dir, self.folder, entries=recovery.clear_debris(self))
        version = recovery.settle_intent(self) if (self.state_dir / INTENT).exists() else None
        raw = self.read_raw()
        dirty = self.history.unrecorded(raw)
        if not dirty:
            return version, raw
        latest = self.history.latest()
        if latest and {"lessons.md", ARCHIVE} & set(dirty):     # ids a person deletes stay used
            self._remember_lesson_ids({n: self.history.file_at(latest, n)
                                       for n in ("lessons.md", ARCHIVE)}, self._decode(raw))
        # the bytes as read are what is recorded; a linked file is recorded as git sees it
        linked = any(os.path.islink(self.folder / n) for n in dirty)
        human = self.history.commit("human", f"Hand edit of {', '.join(dirty)}",
                                    self.journal.last_event_number(), paths=dirty,
                                    contents=None if linked else {n: raw[n] for n in dirty})
        return human or version, raw

    def write(self, changes: dict[str, str | None], author: str, message: str,
              *, check: Check | None = None) -> Version | None:
        """Atomically write memory files (None deletes) and record one version.

        Uncommitted hand edits are recorded first as their own version. The result must validate,
        or nothing is written. `check(before, after)` may raise to refuse the write. Fixed
        changes are not computed again if a person saves one of the files meanwhile: that is a
        Conflict, with nothing written.
        """
        return self.update(lambda _texts: changes, author, message, check=check, retry=False)

    def update(self, compute: Compute, author: str, message: str | Callable[[], str], *,
               check: Check | None = None,
               state: Callable[[Version | None], dict[str, Any]] | None = None,
               retry: bool = True, merge: str | None = None) -> Version | None:
        """Like write, but `compute(current texts) -> changes` runs under the lock, after hand
        edits are recorded, so an edit is always computed from what is really on disk. If a
        person saves a file while it is written, nothing is overwritten: the save is recorded
        as theirs and the change computed again on top of it (up to WRITE_TRIES times).
        `message` may be a function, called after compute. `state(version)` gives values for
        state.json, written (in one write) once the version is recorded, or once nothing
        turned out to change. They are named in the write's intent too, so that a sleep cursor
        among them survives a crash right after the version. `merge` (a commit) makes the
        version a merge of the latest one and that commit (agentmem sync)."""
        with self.locked():
            for attempt in range(1, WRITE_TRIES + 1):
                version, done = self._update_once(compute, author, message, check, state, merge)
                if done:
                    return version
                if not retry or attempt == WRITE_TRIES:
                    break
        raise Conflict("a memory file kept changing while agentmem wrote it; nothing was written",
                       "your saves are kept; try again")

    def _update_once(self, compute: Compute, author: str, message: str | Callable[[], str],
                     check: Check | None,
                     state: Callable[[Version | None], dict[str, Any]] | None,
                     merge: str | None = None) -> tuple[Version | None, bool]:
        """One try of update: (version, True), or (None, False) when a save got in the way."""
        _, raw = self._record_pending()
        before = self._decode(raw)
        changes: dict[str, str | None] = compute(dict(before))
        bad = [n for n in changes if n not in TRACKED]
        if bad:
            raise UsageError(f"agentmem does not manage {bad[0]}")
        after = {**before, **changes}
        _, problems = validate(after)
        if problems:
            raise InvalidAgent(problems, "the change was refused; nothing was written")
        if check is not None:
            check(before, after)
        changed = {n: t for n, t in changes.items() if before.get(n) != t}
        if not changed:
            if state is not None:
                self.update_state(**state(None))
            return None, True
        # files are handled with "\n"; one a person keeps with CRLF endings is written back
        # with CRLF, so an edit changes only its own lines
        on_disk = {n: (None if t is None else
                       (t.replace("\r\n", "\n").replace("\n", "\r\n")
                        if b"\r\n" in (raw.get(n) or b"")[:4096] else t).encode("utf-8"))
                   for n, t in changed.items()}
        text = self.history.redact_message(message() if callable(message) else message)
        intent: dict[str, Any] = {"id": os.urandom(8).hex(), "author": author, "message": text,
                                  "files": {n: _digest(d) for n, d in on_disk.items()}}
        if state is not None:     # written to state.json even if we die after the commit
            intent["state"] = state(None)
        atomic_write(self.state_dir / INTENT, json.dumps(intent))
        try:
            replace_files([(self.folder / n, d, raw.get(n)) for n, d in on_disk.items()],
                          keep=self.state_dir)
        except Changed:
            (self.state_dir / INTENT).unlink(missing_ok=True)
            return None, False
        version = self.history.commit(author, text, self.journal.last_event_number(),
                                      contents=on_disk, merge=merge, redacted=True)
        values = self._lesson_ids_to_remember(before, after)
        if state is not None:
            values.update(state(version), last_intent=intent["id"])
        if values:
            self.update_state(**values)
        # no fsync: an intent that outlives a crash names files already committed and a
        # state write already done (last_intent), and is dropped as such by _record_pending
        (self.state_dir / INTENT).unlink(missing_ok=True)
        reclaim_saves(self.state_dir, self.folder)   # recorded at the next write
        return version, True

    def remember_lesson_ids(self, texts: dict[str, str | None]) -> None:
        """Keep the lesson ids `texts` use as used (state.json), so that one removed from them
        (agentmem forget --lesson) is never given to a new lesson."""
        self._remember_lesson_ids(texts, texts)

    def _remember_lesson_ids(self, before: dict[str, str | None],
                             after: dict[str, str | None]) -> None:
        values = self._lesson_ids_to_remember(before, after)
        if values:
            self.update_state(**values)

    def _lesson_ids_to_remember(self, before: dict[str, str | None],
                                after: dict[str, str | None]) -> dict[str, Any]:
        """Keep the highest lesson number ever used, so a removed lesson's id is never reused
        (a pass numbers new lessons past it and past what the files hold)."""
        highest = max(_highest_lesson(before), _highest_lesson(after))
        if highest > int(self.read_state().get("highest_lesson", 0)):
            return {"highest_lesson": highest}
        return {}

    def used_lesson_ids(self) -> set[str]:
        """Ids that must not be given to a new lesson (see _remember_lesson_ids)."""
        highest = int(self.read_state().get("highest_lesson", 0))
        return {f"L{highest}"} if highest else set()

    def revert(self, ref: str) -> Version:
        """Undo exactly one version's change, keeping every later change (see undo)."""
        from agentmem import undo

        return undo.revert(self, ref)

    def restore(self, ref: str) -> Version:
        """Make the whole memory as it was at a version, recorded as a new version."""
        from agentmem import undo

        return undo.restore(self, ref)


def _digest(data: bytes | None) -> str | None:
    import hashlib

    return None if data is None else hashlib.sha256(data).hexdigest()


def _highest_lesson(texts: dict[str, str | None]) -> int:
    return max((int(m.group(1)) for name in ("lessons.md", ARCHIVE)
                for m in re.finditer(r"<!--\s*id:\s*L(\d+)\b", texts.get(name) or "")), default=0)
