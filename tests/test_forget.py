"""agentmem forget: a text leaves memory, the log, every past version and everything else
agentmem keeps, with a receipt; a forget killed at any moment leaves the agent as it was or
fully forgotten."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from agentmem import console, sleep
from agentmem import forget as core
from agentmem.agent import Agent
from agentmem.errors import Locked, Refused
from agentmem.forget import apply
from agentmem.models import ModelSpec
from tests.conftest import snapshot

SENTENCE = "Pamela Quist keeps the spare deploy key under the third stair"
SPEC = ModelSpec("scripted/sleep", None, "test")
LESSONS = f"""# Lessons

## Where the spare key is
<!-- id: L1; evidence: e1; helpful: 0; harmful: 0 -->
{SENTENCE}.

## No deploys on Friday
<!-- id: L2; helpful: 0; harmful: 0 -->
Never deploy on a Friday afternoon.
"""


def git(agent: Agent, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", f"--git-dir={agent.history.git_dir}", *args],
                          capture_output=True, check=False)


def holders(folder: Path, text: str) -> list[str]:
    """Every file under `folder` (git's loose objects decompressed, as far as a temp object a
    kill cut short goes) and every git object (packed or loose, through git itself) whose
    bytes hold `text`."""
    needle = text.encode()
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        if path.parent.parent.name == "objects" and len(path.parent.name) == 2:
            data = zlib.decompressobj().decompress(data)
        if needle in data:
            found.append(str(path.relative_to(folder)))
    agent = Agent(folder)
    every = git(agent, "cat-file", "--batch-all-objects", "--batch").stdout
    if needle in every:
        found.append("a git object")
    return found


def planted(agent: Agent, model) -> Agent:
    """The sentence in a chat turn, a lesson, a merge sleep archived, a refused sleep output,
    version messages, the sleep event, a tool's kept write and the reflog."""
    agent.write({"lessons.md": LESSONS}, "human", "Seed lessons")
    agent.journal.append(
        {"session": "s1", "kind": "user", "content": f"Note: {SENTENCE}, ok?"},          # e1
        {"session": "s1", "kind": "assistant", "content": "Noted."},                     # e2
        {"session": "s1", "kind": "tool_call", "name": "memory", "call_id": "c1",        # e3
         "arguments": json.dumps({"command": "view", "reason": SENTENCE})},
    )
    model.push(json.dumps({"summary": "Deploy lessons merged.", "operations": [
        {"op": "merge", "ids": ["L1", "L2"], "title": "Deploys",
         "body": "Ask before any deploy, and never on a Friday afternoon.",
         "rationale": f"because {SENTENCE}", "evidence": ["e1", "e2"]}]}))
    proposal = sleep.propose(agent, SPEC)
    assert proposal is not None
    assert sleep.apply(proposal) is not None
    agent.journal.append({"session": "s2", "kind": "user", "content": "And the backups?"})
    model.push(json.dumps({"summary": "x", "operations": [
        {"op": "frobnicate", "rationale": SENTENCE, "evidence": ["e5"]}]}))
    with pytest.raises(Refused):
        sleep.propose(agent, SPEC, repair=False)
    agent.update(lambda t: {"persona.md": t["persona.md"] + "\nBe brief.\n"}, "agent",
                 f"asked to be brief; {SENTENCE}")
    writes = agent.state_dir / "tool-writes"
    writes.mkdir()
    (writes / "20260101-000000-grep-lessons.md").write_text(f"## Key\n{SENTENCE}\n")
    return agent


@pytest.fixture
def full(blank: Agent, model) -> Agent:
    return planted(blank, model)


