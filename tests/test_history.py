from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentmem.agent import Agent
from agentmem.errors import Conflict, InvalidAgent
from agentmem.history import History
from tests.conftest import snapshot


def add_lesson(agent: Agent, title: str, body: str) -> None:
    path = agent.folder / "lessons.md"
    path.write_text(path.read_text() + f"\n## {title}\n{body}\n")


def test_new_starts_history_without_a_nested_git_repository(tmp_path: Path):
    outer = tmp_path / "project"
    outer.mkdir()
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    agent = Agent.create(str(outer / "agents" / "helper"))
    assert not (agent.folder / ".git").exists()
    assert [v.author for v in agent.history.versions()] == ["new"]
    # the outer repository sees the memory files and not agentmem's state
    status = subprocess.run(["git", "-C", str(outer), "status", "--porcelain", "-uall"],
                            capture_output=True, text=True, check=True).stdout
    assert "agents/helper/persona.md" in status
    assert ".agentmem" not in status
    # anyone can read the history with plain git
    log = subprocess.run(["git", f"--git-dir={agent.folder / '.agentmem' / 'git'}", "log",
                          "--format=%s"], capture_output=True, text=True, check=True).stdout
    assert log.strip() == "Create agent"


def test_hand_edits_are_recorded_as_a_human_version_before_any_write(blank: Agent):
    add_lesson(blank, "Prefer ruff", "Use ruff.")
    persona = (blank.folder / "persona.md").read_text()
    version = blank.write({"persona.md": persona + "\nBe brief.\n"}, "agent", "Note brevity")
    authors = [(v.author, v.subject) for v in blank.history.versions()]
    assert authors[:2] == [("agent", "Note brevity"), ("human", "Hand edit of lessons.md")]
    assert version is not None and version.number == 3
    assert "Prefer ruff" in (blank.folder / "lessons.md").read_text()


def test_invalid_write_changes_nothing(blank: Agent):
    before = snapshot(blank)
    with pytest.raises(InvalidAgent) as err:
        blank.write({"tools.yaml": "tools: [\n"}, "agent", "break it")
    assert str(err.value) == ("tools.yaml:2: invalid YAML: a flow node is never closed (the file "
                              "ends first)")
    assert snapshot(blank) == before


def test_revert_old_version_keeps_newer_ones(blank: Agent):
    add_lesson(blank, "First", "one")
    v_first = blank.record_hand_edits()
    persona = blank.folder / "persona.md"
    persona.write_text(persona.read_text() + "\nSecond change.\n")
    blank.record_hand_edits()
    add_lesson(blank, "Third", "three")
    blank.record_hand_edits()
    assert v_first is not None
    result = blank.revert(str(v_first.number))
    lessons_text = (blank.folder / "lessons.md").read_text()
    assert "## First" not in lessons_text and "## Third" in lessons_text
    assert "Second change." in persona.read_text()
    assert result.author == "revert" and result.subject.startswith(f"Revert version {v_first.number}")


def test_conflicting_revert_changes_nothing(blank: Agent):
    path = blank.folder / "lessons.md"
    path.write_text(path.read_text() + "\n## Tabs\nUse tabs.\n")
    v = blank.record_hand_edits()
    path.write_text(path.read_text().replace("Use tabs.", "Use spaces, never tabs."))
    blank.record_hand_edits()
    before = snapshot(blank)
    assert v is not None
    with pytest.raises(Conflict) as err:
        blank.revert(str(v.number))
    assert "lessons.md: later edits changed the same lines" in str(err.value)
    assert snapshot(blank) == before


def test_revert_to_restores_the_whole_memory_as_a_new_version(blank: Agent):
    original = blank.read_texts()
    add_lesson(blank, "One", "1")
    blank.record_hand_edits()
    (blank.folder / "persona.md").write_text(original["persona.md"] + "more\n")
    blank.record_hand_edits()
    version = blank.restore("1")
    assert blank.read_texts() == original
    assert version.number == 4 and version.author == "revert"


