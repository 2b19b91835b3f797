"""agentmem sync: an agent's versions and log, pushed to and pulled from any git remote.

    fetch      the remote's `agentmem/memory` and `agentmem/log` branches (remote.py)
    memory     nothing new there; a fast-forward when only the remote moved; else a three-way
               merge of each file from the version both sides started from (merge.py),
               recorded as one `sync` version with both sides as parents
    log        the union of both logs by event id, the sleep cursor moved so that the next
               sleep reads each arrived event once (log.py); committed to `refs/agentmem/log`
    push       both branches at once, never forced; refused because the remote moved
               meanwhile, the whole round is done again (at most PUSH_TRIES times)

The network (ls-remote, fetch, push) is used with none of the agent's locks held: a round
takes the sleep and write locks only for the merge and the writes here, so a chat's memory
edit waits for those, never for the remote; what was written meanwhile goes in the next
round or the next sync. One sync of an agent runs at a time (its own lock).

Everything that can refuse (a conflict, a forget on one side) is decided before anything is
written, so a refusal changes nothing here. A history rewritten by `agentmem forget` since the
last sync is not merged with the remote's (that would bring the forgotten text back) nor
pushed over it (that would be a force-push): sync refuses and says what to do.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from agentmem.agent import Agent
from agentmem.errors import Conflict, NotFound, UsageError
from agentmem.fsutil import atomic_write, decode_text, replace_files
from agentmem.history import TRACKED, History, Version
from agentmem.journal import FILE as LOG_FILE
from agentmem.locks import AgentLock
from agentmem.sync import log as logmerge
from agentmem.sync import remote as remotes
from agentmem.sync.merge import merge_memory

PUSH_TRIES = 3
SYNC_LOCK = "sync.lock"   # in .agentmem/: one sync of an agent at a time (not held by writes)
STATE_KEY = "sync"      # state.json: {"remote": URL shown, "memory": commit both sides had}


@dataclass
class Outcome:
    remote: str                       # as shown (no password)
    pulled: str = "nothing"           # nothing | fast-forward | merge | clone
    version: Version | None = None    # the version this machine is at after a pull
    renumbered: dict[str, str] = field(default_factory=dict)
    events_in: int = 0
    events_out: int = 0
    pushed: bool = False
    tries: int = 1

    def to_json(self) -> dict[str, object]:
        return {"remote": self.remote, "pulled": self.pulled,
                "version": self.version.to_json() if self.version else None,
                "renumbered": self.renumbered, "events_in": self.events_in,
                "events_out": self.events_out, "pushed": self.pushed, "tries": self.tries}


def remote_for(agent: Agent, given: str | None) -> str:
    """The remote to use: the one given (relative to the current folder), else `remote:` in
    persona.md (relative to the agent folder)."""
    if given:
        return remotes.resolve(given, Path.cwd())
    configured = agent.load().persona.settings.get("remote")
    if not configured:
        raise UsageError(f"{agent.name} has no remote to sync with",
                         "give one (agentmem sync AGENT PATH-OR-URL) or set 'remote:' in "
                         "persona.md")
    return remotes.resolve(str(configured), agent.folder)


def sync(agent: Agent, url: str, *, tries: int = PUSH_TRIES) -> Outcome:
    """Pull the remote's changes into this agent and push this agent's to the remote.

    The network is used with no lock of the agent's held (a chat's memory edit or a sleep pass
    goes on meanwhile): each round fetches, then takes the sleep and write locks only to merge
    and write here, then pushes what it recorded. Another sync of the same agent waits for
    this one (its own lock)."""
    outcome = Outcome(remotes.display(url))
    with AgentLock(agent.state_dir / SYNC_LOCK, "a sync is already running for this agent",
                   "wait for it to finish"):
        for attempt in range(1, tries + 1):
            outcome.tries = attempt
            found = remotes.fetch(agent.history, url, remotes.heads(agent.history, url))
            with agent.sleep_lock(), agent.locked():
                updates, head = _merge_round(agent, url, found, outcome)
            if not updates or remotes.push(agent.history, url, updates):
                outcome.pushed = bool(updates)
                agent.update_state(**{STATE_KEY: {"remote": outcome.remote, "memory": head}})
                return outcome
    raise Conflict(f"the remote {outcome.remote} kept changing while this agent synced "
                   f"({tries} tries); what arrived is merged here, nothing was pushed",
                   "sync again")


def _merge_round(agent: Agent, url: str, found: dict[str, str],
                 outcome: Outcome) -> tuple[list[tuple[str, str]], str]:
    """One round's local part, with the agent's locks held: the fetched memory and log merged
    here; what to push (local commit, remote ref) and the version pushed."""
    agent.record_hand_edits()
    tag = agent.journal.machine_tag(create=True)
    assert tag is not None
    _refuse_rewritten(agent, url)
    theirs_memory, theirs_log = found.get(remotes.MEMORY), found.get(remotes.LOG)
    remote_log = _blob(agent.history, theirs_log, LOG_FILE) if theirs_log else None
    cursor = agent.sleep_cursor()
    fields = {"remote": outcome.remote}
    early = logmerge.merge(_read_log(agent), remote_log, cursor, tag, fields)
    if early.arrived:
        _refuse_pending_batch(agent)
    _pull_memory(agent, theirs_memory, outcome)
    with agent.journal.locked():      # no event is appended while the log is rewritten
        merged = logmerge.merge(_read_log(agent), remote_log, cursor, tag, fields)
        if merged.cursor is not None:
            # first: on the log as it is now the new cursor reads from the same byte
            # (the kept part is unchanged) and only admits more events, so a crash
            # before the merged log is in place loses no arrived event to sleep
            agent.update_state(sleep_cursor=merged.cursor.to_json(),
                               pending_sleep_cursor=None)
        if merged.arrived:
            atomic_write(agent.journal.path, merged.data)
    outcome.events_in += merged.arrived
    outcome.events_out = merged.sent
    log_commit = _commit_log(agent.history, theirs_log, merged.sent)
    head = agent.history.head()
    assert head is not None
    updates = [(c, ref) for c, ref, now in ((head, remotes.MEMORY, theirs_memory),
                                            (log_commit, remotes.LOG, theirs_log))
               if c != now]
    return updates, head


def clone(dest: Path, url: str) -> Outcome:
    """A new agent folder at `dest` (missing or empty) holding the remote's agent."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} is not an agent folder and not empty",
                         "give an agent folder to sync, or a new folder to copy the remote's "
                         "agent into")
    made = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _clone_into(dest, url)
    except BaseException:
        if made:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            for child in dest.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() \
                    else child.unlink()
        raise