def test_forget_removes_it_from_every_place_and_every_object(cli, full: Agent):
    folder = full.folder
    places = set(holders(folder, SENTENCE))
    assert {"log.jsonl", "archive.md", "a git object"} <= places
    assert any(p.startswith(".agentmem/sleep/refused-") for p in places)
    assert ".agentmem/tool-writes/20260101-000000-grep-lessons.md" in places
    before = full.history.versions()
    messages = git(full, "log", "--format=%B").stdout.decode()
    assert messages.count(SENTENCE) == 2           # the sleep version's and the agent's

    result = cli("forget", folder, SENTENCE, "--yes")
    assert result.exit_code == 0, result.stderr
    assert "forgot f1" in result.stdout

    assert holders(folder, SENTENCE) == []
    for args in (("log", "-p", "--all"), ("reflog", "--all"), ("fsck", "--unreachable"),
                 ("fsck", "--lost-found")):
        proc = git(full, *args)
        assert proc.returncode == 0 and SENTENCE.encode() not in proc.stdout + proc.stderr, args
    assert git(full, "fsck", "--unreachable").stdout == b""
    assert holders(folder, SENTENCE) == []          # lost-found, if git wrote one, too
    # the versions keep their numbers, authors, dates and trailers; one `forget` version is new
    full.history.refresh()
    after = full.history.versions()
    assert len(after) == len(before) + 1
    assert [(v.number, v.author, v.time, v.log_position) for v in after[1:]] == \
        [(v.number, v.author, v.time, v.log_position) for v in before]
    assert after[0].author == "forget" and after[0].subject.startswith("Forget f1: removed from")
    assert "Agentmem-Sleep-Cursor:" in git(full, "log", "--format=%B").stdout.decode()
    assert f"because {core.MARKER.format(number=1)}" in after[2].message
    # the log keeps its events, ids and structure; the text became the marker
    events = full.journal.read().events
    assert [e["id"] for e in events] == [f"e{n}" for n in range(1, len(events) + 1)]
    assert events[0]["content"] == "Note: [forgotten f1], ok?"
    assert json.loads(events[2]["arguments"])["reason"] == "[forgotten f1]"
    # the receipt: where, never what
    receipt = json.loads((full.state_dir / "forget" / "f1.json").read_text())
    assert receipt["version"] == after[0].number and receipt["remaining"] == []
    assert receipt["found"]["events"] == ["e1", "e3", "e4"]
    assert SENTENCE not in json.dumps(receipt)
    assert not (full.state_dir / "forget" / "intent.json").exists()
    # and the rewritten history still works
    assert cli("history", folder).exit_code == 0
    diff = cli("diff", folder, "2")
    assert diff.exit_code == 0 and "[forgotten f1]" in diff.stdout
    blamed = json.loads(cli("blame", folder, "L1", "--json").stdout)
    assert [e["id"] for e in blamed["evidence"]] == ["e1", "e2"]
    assert not any(e.get("missing") for e in blamed["evidence"])
    reverted = cli("revert", folder, str(len(before)))
    assert reverted.exit_code == 0, reverted.stderr
    assert "Be brief." not in (folder / "persona.md").read_text()
    assert git(full, "fsck").returncode == 0


def test_without_yes_and_no_terminal_it_lists_and_changes_nothing(cli, full: Agent):
    before = snapshot(full)
    result = cli("forget", full.folder, SENTENCE)
    assert result.exit_code == 2
    assert "nothing was changed" in result.stderr and "--yes" in result.stderr
    assert "log.jsonl: event e1, e3, e4" in result.stdout
    assert "archive.md: line" in result.stdout
    assert "version messages:" in result.stdout
    assert ".agentmem/tool-writes/20260101-000000-grep-lessons.md" in result.stdout
    assert snapshot(full) == before
    dry = cli("forget", full.folder, SENTENCE, "--dry-run", "--json")
    assert dry.exit_code == 0
    data = json.loads(dry.stdout)
    assert data["changed"] is False and data["found"]["events"] == ["e1", "e3", "e4"]
    assert snapshot(full) == before


def test_on_a_terminal_it_asks(cli, blank: Agent, monkeypatch):
    monkeypatch.setattr(console, "stdin_is_tty", lambda: True)
    blank.journal.append({"session": "s", "kind": "user", "content": "call Jane Doe"})
    before = snapshot(blank)
    assert cli("forget", blank.folder, "Jane Doe", input="n\n").exit_code == 0
    assert snapshot(blank) == before
    assert cli("forget", blank.folder, "Jane Doe", input="y\n").exit_code == 0
    assert holders(blank.folder, "Jane Doe") == []


def test_a_text_found_nowhere_changes_nothing(cli, blank: Agent):
    before = snapshot(blank)
    result = cli("forget", blank.folder, "nobody said this", "--yes")
    assert result.exit_code == 0 and "occurs nowhere" in result.stderr
    assert snapshot(blank) == before