def test_versions_resolve_by_number_position_and_hash(blank: Agent):
    add_lesson(blank, "One", "1")
    v2 = blank.record_hand_edits()
    assert v2 is not None
    h = blank.history
    assert h.resolve("2") == v2 == h.resolve("HEAD") == h.resolve(v2.commit[:7]) == h.resolve("#2")
    assert h.resolve("HEAD~1").number == 1 == h.resolve("~1").number
    with pytest.raises(Exception, match="no version 9"):
        h.resolve("9")
    with pytest.raises(Exception, match="unknown version"):
        h.resolve("nope")


def test_versions_kept_in_memory_match_the_repository_after_refresh(blank: Agent):
    add_lesson(blank, "One", "1")
    blank.record_hand_edits()
    blank.write({"lessons.md": blank.read_texts()["lessons.md"] + "\n## Two\n2\n"}, "agent",
                "Add Two")
    kept = blank.history.versions()
    blank.history.refresh()
    assert blank.history.versions() == kept
    assert [v.subject for v in kept][:1] == ["Add Two"] and len(kept) == 3


def test_version_records_log_position(blank: Agent):
    blank.journal.append({"kind": "user", "content": "hi"}, {"kind": "assistant", "content": "yo"})
    add_lesson(blank, "One", "1")
    version = blank.record_hand_edits()
    assert version is not None and version.log_position == 2


def test_interrupted_write_is_recovered_with_its_real_author(blank: Agent):
    """A write killed after the files were renamed but before the commit keeps its author."""
    import hashlib

    text = (blank.folder / "lessons.md").read_text() + "\n## Agent wrote this\nx\n"
    intent = {"author": "agent", "message": "Add a lesson",
              "files": {"lessons.md": hashlib.sha256(text.encode()).hexdigest()}}
    (blank.state_dir / "intent.json").write_text(json.dumps(intent))
    (blank.folder / "lessons.md").write_text(text)
    version = blank.record_hand_edits()
    assert version is not None and (version.author, version.subject) == ("agent", "Add a lesson")


KILLER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from agentmem import fsutil
    real_replace = os.replace
    def slow_replace(src, dst):
        Path(sys.argv[2]).write_text("ready")      # the temp file is written and fsynced
        import time; time.sleep(30)
        real_replace(src, dst)
    os.replace = slow_replace
    fsutil.atomic_write(Path(sys.argv[1]), "NEW CONTENT\\n" * 5000)
