"""Carrying a survey out, so that a crash at any moment leaves the agent as it was or fully
forgotten:

1. `stage`: every new git object and every new file is written first: objects into the
   repository (unreferenced), files under `.agentmem/forget/fN.stage/`. Nothing the agent
   uses changed.
2. `stage` then writes `.agentmem/forget/intent.json`, naming the old and new value of each
   ref and the digest of each file before and after. Writing it is the commit point. It
   never holds the text.
3. `finish` moves the refs, replaces the files, empties the reflogs, prunes every object no ref
   reaches, writes the receipt and removes the intent. Each step looks first at what is there,
   so it can run again: after a crash, the next agentmem command runs it
   (recovery.settle_forget).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentmem import gitstore
from agentmem.forget.clean import clean_log
from agentmem.forget.find import GIT_DROP, Survey, survey
from agentmem.forget.receipt import FOLDER, Receipt
from agentmem.fsutil import (
    TMP_SUFFIX,
    Changed,
    atomic_delete,
    atomic_write,
    fsync_dir,
    read_bytes,
    read_json,
    replace_files,
)
from agentmem.history import COUNT_FILE
from agentmem.journal import FILE as LOG_FILE
from agentmem.journal import now_iso
from agentmem.recovery import FORGET_INTENT

if TYPE_CHECKING:
    from agentmem.agent import Agent
    from agentmem.forget.target import Target

GIT_CACHES = ("objects/info/commit-graph", "objects/pack/multi-pack-index")
FSYNC = ("-c", "core.fsync=all")           # a ref, a pack or the index is durable when git exits


def forget(agent: Agent, target: Target, *, include_pinned: bool = False) -> Receipt | None:
    """Forget it everywhere agentmem keeps it, or raise having changed nothing. None when it
    occurs nowhere. Refused while a chat session or a sleep pass is open (either could write
    it back from what it holds in memory)."""
    with agent.session_lock(), agent.sleep_lock(), agent.locked():
        agent.record_hand_edits()           # the ground is the recorded files, nothing pending
        if target.kind == "lesson":
            agent.remember_lesson_ids(agent.read_texts())   # its id is never given again
        s = survey(agent, target, include_pinned=include_pinned)
        if s.findings.empty:
            return None
        if s.refusal is not None:
            raise s.refusal
        stage(agent, s)
        receipt = finish(agent, target)
        after = survey(agent, target, number=s.number, again=True)   # what is left
        receipt.data["remaining"] = after.findings.places()
        atomic_write(receipt.path, json.dumps(receipt.data, indent=2) + "\n")
        return receipt


def stage(agent: Agent, s: Survey) -> None:
    """Steps 1 and 2: every object and file written, then the intent (the commit point)."""
    folder = agent.state_dir / FOLDER
    folder.mkdir(exist_ok=True)
    for old in folder.glob("f*.stage"):       # a forget that died before its commit point
        shutil.rmtree(old, ignore_errors=True)
    for tmp in folder.glob(f".*{TMP_SUFFIX}"):   # ... while writing its intent
        tmp.unlink(missing_ok=True)
    stage_dir = folder / f"{s.name}.stage"
    (stage_dir / "files").mkdir(parents=True)
    (stage_dir / "side").mkdir()
    with agent.history.writing():
        gitstore.Store(agent.history.git_dir).write_objects(s.objects)
    for name, (_, content) in s.files.items():
        atomic_write(stage_dir / "files" / name, content)
    side = []
    for n, (rel, before, after) in enumerate(s.side):
        if after is not None:
            atomic_write(stage_dir / "side" / str(n), after)
        side.append({"path": rel, "old": _sha(before), "new": _sha(after), "staged": f"side/{n}"})
    log = None
    if s.log is not None:
        atomic_write(stage_dir / LOG_FILE, s.log.new)
        log = {"size": s.log.size, "old": s.log.old, "new": _sha(s.log.new)}
    receipt = {"forget": s.name, "time": now_iso(), "what": s.target.describe(),
               "version": s.version, "found": s.findings.to_json(), "notes": []}
    atomic_write(stage_dir / "receipt.json", json.dumps(receipt, indent=2) + "\n")
    fsync_dir(stage_dir)
    intent = {"number": s.number, "stage": stage_dir.name, "head": s.head,
              "refs": {ref: list(pair) for ref, pair in s.refs.items()},
              "files": {name: [_sha(old), _sha(new)] for name, (old, new) in s.files.items()},
              "log": log, "side": side}
    atomic_write(agent.state_dir / FORGET_INTENT, json.dumps(intent))


def finish(agent: Agent, target: Target | None = None) -> Receipt:
    """Step 3, from the intent: move the refs, replace the files, drop reflogs and every
    object no ref reaches, write the receipt, remove the intent. Each step checks what is
    there, so running it again completes it. `target` (the live forget) also cleans events
    appended to the log meanwhile; after a crash there is none, as the text is kept nowhere.
    Call it holding the write lock."""
    folder = agent.state_dir / FOLDER
    intent = read_json(agent.state_dir / FORGET_INTENT)
    stage_dir = folder / str(intent.get("stage", ""))
    notes: list[str] = []
    history = agent.history
    if intent.get("head"):
        with history.writing():
            for ref, (old, new) in dict(intent.get("refs") or {}).items():
                now = history.git("rev-parse", "-q", "--verify", ref, check=False).stdout.strip()
                if now == old:
                    history.git(*FSYNC, "update-ref", "--no-deref", "-m",
                                f"forget f{intent['number']}", ref, new, old)
                elif now != new:
                    notes.append(f"{ref} moved meanwhile and was left as it is")
            history.git(*FSYNC, "read-tree", intent["head"])   # the index: the new tree's blobs
    for name, (old, new) in dict(intent.get("files") or {}).items():
        _replace(agent.folder / name, stage_dir / "files" / name, old, new, notes)
    if intent.get("log"):
        _finish_log(agent, stage_dir, intent["log"], target, notes)
    for item in intent.get("side") or []:
        _replace(agent.folder / item["path"], stage_dir / item["staged"], item["old"], item["new"],
                 notes, person=False)
    with history.writing():
        _prune(agent)
    try:
        data = json.loads(read_bytes(stage_dir / "receipt.json")[0])
    except (OSError, ValueError):
        data = {"forget": f"f{intent.get('number', 0)}", "time": now_iso(), "found": None}
        notes.append("its staged receipt was missing: only this much is known")
    data["notes"] = notes
    data["finished"] = "forget" if target is not None else "recovery"
    path = folder / f"{data['forget']}.json"
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    atomic_delete(agent.state_dir / FORGET_INTENT)
    shutil.rmtree(stage_dir, ignore_errors=True)
    history.refresh()
    (history.git_dir / COUNT_FILE).unlink(missing_ok=True)   # names an old commit; rebuilt
    return Receipt(data, path)


def _replace(path: Path, staged: Path, old: str | None, new: str | None, notes: list[str],
             person: bool = True) -> None:
    """Put the staged file in place of `path` if it still holds what the forget read."""
    try:
        data: bytes | None = read_bytes(path)[0]
    except FileNotFoundError:
        data = None
    now = _sha(data)
    if now == new:
        return
    if now != old:
        notes.append(f"{path.name} changed meanwhile and was left as it is")
        return
    if new is None:
        atomic_delete(path)
        return
    try:
        content = read_bytes(staged)[0]
    except FileNotFoundError:
        notes.append(f"{path.name}: its staged copy was missing; left as it is")
        return
    if not person:
        atomic_write(path, content)
        return
    try:      # a person's save that lands meanwhile is theirs: kept, and recorded later
        replace_files([(path, content, data)])
    except Changed:
        notes.append(f"{path.name} was saved while forget wrote it; the save was kept")


def _finish_log(agent: Agent, stage_dir: Path, log: dict[str, Any], target: Target | None,
                notes: list[str]) -> None:
    """The new log in place of the old one's first `size` bytes; events appended since stay
    after it (cleaned too, by a live forget). Appends wait on the log's lock meanwhile."""
    path = agent.folder / LOG_FILE
    with agent.journal.locked():
        try:
            data = read_bytes(path)[0]
        except FileNotFoundError:
            data = b""
        try:
            staged = read_bytes(stage_dir / LOG_FILE)[0]
        except FileNotFoundError:
            staged = None
        if staged is not None and _sha(data[:len(staged)]) == log["new"]:
            return                            # done already (and appended to since)
        if staged is None or _sha(data[:log["size"]]) != log["old"]:
            notes.append(f"{LOG_FILE} changed meanwhile and was left as it is")
            return
        tail = data[log["size"]:]
        if target is not None and tail:
            tail = clean_log(tail, target)[0]
        atomic_write(path, staged + tail)


def _prune(agent: Agent) -> None:
    """Leave git nothing that names an old object: reflogs emptied, caches of the old commit
    graph removed, then every object no ref reaches deleted (packs rewritten if there are)."""
    git_dir = agent.history.git_dir
    for name in GIT_DROP:
        (git_dir / name).unlink(missing_ok=True)
    logs = git_dir / "logs"
    for log in sorted(logs.rglob("*")) if logs.is_dir() else []:
        if log.is_file() and not log.name.endswith(".lock") and log.stat().st_size:
            fd = os.open(log, os.O_WRONLY | os.O_TRUNC)      # as `git reflog expire --all`
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for cache in GIT_CACHES:
        (git_dir / cache).unlink(missing_ok=True)
    shutil.rmtree(git_dir / "objects" / "info" / "commit-graphs", ignore_errors=True)
    packs = git_dir / "objects" / "pack"
    if any(packs.glob("*.pack")):
        agent.history.git(*FSYNC, "repack", "-a", "-d", "-q")
    agent.history.git(*FSYNC, "prune", "--expire=now")
    for sub in sorted((git_dir / "objects").iterdir()):
        if sub.is_dir():
            fsync_dir(sub)            # the deletions are durable before the intent goes


def _sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()