def test_pinned_text_is_refused_unless_included(cli, blank: Agent):
    blank.write({"lessons.md": "# Lessons\n\n<!-- pin -->\n## Contact\n<!-- id: L1 -->\n"
                 "Ask Jane Doe.\n<!-- /pin -->\n"}, "human", "pin")
    before = snapshot(blank)
    refused = cli("forget", blank.folder, "Jane Doe", "--yes")
    assert refused.exit_code == 1
    assert "pinned (human-owned) text at lessons.md:6" in refused.stderr
    assert "--include-pinned" in refused.stderr
    assert snapshot(blank) == before
    assert cli("forget", blank.folder, "Jane Doe", "--yes", "--include-pinned").exit_code == 0
    assert "Ask [forgotten f1]." in (blank.folder / "lessons.md").read_text()
    assert holders(blank.folder, "Jane Doe") == []


def test_text_forget_must_keep_is_refused(cli, blank: Agent):
    before = snapshot(blank)
    result = cli("forget", blank.folder, "Agentmem-Log", "--yes")
    assert result.exit_code == 1
    assert "cannot be forgotten everywhere" in result.stderr and "version 1" in result.stderr
    assert snapshot(blank) == before


def test_a_forget_that_would_break_a_file_is_refused(cli, blank: Agent):
    blank.write({"persona.md": (blank.folder / "persona.md").read_text().replace(
        "description: A new agent.", "description: Jane Doe's helper")}, "human", "desc")
    before = snapshot(blank)
    result = cli("forget", blank.folder, "Jane Doe's helper", "--yes")
    assert result.exit_code == 1 and "persona.md" in result.stderr
    assert "edit that file by hand first" in result.stderr
    assert snapshot(blank) == before


def test_regex_ignore_case_and_stdin(cli, blank: Agent):
    blank.journal.append({"session": "s", "kind": "user", "content": "JANE doe and jane DOE"},
                         {"session": "s", "kind": "user", "content": "order 4411-2231 shipped"})
    assert cli("forget", blank.folder, "jane doe", "-i", "--yes").exit_code == 0
    assert cli("forget", blank.folder, r"\d{4}-\d{4}", "--regex", "--yes").exit_code == 0
    events = blank.journal.read().events
    assert events[-2]["content"] == "[forgotten f1] and [forgotten f1]"
    assert events[-1]["content"] == "order [forgotten f2] shipped"
    blank.journal.append({"session": "s", "kind": "user", "content": "my pin is 9931"})
    assert cli("forget", blank.folder, "-", "--yes", input="9931\n").exit_code == 0
    assert blank.journal.read().events[-1]["content"] == "my pin is [forgotten f3]"
    assert sorted(p.name for p in (blank.state_dir / "forget").iterdir()) == \
        ["f1.json", "f2.json", "f3.json"]
    bad = cli("forget", blank.folder, "a*", "--regex", "--yes")
    assert bad.exit_code == 2 and "matches empty text" in bad.stderr
    assert cli("forget", blank.folder).exit_code == 2


def test_forget_a_whole_lesson(cli, full: Agent):
    lessons = (full.folder / "lessons.md").read_text()
    assert "L1" in lessons and "Never deploy on a Friday afternoon" not in lessons
    result = cli("forget", full.folder, "--lesson", "L2", "--yes")
    assert result.exit_code == 0, result.stderr
    assert holders(full.folder, "Never deploy on a Friday afternoon.") == []
    assert "## No deploys on Friday" not in (full.folder / "archive.md").read_text()
    assert full.read_state()["highest_lesson"] >= 2          # L2 is never given out again
    missing = cli("forget", full.folder, "--lesson", "L9", "--yes")
    assert missing.exit_code == 1 and "no lesson L9" in missing.stderr


