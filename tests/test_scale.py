"""Reads bounded by what a command shows (issue 17): a long history is not read whole for
`history -n`, `diff`, `show` or `revert HEAD`, and lessons are looked up by id through an index
that follows every change to the document."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentmem import lessons as lessons_fmt
from agentmem.agent import Agent
from agentmem.history import COUNT_FILE, UNTRUSTED_LINE


def grow(agent: Agent, count: int) -> None:
    """`count` more versions: hand edits, agent edits (every third after untrusted tool
    output), and a revert-free mix of authors."""
    for i in range(count):
        text = agent.read_texts()["lessons.md"] + f"\n## Rule {i}\nBody {i}.\n"
        if i % 2:
            (agent.folder / "lessons.md").write_text(text)
            agent.record_hand_edits()
        else:
            note = f"\n\n{UNTRUSTED_LINE}: after tool output from fetch" if i % 3 == 0 else ""
            agent.write({"lessons.md": text}, "agent", f"Add rule {i}{note}")


def commit_object(agent: Agent, commit: str) -> Path:
    return agent.folder / ".agentmem" / "git" / "objects" / commit[:2] / commit[2:]


@pytest.fixture
def long(blank: Agent) -> Agent:
    grow(blank, 11)
    blank.history.refresh()
    return blank


def test_bounded_reads_match_the_whole_history(long: Agent):
    history = long.history
    whole = history.versions()
    assert len(whole) == 12
    history.refresh()
    assert history.versions(3) == whole[:3]
    history.refresh()
    assert history.latest() == whole[0]
    for steps in (0, 1, 5, 11):
        history.refresh()
        assert history.back(steps) == whole[steps]
    history.refresh()
    assert history.back(12) is None
    for version in whole:
        history.refresh()
        assert history.resolve(str(version.number)) == version
        history.refresh()
        assert history.resolve(version.commit[:8]) == version
        history.refresh()
        assert history.parent(version) == (whole[len(whole) - version.number + 1]
                                           if version.number > 1 else None)
    history.refresh()
    assert history.resolve("HEAD~4") == whole[4] and history.resolve("~11") == whole[11]
    authors = {v.author for v in whole}
    assert {"human", "agent", "new"} <= authors


def test_the_flagged_versions_come_from_the_count_cache_and_agree_with_a_full_read(long: Agent):
    from agentmem.history import after_untrusted

    history = long.history
    full = sorted(v.number for v in history.versions()
                  if v.author == "agent" and after_untrusted(v.message))
    assert full and history.untrusted() == full
    line = (history.git_dir / COUNT_FILE).read_text().split()
    assert line[3] == "untrusted=" + ",".join(map(str, full))
    # a cache line as an older agentmem wrote it: read from the versions, then kept again
    head = history.head()
    (history.git_dir / COUNT_FILE).write_text(f"{head} 12 end\n")
    assert history.untrusted() == full
    grow(long, 1)              # an agent edit after untrusted output: version 13
    assert long.history.untrusted() == [*full, 13]
    assert (history.git_dir / COUNT_FILE).read_text().split()[3].endswith(",13")


def test_commands_that_show_the_latest_versions_never_read_the_old_ones(long: Agent, cli):
    """With an old commit object gone, reading the whole history fails; the commands that show
    only the latest versions work all the same, so they cannot be reading it."""
    whole = long.history.versions()
    long.update_state(last_sleep={"time": "2026-12-05T12:00:00+00:00", "version": None,
                                  "operations": 0, "at_version": 12})   # as a pass leaves it
    commit_object(long, whole[-3].commit).unlink()     # version 3 of 12
    path = str(long.folder)
    result = cli("history", path, "-n", "3")
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["12", "11", "10"]
    result = cli("diff", path)
    assert result.exit_code == 0 and "Rule 10" in result.stdout
    result = cli("diff", path, "10")
    assert result.exit_code == 0 and "Rule 8" in result.stdout
    result = cli("show", path, "--json")
    assert result.exit_code == 0, result.output
    assert '"versions": 12' in result.stdout
    result = cli("revert", path, "HEAD")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("13 ")
    assert "Rule 10" not in (long.folder / "lessons.md").read_text()


def test_the_count_cache_for_another_commit_is_not_trusted_for_numbers(long: Agent):
    history = long.history
    whole = history.versions()
    (history.git_dir / COUNT_FILE).write_text(f"{whole[3].commit} 99 end untrusted=1\n")
    history.refresh()
    assert history.versions(2) == whole[:2]
    assert history.untrusted() == sorted(v.number for v in whole if v.author == "agent"
                                         and UNTRUSTED_LINE in v.message)


DOC = "# Lessons\n\n" + "".join(f"## T{i}\n<!-- id: L{i}; helpful: 0; harmful: 0 -->\nB{i}\n\n"
                                for i in range(1, 6))


def test_lesson_lookups_follow_every_change_to_the_document():
    doc, problems = lessons_fmt.parse(DOC)
    assert doc is not None and not problems
    l3 = doc.get("L3")
    assert l3 is not None and l3.title == "T3"
    doc.replace("L3", l3.changed(id="L30"))                 # through the document
    assert doc.get("L3") is None and doc.get("L30") is not None
    doc.parts.insert(1, lessons_fmt.Lesson("New", "n", id="L3"))   # straight into its parts
    new = doc.get("L3")
    assert new is not None and new.title == "New"
    doc.parts[1] = lessons_fmt.Lesson("Other", "o", id="L9")
    assert doc.get("L3") is None and doc.get("L9") is not None
    del doc.parts[1]
    assert doc.get("L9") is None and doc.get("L1") is not None
    doc.parts.remove(doc.get("L1"))
    assert doc.get("L1") is None
    doc.parts = [lessons_fmt.Lesson("Only", "x", id="L1")]
    only = doc.get("L1")
    assert only is not None and only.title == "Only" and doc.get("L2") is None
    copy = lessons_fmt.LessonsDoc(list(doc.parts))
    copy.parts.append(lessons_fmt.Lesson("More", "m", id="L2"))
    assert copy.get("L2") is not None and doc.get("L2") is None


def test_ids_given_to_lessons_without_one_are_the_ones_next_id_gives_in_turn():
    text = DOC + "".join(f"## Loose {i}\nbody\n\n" for i in range(4))
    doc, _ = lessons_fmt.parse(text)
    assert doc is not None
    numbered = doc.with_ids({"L7"})
    assert [x.id for x in numbered.lessons][5:] == ["L8", "L9", "L10", "L11"]
    one_by_one = lessons_fmt.LessonsDoc(list(doc.parts))
    for i, part in enumerate(one_by_one.parts):
        if isinstance(part, lessons_fmt.Lesson) and part.id is None:
            one_by_one.parts[i] = part.changed(id=one_by_one.next_id({"L7"}))
    assert one_by_one.render() == numbered.render()


def test_no_git_log_over_every_commit_for_history_n(long: Agent, monkeypatch, cli):
    """`history -n` asks git for that many commits (a cheaper read than the whole log)."""
    from agentmem import gitcmd

    calls: list[tuple[str, ...]] = []
    real = gitcmd.run

    def run(git_dir, folder, args, env, **kw):
        calls.append(tuple(args))
        return real(git_dir, folder, args, env, **kw)

    monkeypatch.setattr(gitcmd, "run", run)
    result = cli("history", str(long.folder), "-n", "2")
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["12", "11"]
    logs = [c for c in calls if c[0] in ("log", "rev-list")]
    assert logs and all("-n2" in c for c in logs), logs
    assert os.path.exists(long.folder / "lessons.md")


def test_the_last_sleep_version_is_found_without_reading_the_whole_history(long: Agent):
    """An agent whose state.json predates the last-sleep record: its latest sleep version."""
    from agentmem import report

    text = long.read_texts()["lessons.md"]
    slept = long.write({"lessons.md": text + "\n## Slept\nyes\n"}, "sleep", "Sleep: 1 operation")
    long.write({"lessons.md": text + "\n## Slept\nyes\n\n## After\nno\n"}, "agent", "Add After")
    # a message that quotes the trailer is not a sleep version (the last trailer counts)
    long.write({"lessons.md": text}, "agent", "Quote\n\nAgentmem-Author: sleep")
    assert slept is not None
    long.history.refresh()
    found = report.last_sleep(long)
    assert found is not None and found["version"] == slept.number == 13
    assert long.history.last_by("human") == next(v for v in long.history.versions()
                                                 if v.author == "human")
    assert long.history.last_by("import") is None


def test_a_hand_edit_recorded_before_a_write_reads_only_the_latest_version(long: Agent, cli):
    whole = long.history.versions()
    commit_object(long, whole[-3].commit).unlink()     # version 3 of 12
    path = long.folder / "lessons.md"
    path.write_text(path.read_text().replace("## Rule 0\n", "## Rule zero\n"))
    result = cli("revert", str(long.folder), "HEAD")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("14 ") and "Revert version 13: Hand edit" in result.stdout
    assert "## Rule zero" not in path.read_text() and "## Rule 0\n" in path.read_text()
    assert [(v.number, v.author) for v in long.history.versions(2)] == [(14, "revert"),
                                                                       (13, "human")]
