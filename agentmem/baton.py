"""One computing thread at a time, among threads that mostly wait (see sleep.run_many).

Many threads that each wait for a model, and in between parse, check and write, run best when
only one of them computes at a time: threads fighting over the GIL burn more CPU than the work
itself (a sleep pass cost twice its CPU with 25 threads). A thread holds the baton while it
computes and lets go of it while it waits (for the model, for the disk to sync), so the waits
still overlap. Code that waits says so with `waiting()`; it costs nothing without a baton.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


@contextmanager
def holding(lock: threading.Lock, slots: threading.Semaphore | None = None) -> Iterator[None]:
    """Run the block holding `lock`, except inside `waiting()` blocks on this thread; model
    calls inside it also take one of `slots` (at most that many wait on a model at once)."""
    lock.acquire()
    _local.lock, _local.slots = lock, slots
    try:
        yield
    finally:
        _local.lock = _local.slots = None
        lock.release()


@contextmanager
def waiting() -> Iterator[None]:
    """A wait that needs no CPU: let another thread compute meanwhile."""
    lock = getattr(_local, "lock", None)
    if lock is None:
        yield
        return
    _local.lock = None          # a nested wait must not release it twice
    lock.release()
    try:
        yield
    finally:
        lock.acquire()
        _local.lock = lock


@contextmanager
def model_call() -> Iterator[None]:
    """Waiting for a model: in a batch, also hold one of the model slots meanwhile."""
    slots = getattr(_local, "slots", None)
    with waiting():
        if slots is None:
            yield
            return
        with slots:
            yield