def test_forget_secrets_finds_keys_that_got_in_before_the_redactor(cli, blank: Agent):
    key = "sk-proj-" + "Zq7" * 12
    blank.write({"lessons.md": f"# Lessons\n\n## Deploy\n<!-- id: L1 -->\nUse {key}.\n"},
                "human", "deploy")
    with open(blank.folder / "log.jsonl", "a") as log:      # a line from before redaction
        log.write(json.dumps({"id": "e1", "time": "t", "session": "s", "kind": "user",
                              "content": f"key is {key}"}) + "\n")
    listed = cli("forget", blank.folder, "--secrets", "--dry-run")
    assert "lessons.md: line 5" in listed.stdout and "event e1" in listed.stdout
    assert key not in listed.stdout + listed.stderr
    assert cli("forget", blank.folder, "--secrets", "--yes").exit_code == 0
    assert holders(blank.folder, key[:20]) == []
    assert "Use [REDACTED]." in (blank.folder / "lessons.md").read_text()
    assert blank.journal.read().events[0]["content"] == "key is [REDACTED]"


def test_a_packed_history_is_pruned_too(cli, full: Agent):
    assert git(full, "gc", "-q").returncode == 0
    assert list((full.history.git_dir / "objects" / "pack").glob("*.pack"))
    assert cli("forget", full.folder, SENTENCE, "--yes").exit_code == 0
    assert holders(full.folder, SENTENCE) == []
    assert git(full, "fsck").returncode == 0
    assert full.update(lambda t: {"persona.md": t["persona.md"] + "\nMore.\n"}, "agent",
                       "after") is not None


def test_branches_and_tags_a_person_made_are_rewritten_too(cli, full: Agent):
    old = full.history.versions()[2].commit          # "Seed lessons"
    behind = git(full, "log", "--format=%s", old).stdout
    assert git(full, "branch", "backup", old).returncode == 0
    assert git(full, "tag", "-a", "before", "-m", f"kept: {SENTENCE}", old).returncode == 0
    listed = cli("forget", full.folder, SENTENCE, "--dry-run")
    assert "other git refs: refs/heads/backup, refs/tags/before" in listed.stdout
    assert cli("forget", full.folder, SENTENCE, "--yes").exit_code == 0
    assert holders(full.folder, SENTENCE) == []
    assert git(full, "log", "--format=%s", "backup").stdout == behind
    assert git(full, "rev-parse", "backup").stdout.strip().decode() != old
    assert b"kept: [forgotten f1]" in git(full, "tag", "-n1", "before").stdout
    assert git(full, "fsck").returncode == 0


def test_the_sleep_cursor_follows_its_event_in_the_rewritten_log(blank: Agent):
    blank.journal.append({"session": "s", "kind": "user", "content": f"{SENTENCE} " * 20})
    blank.update_state(sleep_cursor=blank.journal.end_cursor().to_json())
    blank.journal.append({"session": "s", "kind": "user", "content": "after the pass"})
    assert core.forget(blank, core.text_target(SENTENCE)) is not None
    assert blank.sleep_cursor().offset < blank.journal.end_cursor().offset
    assert [e["content"] for e in blank.journal.read(blank.sleep_cursor()).events] == \
        ["after the pass"]


def test_files_agentmem_does_not_manage_are_listed_and_left_alone(cli, blank: Agent):
    blank.journal.append({"session": "s", "kind": "user", "content": "Jane Doe"})
    (blank.folder / "notes.txt").write_text("Jane Doe\n")
    result = cli("forget", blank.folder, "Jane Doe", "--yes")
    assert result.exit_code == 0
    assert "notes.txt" in result.stdout and "left alone" in result.stderr
    assert holders(blank.folder, "Jane Doe") == ["notes.txt"]
    assert "copies outside this folder" in result.stderr


def test_refused_while_a_chat_session_is_open(blank: Agent):
    blank.journal.append({"session": "s", "kind": "user", "content": "Jane Doe"})
    with blank.session_lock():
        with pytest.raises(Locked, match="chat session"):
            core.forget(blank, core.text_target("Jane Doe"))


# -- crashes -----------------------------------------------------------------------------------
def test_an_interrupted_forget_is_finished_by_the_next_write(full: Agent):
    """Killed right after its commit point: the next write (here, recording hand edits) finds
    the intent and finishes it before it reads anything."""
    target = core.text_target(SENTENCE)
    s = core.survey(full, target)
    apply.stage(full, s)     # steps 1 and 2: killed right after the commit point
    intent = (full.state_dir / "forget" / "intent.json").read_text()
    assert SENTENCE not in intent
    assert SENTENCE in (full.folder / "lessons.md").read_text() + \
        (full.folder / "archive.md").read_text()
    Agent(full.folder).record_hand_edits()
    assert holders(full.folder, SENTENCE) == []
    receipt = json.loads((full.state_dir / "forget" / "f1.json").read_text())
    assert receipt["finished"] == "recovery"
    assert full.history.dirty() == []


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")