""")


def test_write_killed_midway_leaves_old_content(tmp_path: Path):
    target = tmp_path / "lessons.md"
    target.write_text("OLD\n")
    flag = tmp_path / "flag"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", KILLER, str(target), str(flag)], env=env)
    try:
        for _ in range(200):
            if flag.exists():
                break
            proc.poll()
            assert proc.returncode is None, "writer exited early"
            import time
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.wait(timeout=10)
    assert target.read_text() == "OLD\n"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".agentmem.tmp")]
    # the temp file may remain after a kill; it is never mistaken for the real file
    assert all(name.startswith(".lessons.md.") for name in leftovers)


def test_atomic_write_replaces_whole_content(tmp_path: Path):
    from agentmem.fsutil import atomic_write

    target = tmp_path / "f.md"
    target.write_text("old")
    atomic_write(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.md"]


def test_concurrent_writers_are_serialized(blank: Agent):
    from concurrent.futures import ThreadPoolExecutor

    def add(n: int) -> None:
        agent = Agent(blank.folder)   # a separate object, as a separate process would have
        with agent.locked():
            text = (agent.folder / "lessons.md").read_text() + f"\n## Lesson {n}\nbody {n}\n"
            agent.write({"lessons.md": text}, "agent", f"add {n}")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(add, range(8)))
    text = (blank.folder / "lessons.md").read_text()
    assert all(f"## Lesson {n}\n" in text for n in range(8))
    assert len(blank.history.versions()) == 9


def test_interrupted_write_never_takes_credit_for_a_hand_edit(blank: Agent):
    import hashlib

    text = (blank.folder / "lessons.md").read_text() + "\n## Agent wrote this\nx\n"
    intent = {"author": "agent", "message": "Add a lesson",
              "files": {"lessons.md": hashlib.sha256(text.encode()).hexdigest()}}
    (blank.state_dir / "intent.json").write_text(json.dumps(intent))
    (blank.folder / "lessons.md").write_text(text)
    persona = blank.folder / "persona.md"
    persona.write_text(persona.read_text() + "\nA person wrote this.\n")
    version = blank.record_hand_edits()
    assert version is not None and version.author == "human"
    assert blank.history.changed_files(version) == ["persona.md"]
    agent_version = blank.history.parent(version)
    assert agent_version is not None and agent_version.author == "agent"
    assert blank.history.changed_files(agent_version) == ["lessons.md"]


def _half_written(blank: Agent) -> tuple[str, str]:
    """An agent write of lessons.md and archive.md that died after lessons.md: its intent names
    both, only lessons.md was replaced. Returns (the last version's lessons, the agent's)."""
    import hashlib

    old = (blank.folder / "lessons.md").read_text()
    new = old + "\n## Agent wrote this\nx\n"
    archive = "# Archive\n\n## Retired\ny\n"
    intent = {"id": "half", "author": "agent", "message": "Retire a lesson", "files": {
        "lessons.md": hashlib.sha256(new.encode()).hexdigest(),
        "archive.md": hashlib.sha256(archive.encode()).hexdigest()}}
    (blank.state_dir / "intent.json").write_text(json.dumps(intent))
    (blank.folder / "lessons.md").write_text(new)
    return old, new


def test_a_half_done_write_is_put_back_and_a_persons_edit_beside_it_is_kept(blank: Agent):
    old, _ = _half_written(blank)
    persona = blank.folder / "persona.md"
    persona.write_text(persona.read_text() + "\nA person wrote this.\n")
    version = blank.record_hand_edits()
    assert version is not None and version.author == "human"
    assert blank.history.changed_files(version) == ["persona.md"]
    assert (blank.folder / "lessons.md").read_text() == old     # the agent's half is undone
    assert not (blank.folder / "archive.md").exists()
    assert "A person wrote this." in persona.read_text() and blank.history.dirty() == []
    assert not (blank.state_dir / "intent.json").exists()


def test_a_half_done_write_whose_other_file_a_person_edited_is_all_kept(blank: Agent):
    """When every file it names has changed, nothing proves the write stopped half-way (a
    person may have edited a file after it finished): all is kept, as the person's version."""
    _, new = _half_written(blank)
    archive = blank.folder / "archive.md"
    archive.write_text("# Archive\n\nMy own notes.\n")
    version = blank.record_hand_edits()
    assert version is not None and version.author == "human"
    assert sorted(blank.history.changed_files(version)) == ["archive.md", "lessons.md"]
    assert (blank.folder / "lessons.md").read_text() == new
    assert archive.read_text() == "# Archive\n\nMy own notes.\n"


def test_a_half_done_write_puts_back_the_exact_bytes(blank: Agent):
    """CRLF line endings (and any bytes) come back as the last version has them, so nothing
    is left that looks like a person's edit."""
    lessons = blank.folder / "lessons.md"
    crlf = lessons.read_bytes().replace(b"\n", b"\r\n")
    lessons.write_bytes(crlf)
    assert blank.record_hand_edits() is not None          # the CRLF file is the last version
    versions = len(blank.history.versions())
    _half_written(blank)
    assert blank.record_hand_edits() is None
    assert lessons.read_bytes() == crlf and len(blank.history.versions()) == versions


def test_a_half_done_write_is_put_back_from_a_repository_git_gc_packed(blank: Agent):
    lessons = blank.folder / "lessons.md"
    lessons.write_bytes(lessons.read_bytes().replace(b"\n", b"\r\n"))
    blank.record_hand_edits()
    crlf = lessons.read_bytes()
    blank.history.git("gc", "-q", "--prune=now")        # no loose objects left
    blank.history._tree = None
    from agentmem import gitstore

    with pytest.raises(gitstore.Unsupported):            # so git is asked for the bytes
        blank.history._entries(blank.history.head() or "")
    _half_written(blank)
    assert blank.record_hand_edits() is None
    assert lessons.read_bytes() == crlf and blank.history.dirty() == []


