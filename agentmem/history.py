"""Versions of an agent's memory, kept in a real git repository at `.agentmem/git`.

The git directory lives inside the agent folder but is not named `.git`, so an agent folder
inside a user's own repository never becomes a nested repository. Anyone can read it:

    git --git-dir=AGENT/.agentmem/git log

Each commit's message ends with trailers: `Agentmem-Author: human|agent|sleep|revert|import|new|
forget` and `Agentmem-Log: N` (the last log event the version reflects).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentmem import gitcmd, gitstore
from agentmem.errors import AgentmemError, NotFound, UsageError
from agentmem.fsutil import decode_text, read_text, write_all
from agentmem.redact import redact

TRACKED = ("persona.md", "lessons.md", "tools.yaml", "archive.md")
AUTHORS = ("human", "agent", "sleep", "revert", "import", "new", "forget", "sync")
AUTHOR_TRAILER = "Agentmem-Author"
LOG_TRAILER = "Agentmem-Log"
UNTRUSTED_LINE = "Agentmem-Untrusted"       # ends an agent version made after tool output
CURSOR_TRAILER = "Agentmem-Sleep-Cursor"     # "EVENT OFFSET": where a sleep pass stopped reading
_SEP = "\x1f"
_REC = "\x1e"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"   # git's empty tree (SHA-1 repositories)
COUNT_FILE = "agentmem-versions"     # "COMMIT N end untrusted=3,7": N versions lead up to
                                     # COMMIT, of which 3 and 7 are agent edits made after
                                     # untrusted tool output (a cache; the last field optional)
UNTRUSTED_FIELD = "untrusted="
WRITING = "writing"                  # ends that line while agentmem writes (see recover)
REL = re.compile(r"^(?:HEAD|@)?~(\d+)$|^(?:HEAD|@)$")


@dataclass(frozen=True)
class Version:
    number: int          # 1 = oldest
    commit: str
    time: datetime
    author: str
    subject: str
    message: str
    log_position: int | None

    @property
    def short(self) -> str:
        return self.commit[:7]

    def to_json(self) -> dict[str, object]:
        return {"number": self.number, "commit": self.commit, "time": self.time.isoformat(),
                "author": self.author, "subject": self.subject, "message": self.message,
                "log_position": self.log_position}


class History:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.git_dir = folder / ".agentmem" / "git"
        self._versions: list[Version] | None = None
        self._tree: tuple[str, dict[str, gitstore.Entry]] | None = None   # (commit, its files)
        self._counted = False         # the commit under way has written its count line

    # -- plumbing --------------------------------------------------------------------------
    def git(self, *args: str, check: bool = True, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc: subprocess.CompletedProcess[str] = self._run_git(
            args, env, input=input, text=True, encoding="utf-8", errors="replace")
        if check and proc.returncode != 0:
            raise gitcmd.failure(args, proc.stderr, self.git_dir)
        return proc

    def git_bytes(self, *args: str, input: bytes | None = None) -> bytes:
        """A git command's output as bytes (objects, which need not be text)."""
        proc = self._run_git(args, None, input=input)
        if proc.returncode != 0:
            raise gitcmd.failure(args, proc.stderr.decode(errors="replace"), self.git_dir)
        return bytes(proc.stdout)

    def _run_git(self, args: tuple[str, ...], env: dict[str, str] | None,
                 **run: Any) -> subprocess.CompletedProcess[Any]:
        return gitcmd.run(self.git_dir, self.folder, args, env, **run)

    @property
    def exists(self) -> bool:
        return (self.git_dir / "HEAD").exists()

    def init(self) -> None:
        self.git_dir.parent.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "core.worktree", "../..")
        self.git("config", "user.name", "agentmem")
        self.git("config", "user.email", "agentmem@localhost")
        exclude = self.git_dir / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("# agentmem versions only the memory files\n/*\n"
                           + "".join(f"!/{name}\n" for name in TRACKED))

    # -- recording -------------------------------------------------------------------------
    def dirty(self) -> list[str]:
        """Tracked memory files whose content differs from the latest version."""
        if not self.exists:
            return []
        try:
            head = self.head()
            entries = self._entries(head) if head else {}
            return sorted(n for n in TRACKED if gitstore.blob_entry(self.folder / n) != entries.get(n))
        except (gitstore.Unsupported, OSError):
            proc = self.git("status", "--porcelain", "--untracked-files=all", "--", *TRACKED)
            return sorted({line[3:].strip() for line in proc.stdout.splitlines() if line.strip()})

    def unrecorded(self, raw: dict[str, bytes | None]) -> list[str]:
        """Tracked files whose content, as read (`raw`: name -> bytes, None when absent),
        differs from the latest version. Links are left to git's own view (dirty)."""
        try:
            head = self.head()
            entries = self._entries(head) if head else {}
        except (gitstore.Unsupported, OSError):
            return self.dirty()
        out = []
        for name in TRACKED:
            entry = entries.get(name)
            mode = _work_mode(self.folder / name)
            if (entry is not None and entry.mode == 0o120000) or mode == 0o120000:
                return self.dirty()
            data = raw.get(name)
            now = None if data is None else gitstore.Entry(mode, gitstore.object_id("blob", data))
            if entry != now:
                out.append(name)
        return out

    def size_in_latest(self, name: str) -> int | None:
        """A file's size in the latest version; None when absent there or unknown."""
        try:
            head = self.head()
            entry = self._entries(head).get(name) if head else None
            return None if entry is None else len(gitstore.Store(self.git_dir).read(entry.sha)[1])
        except (gitstore.Unsupported, OSError):
            return None

    def _entries(self, commit: str) -> dict[str, gitstore.Entry]:
        if self._tree is None or self._tree[0] != commit:
            store = gitstore.Store(self.git_dir)
            self._tree = (commit, store.tree(store.commit_tree(commit)))
        return self._tree[1]

    def commit(self, author: str, message: str, log_position: int | None,
               paths: list[str] | None = None,
               contents: dict[str, bytes | None] | None = None,
               merge: str | None = None, redacted: bool = False) -> Version | None:
        """Record the memory files (or only `paths`) as a version. None when nothing changed.

        `contents` records exactly those bytes (None: the file is gone) for those files and
        the rest as the latest version has them, whatever the files on disk hold by now: a
        writer records what it wrote, and a save that landed since is a later version.
        `merge` (a commit) makes the version a merge of the latest one and that commit
        (agentmem sync); it is recorded even when the files are the latest version's.
        `redacted`: the caller passed the message through redact_message already."""
        assert author in AUTHORS, author
        trailers = f"\n\n{AUTHOR_TRAILER}: {author}"
        if log_position is not None:
            trailers += f"\n{LOG_TRAILER}: {log_position}"
        if not redacted:
            message = self.redact_message(message)
        text = gitstore.clean_message(message.strip() + trailers)
        with self._writing():
            try:
                return self._commit_in_process(author, text, paths, contents, merge)
            except gitstore.Unsupported:
                return self._commit_with_git(author, text, paths, contents, merge)

    @staticmethod
    def redact_message(message: str) -> str:
        """`message` with its secrets redacted, as commit records it: a reason or a summary
        may quote a key, and a version's message is kept for good. The sleep cursor trailer
        that may end it (numbers only) is kept as it is: a private key with no END line is
        redacted to the end of the text, and would take the trailer with it."""
        lines = message.rstrip().split("\n")
        keep = len(lines)
        while keep and (not lines[keep - 1] or
                        re.fullmatch(rf"{CURSOR_TRAILER}: \d+ \d+", lines[keep - 1])):
            keep -= 1
        return "\n".join([redact("\n".join(lines[:keep])), *lines[keep:]])

    def writing(self) -> AbstractContextManager[None]:
        """The marker a write outside `commit` holds while it changes objects, refs or the
        index (agentmem.forget), so that recover() clears what a killed one left."""
        return self._writing()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Mark the repository as being written by agentmem while objects, the ref and the
        index change: the version-count cache line gets a trailing "writing" (rewritten in
        place, which costs no new directory entry), and a marker that outlives the write says
        its process died (see recover). The commit's own count line clears it; a write that
        fails puts the line back as it was, having cleaned up after itself."""
        try:
            line = read_text(self.git_dir / COUNT_FILE).split("\n")[0].removesuffix(WRITING)
        except (OSError, ValueError):
            line = ""
        self._count_line(f"{line.rstrip()} {WRITING}".lstrip())
        self._counted = False
        try:
            yield
        finally:
            if not self._counted:
                self._count_line(line.rstrip())

    def recover(self) -> list[str]:
        """Clear what a killed agentmem write left in the repository: the ref and index locks
        it held (git refuses every later write while they exist) and half-written objects.
        Call it holding the agent's write lock, so no live agentmem write is under way; a lock
        without the marker belongs to some git command and stays. Returns what it removed."""
        try:
            line = read_text(self.git_dir / COUNT_FILE).split("\n")[0]
        except (OSError, ValueError):
            return []
        if not line.endswith(WRITING):
            return []
        removed: list[str] = []
        try:
            branch = gitstore.Store(self.git_dir).branch()
        except (gitstore.Unsupported, OSError):
            branch = "refs/heads/main"
        for name in (branch + ".lock", "HEAD.lock", "index.lock"):
            path = self.git_dir / name
            if path.exists():
                path.unlink(missing_ok=True)
                removed.append(name)
        objects = self.git_dir / "objects"
        for tmp in objects.glob("??/tmp_obj_*"):
            tmp.unlink(missing_ok=True)
            removed.append(str(tmp.relative_to(self.git_dir)))
        self._count_line(line.removesuffix(WRITING).rstrip())
        return removed

    def _commit_in_process(self, author: str, text: str, paths: list[str] | None,
                           given: dict[str, bytes | None] | None,
                           merge: str | None = None) -> Version | None:
        store = gitstore.Store(self.git_dir)
        ref = store.branch()
        parent = self.head()
        entries = dict(self._entries(parent)) if parent else {}
        contents: list[bytes] = []
        stats: dict[str, os.stat_result] = {}
        if given is not None:
            for name, data in given.items():
                if data is None:
                    entries.pop(name, None)
                    continue
                mode = _work_mode(self.folder / name)
                mode = gitstore.EXECUTABLE if mode == gitstore.EXECUTABLE else gitstore.REGULAR
                entries[name] = gitstore.Entry(mode, gitstore.object_id("blob", data))
                contents.append(data)
        for name in [] if given is not None else (paths or TRACKED):
            found = gitstore.read_blob(self.folder / name)   # read once: the tree names this
            if found is None:
                entries.pop(name, None)
            else:
                entries[name], data, stats[name] = found
                contents.append(data)
        if parent and entries == self._entries(parent) and not merge:   # the parent's tree
            return None
        tree = gitstore.tree_body(entries)
        if merge and parent:       # every version either side made, and this one
            number = int(self.git("rev-list", "--count", parent, merge).stdout.strip()) + 1
        else:
            number = self._count(parent) + 1
        when = time.time()
        who = gitstore.ident(f"agentmem ({author})", f"{author}@agentmem", when)
        body = f"tree {gitstore.object_id('tree', tree)}\n" + \
            (f"parent {parent}\n" if parent else "") + (f"parent {merge}\n" if merge else "") + \
            f"author {who}\ncommitter {who}\n\n{text}"
        commit = store.write_objects([*(("blob", data) for data in contents), ("tree", tree),
                                      ("commit", body.encode())])[-1]
        subject = " ".join(text.split("\n\n", 1)[0].split("\n"))   # git's %s
        store.update_ref(ref, parent, commit, who,
                         f"commit{'' if parent else ' (initial)'}: {subject}")
        try:
            store.write_index(entries, stats)
        except (gitstore.Unsupported, OSError):
            pass       # git's own cache of the tree; agentmem never reads it, git re-reads files
        version = _version(number, commit, int(when), subject, text)
        if merge:        # numbers on both lines may have moved: the flagged ones are read anew
            self._count_line(f"{commit} {number} end")
            self._counted = True
        else:
            flagged = self._untrusted(parent) if parent else []
            self._save_count(commit, number, [*flagged, number] if _flagged(version) else flagged)
        self._tree = (commit, entries)
        previous = self._versions
        self._versions = [version, *previous] if previous and previous[0].commit == parent \
            and not merge else None          # a merge brings the other line's versions too
        return version

    def _commit_with_git(self, author: str, text: str, paths: list[str] | None,
                         given: dict[str, bytes | None] | None,
                         merge: str | None = None) -> Version | None:
        if given is None:
            self.git("add", "-A", "--", *[n for n in (paths or TRACKED)
                                           if (self.folder / n).exists() or self._tracked(n)])
        else:       # the index gets exactly these bytes, whatever the work files hold now
            if self.head():
                self.git("read-tree", "HEAD")
            for name, data in given.items():
                if data is None:
                    self.git("update-index", "--force-remove", "--", name)
                    continue
                sha = self._run_git(("hash-object", "-w", "--stdin"), None, input=data)
                if sha.returncode != 0:
                    raise gitcmd.failure(("hash-object",), sha.stderr.decode(errors="replace"),
                                       self.git_dir)
                self.git("update-index", "--add", "--cacheinfo",
                         f"100644,{sha.stdout.decode().strip()},{name}")
        if self.git("diff", "--cached", "--quiet", check=False).returncode == 0 and self.head() \
                and not merge:
            return None
        if merge:       # git commit records MERGE_HEAD as the second parent
            (self.git_dir / "MERGE_HEAD").write_text(merge + "\n")
        name = f"agentmem ({author})"
        env = {"GIT_AUTHOR_NAME": name, "GIT_COMMITTER_NAME": name,
               "GIT_AUTHOR_EMAIL": f"{author}@agentmem", "GIT_COMMITTER_EMAIL": f"{author}@agentmem"}
        self.git("commit", "-q", "--allow-empty", "--cleanup=verbatim", "-F", "-", input=text,
                 env=env)
        self._versions = self._tree = None
        return self.versions()[0]

    def latest_number(self) -> int:
        """The number of the latest version (0: none yet), from the count cache when it can."""
        return self._count(self.head())

    def _count(self, commit: str | None) -> int:
        """How many versions lead up to `commit`: from a one-line cache, else from git."""
        if commit is None:
            return 0
        cached = self._cached(commit)
        if cached is not None:
            return cached[0]
        return int(self.git("rev-list", "--count", commit).stdout.strip())

    def _cached(self, commit: str) -> tuple[int, list[int] | None] | None:
        """The count cache's line for `commit`: (versions, the flagged ones or None when the
        line does not say); None when the line is about another commit or cut short."""
        try:
            fields = read_text(self.git_dir / COUNT_FILE).split("\n")[0].split()
            if len(fields) < 3 or fields[0] != commit or fields[2] != "end":
                return None
            flagged = None
            if len(fields) > 3 and fields[3].startswith(UNTRUSTED_FIELD):
                listed = fields[3][len(UNTRUSTED_FIELD):]
                flagged = [int(n) for n in listed.split(",")] if listed else []
            return int(fields[1]), flagged
        except (OSError, ValueError):
            return None

    def untrusted(self) -> list[int]:
        """The numbers of the agent's own versions made after untrusted tool output, oldest
        first: from the count cache (kept by every commit), else from every version."""
        head = self.head() if self.exists else None
        return self._untrusted(head) if head else []

    def _untrusted(self, commit: str) -> list[int]:
        cached = self._cached(commit)
        if cached is not None and cached[1] is not None:
            return cached[1]
        return sorted(v.number for v in self._log(commit, 0, None) if _flagged(v))

    def _save_count(self, commit: str, count: int, untrusted: list[int]) -> None:
        self._count_line(f"{commit} {count} end {UNTRUSTED_FIELD}{','.join(map(str, untrusted))}")
        self._counted = True

    def _count_line(self, line: str) -> None:
        """The count cache is rewritten in place, with no temp file, rename or fsync: it is a
        cache, checked on use (a line cut short by a crash lacks its "end" and is ignored, as
        is a stale commit), and creating a file costs more than the rest of a version's write."""
        fd = os.open(self.git_dir / COUNT_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, f"{line}\n".encode())
        finally:
            os.close(fd)

    def _tracked(self, name: str) -> bool:
        return bool(self.git("ls-files", "--", name).stdout.strip())

    def head(self) -> str | None:
        """The latest commit, read from the ref files (no subprocess on the common path)."""
        try:
            ref = read_text(self.git_dir / "HEAD").strip()
            if not ref.startswith("ref: "):
                return ref or None
            name = ref[5:]
            try:
                return read_text(self.git_dir / name).strip() or None
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                pass
            packed = self.git_dir / "packed-refs"
            if packed.is_file():
                for line in packed.read_text(encoding="utf-8").splitlines():
                    if line.endswith(" " + name):
                        return line.split(" ", 1)[0]
            return None      # no commit yet
        except OSError:
            proc = self.git("rev-parse", "-q", "--verify", "HEAD", check=False)
            return proc.stdout.strip() or None

    # -- reading ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Drop the versions this object keeps in memory, so that the next versions() reads
        them from the repository (as another process would see them)."""
        self._versions = None

    def versions(self, limit: int | None = None) -> list[Version]:
        """All versions, newest first; with `limit`, only the newest `limit` (git reads only
        those, numbered from the version-count cache)."""
        if limit is not None and limit <= 0:
            return []
        head = self.head() if self.exists else None
        if head is None:
            return []
        if self._versions is not None and self._versions[0].commit == head:
            return self._versions[:limit] if limit is not None else self._versions
        if limit is not None:
            return self._log(head, 0, limit)
        versions = self._log(head, 0, None)
        self._versions = versions
        return versions

    def latest(self) -> Version | None:
        """The latest version (None: none yet), reading that one commit only."""
        found = self.versions(1)
        return found[0] if found else None

    def back(self, steps: int) -> Version | None:
        """The version `steps` before the latest (0: the latest) in `versions()`'s order, reading
        only the commits up to it; None when there are not that many."""
        head = self.head() if self.exists else None
        if head is None or steps < 0:
            return None
        if self._versions is not None and self._versions[0].commit == head:
            return self._versions[steps] if steps < len(self._versions) else None
        found = self._log(head, steps, 1)
        return found[0] if found else None

    def _log(self, head: str, skip: int, limit: int | None) -> list[Version]:
        """Versions from `head` back in git log's order, skipping `skip`, at most `limit`; each
        numbered from the count of versions up to `head`."""
        fmt = _SEP.join(["%H", "%ct", "%s", "%B"]) + _REC
        args = ["log", f"--format={fmt}"]
        if skip:
            args.append(f"--skip={skip}")
        if limit is not None:
            args.append(f"-n{limit}")
        out = self.git(*args, head).stdout
        records = [r.strip("\n") for r in out.split(_REC) if r.strip("\n")]
        total = len(records) if limit is None and not skip else self._count(head)
        versions = []
        for n, record in enumerate(records):
            commit, ts, subject, body = record.split(_SEP, 3)
            versions.append(_version(total - skip - n, commit, int(ts), subject, body))
        return versions

    def resolve(self, ref: str) -> Version:
        """A version by number (`12`), relative position (`HEAD`, `HEAD~2`, `~2`) or short hash.
        Reads only the commits up to the one named by number or position."""
        total = self.latest_number() if self.exists else 0
        if not total:
            raise NotFound("this agent has no versions yet")
        ref = ref.strip()
        if ref.startswith("#"):
            ref = ref[1:]
        rel = REL.match(ref)
        if rel:
            back = int(rel.group(1) or 0)
            if back >= total:
                raise NotFound(f"'{ref}' goes back further than the {total} versions",
                               "see them with: agentmem history AGENT")
            return self._found(self.back(back))
        if ref.isdigit() and len(ref) < 7:
            number = int(ref)
            if 1 <= number <= total:
                return self._found(self.back(total - number))
            raise NotFound(f"no version {number} (versions are 1 to {total})",
                           "see them with: agentmem history AGENT")
        if re.fullmatch(r"[0-9a-fA-F]{4,40}", ref):
            head = self.head()
            commits = self.git("rev-list", head).stdout.split() if head else []
            matches = [i for i, c in enumerate(commits) if c.startswith(ref.lower())]
            if len(matches) == 1:
                return self._found(self.back(matches[0]))
            if len(matches) > 1:
                raise UsageError(f"'{ref}' matches {len(matches)} versions; give more characters")
        raise NotFound(f"unknown version '{ref}'", "name a version by number (12), position "
                       "(HEAD~1) or hash (3f2a9c1); see: agentmem history AGENT")

    @staticmethod
    def _found(version: Version | None) -> Version:
        if version is None:        # the repository changed under us between two reads
            raise NotFound("that version is gone (the history changed meanwhile); try again")
        return version

    def last_by(self, author: str) -> Version | None:
        """The latest version by `author`: git searches the messages (no whole-history read
        here), then only the commits down to that one are read."""
        head = self.head() if self.exists else None
        if head is None:
            return None
        if self._versions is not None and self._versions[0].commit == head:
            return next((v for v in self._versions if v.author == author), None)
        found = self.git("log", "-n1", "--format=%H", f"--grep=^{AUTHOR_TRAILER}: {author}$",
                         head).stdout.split()
        if not found:
            return None
        number = int(self.git("rev-list", "--count", found[0]).stdout.strip())
        version = self.back(self._count(head) - number)
        if version is not None and version.author == author:
            return version
        # the trailer git matched is not the one that counts (the last): read them all
        return next((v for v in self.versions() if v.author == author), None)

    def has_sleep_cursor(self, event: int, offset: int) -> bool:
        """Whether a committed sleep version recorded this cursor (used after a crash)."""
        if not self.head():
            return False
        proc = self.git("log", "-1", "--format=%H", "--all-match",     # trailer lines only
                        f"--grep=^{CURSOR_TRAILER}: {event} {offset}$",
                        f"--grep=^{AUTHOR_TRAILER}: sleep$", check=False)
        return bool(proc.stdout.strip())

    def parent(self, version: Version) -> Version | None:
        """The version before `version` (None for the first), reading no further back."""
        head = self.head() if self.exists else None
        if head is not None and self._versions is not None and self._versions[0].commit == head:
            versions = self._versions
            index = versions.index(version)
            return self._first_parent(version, versions[index + 1]
                                      if index + 1 < len(versions) else None)
        skip = self.latest_number() - version.number if head else -1
        pair = self._log(head, skip, 2) if head and skip >= 0 else []
        if not pair or pair[0] != version:
            raise ValueError(f"version {version.number} is not in this history")
        return self._first_parent(version, pair[1] if len(pair) > 1 else None)

    def _first_parent(self, version: Version, listed: Version | None) -> Version | None:
        """`listed` (the version listed before `version`) when it is the commit's first parent,
        as in a straight history; after `agentmem sync` merged two lines of versions, the one
        listed before may be on the other line: then the first parent itself."""
        try:
            kind, body = gitstore.Store(self.git_dir).read(version.commit)
            header = body.split(b"\n\n", 1)[0].decode("utf-8", "replace").splitlines()
            first = next((line[7:] for line in header if line.startswith("parent ")), None)
        except gitstore.Unsupported:
            proc = self.git("rev-parse", "-q", "--verify", f"{version.commit}^", check=False)
            first = proc.stdout.strip() or None
        if first is None:
            return None
        if listed is not None and listed.commit == first:
            return listed
        return next((v for v in self.versions() if v.commit == first), None)

    def file_at(self, version: Version | None, name: str) -> str | None:
        """A file's text in a version, as read_text reads the work file; None when absent."""
        if version is None:
            return None
        try:
            data = self.bytes_at(version, name)
        except gitstore.Unsupported:                      # a symbolic link: what git shows
            proc = self.git("show", f"{version.commit}:{name}", check=False)
            return proc.stdout if proc.returncode == 0 else None
        return None if data is None else decode_text(data, "replace")

    def bytes_at(self, version: Version, name: str) -> bytes | None:
        """A plain file's exact bytes in a version; None when the version has no such file.
        Raises Unsupported for an entry that is not a plain file (a symbolic link)."""
        try:
            entry = self._entries(version.commit).get(name)
            if entry is None:
                return None
            mode, sha = entry.mode, entry.sha
        except gitstore.Unsupported:              # packed by git gc, say: ask git
            listed = self.git("ls-tree", version.commit, "--", name).stdout.split()
            if not listed:
                return None
            mode, sha = int(listed[0], 8), listed[2]
        if mode == 0o120000:
            raise gitstore.Unsupported(f"{name} is a symbolic link in version {version.number}")
        try:
            kind, data = gitstore.Store(self.git_dir).read(sha)
            if kind == "blob":
                return data
        except gitstore.Unsupported:
            pass
        proc = self._run_git(("cat-file", "blob", sha), None)
        if proc.returncode != 0:
            raise AgentmemError(f"git cat-file failed: {proc.stderr.decode(errors='replace')}")
        return bytes(proc.stdout)

    def files_at(self, version: Version | None) -> dict[str, str | None]:
        return {name: self.file_at(version, name) for name in TRACKED}

    def changed_files(self, version: Version) -> list[str]:
        parent = self.parent(version)
        if parent is None:
            out = self.git("show", "--name-only", "--format=", version.commit).stdout
        else:
            out = self.git("diff", "--name-only", parent.commit, version.commit).stdout
        return [line for line in out.splitlines() if line in TRACKED]

    def diff(self, old: Version | None, new: Version | None, *, stat: bool = False,
             context: int = 3) -> str:
        """Unified diff (or numstat) between two versions; None for `new` is the work tree."""
        args = ["diff", "--no-color", "--no-renames"]
        args.append("--numstat" if stat else f"-U{context}")
        args.append(old.commit if old else EMPTY_TREE)
        if new is not None:
            args.append(new.commit)
        return self.git(*args, "--", *TRACKED).stdout