def _forget_in_child(folder: Path, kill_at: int | None, calls_out: Path | None) -> None:
    """The child: forget the sentence; with kill_at, SIGKILL its process group (git included)
    at that system call. With calls_out, write how many calls a whole forget made, and how
    many it had made at its commit point (when finish starts)."""
    os.setpgid(0, 0)
    calls = [0, 0]

    def profile(frame, event, arg):
        if event == "c_call" and getattr(arg, "__module__", None) == "posix":
            calls[0] += 1
            if calls[0] == kill_at:
                os.killpg(0, signal.SIGKILL)

    finish = apply.finish

    def counted_finish(*args, **kwargs):
        calls[1] = calls[0]
        return finish(*args, **kwargs)

    apply.finish = counted_finish         # in the forked child only; forget looks it up there
    sys.setprofile(profile)
    core.forget(Agent(folder), core.text_target(SENTENCE))
    sys.setprofile(None)
    if calls_out is not None:
        calls_out.write_text(f"{calls[0]} {calls[1]}")


def _run(folder: Path, kill_at: int | None = None, calls_out: Path | None = None) -> int:
    pid = os.fork()
    if pid == 0:      # pragma: no cover - the child
        code = 1
        try:
            _forget_in_child(folder, kill_at, calls_out)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def _state(folder: Path) -> dict[str, bytes]:
    """What must be exactly as before when a forget did not get through."""
    agent = Agent(folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files["HEAD"] = (agent.history.head() or "").encode()
    for kept in sorted((folder / ".agentmem" / "sleep").glob("*.json")):
        files[kept.name] = kept.read_bytes()
    return files


@needs_fork
def test_a_forget_killed_at_random_points_is_all_or_nothing(full: Agent, tmp_path: Path, cli):
    template = tmp_path / "template"
    shutil.copytree(full.folder, template, symlinks=True)
    before = _state(template)
    whole = tmp_path / "whole"
    shutil.copytree(template, whole, symlinks=True)
    calls = tmp_path / "calls"
    assert _run(whole, calls_out=calls) == 0
    total, committed = map(int, calls.read_text().split())
    assert 0 < committed < total
    assert holders(whole, SENTENCE) == []
    rng = random.Random(16)     # half the kills before the commit point, half after it
    points = sorted({rng.randint(1, committed) for _ in range(14)} |
                    {rng.randint(committed, total) for _ in range(14)} | {1, committed, total - 1})
    outcomes = {"as before": 0, "forgotten": 0}
    for n, point in enumerate(points):
        trial = tmp_path / f"trial{n}"
        shutil.copytree(template, trial, symlinks=True)
        status = _run(trial, kill_at=point)
        assert os.WIFSIGNALED(status) or status == 0, status
        # the next command: any of them settles what the kill left
        assert cli("history", trial).exit_code == 0
        agent = Agent(trial)
        assert agent.history.git("fsck", check=False).returncode == 0, point
        assert not (trial / ".agentmem" / "forget" / "intent.json").exists()
        left = holders(trial, SENTENCE)
        if left:
            assert _state(trial) == before, (point, left)
            outcomes["as before"] += 1
            assert _run(trial) == 0                     # and a forget then gets through
            assert holders(trial, SENTENCE) == []
        else:
            outcomes["forgotten"] += 1
            assert (trial / ".agentmem" / "forget" / "f1.json").exists()
            assert agent.history.dirty() == []
            assert len(agent.history.versions()) == len(Agent(template).history.versions()) + 1
        assert agent.record_hand_edits() is None        # nothing half-done to record
        assert sorted(agent.history.git_dir.glob("objects/??/tmp_obj_*")) == []
        shutil.rmtree(trial)
    assert outcomes["as before"] >= 3 and outcomes["forgotten"] >= 3, outcomes
