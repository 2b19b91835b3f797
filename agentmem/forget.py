"""Forget a text: out of memory, the log, every past version and everything else agentmem keeps.

`survey` finds every place a text occurs (a literal, a pattern, a whole lesson, or what the
secret patterns of agentmem.redact recognise) and computes the agent folder without it: the
memory files, the log (each occurrence becomes `[forgotten f3]`, event ids and structure kept,
so evidence links still resolve), every git object that holds it (commits rewritten with their
number, author, dates and trailers kept), kept sleep outputs, tool writes, state.json. `forget`
carries that out so that a crash at any moment leaves the agent as it was or fully forgotten:

1. every new git object and every new file is written first: objects into the repository
   (unreferenced), files under `.agentmem/forget/fN.stage/`. Nothing the agent uses changed.
2. `.agentmem/forget/intent.json` names the old and new value of each ref and the digest of
   each file before and after. Writing it is the commit point. It never holds the text.
3. `finish` moves the refs, replaces the files, empties the reflogs, prunes every object no ref
   reaches, writes the receipt and removes the intent. Each step looks first at what is there,
   so it can run again: after a crash, the next agentmem command runs it (recovery.py).

The text itself is never written anywhere: not in the intent, the staged files or the receipt.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentmem import gitstore
from agentmem.errors import AgentmemError, InvalidAgent, NotFound, Refused, UsageError
from agentmem.fsutil import (
    DISPLACED,
    TMP_SUFFIX,
    Changed,
    atomic_delete,
    atomic_write,
    decode_text,
    fsync_dir,
    read_bytes,
    read_json,
    replace_files,
)
from agentmem.history import AUTHOR_TRAILER, COUNT_FILE, LOG_TRAILER, TRACKED
from agentmem.journal import FILE as LOG_FILE
from agentmem.journal import encode_event, now_iso
from agentmem.recovery import FORGET_INTENT

if TYPE_CHECKING:
    from agentmem.agent import Agent

FOLDER = "forget"            # in the state folder: receipts fN.json, the intent, staged files
MARKER = "[forgotten f{number}]"
MIN_QUOTE = 12               # --lesson: shorter titles and texts are not hunted outside it
EVENT_KEYS = ("id", "time", "session", "kind")       # an event's structure, never rewritten
TRAILER = re.compile(r"^Agentmem-[A-Za-z-]+:")       # a version's trailers, never rewritten
SIGNATURES = (b"gpgsig", b"gpgsig-sha256")
IDENT = re.compile(rb"^(.*) <(.*)> (-?\d+ [+-]\d{4})$")
GIT_TEXT = ("COMMIT_EDITMSG", "MERGE_MSG", "SQUASH_MSG", "TAG_EDITMSG", "description")
GIT_DROP = ("ORIG_HEAD", "FETCH_HEAD")     # name old commits only; dropped with them
GIT_CACHES = ("objects/info/commit-graph", "objects/pack/multi-pack-index")
FSYNC = ("-c", "core.fsync=all")           # a ref, a pack or the index is durable when git exits
Objects = dict[str, tuple[str, bytes]]


# -- what to forget ----------------------------------------------------------------------------
class Target:
    """What to forget and what each occurrence becomes: `marker` for a text, a pattern or a
    lesson's quotes, nothing for a lesson's own section, [REDACTED] for a secret (as the
    redactor writes it, so that a later redaction finds nothing more)."""

    def __init__(self, kind: str, pattern: re.Pattern[str] | None = None,
                 lesson: str | None = None) -> None:
        self.kind = kind                  # text, regex, lesson or secrets
        self.pattern = pattern
        self.lesson = lesson
        self.cuts: tuple[str, ...] = ()   # a lesson's sections: removed outright
        self.marker = MARKER.format(number=0)
        self._env: list[str] = []
        if kind == "secrets":
            from agentmem.redact import env_secrets

            self._env = env_secrets()

    def describe(self) -> str:
        """What was forgotten, for the receipt: the kind, never the text."""
        return f"lesson {self.lesson}" if self.kind == "lesson" else self.kind

    def sub(self, text: str) -> tuple[str, int]:
        """`text` without it, and how many occurrences went."""
        if self.kind == "secrets":
            return self._redact(text)
        count = 0
        for cut in self.cuts:
            if cut in text:
                count += text.count(cut)
                text = text.replace(cut, "")
        if self.pattern is not None:
            found = [0]

            def replace(match: re.Match[str]) -> str:
                if not match.group(0):    # a pattern's empty match is no occurrence
                    return ""
                found[0] += 1
                return self.marker

            text = self.pattern.sub(replace, text)
            count += found[0]
        return text, count

    def search(self, text: str) -> bool:
        if self.kind == "secrets":
            return self._redact(text)[1] > 0
        if any(cut in text for cut in self.cuts):
            return True
        if self.pattern is None:
            return False
        match = self.pattern.search(text)
        if match is None:
            return False
        return bool(match.group(0)) or any(m.group(0) for m in self.pattern.finditer(text))

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where it occurs in `text` (character offsets); a secret by its line."""
        if self.kind == "secrets":
            spans, at = [], 0
            for line in text.split("\n"):
                if self.search(line):
                    spans.append((at, at + len(line)))
                at += len(line) + 1
            return spans
        spans = []
        for cut in self.cuts:
            at = text.find(cut)
            while at >= 0:
                spans.append((at, at + len(cut)))
                at = text.find(cut, at + len(cut))
        if self.pattern is not None:
            spans += [m.span() for m in self.pattern.finditer(text) if m.group(0)]
        merged: list[tuple[int, int]] = []
        for start, end in sorted(spans):       # a quote inside a section: one place
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def _redact(self, text: str) -> tuple[str, int]:
        from agentmem.redact import REDACTED, redact

        parts = text.split(REDACTED)          # what is redacted already is no new find
        clean = [redact(part, self._env) for part in parts]
        return REDACTED.join(clean), sum(part.count(REDACTED) for part in clean)


