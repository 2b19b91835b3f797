"""Where it occurs, and the folder without it: `survey` reads the memory files, the log, every
git object (reachable or not) and agentmem's other files, lists each place in Findings, and
computes everything forget would write, or a refusal when it cannot be done as asked. It
writes nothing."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agentmem.errors import AgentmemError, InvalidAgent, Refused
from agentmem.forget.clean import (
    NewLog,
    clean_log,
    clean_state,
    dump_like,
    holds_json,
    load_json,
    walk,
)
from agentmem.forget.findings import Findings
from agentmem.forget.gitobjects import (
    Objects,
    decode,
    encode,
    holds,
    read_objects,
    read_refs,
    tree_entries,
)
from agentmem.forget.receipt import FOLDER, next_number
from agentmem.forget.rewrite import Rewrite, forget_version
from agentmem.forget.target import MARKER, Target, resolve_lesson
from agentmem.fsutil import DISPLACED, decode_text, read_bytes
from agentmem.history import COUNT_FILE, TRACKED
from agentmem.journal import FILE as LOG_FILE

if TYPE_CHECKING:
    from agentmem.agent import Agent

GIT_TEXT = ("COMMIT_EDITMSG", "MERGE_MSG", "SQUASH_MSG", "TAG_EDITMSG", "description")
GIT_DROP = ("ORIG_HEAD", "FETCH_HEAD")     # name old commits only; dropped with them


@dataclass
class Survey:
    """What forgetting would do: the findings, a refusal (when it cannot be done as asked),
    and everything it writes, computed in memory."""

    target: Target
    number: int
    findings: Findings
    refusal: AgentmemError | None = None
    objects: list[tuple[str, bytes]] = field(default_factory=list)  # new git objects
    refs: dict[str, tuple[str, str]] = field(default_factory=dict)  # ref -> (old, new)
    head: str = ""                # the forget version's commit
    version: int = 0              # ... and its number
    files: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # memory files
    log: NewLog | None = None
    side: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)  # stored files

    @property
    def name(self) -> str:
        return f"f{self.number}"


def survey(agent: Agent, target: Target, *, include_pinned: bool = False,
           number: int | None = None, again: bool = False) -> Survey:
    """Find every place it occurs and compute the folder without it. Writes nothing.
    `again`: a survey after the forget (what is left): a lesson's texts are those found
    before, as the lesson is gone."""
    number = next_number(agent) if number is None else number
    target.marker = MARKER.format(number=number)
    history = agent.history
    fmt = history.git("rev-parse", "--show-object-format", check=False).stdout.strip()
    if fmt not in ("", "sha1"):
        raise AgentmemError(f"forget works on SHA-1 histories; this one is {fmt}",
                            "nothing was changed")
    raw = agent.read_raw()
    objects = read_objects(agent)
    refs, head_ref = read_refs(agent)
    if target.kind == "lesson" and not again:
        resolve_lesson(target, objects, raw)
    found = Findings()
    problems: list[str] = []
    holding = {sha for sha, (kind, body) in objects.items() if holds(target, kind, body)}
    rewrite = Rewrite(objects, holding, target)
    for tip in refs.values():
        rewrite.walk(tip)
    rewrite.run()
    found.objects = len(holding)
    found.unreachable = len(holding - rewrite.reached)
    s = Survey(target, number, found)
    _survey_versions(agent, s, objects, holding)
    for ref, old in refs.items():
        new = rewrite.map.get(old, old)
        if new != old:
            s.refs[ref] = (old, new)
            if ref != head_ref:
                found.other_refs.append(ref)
    problems += [what.replace("{where}", _version_of(agent, sha)) for sha, what in rewrite.problems]
    _survey_files(agent, s, raw, problems)
    _survey_log(agent, s, problems)
    _survey_stored(agent, s, problems)
    if found.empty:
        return s
    forget_version(agent, s, objects, rewrite, refs.get(head_ref), head_ref, problems)
    if problems:
        more = f" (and {len(problems) - 1} more place(s))" if len(problems) > 1 else ""
        s.refusal = Refused(f"it cannot be forgotten everywhere: it occurs in {problems[0]}"
                            f"{more}, which forget keeps as it is; nothing was changed",
                            "forget a longer or more precise text")
    elif found.pinned() and not include_pinned:
        s.refusal = Refused(f"it is in pinned (human-owned) text at {', '.join(found.pinned())}; "
                            "nothing was changed", "add --include-pinned to forget it there too")
    else:
        s.refusal = _check_valid(s, raw)
    return s


def _version_of(agent: Agent, sha: str) -> str:
    for version in agent.history.versions():
        if version.commit == sha:
            return f"version {version.number}"
    return f"git object {sha[:7]}"


def _survey_versions(agent: Agent, s: Survey, objects: Objects, holding: set[str]) -> None:
    """Which versions held it, in which files, and which messages quoted it."""
    for version in agent.history.versions():
        kind, body = objects.get(version.commit, ("", b""))
        if kind != "commit":
            continue
        tree = objects.get(body[5:45].decode(), ("", b""))[1]
        files = sorted(decode(name) for _, name, sha in tree_entries(tree) if sha in holding)
        if files:
            s.findings.versions[version.number] = files
        if version.commit in holding:
            s.findings.messages.append(version.number)


def _survey_files(agent: Agent, s: Survey, raw: dict[str, bytes | None],
                  problems: list[str]) -> None:
    """The memory files as they are now: where it occurs (pinned or not), and without it."""
    from agentmem.pins import pinned_spans

    for name in TRACKED:
        data = raw.get(name)
        if data is None:
            continue
        text = decode(data)
        spans = s.target.spans(text)
        if not spans:
            continue
        pins = pinned_spans(text, name)[0] if name in ("persona.md", "lessons.md") else []
        lines = []
        for start, end in spans:
            first = text.count("\n", 0, start) + 1
            last = first + text.count("\n", start, end)
            line = (first, any(a <= last and first <= b for a, b in pins))
            if line not in lines:
                lines.append(line)
        s.findings.files[name] = lines
        new, _ = s.target.sub(text)
        if s.target.search(new):
            problems.append(f"{name} (what is left once it goes holds it again)")
        s.files[name] = (data, encode(new))


def _check_valid(s: Survey, raw: dict[str, bytes | None]) -> AgentmemError | None:
    """A refusal when memory without it would not validate (a setting's value, say)."""
    from agentmem.memory import validate

    texts = {name: None if data is None else decode_text(data, "replace")
             for name, data in raw.items()}
    texts.update({name: decode_text(new, "replace") for name, (_, new) in s.files.items()})
    _, problems = validate(texts)
    if problems:
        return InvalidAgent(problems, "forgetting it there would leave memory invalid, so nothing "
                            "was changed; edit that file by hand first, then forget again (the "
                            "history is still rewritten)")
    return None


def _survey_log(agent: Agent, s: Survey, problems: list[str]) -> None:
    """log.jsonl: each event that holds it, with the text replaced in its values."""
    path = agent.folder / LOG_FILE
    with agent.journal.locked():
        try:
            data = read_bytes(path)[0]
        except FileNotFoundError:
            return
    new, shifts = clean_log(data, s.target, s.findings, problems)
    if new != data:
        s.log = NewLog(len(data), hashlib.sha256(data).hexdigest(), new, shifts)


def _survey_stored(agent: Agent, s: Survey, problems: list[str]) -> None:
    """Everything else in the folder: agentmem's own files are cleaned, reflogs counted (they
    are emptied), and files agentmem does not manage are listed and left alone."""
    folder = agent.folder
    for rel, kind in _stored_files(agent):
        path = folder / rel
        try:
            data = read_bytes(path, regular=True)[0]
        except OSError:
            continue
        if kind == "state":
            new = clean_state(data, s.target, s.log)
            if new != data:
                s.side.append((rel, data, new))
            if holds_json(load_json(data), s.target):
                s.findings.stored.append(rel)
                if holds_json(load_json(new), s.target):
                    problems.append(f"{rel} (what is left once it goes holds it again)")
            continue
        text = decode(data)
        if kind == "reflog":
            s.findings.reflog += sum(1 for line in text.split("\n") if s.target.search(line))
            continue
        parsed = load_json(data) if kind == "json" else None
        if not (s.target.search(text) or (parsed is not None and holds_json(parsed, s.target))):
            continue
        if kind in ("elsewhere", "git"):
            s.findings.elsewhere.append(rel)
            continue
        s.findings.stored.append(rel)
        if kind == "drop":
            s.side.append((rel, data, None))
            continue
        if parsed is not None:
            clean, _ = walk(parsed, s.target)
            new = dump_like(clean, data)
        elif kind == "jsonl":
            new, _ = clean_log(data, s.target)
        else:
            new = encode(s.target.sub(text)[0])
        if s.target.search(decode(new)):
            problems.append(f"{rel} (what is left once it goes holds it again)")
        s.side.append((rel, data, new))


def _stored_files(agent: Agent) -> Iterator[tuple[str, str]]:
    """(path relative to the folder, how forget treats it) for each file in the folder but the
    memory files, the log, git's objects and forget's own folder."""
    state = f"{agent.state_dir.name}/"
    git = f"{state}git/"
    skip = {f"{git}objects", f"{state}{FOLDER}"}
    for root, dirs, files in os.walk(agent.folder):
        base = Path(root).relative_to(agent.folder).as_posix()
        base = "" if base == "." else f"{base}/"
        dirs[:] = [d for d in dirs if f"{base}{d}" not in skip
                   and not os.path.islink(os.path.join(root, d))]
        for name in files:
            rel = f"{base}{name}"
            if rel in TRACKED or rel == LOG_FILE or name.endswith(".lock"):
                continue
            if rel.startswith(git):
                sub = rel[len(git):]
                if sub.startswith("logs/"):
                    yield rel, "reflog"
                elif sub in GIT_TEXT:
                    yield rel, "text"
                elif sub in GIT_DROP or sub.startswith("lost-found/"):
                    yield rel, "drop"             # old ids; copies `git fsck --lost-found` made
                elif sub not in ("index", COUNT_FILE, "HEAD", "packed-refs") \
                        and not sub.startswith("refs/"):
                    yield rel, "git"              # git's own settings: left alone
            elif rel.startswith(state):
                if rel == f"{state}state.json":
                    yield rel, "state"
                elif name.startswith(DISPLACED + "~"):
                    yield rel, "drop"             # an old copy kept for a late save: recorded
                elif name.endswith(".json"):
                    yield rel, "json"
                elif name.endswith(".jsonl"):
                    yield rel, "jsonl"
                else:
                    yield rel, "text"
            else:
                yield rel, "elsewhere"