def test_a_half_done_write_never_overwrites_a_file_saved_again_meanwhile(blank: Agent,
                                                                         monkeypatch):
    """A person's editor takes no lock: a save between the check and the put-back is kept."""
    _, new = _half_written(blank)
    lessons = blank.folder / "lessons.md"
    real = blank.history.bytes_at

    def a_person_saves_first(version, name):
        lessons.write_text(new + "\nSaved by a person.\n")
        return real(version, name)

    monkeypatch.setattr(blank.history, "bytes_at", a_person_saves_first)
    version = blank.record_hand_edits()
    assert lessons.read_text() == new + "\nSaved by a person.\n"
    assert version is not None and version.author == "human"


def test_a_half_done_write_puts_back_only_the_files_it_wrote(blank: Agent):
    """lessons.md written, archive.md saved by a person, persona.md never reached."""
    import hashlib

    old = (blank.folder / "lessons.md").read_text()
    new = old + "\n## Agent wrote this\nx\n"
    persona = blank.folder / "persona.md"
    intent = {"id": "three", "author": "agent", "message": "m", "files": {
        "lessons.md": hashlib.sha256(new.encode()).hexdigest(),
        "archive.md": hashlib.sha256(b"# Archive\n\n## Agent's\nz\n").hexdigest(),
        "persona.md": hashlib.sha256(persona.read_bytes() + b"\nWarning.\n").hexdigest()}}
    (blank.state_dir / "intent.json").write_text(json.dumps(intent))
    (blank.folder / "lessons.md").write_text(new)
    (blank.folder / "archive.md").write_text("# Archive\n\nMy own notes.\n")
    version = blank.record_hand_edits()
    assert version is not None and version.author == "human"
    assert blank.history.changed_files(version) == ["archive.md"]
    assert (blank.folder / "lessons.md").read_text() == old
    assert (blank.folder / "archive.md").read_text() == "# Archive\n\nMy own notes.\n"


def test_crlf_files_keep_their_line_endings_on_write(blank: Agent):
    path = blank.folder / "lessons.md"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    blank.record_hand_edits()
    text = blank.read_texts()["lessons.md"]
    assert text is not None and "\r" not in text          # handled with "\n" inside
    blank.write({"lessons.md": text + "\n## New\nOne line.\n"}, "agent", "add")
    raw = path.read_bytes()
    assert raw.endswith(b"## New\r\nOne line.\r\n") and b"\r\r" not in raw
    assert raw.count(b"\n") == raw.count(b"\r\n")
    stat = blank.history.diff(blank.history.versions()[1], blank.history.versions()[0], stat=True)
    assert stat.split("\t")[:2] == ["3", "0"]               # only the new lines


# -- versions are written in-process (agentmem/gitstore.py); git must agree with them --------
def git(agent: Agent, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={agent.folder / '.agentmem' / 'git'}",
                           f"--work-tree={agent.folder}", *args],
                          capture_output=True, text=True, check=True).stdout


