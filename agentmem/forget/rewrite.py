"""The history without it, built in memory: every object reachable from a ref rewritten (a
blob's content, a commit's or tag's message and names), and the `forget` version on top.
Nothing is written here; apply.py writes the new objects before its commit point."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from agentmem import gitstore
from agentmem.errors import NotFound
from agentmem.forget.gitobjects import (
    IDENT,
    SIGNATURES,
    Objects,
    decode,
    encode,
    header_blocks,
    holds,
    parents,
    tree_entries,
)
from agentmem.history import AUTHOR_TRAILER, LOG_TRAILER

if TYPE_CHECKING:
    from agentmem.agent import Agent
    from agentmem.forget.find import Survey
    from agentmem.forget.target import Target

TRAILER = re.compile(r"^Agentmem-[A-Za-z-]+:")       # a version's trailers, never rewritten


class Rewrite:
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
            stack += [(p, False) for p in parents(self.objects[sha][1]) if p not in self.reached]

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
            new = encode(self.target.sub(decode(body))[0]) if sha in self.holding else body
        elif kind == "tree":
            new = self._tree(sha, body)
        else:
            new = self._tag(sha, body)
        return self._keep(sha, kind, body, new)

    def _keep(self, sha: str, kind: str, body: bytes, new: bytes) -> str:
        if sha in self.holding and kind != "tree" and holds(self.target, kind, new):
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
        for mode, name, child in tree_entries(body):
            if self.target.search(decode(name)):
                self.problems.append((sha, "the file name " + repr(decode(name)) + " in {where}"))
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
        for block in header_blocks(header):
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
        new_message = encode(_sub_message(self.target, decode(message))) \
            if sha in self.holding else message
        unchanged = lines == unsigned and new_message == message
        new = body if unchanged else b"\n".join(lines) + sep + new_message
        if sha in self.holding and holds(self.target, "commit", new):
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
        for block in header_blocks(header):
            if block[0].startswith(b"object "):
                lines.append(b"object " + self.object(block[0][7:].decode()).encode())
            elif block[0].startswith(b"tagger "):
                lines.append(b"tagger " + self._ident(block[0][7:]))
            else:
                lines += block
        if sha in self.holding:
            message = encode(self.target.sub(decode(message))[0])
        return b"\n".join(lines) + sep + message

    def _ident(self, value: bytes) -> bytes:
        match = IDENT.match(value)
        if match is None:
            return value
        name, email = (encode(self.target.sub(decode(x))[0]) for x in match.group(1, 2))
        return name + b" <" + email + b"> " + match.group(3)


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


def forget_version(agent: Agent, s: Survey, objects: Objects, rewrite: Rewrite,
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
        if not holds(s.target, "commit", body):
            break
    else:
        problems.append("the forget version's own message")
    s.objects = [*rewrite.new, ("commit", body)]
    s.head = gitstore.object_id("commit", body)
    s.refs[head_ref] = (old_head, s.head)
    s.version = len(agent.history.versions()) + 1