def text_target(text: str, *, regex: bool = False, ignore_case: bool = False) -> Target:
    """A literal text (or, with regex, a Python regular expression; ^ and $ match at lines)."""
    if not text.strip():
        raise UsageError("give the text to forget", "example: agentmem forget ./reviewer 'Jane Doe'")
    flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
    try:
        pattern = re.compile(text if regex else re.escape(text), flags)
    except re.error as exc:
        raise UsageError(f"not a valid regular expression: {exc}",
                         "drop --regex to forget the text as it is written") from None
    if pattern.fullmatch(""):
        raise UsageError("the pattern matches empty text", "give a pattern that needs at "
                         "least one character, e.g. 'Jane\\s+Doe'")
    return Target("regex" if regex else "text", pattern)


def lesson_target(lesson_id: str) -> Target:
    """A whole lesson: its section in every version of lessons.md and archive.md (archived
    copies L7-2, ... included) goes, and its titles and texts wherever they are quoted."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", lesson_id):
        raise UsageError(f"'{lesson_id}' is not a lesson id", "example: --lesson L7")
    return Target("lesson", lesson=lesson_id)


def secrets_target() -> Target:
    """Whatever agentmem.redact recognises as a secret (and key-like environment values)."""
    return Target("secrets")


# -- what was found ----------------------------------------------------------------------------
@dataclass
class Findings:
    """Every place it occurs. Never the text itself."""

    files: dict[str, list[tuple[int, bool]]] = field(default_factory=dict)  # (line, pinned)
    events: list[str] = field(default_factory=list)          # log events (ids)
    log_lines: list[int] = field(default_factory=list)       # unreadable log lines
    versions: dict[int, list[str]] = field(default_factory=dict)   # version -> files
    messages: list[int] = field(default_factory=list)        # versions whose message quotes it
    other_refs: list[str] = field(default_factory=list)      # refs besides the agent's branch
    objects: int = 0              # git objects holding it
    unreachable: int = 0          # ... of those, in no version (old, or only in a reflog)
    reflog: int = 0               # reflog entries quoting it
    stored: list[str] = field(default_factory=list)   # agentmem's other files
    elsewhere: list[str] = field(default_factory=list)  # files agentmem does not manage

    @property
    def empty(self) -> bool:
        """Nothing agentmem keeps holds it (files it does not manage aside)."""
        return not (self.files or self.events or self.log_lines or self.versions or
                    self.messages or self.objects or self.reflog or self.stored)

    def pinned(self) -> list[str]:
        return [f"{name}:{line}" for name, lines in self.files.items()
                for line, pinned in lines if pinned]

    def places(self) -> list[str]:
        """One line per kind of place, for people."""
        out = [f"{name}: line {', '.join(str(n) + (' (pinned)' if p else '') for n, p in lines)}"
               for name, lines in self.files.items()]
        if self.events:
            out.append(f"{LOG_FILE}: event {', '.join(self.events)}")
        if self.log_lines:
            out.append(f"{LOG_FILE}: unreadable line {', '.join(map(str, self.log_lines))}")
        if self.versions:
            out.append("versions: " + ", ".join(
                f"{_ranges(numbers)} ({files})" for numbers, files in _runs(self.versions)))
        if self.messages:
            out.append(f"version messages: {_ranges(self.messages)}")
        if self.other_refs:
            out.append(f"other git refs: {', '.join(self.other_refs)}")
        if self.objects or self.reflog:
            git = [f"{self.objects} object(s)"] if self.objects else []
            if self.unreachable:
                git.append(f"{self.unreachable} of them in no version")
            if self.reflog:
                git.append(f"{self.reflog} reflog entr{'y' if self.reflog == 1 else 'ies'}")
            out.append(f"git: {', '.join(git)}")
        out += self.stored
        return out

    def to_json(self) -> dict[str, Any]:
        return {"files": {name: [{"line": n, "pinned": p} for n, p in lines]
                          for name, lines in self.files.items()},
                "events": self.events, "log_lines": self.log_lines,
                "versions": {str(n): files for n, files in sorted(self.versions.items())},
                "messages": sorted(self.messages), "other_refs": self.other_refs,
                "objects": self.objects, "unreachable_objects": self.unreachable,
                "reflog_entries": self.reflog, "stored": self.stored,
                "elsewhere": self.elsewhere}


def _runs(versions: dict[int, list[str]]) -> list[tuple[list[int], str]]:
    """Consecutive versions that held it in the same files, as one run each."""
    runs: list[tuple[list[int], str]] = []
    for number, files in sorted(versions.items()):
        names = ", ".join(files)
        if runs and runs[-1][1] == names and runs[-1][0][-1] == number - 1:
            runs[-1][0].append(number)
        else:
            runs.append(([number], names))
    return runs


def _ranges(numbers: list[int]) -> str:
    """3, 5-9, 12: sorted numbers with each run of consecutive ones as a range."""
    out: list[list[int]] = []
    for n in sorted(numbers):
        if out and out[-1][-1] == n - 1:
            out[-1].append(n)
        else:
            out.append([n])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in out)


@dataclass
class _Log:
    size: int                     # the bytes of log.jsonl this was computed on
    old: str                      # their sha256
    new: bytes                    # what replaces them
    shifts: list[tuple[int, int]]  # (old end of a changed line, bytes added up to there)

    def offset(self, old: int) -> int:
        """Where a byte offset of the old log (a cursor) is in the new one."""
        at = bisect.bisect_right([end for end, _ in self.shifts], old) - 1
        return old + (self.shifts[at][1] if at >= 0 else 0)


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
    log: _Log | None = None
    side: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)  # stored files

    @property
    def name(self) -> str:
        return f"f{self.number}"


@dataclass
class Receipt:
    """What a forget removed and where (never the text), as kept in .agentmem/forget/fN.json."""

    data: dict[str, Any]
    path: Path

    @property
    def name(self) -> str:
        return str(self.data["forget"])

    @property
    def remaining(self) -> list[str]:
        return list(self.data.get("remaining") or [])

    def to_json(self) -> dict[str, Any]:
        return {**self.data, "path": str(self.path)}


# -- surveying ---------------------------------------------------------------------------------
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
    objects = _read_objects(agent)
    refs, head_ref = _refs(agent)
    if target.kind == "lesson" and not again:
        _resolve_lesson(target, objects, raw)
    found = Findings()
    problems: list[str] = []
    holding = {sha for sha, (kind, body) in objects.items() if _holds(target, kind, body)}
    rewrite = _Rewrite(objects, holding, target)
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
    _forget_version(agent, s, objects, rewrite, refs.get(head_ref), head_ref, problems)
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


def next_number(agent: Agent) -> int:
    """One more than the highest forget so far (its receipt, or an unfinished intent)."""
    folder = agent.state_dir / FOLDER
    numbers = [0]
    if folder.is_dir():
        numbers += [int(m.group(1)) for p in folder.iterdir()
                    if (m := re.fullmatch(r"f(\d+)\.json", p.name))]
    intent = read_json(agent.state_dir / FORGET_INTENT)
    if isinstance(intent.get("number"), int):
        numbers.append(intent["number"])
    return max(numbers) + 1


def _read_objects(agent: Agent) -> Objects:
    """Every object in the repository, loose or packed, reachable or not: id -> (kind, body)."""
    out = agent.history.git_bytes("cat-file", "--batch-all-objects", "--batch")
    objects: Objects = {}
    at = 0
    while at < len(out):
        end = out.index(b"\n", at)
        head = out[at:end].split()
        if len(head) != 3:          # "<id> missing": nothing to read
            at = end + 1
            continue
        size = int(head[2])
        objects[head[0].decode()] = (head[1].decode(), out[end + 1:end + 1 + size])
        at = end + 1 + size + 1
    return objects


def _refs(agent: Agent) -> tuple[dict[str, str], str]:
    """Every ref and what it names (HEAD too when it is detached), and the ref HEAD is."""
    out = agent.history.git("for-each-ref", "--format=%(objectname) %(refname)").stdout
    refs = {name: sha for sha, name in (line.split(" ", 1) for line in out.splitlines() if line)}
    head = agent.history.git("symbolic-ref", "-q", "HEAD", check=False)
    if head.returncode == 0:
        return refs, head.stdout.strip()
    sha = agent.history.head()
    if sha:
        refs["HEAD"] = sha
    return refs, "HEAD"


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _holds(target: Target, kind: str, body: bytes) -> bool:
    """Whether a git object holds it where forget looks: a file's content, a file name, a
    commit's or tag's message and names (not ids, dates or other headers)."""
    if kind == "blob":
        return target.search(_decode(body))
    if kind == "tree":
        return any(target.search(_decode(name)) for _, name, _ in _tree_entries(body))
    if kind in ("commit", "tag"):
        header, _, message = body.partition(b"\n\n")
        idents = [m.group(1) + b" " + m.group(2) for line in header.split(b"\n")
                  if line.startswith((b"author ", b"committer ", b"tagger "))
                  for m in [IDENT.match(line.split(b" ", 1)[1])] if m]
        return any(target.search(_decode(x)) for x in [message, *idents])
    return False


def _tree_entries(body: bytes) -> Iterator[tuple[bytes, bytes, str]]:
    """(mode, name, id) of each entry, mode and name as the tree writes them."""
    at = 0
    while at < len(body):
        space = body.index(b" ", at)
        nul = body.index(b"\0", space)
        yield body[at:space], body[space + 1:nul], body[nul + 1:nul + 21].hex()
        at = nul + 21


def _resolve_lesson(target: Target, objects: Objects, raw: dict[str, bytes | None]) -> None:
    """The lesson's sections and quotes, from every lessons.md and archive.md the repository
    holds (archived copies are L7, L7-2, ...) and from the files as they are now."""
    from agentmem import lessons as lessons_fmt

    texts = {_decode(data) for name in ("lessons.md", "archive.md")
             if (data := raw.get(name)) is not None}
    for kind, body in objects.values():
        if kind == "tree":
            texts |= {_decode(objects[child][1]) for mode, name, child in _tree_entries(body)
                      if name in (b"lessons.md", b"archive.md") and mode != b"120000"
                      and child in objects}
    ids = re.compile(rf"{re.escape(target.lesson or '')}(?:-\d+)?")
    cuts: set[str] = set()
    quotes: set[str] = set()
    for text in texts:
        doc, _ = lessons_fmt.parse(text)
        for lesson in doc.lessons if doc else []:
            if lesson.id and ids.fullmatch(lesson.id) and lesson.raw:
                cuts.add(lesson.raw)
                quotes |= {q for q in (lesson.title.strip(), lesson.body.strip())
                           if len(q) >= MIN_QUOTE}
    if not cuts:
        raise NotFound(f"no lesson {target.lesson} in lessons.md, archive.md or any version",
                       "see the lessons with: agentmem show AGENT")
    target.cuts = tuple(sorted(cuts, key=len, reverse=True))
    if quotes:
        target.pattern = re.compile("|".join(re.escape(q) for q in
                                             sorted(quotes, key=len, reverse=True)))


class _Rewrite:
    """Every object reachable from a ref, rewritten without it: a blob's content, a commit's
    message (not its trailers) and names, a tag's message; a tree or commit whose children
    changed gets their new ids. Dates, numbers and everything else stay as they were."""

    def __init__(self, objects: Objects, holding: set[str], target: Target) -> None:
        self.objects, self.holding, self.target = objects, holding, target
        self.map: dict[str, str] = {}
        self.new: list[tuple[str, bytes]] = []        # dependencies first
        self.reached: set[str] = set()
        self.problems: list[tuple[str, str]] = []     # (object, where it stays: {where})
        self._commits: list[str] = []
        self._tips: list[str] = []

    def walk(self, tip: str) -> None:
        """Order the commits behind `tip`, parents first (no recursion: histories are long)."""
        self._tips.append(tip)
        while self.objects.get(tip, ("", b""))[0] == "tag":
            self.reached.add(tip)
            tip = self.objects[tip][1][7:47].decode()
        stack = [(tip, False)]
        while stack:
            sha, done = stack.pop()
            if done:
                self._commits.append(sha)
                continue
            if sha in self.reached or self.objects.get(sha, ("", b""))[0] != "commit":
                continue
            self.reached.add(sha)
            stack.append((sha, True))
            stack += [(p, False) for p in _parents(self.objects[sha][1]) if p not in self.reached]

    def run(self) -> None:
        for sha in self._commits:
            self._commit(sha)
        for tip in self._tips:
            self.object(tip)

    def object(self, sha: str) -> str:
        if sha in self.map:
            return self.map[sha]
        found = self.objects.get(sha)
        if found is None:            # not in this repository (a submodule's commit, say)
            return sha
        self.reached.add(sha)
        kind, body = found
        if kind == "commit":
            return self._commit(sha)
        if kind == "blob":
            new = _encode(self.target.sub(_decode(body))[0]) if sha in self.holding else body
        elif kind == "tree":
            new = self._tree(sha, body)
        else:
            new = self._tag(sha, body)
        return self._keep(sha, kind, body, new)

    def _keep(self, sha: str, kind: str, body: bytes, new: bytes) -> str:
        if sha in self.holding and kind != "tree" and _holds(self.target, kind, new):
            self.problems.append((sha, "{where}, where what is left once it goes holds it "
                                  "again"))
        if new == body:
            self.map[sha] = sha
            return sha
        self.new.append((kind, new))
        self.map[sha] = gitstore.object_id(kind, new)
        return self.map[sha]

    def _tree(self, sha: str, body: bytes) -> bytes:
        out = []
        for mode, name, child in _tree_entries(body):
            if self.target.search(_decode(name)):
                self.problems.append((sha, "the file name " + repr(_decode(name)) + " in {where}"))
            new = child if mode == b"160000" else self.object(child)
            out.append(mode + b" " + name + b"\0" + bytes.fromhex(new))
        return b"".join(out)

    def _commit(self, sha: str) -> str:
        if sha in self.map:
            return self.map[sha]
        self.reached.add(sha)
        body = self.objects[sha][1]
        header, sep, message = body.partition(b"\n\n")
        lines: list[bytes] = []
        unsigned: list[bytes] = []           # the original header less its signature
        for block in _header_blocks(header):
            if block[0].split(b" ", 1)[0] not in SIGNATURES:
                unsigned += block
            key = block[0].split(b" ", 1)[0]
            if key == b"tree":
                lines.append(b"tree " + self.object(block[0][5:].decode()).encode())
            elif key == b"parent":
                parent = block[0][7:].decode()
                lines.append(b"parent " + self.map.get(parent, parent).encode())
            elif key in (b"author", b"committer"):
                lines.append(key + b" " + self._ident(block[0][len(key) + 1:]))
            elif key in SIGNATURES:
                pass                 # it would no longer verify
            else:
                lines += block
        new_message = _encode(_sub_message(self.target, _decode(message))) \
            if sha in self.holding else message
        unchanged = lines == unsigned and new_message == message
        new = body if unchanged else b"\n".join(lines) + sep + new_message
        if sha in self.holding and _holds(self.target, "commit", new):
            self.problems.append((sha, "the trailers of {where}"))
        if unchanged:
            self.map[sha] = sha      # the signature and the id stay
            return sha
        self.new.append(("commit", new))
        self.map[sha] = gitstore.object_id("commit", new)
        return self.map[sha]

    def _tag(self, sha: str, body: bytes) -> bytes:
        header, sep, message = body.partition(b"\n\n")
        lines = []
        for block in _header_blocks(header):
            if block[0].startswith(b"object "):
                lines.append(b"object " + self.object(block[0][7:].decode()).encode())
            elif block[0].startswith(b"tagger "):
                lines.append(b"tagger " + self._ident(block[0][7:]))
            else:
                lines += block
        if sha in self.holding:
            message = _encode(self.target.sub(_decode(message))[0])
        return b"\n".join(lines) + sep + message

    def _ident(self, value: bytes) -> bytes:
        match = IDENT.match(value)
        if match is None:
            return value
        name, email = (_encode(self.target.sub(_decode(x))[0]) for x in match.group(1, 2))
        return name + b" <" + email + b"> " + match.group(3)


def _header_blocks(header: bytes) -> list[list[bytes]]:
    """A commit's or tag's header lines, each with its continuation lines (a signature's)."""
    blocks: list[list[bytes]] = []
    for line in header.split(b"\n"):
        if line.startswith(b" ") and blocks:
            blocks[-1].append(line)
        else:
            blocks.append([line])
    return blocks


def _parents(body: bytes) -> list[str]:
    header = body.split(b"\n\n", 1)[0]
    return [line[7:].decode() for line in header.split(b"\n") if line.startswith(b"parent ")]


def _sub_message(target: Target, message: str) -> str:
    """A version's message without it, its `Agentmem-...:` trailer lines kept as they are."""
    parts: list[str] = []
    chunk: list[str] = []
    for line in message.split("\n"):
        if TRAILER.match(line):
            if chunk:
                parts.append(target.sub("\n".join(chunk))[0])
                chunk = []
            parts.append(line)
        else:
            chunk.append(line)
    if chunk:
        parts.append(target.sub("\n".join(chunk))[0])
    return "\n".join(parts)


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
        files = sorted(_decode(name) for _, name, sha in _tree_entries(tree) if sha in holding)
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
        text = _decode(data)
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
        s.files[name] = (data, _encode(new))


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


def _walk(value: Any, target: Target, keep: tuple[str, ...] = ()) -> tuple[Any, int]:
    """A JSON value without it: every string, key and string holding JSON (a tool call's
    arguments) included; keys in `keep` are left as they are."""
    if isinstance(value, str):
        if value[:1] in "{[":
            try:
                inner = json.loads(value)
            except ValueError:
                inner = None
            if isinstance(inner, (dict, list)):
                new, count = _walk(inner, target)
                if count:
                    return json.dumps(new, ensure_ascii=False), count
        return target.sub(value)
    if isinstance(value, list):
        items = [_walk(item, target) for item in value]
        return [item for item, _ in items], sum(n for _, n in items)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        total = 0
        for key, item in value.items():
            if key in keep:
                out[key] = item
                continue
            new_key, n = target.sub(key)
            out[new_key], m = _walk(item, target)
            total += n + m
        return out, total
    return value, 0


def _holds_json(value: Any, target: Target) -> bool:
    if isinstance(value, str):
        return target.search(value)
    if isinstance(value, list):
        return any(_holds_json(item, target) for item in value)
    if isinstance(value, dict):
        return any(target.search(k) or _holds_json(v, target) for k, v in value.items())
    return False


def _survey_log(agent: Agent, s: Survey, problems: list[str]) -> None:
    """log.jsonl: each event that holds it, with the text replaced in its values."""
    path = agent.folder / LOG_FILE
    with agent.journal.locked():
        try:
            data = read_bytes(path)[0]
        except FileNotFoundError:
            return
    new, shifts = _clean_log(data, s.target, s.findings, problems)
    if new != data:
        s.log = _Log(len(data), hashlib.sha256(data).hexdigest(), new, shifts)


def _clean_log(data: bytes, target: Target, found: Findings | None = None,
               problems: list[str] | None = None) -> tuple[bytes, list[tuple[int, int]]]:
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
        text, count = target.sub(_decode(line))
        return (_encode(text), None, target.search(text)) if count else (None, None, False)
    if not _holds_json(event, target):
        return None, None, False
    clean, _ = _walk(event, target, keep=EVENT_KEYS)
    new = encode_event(clean).encode("utf-8")
    if not line.endswith(b"\n"):
        new = new.rstrip(b"\n")
    event_id = event.get("id")
    return new, event_id if isinstance(event_id, str) else None, _holds_json(clean, target)


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
            new = _clean_state(data, s)
            if new != data:
                s.side.append((rel, data, new))
            if _holds_json(_json(data), s.target):
                s.findings.stored.append(rel)
                if _holds_json(_json(new), s.target):
                    problems.append(f"{rel} (what is left once it goes holds it again)")
            continue
        text = _decode(data)
        if kind == "reflog":
            s.findings.reflog += sum(1 for line in text.split("\n") if s.target.search(line))
            continue
        parsed = _json(data) if kind == "json" else None
        if not (s.target.search(text) or (parsed is not None and _holds_json(parsed, s.target))):
            continue
        if kind in ("elsewhere", "git"):
            s.findings.elsewhere.append(rel)
            continue
        s.findings.stored.append(rel)
        if kind == "drop":
            s.side.append((rel, data, None))
            continue
        if parsed is not None:
            clean, _ = _walk(parsed, s.target)
            new = _dump_like(clean, data)
        elif kind == "jsonl":
            new, _ = _clean_log(data, s.target)
        else:
            new = _encode(s.target.sub(text)[0])
        if s.target.search(_decode(new)):
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


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _dump_like(value: Any, original: bytes) -> bytes:
    """JSON written as agentmem writes that file: indented (state, kept outputs) or not."""
    if original.lstrip().startswith((b"{\n", b"[\n")):
        return (json.dumps(value, indent=2) + "\n").encode()
    return json.dumps(value).encode()


def _clean_state(data: bytes, s: Survey) -> bytes:
    """state.json without it, its sleep cursors moved to where their events are in the new log."""
    state = _json(data)
    if not isinstance(state, dict):
        return data
    clean, count = _walk(state, s.target)
    moved = False
    if s.log is not None:
        for key in ("sleep_cursor", "pending_sleep_cursor"):
            cursor = clean.get(key)
            if isinstance(cursor, dict) and isinstance(cursor.get("offset"), int):
                offset = s.log.offset(cursor["offset"])
                if offset != cursor["offset"]:
                    clean[key] = {**cursor, "offset": offset}
                    moved = True
    if not (count or moved):
        return data
    return (json.dumps(clean, indent=2) + "\n").encode()


def _forget_version(agent: Agent, s: Survey, objects: Objects, rewrite: _Rewrite,
                    old_head: str | None, head_ref: str, problems: list[str]) -> None:
    """The version authored `forget` on top of the rewritten history: its tree is the memory
    files without it (the rewritten latest version's), its message says what went where."""
    if old_head is None or old_head not in objects:
        raise NotFound("this agent has no versions yet")
    parent = rewrite.map.get(old_head, old_head)
    tree = rewrite.map.get(objects[old_head][1][5:45].decode(),
                           objects[old_head][1][5:45].decode())
    f = s.findings
    done = [f"{len(f.files)} memory file(s)" if f.files else "",
            f"{len(f.events) + len(f.log_lines)} log event(s)" if f.events or f.log_lines else "",
            f"{len(set(f.versions) | set(f.messages))} earlier version(s)"
            if f.versions or f.messages else "",
            f"{len(f.stored)} other file(s)" if f.stored else ""]
    summary = ", ".join(x for x in done if x) or "unreferenced git objects"
    when = time.time()
    who = gitstore.ident("agentmem (forget)", "forget@agentmem", when)
    trailers = f"{AUTHOR_TRAILER}: forget\n{LOG_TRAILER}: {agent.journal.last_event_number()}"
    for subject in (f"Forget {s.name}: removed from {summary}", f"Forget {s.name}"):
        message = gitstore.clean_message(f"{subject}\n\n{trailers}")
        body = f"tree {tree}\nparent {parent}\nauthor {who}\ncommitter {who}\n\n{message}".encode()
        if not _holds(s.target, "commit", body):
            break
    else:
        problems.append("the forget version's own message")
    s.objects = [*rewrite.new, ("commit", body)]
    s.head = gitstore.object_id("commit", body)
    s.refs[head_ref] = (old_head, s.head)
    s.version = len(agent.history.versions()) + 1


def _sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


# -- forgetting --------------------------------------------------------------------------------
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
        _stage(agent, s)
        receipt = finish(agent, target)
        after = survey(agent, target, number=s.number, again=True)   # what is left
        receipt.data["remaining"] = after.findings.places()
        atomic_write(receipt.path, json.dumps(receipt.data, indent=2) + "\n")
        return receipt


def _stage(agent: Agent, s: Survey) -> None:
    """Steps 1 and 2: every object and file written, then the intent (the commit point)."""
    folder = agent.state_dir / FOLDER
    folder.mkdir(exist_ok=True)
    for old in folder.glob("f*.stage"):       # a forget that died before its commit point
        shutil.rmtree(old, ignore_errors=True)
    for tmp in folder.glob(f".*{TMP_SUFFIX}"):   # ... while writing its intent
        tmp.unlink(missing_ok=True)
    stage = folder / f"{s.name}.stage"
    (stage / "files").mkdir(parents=True)
    (stage / "side").mkdir()
    with agent.history.writing():
        gitstore.Store(agent.history.git_dir).write_objects(s.objects)
    for name, (_, content) in s.files.items():
        atomic_write(stage / "files" / name, content)
    side = []
    for n, (rel, before, after) in enumerate(s.side):
        if after is not None:
            atomic_write(stage / "side" / str(n), after)
        side.append({"path": rel, "old": _sha(before), "new": _sha(after), "staged": f"side/{n}"})
    log = None
    if s.log is not None:
        atomic_write(stage / LOG_FILE, s.log.new)
        log = {"size": s.log.size, "old": s.log.old, "new": _sha(s.log.new)}
    receipt = {"forget": s.name, "time": now_iso(), "what": s.target.describe(),
               "version": s.version, "found": s.findings.to_json(), "notes": []}
    atomic_write(stage / "receipt.json", json.dumps(receipt, indent=2) + "\n")
    fsync_dir(stage)
    intent = {"number": s.number, "stage": stage.name, "head": s.head,
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
    stage = folder / str(intent.get("stage", ""))
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
        _replace(agent.folder / name, stage / "files" / name, old, new, notes)
    if intent.get("log"):
        _finish_log(agent, stage, intent["log"], target, notes)
    for item in intent.get("side") or []:
        _replace(agent.folder / item["path"], stage / item["staged"], item["old"], item["new"],
                 notes, person=False)
    with history.writing():
        _prune(agent)
    try:
        data = json.loads(read_bytes(stage / "receipt.json")[0])
    except (OSError, ValueError):
        data = {"forget": f"f{intent.get('number', 0)}", "time": now_iso(), "found": None}
        notes.append("its staged receipt was missing: only this much is known")
    data["notes"] = notes
    data["finished"] = "forget" if target is not None else "recovery"
    path = folder / f"{data['forget']}.json"
    atomic_write(path, json.dumps(data, indent=2) + "\n")
    atomic_delete(agent.state_dir / FORGET_INTENT)
    shutil.rmtree(stage, ignore_errors=True)
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


def _finish_log(agent: Agent, stage: Path, log: dict[str, Any], target: Target | None,
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
            staged = read_bytes(stage / LOG_FILE)[0]
        except FileNotFoundError:
            staged = None
        if staged is not None and _sha(data[:len(staged)]) == log["new"]:
            return                            # done already (and appended to since)
        if staged is None or _sha(data[:log["size"]]) != log["old"]:
            notes.append(f"{LOG_FILE} changed meanwhile and was left as it is")
            return
        tail = data[log["size"]:]
        if target is not None and tail:
            tail = _clean_log(tail, target)[0]
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
