"""Nothing a person saves is lost, and no crash leaves the agent stuck: attacks on the write path.

Two kinds of trial, each over hundreds of rounds:
- a person's editor saving lessons.md (in place, or to a temp file renamed over it) while the
  agent writes it, through a memory edit or a sleep pass: every save must survive;
- a writer killed (SIGKILL, in a forked child) at every step of a write, then at random moments
  of a write loop: the next write must work, no lock or temp file may stay behind, and every
  write the killed process had finished must still be there.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agentmem import fsutil
from agentmem.agent import Agent
from agentmem.errors import Conflict
from agentmem.models import ModelSpec

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")

SPEC = ModelSpec("scripted/sleep", None, "test")


def save_in_place(path: Path, text: str) -> None:
    """As an editor that rewrites the file itself: truncate, a moment, then the new bytes."""
    with open(path, "r+b") as fh:
        fh.truncate(0)
        fh.flush()
        time.sleep(random.uniform(0, 0.002))
        fh.write(text.encode())


def save_by_rename(path: Path, text: str) -> None:
    """As an editor that writes a new file beside it and renames it over the old one."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def add(title: str):
    return lambda texts: {"lessons.md": (texts["lessons.md"] or "") + f"\n## {title}\nbody\n"}


@pytest.fixture
def fast_switching():
    """Threads hand over the interpreter every 50 µs, so their steps interleave finely."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(5e-5)
    yield
    sys.setswitchinterval(old)


def test_saves_racing_agent_and_sleep_writes_are_never_lost(blank: Agent, model, fast_switching):
    path = blank.folder / "lessons.md"
    rng = random.Random(19)
    lost, slept, rounds = [], 0, 210
    for i in range(rounds):
        buffer = path.read_text() + f"\n## Person {i}\nsaved by a person\n"   # the editor's
        save = save_in_place if i % 2 else save_by_rename
        sleeping = i % 3 == 0
        delay = rng.uniform(0, 0.1 if sleeping else 0.004)    # a pass asks the model first
        person = threading.Thread(target=lambda b=buffer, s=save, d=delay: (time.sleep(d),
                                                                           s(path, b)))
        if sleeping:
            event = blank.journal.append({"kind": "user", "content": f"note {i}"})[0]["id"]
            model.push(json.dumps({"summary": f"pass {i}", "operations": [
                {"op": "add", "title": f"Sleep {i}", "body": "learned while asleep",
                 "rationale": "seen", "evidence": [event]}]}))
        person.start()
        try:
            if sleeping:      # refused when the person saved after the model was asked
                from agentmem import sleep as core

                result = core.run_pass(blank, SPEC)
                slept += result.ok
                assert result.ok or "changed" in result.message, result.message
            else:             # computed again on top of the save: never refused
                version = blank.update(add(f"Agent {i}"), "agent", f"Agent {i}")
                assert version is not None
                assert f"## Agent {i}" in (blank.history.file_at(version, "lessons.md") or "")
        finally:
            person.join()
        blank.record_hand_edits()
        if f"## Person {i}\n" not in path.read_text():
            lost.append(i)
    assert lost == [], f"{len(lost)} of {rounds} saves lost: rounds {lost[:10]}"
    assert blank.history.dirty() == []
    assert slept >= 3      # some passes got through; the rest were refused, not applied
    fsck = blank.history.git("fsck", "--no-dangling")
    assert fsck.returncode == 0


def test_an_empty_read_right_after_a_truncate_is_read_again(blank: Agent):
    """An editor saving in place empties the file first: that moment is never read as memory."""
    path = blank.folder / "lessons.md"
    text = path.read_text() + "\n## Kept\nstill here\n"
    fh = open(path, "r+b")
    fh.truncate(0)
    fh.flush()
    writer = threading.Timer(0.02, lambda: (fh.write(text.encode()), fh.close()))
    writer.start()
    version = blank.update(add("Agent"), "agent", "Agent edit")
    writer.join()
    assert version is not None
    final = path.read_text()
    assert "## Kept" in final and "## Agent" in final
    assert [v.author for v in blank.history.versions()[:2]] == ["agent", "human"]
    assert "## Kept" in (blank.history.file_at(blank.history.versions()[1], "lessons.md") or "")


def test_a_save_between_read_and_rename_is_kept_and_the_change_computed_again(blank: Agent,
                                                                            monkeypatch):
    path = blank.folder / "lessons.md"
    real = fsutil._exchange
    saved: list[str] = []

    def save_first(tmp, target):        # a person's save lands just before the swap
        if not saved:
            saved.append("yes")
            save_by_rename(path, path.read_text() + "\n## Person\nsaved\n")
        return real(tmp, target)

    monkeypatch.setattr(fsutil, "_exchange", save_first)
    version = blank.update(add("Agent"), "agent", "Agent edit")
    assert version is not None
    final = path.read_text()
    assert "## Person" in final and "## Agent" in final
    assert [v.author for v in blank.history.versions()[:2]] == ["agent", "human"]


def test_without_an_exchange_the_check_before_the_rename_still_keeps_the_save(blank: Agent,
                                                                            monkeypatch):
    path = blank.folder / "lessons.md"
    monkeypatch.setattr(fsutil, "_exchange", lambda a, b: False)
    real = fsutil._content
    saved: list[str] = []

    def save_first(p):
        if Path(p) == path and not saved:
            saved.append("yes")
            save_by_rename(path, path.read_text() + "\n## Person\nsaved\n")
        return real(p)

    monkeypatch.setattr(fsutil, "_content", save_first)
    blank.update(add("Agent"), "agent", "Agent edit")
    assert saved == ["yes"]                  # the save did land during the write
    final = path.read_text()
    assert "## Person" in final and "## Agent" in final
    assert [v.author for v in blank.history.versions()[:2]] == ["agent", "human"]


def test_fixed_changes_are_refused_not_written_over_a_new_save(blank: Agent, monkeypatch):
    path = blank.folder / "lessons.md"
    real = fsutil._exchange

    def always_save(tmp, target):       # before each try's swap (not when it is undone)
        if "## Agent" not in path.read_text():
            save_by_rename(path, path.read_text() + f"\n## Person {time.monotonic_ns()}\nsaved\n")
        return real(tmp, target)

    monkeypatch.setattr(fsutil, "_exchange", always_save)
    before = path.read_text()
    with pytest.raises(Conflict, match="nothing was written"):
        blank.write({"lessons.md": before + "\n## Agent\nbody\n"}, "agent", "fixed")
    assert "## Agent" not in path.read_text()
    assert path.read_text().count("## Person") == 1   # one save, then the refusal


# -- kills ------------------------------------------------------------------------------------
def _write_loop(folder: Path, acks: Path, tag: str, kill_at: int | None) -> None:
    """The child: write lessons one after the other, noting each finished write in `acks`.
    With kill_at, SIGKILL itself at that system call (a builtin of the os module)."""
    if kill_at is not None:
        calls = [0]

        def profile(frame, event, arg):
            if event == "c_call" and getattr(arg, "__module__", None) == "posix":
                calls[0] += 1
                if calls[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

    agent = Agent(folder)
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    n = 0
    while True:
        title = f"{tag} W{n}"
        if kill_at is not None:
            sys.setprofile(profile)
        agent.update(add(title), "agent", title)
        sys.setprofile(None)
        os.write(fd, f"{title}\n".encode())
        n += 1
        if kill_at is not None:
            os._exit(0)          # the write got through: this kill point lies past it


def _run_and_kill(folder: Path, acks: Path, tag: str, *, kill_at: int | None = None,
                  after: float = 0.0) -> int:
    pid = os.fork()
    if pid == 0:      # pragma: no cover - the child
        try:
            _write_loop(folder, acks, tag, kill_at)
        finally:
            os._exit(1)
    if kill_at is None:
        time.sleep(after)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return status


def _check_unstuck(folder: Path, tag: str) -> None:
    """The next writer works, and leaves no lock or temp file behind."""
    agent = Agent.open(folder)
    version = agent.update(add(f"{tag} after"), "agent", f"{tag} after")
    assert version is not None
    git_dir = folder / ".agentmem" / "git"
    assert sorted(git_dir.rglob("*.lock")) == []
    assert not (git_dir / "agentmem-versions").read_text().rstrip().endswith("writing")
    assert sorted(git_dir.glob("objects/??/tmp_obj_*")) == []
    assert [p.name for p in folder.iterdir() if p.name.endswith(fsutil.TMP_SUFFIX)] == []
    assert agent.history.dirty() == []


def _acked(acks: Path) -> list[str]:
    return [line for line in acks.read_text().split("\n") if line] if acks.exists() else []


def test_a_kill_at_every_step_of_a_write_leaves_a_working_agent(blank: Agent, tmp_path: Path):
    """SIGKILL at the 1st, 2nd, ... system call of one write, until a write gets through."""
    acks = tmp_path / "acks"
    points = 0
    for kill_at in range(1, 400):
        status = _run_and_kill(blank.folder, acks, f"P{kill_at}", kill_at=kill_at)
        _check_unstuck(blank.folder, f"P{kill_at}")
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            break
        assert os.WIFSIGNALED(status), status
        points += 1
    else:
        pytest.fail("no write got through 400 system calls")
    assert points >= 20               # the write really was cut at each of its steps
    final = (blank.folder / "lessons.md").read_text()
    assert all(f"## {title}\n" in final for title in _acked(acks))
    assert blank.history.git("fsck", "--no-dangling").returncode == 0


def test_random_kills_of_a_write_loop_lose_no_finished_write(blank: Agent, tmp_path: Path):
    acks = tmp_path / "acks"
    rng = random.Random(7)
    times = []
    for n in range(3):        # a forked child's first write, as the trial's children make it
        started = time.monotonic()
        status = _run_and_kill(blank.folder, tmp_path / "timing", f"T{n}", kill_at=10**9)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        times.append(time.monotonic() - started)
    one_write = max(times)    # fsync, the fork of a large test process and load: 5 to 100 ms
    for r in range(200):
        _run_and_kill(blank.folder, acks, f"R{r}", after=rng.uniform(0.0, 2.5 * one_write))
        _check_unstuck(blank.folder, f"R{r}")
    final = (blank.folder / "lessons.md").read_text()
    finished = _acked(acks)
    assert len(finished) >= 20        # the kills landed among real writes
    missing = [t for t in finished if f"## {t}\n" not in final]
    assert missing == []
    assert blank.history.git("fsck", "--no-dangling").returncode == 0


def test_a_stale_ref_lock_from_a_dead_write_is_cleared(blank: Agent):
    git_dir = blank.folder / ".agentmem" / "git"
    (git_dir / "refs" / "heads" / "main.lock").write_text("0" * 40 + "\n")
    count = git_dir / "agentmem-versions"                  # the dead writer's marker
    count.write_text(count.read_text().rstrip() + " writing\n")
    (git_dir / "objects" / "ab").mkdir(exist_ok=True)
    (git_dir / "objects" / "ab" / "tmp_obj_1_2_0").write_bytes(b"half")
    (blank.folder / ".lessons.md.x1y2.agentmem.tmp").write_text("half")
    _check_unstuck(blank.folder, "T")


def test_a_foreign_git_lock_is_one_clear_line(cli, blank: Agent):
    """A lock with no dead agentmem write behind it belongs to a git command: it stays, and
    the error says what holds the history and what to do."""
    git_dir = blank.folder / ".agentmem" / "git"
    (git_dir / "refs" / "heads" / "main.lock").write_text("0" * 40 + "\n")
    path = blank.folder / "lessons.md"
    path.write_text(path.read_text() + "\n## One\n1\n")
    result = cli("revert", blank.folder, "HEAD")      # records the hand edit first
    assert result.exit_code == 1
    assert result.stderr.count("\n") <= 2, result.stderr
    assert "main.lock" in result.stderr and "remove that file" in result.stderr
    assert (git_dir / "refs" / "heads" / "main.lock").exists()


# -- files that are not what they should be ---------------------------------------------------
@pytest.mark.parametrize("make", ["folder", "loop", "fifo", "huge"])
def test_a_memory_file_that_is_not_a_plain_file_is_one_line(cli, blank: Agent, make: str):
    path = blank.folder / "lessons.md"
    path.unlink()
    if make == "folder":
        path.mkdir()
    elif make == "loop":
        path.symlink_to(blank.folder / "other.md")
        (blank.folder / "other.md").symlink_to(path)
    elif make == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as fh:
            fh.write(b"## Big\n" + b"x" * (50 << 20))
    started = time.monotonic()
    for command in (["show", blank.folder], ["chat", blank.folder, "-m", "hi"],
                    ["sleep", blank.folder, "--dry-run"]):
        result = cli(*command)
        assert result.exit_code != 0, (command, result.stdout)
        assert "Traceback" not in result.stderr
        assert "lessons.md" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert time.monotonic() - started < 30


@pytest.mark.skipif(os.geteuid() != 0 or not sys.platform.startswith("linux"),
                    reason="runs a command as another user")
def test_an_unreadable_file_is_one_line_for_a_normal_user(blank: Agent, tmp_path: Path):
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    os.chmod(blank.folder / "lessons.md", 0)
    for path in [tmp_path, *tmp_path.parents]:
        os.chmod(path, os.stat(path).st_mode | 0o005)
    home = tmp_path / "nobody-home"
    home.mkdir()
    os.chmod(home, 0o777)
    env = {**os.environ, "HOME": str(home), "AGENTMEM_HOME": str(home)}
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    if subprocess.run([*nobody, "-c", "import agentmem.cli"], capture_output=True, env=env,
                      timeout=60).returncode != 0:
        pytest.skip("this checkout is not readable by an unprivileged user")
    proc = subprocess.run([*nobody, "-m", "agentmem", "show", str(blank.folder)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "permission denied" in proc.stderr.lower(), proc.stderr


@pytest.mark.parametrize("damage", ["ref", "object"])
def test_a_damaged_history_is_one_line_naming_fsck(cli, blank: Agent, damage: str):
    git_dir = blank.folder / ".agentmem" / "git"
    if damage == "ref":
        (git_dir / "refs" / "heads" / "main").write_text("f" * 40 + "\n")
    else:
        for obj in git_dir.glob("objects/??/*"):
            os.chmod(obj, 0o644)
            obj.write_bytes(b"not zlib")
    for command in (["history", blank.folder], ["diff", blank.folder]):
        result = cli(*command)
        assert result.exit_code == 1, (command, result.stdout)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr
        assert "fsck" in result.stderr


def test_a_permission_error_on_a_memory_file_is_one_line(cli, blank: Agent, monkeypatch):
    """The same refusal, for any user: the system says no to opening lessons.md."""
    from agentmem import fsutil

    real = fsutil.os.open

    def refuse(path, flags, *args):
        if str(path).endswith("lessons.md"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, flags, *args)

    monkeypatch.setattr(fsutil.os, "open", refuse)
    result = cli("show", blank.folder)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "permission denied" in result.stderr and "lessons.md" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr


def test_a_late_save_into_a_replaced_file_is_brought_back_by_the_next_write(blank: Agent):
    """An editor that saves into the old file a write swapped out: the save is brought back
    and recorded as the person's before the next write computes its change."""
    blank.update(add("Agent"), "agent", "Agent edit")
    kept = [p for p in blank.state_dir.iterdir() if p.name.startswith(fsutil.DISPLACED + "~")]
    assert len(kept) == 1
    time.sleep(0.01)
    save_in_place(kept[0], "# Lessons\n\n## Late\nsaved into the old file\n")
    blank.update(add("Next"), "agent", "Next edit")
    text = (blank.folder / "lessons.md").read_text()
    assert "## Late" in text and "## Next" in text and "## Agent" not in text
    assert [v.author for v in blank.history.versions()[:2]] == ["agent", "human"]


def test_a_write_lists_the_state_folder_once_before_and_once_after(blank: Agent, monkeypatch):
    listed: list[str] = []
    real = os.scandir

    def scandir(path="."):
        listed.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    blank.update(add("Agent"), "agent", "Agent edit")
    assert listed.count(os.fspath(blank.state_dir)) == 2
