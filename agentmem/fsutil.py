"""Reading and writing agent files safely beside people who edit them.

Writes are atomic (temp file in the same folder, fsync, rename, fsync the folder). Memory files
are also read and replaced with care for a person's editor saving them at the same moment:
`read_settled` never returns a read that raced a save, and `replace_files` never overwrites a
file that changed since the caller read it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentmem.baton import waiting

TMP_SUFFIX = ".agentmem.tmp"


def fsync(fd: int) -> None:
    """os.fsync, letting another thread of a batch compute meanwhile (agentmem.baton)."""
    with waiting():
        os.fsync(fd)


class NotRegular(OSError):
    """read_bytes(regular=True) found a link, a folder or a device, not a plain file."""


class TooLarge(OSError):
    """read_settled(limit=N) found a file of more than N bytes (it was not read)."""


class Unsettled(OSError):
    """read_settled saw the file change under every read it tried: someone is writing it."""


class Changed(Exception):
    """replace_files found a file that no longer holds what the caller based its change on."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} changed meanwhile")
        self.path = path


def read_bytes(path: Path | str, *, regular: bool = False) -> tuple[bytes, os.stat_result]:
    """A whole file and its stat, taken before reading, in raw system calls (open(), with its
    buffer and tty check, makes twice as many on the paths a sleep pass reads again and again).
    regular=True raises NotRegular for anything but a plain file (a link is not followed)."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    if regular:      # no link followed, and a FIFO neither blocks the open nor gets read
        flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if regular and exc.errno in (errno.ELOOP, errno.EMLINK):    # EMLINK: BSDs
            raise NotRegular(errno.ELOOP, "a symbolic link", str(path)) from None
        raise
    try:
        st = os.fstat(fd)
        if regular and not stat.S_ISREG(st.st_mode):
            raise NotRegular(errno.EINVAL, "not a regular file", str(path))
        chunks = [os.read(fd, st.st_size + 1)]
        while chunks[-1]:                     # to the end: a read may return less than asked
            chunks.append(os.read(fd, 1 << 16))
        return b"".join(chunks), st
    finally:
        os.close(fd)


def read_text(path: Path | str) -> str:
    """A UTF-8 file as Path.read_text reads it (universal newlines)."""
    return decode_text(read_bytes(path)[0])


def decode_text(data: bytes, errors: str = "strict") -> str:
    """UTF-8 bytes as text with universal newlines, as Path.read_text decodes a file."""
    text = data.decode("utf-8", errors)
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (it may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file."""
    import tempfile

    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with waiting():     # write, sync, rename, sync the folder: one wait, others compute
            try:
                write_all(fd, raw)
                os.chmod(tmp, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


DISPLACED = "displaced"   # the name of an old file replace_files keeps (see reclaim_saves)
SETTLE_NS = 50_000_000    # a save that truncated a file writes it within this time (50 ms)
SETTLE_WAIT = 2.0         # seconds read_settled waits for a file that keeps changing
_IDENTITY = ("st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return tuple(getattr(st, name) for name in _IDENTITY)


def read_settled(path: Path | str, *, limit: int | None = None,
                 shrunk: Callable[[int], bool] | None = None) -> tuple[bytes, os.stat_result]:
    """A file a person may be saving at this very moment, read only once it holds still.

    A read counts only if the file's identity (inode, size, times) is the same after the read
    as before it, so a save landing mid-read is read again. `shrunk(size)` says whether a
    size is smaller than the file's last known content: an editor that saves in place first
    truncates the file, then writes it, so a file that shrank less than SETTLE_NS ago is read
    again once it has been still that long. Links are followed; anything but a regular file
    at the end raises NotRegular (a FIFO is neither opened for blocking nor read), a file over
    `limit` bytes raises TooLarge, and one that never holds still for SETTLE_WAIT raises
    Unsettled."""
    deadline = time.monotonic() + SETTLE_WAIT
    while True:
        data, st = _read_regular(path, limit)
        try:
            still = _identity(os.stat(path)) == _identity(st)
        except FileNotFoundError:
            still = False
        if still:
            age = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns)
            if age >= SETTLE_NS or shrunk is None or not shrunk(len(data)):
                return data, st
            pause = (SETTLE_NS - age) / 1e9
        else:
            pause = 0.001
        if time.monotonic() + pause > deadline:
            raise Unsettled(errno.EBUSY, "it kept changing while being read", str(path))
        time.sleep(pause)


def _read_regular(path: Path | str, limit: int | None) -> tuple[bytes, os.stat_result]:
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegular(errno.ELOOP, "a loop of symbolic links", str(path)) from None
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise NotRegular(errno.EISDIR, "a folder, not a file", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(errno.EINVAL, "not a regular file", str(path))
        if limit is not None and st.st_size > limit:
            raise TooLarge(errno.EFBIG, f"{st.st_size} bytes, over the {limit}-byte cap", str(path))
        chunks = [os.read(fd, st.st_size + 1)]
        while chunks[-1]:
            chunks.append(os.read(fd, 1 << 16))
            if limit is not None and sum(map(len, chunks)) > limit:
                raise TooLarge(errno.EFBIG, f"over the {limit}-byte cap", str(path))
        return b"".join(chunks), st
    finally:
        os.close(fd)


def replace_files(items: list[tuple[Path, bytes | None, bytes | None]],
                  keep: Path | None = None) -> None:
    """Write several files of one folder as one change: each (path, new bytes or None to delete,
    the bytes the caller read, or None for a file that did not exist) is written only if the
    file still holds what the caller read. Raises Changed, having written nothing, when one
    does not (a person saved it since): the caller reads it again and recomputes its change.

    Where the system can swap two names in one step (Linux renameat2 RENAME_EXCHANGE), each
    new file is swapped with the old one, and the old one, now under the temp name, is compared
    afterwards: a save that lands at any moment is either seen (and swapped back into place)
    or lands after ours, on top of it, where it is the newest save. Elsewhere the check comes
    just before the rename, which leaves a window of a few microseconds. A new file is linked
    into place (that fails if one appeared meanwhile). Deletions come last, each checked just
    before the unlink.

    An editor that opened a file before the swap may still write into the old one: with
    `keep` (a folder), old files are moved there instead of deleted, named
    displaced~NAME~INODE~SIZE~MTIME, so that `reclaim_saves` can bring such a late save back."""
    temps: list[_Temp] = []
    done: list[_Temp] = []     # in place; for a swapped one, its temp name holds the old file
    try:
        temps += _write_temps(items)
        for temp in temps:
            _swap_in(temp, done)
        for path, data, expected in items:
            if data is None and _content(path) != expected:
                raise Changed(path)
        for path, tmp, _data, expected, swapped in done:   # the old files, checked once more
            if swapped and _content(tmp) != expected:
                raise Changed(path)
    except BaseException:
        _undo(done)
        for temp in temps:
            _unlink(temp[1])
        raise
    for path, tmp, _data, _expected, swapped in done:
        if swapped and keep is not None:
            try:
                st = os.stat(tmp)
                os.rename(tmp, keep / f"{DISPLACED}~{path.name}~{st.st_ino}~{st.st_size}~"
                          f"{st.st_mtime_ns}")
            except OSError:
                pass
    for temp in temps:
        _unlink(temp[1])
    for path, data, _expected in items:
        if data is None:
            _unlink(str(path))
    for folder in sorted({str(path.parent) for path, _, _ in items}):
        fsync_dir(folder)


# a file replace_files writes: (path, temp name, new bytes, the bytes expected there, swapped)
_Temp = tuple[Path, str, bytes, bytes | None, bool]


def _write_temps(items: list[tuple[Path, bytes | None, bytes | None]]) -> list[_Temp]:
    """Each new content in a temp file beside its path, synced, with the old file's mode."""
    import tempfile

    temps: list[_Temp] = []
    try:
        with waiting():     # write and sync every temp file in one wait
            for path, data, expected in items:
                if data is None:
                    continue
                try:
                    mode = os.stat(path).st_mode & 0o7777
                except FileNotFoundError:
                    mode = 0o644
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                           suffix=TMP_SUFFIX)
                temps.append((path, tmp, data, expected, False))
                try:
                    write_all(fd, data)
                    os.chmod(tmp, mode)
                    os.fsync(fd)
                finally:
                    os.close(fd)
    except BaseException:
        for temp in temps:
            _unlink(temp[1])
        raise
    return temps


def _swap_in(temp: _Temp, done: list[_Temp]) -> None:
    """Put one temp file in place (added to `done`) if its path still holds what was expected;
    Changed if not. A swapped one is marked so: the old file now lies under the temp name."""
    path, tmp, data, expected, _ = temp
    if expected is None:
        try:
            os.link(tmp, path)          # only if no file appeared meanwhile
        except FileExistsError:
            raise Changed(path) from None
        done.append(temp)
    elif _exchange(tmp, path):
        done.append((path, tmp, data, expected, True))
        if _content(tmp) != expected:
            raise Changed(path)
    else:
        if _content(path) != expected:
            raise Changed(path)
        os.replace(tmp, path)
        done.append(temp)


def reclaim_saves(keep: Path, folder: Path, max_age: float = 5.0,
                  entries: list[os.DirEntry[str]] | None = None) -> list[str]:
    """Bring back saves an editor wrote into an old file that replace_files had already
    swapped out (kept in `keep`): when one changed since it was moved there, and is newer
    than the file now in its place, it is swapped back in (what it replaces was recorded
    already). Files left unchanged for `max_age` seconds go. Returns the names brought back.
    `entries`: `keep` as the caller listed it just now (no second listing)."""
    try:
        listed = os.scandir(keep) if entries is None else entries
        kept = sorted((e for e in listed if e.name.startswith(DISPLACED + "~")),
                      key=lambda e: e.name)
    except FileNotFoundError:
        return []
    back: list[str] = []
    for entry in kept:
        name, _, rest = entry.name[len(DISPLACED) + 1:].partition("~")
        try:
            ino, size, mtime = (int(x) for x in rest.split("~"))
            st = entry.stat(follow_symlinks=False)
        except (ValueError, OSError):
            _unlink(entry.path)
            continue
        if (st.st_ino, st.st_size, st.st_mtime_ns) == (ino, size, mtime):
            if time.time_ns() - st.st_ctime_ns > max_age * 1e9:
                _unlink(entry.path)
            continue
        target = folder / name
        try:
            data = read_settled(entry.path)[0]
            now = os.stat(target)
        except OSError:
            continue
        if now.st_mtime_ns >= st.st_mtime_ns:      # saved again since, at its place: theirs
            _unlink(entry.path)
            continue
        current = _content(target)
        if _exchange(entry.path, target):
            if _content(entry.path) != current:     # another save landed meanwhile: it stays
                _exchange(entry.path, target)
                continue
        else:
            if _content(target) != current:
                continue
            atomic_write(target, data)
        _unlink(entry.path)
        back.append(name)
    return back


def _undo(done: list[_Temp]) -> None:
    """Put the old files back after a refused replace_files, last first. A file that no
    longer holds what we wrote was saved again by a person after us: theirs stays."""
    for path, tmp, ours, expected, swapped in reversed(done):
        if swapped:                       # swap back, unless a save landed on ours
            if _exchange(tmp, path) and _content(tmp) != ours:
                _exchange(tmp, path)
        elif _content(path) == ours:      # linked or renamed into place
            if expected is None:
                _unlink(str(path))
            else:
                atomic_write(path, expected)


def _content(path: Path | str) -> bytes | None:
    try:
        return read_bytes(path)[0]
    except FileNotFoundError:
        return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


_renameat2: Callable[..., int] | None | bool = False     # False: not looked up yet


def _exchange(a: Path | str, b: Path | str) -> bool:
    """Swap two names in one step; False where the system or file system cannot."""
    global _renameat2
    if _renameat2 is False:
        _renameat2 = _find_renameat2()
    if not callable(_renameat2):
        return False
    import ctypes

    if _renameat2(-100, os.fsencode(a), -100, os.fsencode(b), 2) == 0:   # AT_FDCWD, EXCHANGE
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        _renameat2 = None         # this file system cannot: the check-then-rename way from now
        return False
    raise OSError(err, os.strerror(err), str(b))


def _find_renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except OSError:  # pragma: no cover
        return None


def atomic_delete(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def fsync_dir(folder: Path | str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def file_digest(path: Path) -> str | None:
    """sha256 of a file's bytes (as intent.json records them); None when it does not exist."""
    import hashlib

    try:
        return hashlib.sha256(read_bytes(path)[0]).hexdigest()
    except FileNotFoundError:
        return None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file; {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(read_text(path))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
