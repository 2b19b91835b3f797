"""Locks between processes: an OS lock (flock) on a lock file, re-entrant within one object.

It is only what agentmem needs: an exclusive lock that the OS drops when the process dies, a
timeout, and re-entry by the thread that holds it. A general-purpose lock package (filelock)
costs ~200 µs of CPU per acquire (it resolves the path, tracks forks, keeps a registry); a sleep
pass takes its locks several times, so a batch of a thousand passes would spend a second of CPU
there. Lock files are never deleted (deleting one while another process waits on it would let two
processes in at once).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_POLL_MAX = 0.05      # seconds between tries while another process holds the lock
_all: weakref.WeakSet[FileLock] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for lock in list(_all):
        lock._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class LockTimeout(Exception):
    """The lock was still held by someone else when the timeout ran out."""

    def __init__(self, path: str) -> None:
        super().__init__(f"could not take the lock {path}")
        self.path = path


class FileLock:
    """`with FileLock(path, timeout=30):` ... A timeout of 0 tries once; a negative one waits
    for ever. The thread holding the lock may take it again (released at the last release);
    other threads and other processes wait."""

    def __init__(self, path: str | Path, timeout: float = -1) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._guard = threading.RLock()     # one thread at a time in this process
        self._count = 0
        self._fd = -1
        self._owner: int | None = None      # the thread holding it
        _all.add(self)

    @property
    def is_locked(self) -> bool:
        return self._count > 0

    def acquire(self, timeout: float | None = None) -> FileLock:
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout < 0 else time.monotonic() + timeout
        if not (self._guard.acquire(blocking=False) or
                (timeout != 0 and self._guard.acquire(timeout=-1 if timeout < 0 else timeout))):
            raise LockTimeout(self.path)
        try:
            if self._count == 0:
                self._fd = _lock(self.path, deadline)
                self._owner = threading.get_ident()
            self._count += 1
        except BaseException:
            self._guard.release()
            raise
        return self

    def release(self) -> None:
        if self._count <= 0 or self._owner != threading.get_ident():
            raise RuntimeError(f"{self.path} is not locked by this thread")
        try:
            self._count -= 1
            if self._count == 0:
                fd, self._fd, self._owner = self._fd, -1, None
                try:
                    _unlock(fd)
                finally:
                    os.close(fd)
        finally:
            self._guard.release()

    def _forget(self) -> None:
        """In a forked child: the parent's hold is not the child's (closing the child's copy
        of the descriptor leaves the parent's lock alone; flock goes with the last copy)."""
        self._guard = threading.RLock()
        if self._fd >= 0:
            os.close(self._fd)
        self._count, self._fd, self._owner = 0, -1, None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()


def _lock(path: str, deadline: float | None) -> int:
    """Open `path` (created if needed) and lock it, polling until `deadline`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    pause = 0.001
    try:
        while not _try_lock(fd):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise LockTimeout(path)
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, _POLL_MAX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _try_lock(fd: int) -> bool:
    """Take the lock if it is free; False when another open file holds it."""
    if fcntl is None:  # pragma: no cover - Windows: lock the first byte
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:  # pragma: no cover - Windows
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


class AgentLock:
    """A lock one agent's sessions or passes take, tried once: busy raises Locked, whose
    message says who holds it. `with agent.sleep_lock():`, or acquire() and release() for a
    lock held across calls (a chat session, from open to close)."""

    def __init__(self, path: Path, busy: str, hint: str) -> None:
        self._lock = FileLock(path, timeout=0)
        self.busy, self.hint = busy, hint

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(self) -> AgentLock:
        from agentmem.errors import Locked

        try:
            self._lock.acquire()
        except LockTimeout:
            raise Locked(self.busy, self.hint) from None
        return self

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> AgentLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()