def test_versions_written_in_process_are_an_ordinary_git_repository(blank: Agent, monkeypatch):
    def no_git(*args, **kwargs):
        raise AssertionError("a version fell back to a git subprocess")

    monkeypatch.setattr(History, "_commit_with_git", no_git)    # the in-process path, only
    add_lesson(blank, "Prefer ruff", "Use ruff.")
    blank.write({"persona.md": (blank.folder / "persona.md").read_text() + "\nBe brief.\n"},
                "agent", "# Not a comment\n\nNote   \n\n\n\nbrevity")
    (blank.folder / "archive.md").write_text("# Archive\n")
    blank.record_hand_edits()
    git(blank, "fsck", "--strict", "--no-dangling")
    assert git(blank, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(blank, "diff", "HEAD", "--stat") == ""
    versions = blank.history.versions()
    assert [(v.number, v.author) for v in versions] == [
        (4, "human"), (3, "agent"), (2, "human"), (1, "new")]
    assert git(blank, "rev-list", "--count", "HEAD").strip() == "4"
    cache = blank.folder / ".agentmem" / "git" / "agentmem-versions"
    assert cache.read_text() == f"{versions[0].commit} 4 end untrusted=\n"
    # git commit's clean-up (trailing spaces, runs of blank lines), but a '#' line is kept
    assert versions[1].subject == "# Not a comment"
    assert versions[1].message == "# Not a comment\n\nNote\n\nbrevity"
    assert git(blank, "log", "-1", "--format=%an <%ae>").strip() == "agentmem (human) <human@agentmem>"
    assert "commit: Hand edit of archive.md" in git(blank, "reflog", "-1")
    assert git(blank, "ls-files").split() == ["archive.md", "lessons.md", "persona.md", "tools.yaml"]
    # a file deleted by hand is a change too
    (blank.folder / "archive.md").unlink()
    assert blank.history.dirty() == ["archive.md"]
    blank.record_hand_edits()
    assert "archive.md" not in git(blank, "ls-files").split()
    assert git(blank, "status", "--porcelain") == ""


def test_dirty_agrees_with_git_status(blank: Agent, monkeypatch):
    real_git = History.git

    def no_status(self, *args, **kwargs):      # dirty() must answer in-process, not via git
        assert args[0] != "status", "dirty() fell back to git status"
        return real_git(self, *args, **kwargs)

    monkeypatch.setattr(History, "git", no_status)

    def git_dirty() -> list[str]:
        out = git(blank, "status", "--porcelain", "--untracked-files=all", "--",
                  "persona.md", "lessons.md", "tools.yaml", "archive.md")
        return sorted(line[3:] for line in out.splitlines())

    assert blank.history.dirty() == git_dirty() == []
    add_lesson(blank, "One", "1")
    assert blank.history.dirty() == git_dirty() == ["lessons.md"]
    (blank.folder / "lessons.md").write_text((blank.folder / "lessons.md").read_text())
    os.chmod(blank.folder / "persona.md", 0o755)            # a mode change is a change too
    assert blank.history.dirty() == git_dirty() == ["lessons.md", "persona.md"]
    version = blank.record_hand_edits()
    assert version is not None and version.number == 2
    assert "100755" in git(blank, "ls-tree", "HEAD", "persona.md")
    assert blank.history.dirty() == git_dirty() == []


def test_packed_history_falls_back_to_git_and_numbers_stay_right(blank: Agent):
    add_lesson(blank, "One", "1")
    blank.record_hand_edits()
    git(blank, "gc", "-q", "--prune=now")                   # objects are no longer loose
    (blank.folder / ".agentmem" / "git" / "agentmem-versions").unlink()
    fresh = Agent.open(str(blank.folder))
    add_lesson(fresh, "Two", "2")
    assert fresh.history.dirty() == ["lessons.md"]
    version = fresh.write({"persona.md": (fresh.folder / "persona.md").read_text() + "\nHi.\n"},
                          "agent", "after gc")
    assert version is not None and version.number == 4
    assert [v.number for v in Agent.open(str(blank.folder)).history.versions()] == [4, 3, 2, 1]
    git(blank, "fsck", "--strict")
    assert git(blank, "status", "--porcelain") == ""


def test_a_stale_version_count_is_not_trusted(blank: Agent):
    add_lesson(blank, "One", "1")
    blank.record_hand_edits()
    cache = blank.folder / ".agentmem" / "git" / "agentmem-versions"
    cache.write_text("0123456789012345678901234567890123456789 99 end\n")
    add_lesson(blank, "Two", "2")
    version = Agent.open(str(blank.folder)).record_hand_edits()
    assert version is not None and version.number == 3
    assert cache.read_text() == f"{version.commit} 3 end untrusted=\n"
    cache.write_text(f"{version.commit} 9 en")    # cut short by a crash: no whole "end"
    add_lesson(blank, "Three", "3")
    version = Agent.open(str(blank.folder)).record_hand_edits()
    assert version is not None and version.number == 4


def test_a_linked_memory_file_is_versioned_by_git_itself(blank: Agent, tmp_path: Path):
    real = tmp_path / "elsewhere.md"
    real.write_text((blank.folder / "lessons.md").read_text() + "\n## Linked\nyes\n")
    (blank.folder / "lessons.md").unlink()
    (blank.folder / "lessons.md").symlink_to(real)
    assert blank.history.dirty() == ["lessons.md"]
    version = blank.record_hand_edits()
    assert version is not None and version.number == 2
    assert "120000" in git(blank, "ls-tree", "HEAD", "lessons.md")
    assert blank.history.dirty() == []


def test_a_ref_moved_meanwhile_is_left_alone_and_no_lock_stays(blank: Agent):
    from agentmem import gitstore

    git_dir = blank.folder / ".agentmem" / "git"
    store = gitstore.Store(git_dir)
    ref = store.branch()
    head = blank.history.head()
    with pytest.raises(gitstore.Unsupported, match="moved"):
        store.update_ref(ref, "0" * 40, "1" * 40, "x <x@x> 0 +0000", "commit: stale")
    assert blank.history.head() == head
    assert not (git_dir / (ref + ".lock")).exists()
    (git_dir / "index.lock").write_text("someone else's")   # a git process at work: not ours
    add_lesson(blank, "One", "1")
    version = blank.record_hand_edits()                    # the version is recorded anyway
    assert version is not None and version.number == 2
    assert (git_dir / "index.lock").read_text() == "someone else's"


def test_the_write_lock_lets_go_of_the_baton_only_to_wait_for_another_holder(blank: Agent):
    """In a batch (agentmem.baton), taking a free write lock, or taking it again, hands the
    baton to no one; waiting for another holder does."""
    import threading

    from agentmem import baton

    class Counted:
        def __init__(self) -> None:
            self.lock, self.releases = threading.Lock(), 0

        def acquire(self, *args, **kwargs):
            return self.lock.acquire(*args, **kwargs)

        def release(self) -> None:
            self.releases += 1
            self.lock.release()

    computing = Counted()
    with baton.holding(computing):                       # type: ignore[arg-type]
        with blank.locked(), blank.locked():
            pass
        assert computing.releases == 0
        held, release = threading.Event(), threading.Event()

        def other_holder() -> None:
            with Agent(blank.folder).locked():
                held.set()
                release.wait(10)

        thread = threading.Thread(target=other_holder)
        thread.start()
        held.wait(10)
        threading.Timer(0.2, release.set).start()
        with blank.locked():                              # waits: lets go of the baton
            assert computing.releases == 1
        thread.join()


def test_reverting_a_hand_added_lesson_the_agent_numbered_since_removes_it(blank: Agent):
    """A hand-added lesson gets its id at the agent's next write; reverting the hand edit
    still finds it and takes it out, keeping the agent's own lesson beside it."""
    import json

    from agentmem.memory_tool import MemoryTool

    path = blank.folder / "lessons.md"
    path.write_text(path.read_text() + "\n## Prefer pathlib\nUse pathlib.\n")
    outcome = MemoryTool(blank).run(json.dumps({
        "command": "str_replace", "path": "/memories/lessons.md", "old_str": "Use pathlib.",
        "new_str": "Use pathlib.\n\n## Remember y\ny", "reason": "remember y"}))
    assert outcome.ok, outcome.output
    hand = next(v for v in blank.history.versions() if v.author == "human")
    assert "<!-- id:" in path.read_text().split("## Prefer pathlib")[1].split("##")[0]
    version = blank.revert(str(hand.number))
    assert version.author == "revert"
    text = path.read_text()
    assert "Prefer pathlib" not in text and "## Remember y" in text
