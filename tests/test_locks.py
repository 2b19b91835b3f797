"""agentmem.locks: the file lock every writer of an agent folder takes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agentmem.locks import FileLock, LockTimeout

HOLD = """
import sys, time
from agentmem.locks import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
if len(sys.argv) > 3:                  # let go, and live on
    lock.release()
    print("released", flush=True)
    time.sleep(30)
"""


def test_the_holding_thread_may_take_it_again(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "a.lock", timeout=0)
    with lock:
        with lock:
            assert lock.is_locked
        assert lock.is_locked          # released only at the last release
    assert not lock.is_locked
    with pytest.raises(RuntimeError):
        lock.release()


def test_a_second_lock_on_the_same_file_waits_then_times_out(tmp_path: Path) -> None:
    first, second = FileLock(tmp_path / "a.lock"), FileLock(tmp_path / "a.lock", timeout=0)
    with first:
        with pytest.raises(LockTimeout):
            second.acquire()
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            second.acquire(timeout=0.2)
        assert time.monotonic() - started >= 0.2
    with second:                        # free again
        assert second.is_locked


def test_another_thread_waits_for_the_holder(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "a.lock", timeout=5)
    order: list[str] = []
    lock.acquire()

    def other() -> None:
        with lock:
            order.append("other")

    thread = threading.Thread(target=other)
    thread.start()
    time.sleep(0.1)
    order.append("holder")
    lock.release()
    thread.join(5)
    assert order == ["holder", "other"]
    errors: list[BaseException] = []

    def try_once() -> None:
        try:
            lock.acquire(timeout=0)
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    with lock:                           # re-entry is for the holding thread only
        thread = threading.Thread(target=try_once)
        thread.start()
        thread.join(5)
    assert len(errors) == 1 and isinstance(errors[0], LockTimeout)


def test_another_process_is_kept_out_until_the_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "a.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), "30"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        lock = FileLock(path, timeout=0.2)
        with pytest.raises(LockTimeout):
            lock.acquire()
        proc.kill()                      # the OS drops a dead process's lock
        proc.wait(10)
        lock.acquire(timeout=5)
        lock.release()
    finally:
        proc.kill()
        proc.wait(10)
    assert path.exists()                 # lock files stay (deleting one races with waiters)


def test_a_waiting_process_gets_it_when_the_holder_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "a.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), "0.5", "release"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        started = time.monotonic()
        with FileLock(path, timeout=10):
            waited = time.monotonic() - started
            assert proc.poll() is None           # released by a live holder, not by its death
        assert 0.1 < waited < 10
        assert proc.stdout.readline().strip() == "released"
    finally:
        proc.kill()
        proc.wait(10)


def test_a_release_from_another_thread_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "a.lock", timeout=0)
    errors: list[BaseException] = []

    def release() -> None:
        try:
            lock.release()
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    with lock:
        thread = threading.Thread(target=release)
        thread.start()
        thread.join(5)
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
        assert lock.is_locked
        with pytest.raises(LockTimeout):             # the file is still locked
            FileLock(tmp_path / "a.lock", timeout=0).acquire()
    with FileLock(tmp_path / "a.lock", timeout=0):   # and free once the holder lets go
        pass


def test_a_forked_child_does_not_inherit_the_hold(tmp_path: Path) -> None:
    import os

    lock = FileLock(tmp_path / "a.lock", timeout=0)
    with lock:
        pid = os.fork()
        if pid == 0:                                  # the child: not holding, cannot take it
            code = 0
            try:
                if lock.is_locked:
                    code = 1
                try:
                    lock.acquire()
                    code = 2
                except LockTimeout:
                    pass
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with pytest.raises(LockTimeout):              # the child's exit kept our lock
            FileLock(tmp_path / "a.lock", timeout=0).acquire()
