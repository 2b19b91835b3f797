"""Atomic file writes: temp file in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from agentmem.baton import waiting

TMP_SUFFIX = ".agentmem.tmp"


def fsync(fd: int) -> None:
    """os.fsync, letting another thread of a batch compute meanwhile (agentmem.baton)."""
    with waiting():
        os.fsync(fd)


class NotRegular(OSError):
    """read_bytes(regular=True) found a link, a folder or a device, not a plain file."""


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