def _flagged(version: Version) -> bool:
    """An edit of the agent's own made after untrusted tool output (show lists these)."""
    return version.author == "agent" and after_untrusted(version.message)


def after_untrusted(message: str) -> bool:
    """Whether a version's message says the edit followed untrusted tool output."""
    return any(line.startswith(UNTRUSTED_LINE + ":") for line in message.splitlines())


def _work_mode(path: Path) -> int:
    """The mode git records for a work file: 100644, 100755, 120000 (a link); 100644 if gone."""
    import stat

    try:
        st = os.lstat(path)
    except OSError:
        return gitstore.REGULAR
    if stat.S_ISLNK(st.st_mode):
        return 0o120000
    return gitstore.EXECUTABLE if st.st_mode & stat.S_IXUSR else gitstore.REGULAR


def _version(number: int, commit: str, timestamp: int, subject: str, body: str) -> Version:
    """A Version from a commit's message: the trailers become its author and log position."""
    author, position = "human", None
    lines = []
    for line in body.strip().splitlines():
        if line.startswith(AUTHOR_TRAILER + ":"):
            author = line.split(":", 1)[1].strip()
        elif line.startswith(LOG_TRAILER + ":"):
            value = line.split(":", 1)[1].strip()
            position = int(value) if value.isdigit() else None
        elif not line.startswith(CURSOR_TRAILER + ":"):
            lines.append(line)
    return Version(number=number, commit=commit, time=datetime.fromtimestamp(timestamp, UTC),
                   author=author, subject=subject, message="\n".join(lines).strip(),
                   log_position=position)
