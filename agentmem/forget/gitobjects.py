"""Git's objects and refs as forget reads them: every object in the repository at once
(reachable or not), parsed by hand (tree entries, header lines, identities), and whether one
holds the text where forget looks. Only SHA-1 repositories (20-byte ids in trees)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentmem.agent import Agent
    from agentmem.forget.target import Target

IDENT = re.compile(rb"^(.*) <(.*)> (-?\d+ [+-]\d{4})$")
SIGNATURES = (b"gpgsig", b"gpgsig-sha256")
Objects = dict[str, tuple[str, bytes]]      # id -> (kind, body)


def decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def read_objects(agent: Agent) -> Objects:
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


def read_refs(agent: Agent) -> tuple[dict[str, str], str]:
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


def holds(target: Target, kind: str, body: bytes) -> bool:
    """Whether a git object holds it where forget looks: a file's content, a file name, a
    commit's or tag's message and names (not ids, dates or other headers)."""
    if kind == "blob":
        return target.search(decode(body))
    if kind == "tree":
        return any(target.search(decode(name)) for _, name, _ in tree_entries(body))
    if kind in ("commit", "tag"):
        header, _, message = body.partition(b"\n\n")
        idents = [m.group(1) + b" " + m.group(2) for line in header.split(b"\n")
                  if line.startswith((b"author ", b"committer ", b"tagger "))
                  for m in [IDENT.match(line.split(b" ", 1)[1])] if m]
        return any(target.search(decode(x)) for x in [message, *idents])
    return False


def tree_entries(body: bytes) -> Iterator[tuple[bytes, bytes, str]]:
    """(mode, name, id) of each entry, mode and name as the tree writes them."""
    at = 0
    while at < len(body):
        space = body.index(b" ", at)
        nul = body.index(b"\0", space)
        yield body[at:space], body[space + 1:nul], body[nul + 1:nul + 21].hex()
        at = nul + 21


def header_blocks(header: bytes) -> list[list[bytes]]:
    """A commit's or tag's header lines, each with its continuation lines (a signature's)."""
    blocks: list[list[bytes]] = []
    for line in header.split(b"\n"):
        if line.startswith(b" ") and blocks:
            blocks[-1].append(line)
        else:
            blocks.append([line])
    return blocks


def parents(body: bytes) -> list[str]:
    header = body.split(b"\n\n", 1)[0]
    return [line[7:].decode() for line in header.split(b"\n") if line.startswith(b"parent ")]