def _clone_into(dest: Path, url: str) -> Outcome:
    history = History(dest.resolve())
    history.init()
    found = remotes.fetch(history, url, remotes.heads(history, url))
    memory = found.get(remotes.MEMORY)
    if memory is None:
        raise NotFound(f"the remote {remotes.display(url)} holds no agent yet",
                       "push one there first: agentmem sync AGENT REMOTE")
    history.git("update-ref", "HEAD", memory)
    texts = _files(history, memory)
    for name, data in texts.items():
        if data is not None:
            atomic_write(dest / name, data)
    if found.get(remotes.LOG):
        history.git("update-ref", remotes.LOCAL_LOG, found[remotes.LOG])
        atomic_write(dest / LOG_FILE, _blob(history, found[remotes.LOG], LOG_FILE) or b"")
    history.git("read-tree", memory)
    agent = Agent.open(dest)
    agent.journal.machine_tag(create=True)
    agent.remember_lesson_ids({n: None if d is None else decode_text(d) for n, d in texts.items()})
    # the clone starts from what the other machine learnt: its sleep reads what comes later
    agent.update_state(sleep_cursor=agent.journal.end_cursor().to_json(),
                       **{STATE_KEY: {"remote": remotes.display(url), "memory": memory}})
    return Outcome(remotes.display(url), "clone", agent.history.latest(),
                   events_in=len(logmerge.parse(_read_log(agent))[0]))


# -- memory --------------------------------------------------------------------------------
def _pull_memory(agent: Agent, theirs: str | None, outcome: Outcome) -> None:
    history = agent.history
    ours = history.head()
    if theirs is None or ours is None or theirs == ours or _is_ancestor(history, theirs, ours):
        return
    if _is_ancestor(history, ours, theirs):
        _fast_forward(agent, ours, theirs)
        outcome.pulled, outcome.version = "fast-forward", history.latest()
        return
    base = history.git("merge-base", ours, theirs, check=False).stdout.strip()
    if not base:
        raise Conflict(f"the remote {outcome.remote} holds another agent's history; nothing "
                       "was changed", "sync this agent to its own remote (a new, empty one)")
    texts = [_texts(history, c) for c in (base, ours, theirs)]
    highest = int(agent.read_state().get("highest_lesson", 0))
    merged = merge_memory(texts[0], texts[1], texts[2], highest_local=highest)
    changes = {n: t for n, t in merged.files.items() if t != texts[1].get(n)}
    here = history.latest_number()
    there = int(history.git("rev-list", "--count", theirs).stdout.strip())
    message = (f"Sync with {outcome.remote}: merge of this machine's version {here} "
               f"({ours[:7]}) and the remote's version {there} ({theirs[:7]})")
    if merged.renumbered:
        message += ("\n\nLessons this machine added, given new ids (the remote had given "
                    "theirs to other lessons): ") + ", ".join(
            f"{old} -> {new}" for old, new in merged.renumbered.items())

    def compute(current: dict[str, str | None]) -> dict[str, str | None]:
        if any(current.get(n) != texts[1].get(n) for n in TRACKED):
            raise Conflict("a memory file changed while agentmem synced; nothing was changed",
                           "sync again")
        return changes

    version = agent.update(compute, "sync", message, retry=False, merge=theirs)
    if version is None:        # both sides hold the same memory: the merge is still recorded
        version = history.commit("sync", message, agent.journal.last_event_number(),
                                 contents={}, merge=theirs)
    outcome.pulled, outcome.version, outcome.renumbered = "merge", version, merged.renumbered


