"""Git's on-disk formats, written and read in-process: loose objects, refs, reflogs, the index.

Recording a version through git takes five subprocesses (status, add, diff, commit, log), about
20 ms of CPU each time, which would be most of the cost of `agentmem sleep` over a thousand
agents; written here, it takes none. Only the writing path and the clean/dirty check live here.
Everything that reads history for people (log, show, diff, merge-file) still runs real git, and
anything unusual (a packed object, a detached HEAD, a SHA-256 repository, a symbolic link) makes
the caller fall back to it.

The result is an ordinary repository: `git fsck`, `git status` and `git log` agree with it
(tests/test_history.py checks all three).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentmem.baton import waiting
from agentmem.fsutil import (
    NotRegular,
    decode_text,
    fsync,
    fsync_dir,
    read_bytes,
    read_text,
    write_all,
)

REGULAR, EXECUTABLE = 0o100644, 0o100755


class Unsupported(Exception):
    """This repository or file needs real git (the caller falls back to a subprocess)."""


@dataclass(frozen=True)
class Entry:
    mode: int
    sha: str


def read_blob(path: Path) -> tuple[Entry, bytes, os.stat_result] | None:
    """A work-tree file as git would record it: its tree entry, its content (read once) and the
    stat taken before reading (for the index). None when it does not exist."""
    try:
        data, st = read_bytes(path, regular=True)
    except FileNotFoundError:
        return None
    except NotRegular:
        raise Unsupported(f"{path.name} is not a regular file") from None
    return Entry(EXECUTABLE if st.st_mode & stat.S_IXUSR else REGULAR, object_id("blob", data)), data, st


def blob_entry(path: Path) -> Entry | None:
    found = read_blob(path)
    return found[0] if found else None


def object_id(kind: str, body: bytes) -> str:
    return hashlib.sha1(b"%s %d\0" % (kind.encode(), len(body)) + body).hexdigest()


class Store:
    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir

    # -- objects ---------------------------------------------------------------------------
    def _path(self, sha: str) -> str:
        return f"{self.git_dir}/objects/{sha[:2]}/{sha[2:]}"

    def read(self, sha: str) -> tuple[str, bytes]:
        try:
            raw = zlib.decompress(read_bytes(self._path(sha))[0])
        except (FileNotFoundError, zlib.error):
            raise Unsupported(f"object {sha} is not a loose object") from None
        header, _, body = raw.partition(b"\0")
        kind, _, _size = header.partition(b" ")
        return kind.decode(), body

    def write_objects(self, objects: list[tuple[str, bytes]]) -> list[str]:
        """Store objects (those not stored yet) and return their ids: each is written to a temp
        file, then synced and renamed into place, and the folders that gained an entry are
        synced, so all are durable before a ref makes them reachable. The syncs happen in one
        wait (agentmem.baton): in a batch, another pass computes meanwhile. (Plain strings,
        not Paths: pathlib costs more than the system calls here.)"""
        ids: list[str] = []
        todo: dict[str, bytes] = {}
        for kind, body in objects:
            data = b"%s %d\0" % (kind.encode(), len(body)) + body
            sha = hashlib.sha1(data).hexdigest()
            ids.append(sha)
            path = self._path(sha)
            if path not in todo and not os.path.exists(path):
                todo[path] = zlib.compress(data)
        if todo:
            with waiting():
                folders: set[str] = set()
                for n, (path, packed) in enumerate(todo.items()):
                    folders |= _store_object(path, packed, n)
                for folder in sorted(folders):
                    fsync_dir(folder)
        return ids

    def tree(self, sha: str) -> dict[str, Entry]:
        kind, body = self.read(sha)
        if kind != "tree":
            raise Unsupported(f"{sha} is a {kind}, not a tree")
        entries: dict[str, Entry] = {}
        i = 0
        while i < len(body):
            space = body.index(b" ", i)
            nul = body.index(b"\0", space)
            mode = int(body[i:space], 8)
            name = body[space + 1:nul].decode("utf-8", "surrogateescape")
            entries[name] = Entry(mode, body[nul + 1:nul + 21].hex())
            i = nul + 21
        return entries

    def commit_tree(self, sha: str) -> str:
        kind, body = self.read(sha)
        if kind != "commit" or not body.startswith(b"tree "):
            raise Unsupported(f"{sha} is not a commit")
        return body[5:45].decode()

    # -- refs ------------------------------------------------------------------------------
    def branch(self) -> str:
        """The ref HEAD points at (refs/heads/main); a detached HEAD is left to git."""
        head = read_text(self.git_dir / "HEAD").strip()
        if not head.startswith("ref: refs/heads/"):
            raise Unsupported("HEAD is detached")
        config = decode_text(read_bytes(self.git_dir / "config")[0], "replace")
        found = re.search(r"(?im)^\s*objectformat\s*=\s*(\S+)", config)
        if found and found.group(1).lower() != "sha1":
            raise Unsupported("not a SHA-1 repository")
        return head[5:]

    def update_ref(self, ref: str, old: str | None, new: str, ident: str, message: str) -> None:
        """Move `ref` from `old` to `new` the way git does: ref.lock, fsync, rename; reflog."""
        path = self.git_dir / ref

        def check() -> None:         # under the lock: the ref must still be where we built on
            try:
                current: str | None = read_text(path).strip() or None
            except FileNotFoundError:
                current = old            # packed (the caller read packed-refs) or no commit yet
            if current != old:
                raise Unsupported(f"{ref} moved to {current} meanwhile")

        with waiting():     # the ref file and its folder synced in one wait
            _replace_locked(path, new.encode() + b"\n", check)
            fsync_dir(path.parent)
        line = f"{old or '0' * 40} {new} {ident}\t{message}\n".encode()
        for log in (self.git_dir / "logs" / "HEAD", self.git_dir / "logs" / ref):
            try:
                fh = open(log, "ab")
            except FileNotFoundError:
                log.parent.mkdir(parents=True, exist_ok=True)
                fh = open(log, "ab")
            with fh:
                fh.write(line)

    # -- index -----------------------------------------------------------------------------
    def write_index(self, entries: dict[str, Entry], stats: dict[str, os.stat_result]) -> None:
        """Make the index match a tree. `stats` holds the work files read for this tree, stat'ed
        before reading, so that `git status` trusts them while they stay as they were; any other
        entry gets zeros, which makes git read the file."""
        out = [b"DIRC", struct.pack(">II", 2, len(entries))]
        for name in sorted(entries, key=lambda n: n.encode()):
            entry = entries[name]
            raw_name = name.encode()
            st = stats.get(name)
            fields = [0] * 10 if st is None else [
                st.st_ctime_ns // 10**9, st.st_ctime_ns % 10**9, st.st_mtime_ns // 10**9,
                st.st_mtime_ns % 10**9,
                st.st_dev, st.st_ino, 0, st.st_uid, st.st_gid, st.st_size]
            fields[6] = entry.mode
            record = struct.pack(">10I", *(f & 0xFFFFFFFF for f in fields))
            record += bytes.fromhex(entry.sha) + struct.pack(">H", min(len(raw_name), 0xFFF))
            record += raw_name
            record += b"\0" * (8 - len(record) % 8)
            out.append(record)
        data = b"".join(out)
        data += hashlib.sha1(data).digest()
        _replace_locked(self.git_dir / "index", data)

def _store_object(path: str, packed: bytes, n: int) -> set[str]:
    """Write one loose object (temp file, fsync, rename); the folders to sync afterwards."""
    folder = path[:-39]
    tmp = f"{folder}/tmp_obj_{os.getpid()}_{threading.get_ident()}_{n}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    folders = {folder}
    try:
        fd = os.open(tmp, flags, 0o444)          # read-only, as git leaves objects
    except FileNotFoundError:
        try:
            os.mkdir(folder)
        except FileExistsError:
            pass
        folders.add(folder[:-3])                 # the new folder's entry in objects/
        fd = os.open(tmp, flags, 0o444)
    except PermissionError:
        if not os.path.lexists(tmp):             # the folder itself is read-only
            raise
        os.unlink(tmp)                           # a read-only leftover of a crashed write
        fd = os.open(tmp, flags, 0o444)
    try:
        write_all(fd, packed)
        fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return folders


def _replace_locked(path: Path, data: bytes, check: Callable[[], None] | None = None) -> None:
    """Replace `path` the way git does: create PATH.lock exclusively (its lock too), run
    `check` while holding it, write and sync, rename over PATH. A failure leaves no lock."""
    lock = path.with_name(path.name + ".lock")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        try:
            fd = os.open(lock, flags, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, flags, 0o644)
    except FileExistsError:
        raise Unsupported(f"{lock} exists: a git process is using this repository") from None
    try:
        if check is not None:
            check()
        write_all(fd, data)
        fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(lock, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        lock.unlink(missing_ok=True)
        raise


def tree_body(entries: dict[str, Entry]) -> bytes:
    """A tree of plain files (git sorts entries by name bytes; there are no subfolders here)."""
    return b"".join(b"%o %s\0" % (entries[name].mode, name.encode()) + bytes.fromhex(entries[name].sha)
                    for name in sorted(entries, key=lambda n: n.encode()))


def ident(name: str, email: str, when: float | None = None) -> str:
    """`Name <email> 1732540000 +0100`, in this machine's time zone, as git writes it."""
    when = time.time() if when is None else when
    offset = time.localtime(when).tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    return f"{name} <{email}> {int(when)} {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"


def clean_message(message: str) -> str:
    """What `git commit`'s default clean-up would keep, bar the '#' comment lines: no trailing
    spaces, no runs of blank lines, no blank lines at either end, one final newline."""
    lines: list[str] = []
    for line in message.splitlines():
        line = line.rstrip()
        if line or (lines and lines[-1]):
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"