def _fast_forward(agent: Agent, ours: str, theirs: str) -> None:
    """Only the remote moved: its files are put in place (each only if it still holds what was
    read) and the branch moved to its commit, so both machines hold the same versions. A
    crash between the two leaves the new files as a hand edit, recorded at the next write."""
    history = agent.history
    new = _files(history, theirs)
    raw = agent.read_raw()
    items = [(agent.folder / n, new.get(n), raw.get(n)) for n in TRACKED
             if new.get(n) != raw.get(n)]
    if items:
        replace_files(items, keep=agent.state_dir)
    with history.writing():      # a kill here leaves locks that the next write clears
        history.git("update-ref", "HEAD", theirs, ours)
        history.git("read-tree", theirs)
    history.refresh()
    agent.remember_lesson_ids({n: None if d is None else decode_text(d) for n, d in new.items()})


def _refuse_pending_batch(agent: Agent) -> None:
    """A batch sleep submitted and not collected stopped its events at a place in the log that
    a merge would move: events that arrive are not merged into the log until it is in."""
    from agentmem.sleep.batch import PENDING

    entry = agent.read_state().get("batch")
    if isinstance(entry, dict) and entry.get("status") == PENDING:
        raise Conflict("this agent has a batch sleep pass awaiting its answer, and events "
                       "arrived that would be merged into its log; nothing was changed",
                       "collect it first (agentmem sleep AGENT --collect), then sync again")


def _refuse_rewritten(agent: Agent, url: str) -> None:
    """Refuse when `agentmem forget` rewrote this agent's history since its last sync with
    this remote: the version both sides had is then no longer among this machine's."""
    last = agent.read_state().get(STATE_KEY)
    head = agent.history.head()
    if not isinstance(last, dict) or last.get("remote") != remotes.display(url) or not head:
        return
    if not isinstance(last.get("memory"), str) or _is_ancestor(agent.history, last["memory"], head):
        return
    raise Conflict(f"this agent's history was rewritten (agentmem forget) since it last synced "
                   f"with {remotes.display(url)}, which still holds what was forgotten; "
                   "nothing was changed",
                   "run the same forget on the other machines, then sync each to a new, empty "
                   "remote (sync never force-pushes, and merging would bring the text back)")


# -- git objects ---------------------------------------------------------------------------
def _is_ancestor(history: History, old: str, new: str) -> bool:
    return history.git("merge-base", "--is-ancestor", old, new, check=False).returncode == 0


def _files(history: History, commit: str) -> dict[str, bytes | None]:
    return {name: _blob(history, commit, name) for name in TRACKED}


def _texts(history: History, commit: str) -> dict[str, str | None]:
    return {n: None if d is None else decode_text(d, "replace")
            for n, d in _files(history, commit).items()}


def _blob(history: History, commit: str, name: str) -> bytes | None:
    listed = history.git("ls-tree", commit, "--", name).stdout.split()
    if not listed:
        return None
    return history.git_bytes("cat-file", "blob", listed[2])


def _read_log(agent: Agent) -> bytes:
    return _read_log_path(agent.journal.path)


def _commit_log(history: History, theirs: str | None, sent: int) -> str:
    """Commit log.jsonl as it is now to refs/agentmem/log, merging the remote's log commit;
    the commit. When the remote's log holds every event here (`sent` is 0), its commit is
    taken as it is: the two files may order events differently, and committing this one would
    make each machine push its order back and forth for ever."""
    ours = history.git("rev-parse", "-q", "--verify", remotes.LOCAL_LOG, check=False) \
        .stdout.strip() or None
    if theirs and not sent:
        if theirs != ours:
            history.git("update-ref", remotes.LOCAL_LOG, theirs)
        return theirs
    blob = history.git_bytes("hash-object", "-w", "--stdin",
                             input=_read_log_path(history.folder / LOG_FILE)).decode().strip()
    tree = history.git("mktree", input=f"100644 blob {blob}\t{LOG_FILE}\n").stdout.strip()
    parents = [c for c in (ours, theirs) if c]
    if theirs and ours and (theirs == ours or _is_ancestor(history, theirs, ours)):
        parents = [ours]
    elif theirs and ours and _is_ancestor(history, ours, theirs):
        parents = [theirs]
    if len(parents) == 1 and history.git("rev-parse", f"{parents[0]}^{{tree}}").stdout.strip() \
            == tree:
        commit = parents[0]
    else:
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        env = {"GIT_AUTHOR_NAME": "agentmem (sync)", "GIT_COMMITTER_NAME": "agentmem (sync)",
               "GIT_AUTHOR_EMAIL": "sync@agentmem", "GIT_COMMITTER_EMAIL": "sync@agentmem"}
        commit = history.git(*args, input="log.jsonl\n", env=env).stdout.strip()
    if commit != ours:
        history.git("update-ref", remotes.LOCAL_LOG, commit, *([ours] if ours else []))
    return commit


def _read_log_path(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""

