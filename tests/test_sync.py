"""agentmem sync: two machines (two folders) and a bare remote on disk."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agentmem import lessons as lessons_fmt
from agentmem import sleep as core
from agentmem import sync
from agentmem.agent import Agent
from agentmem.errors import Conflict
from agentmem.journal import Cursor, event_number
from agentmem.models import ModelSpec
from agentmem.sync import log as logmerge
from agentmem.sync import remote as remotes
from agentmem.sync.merge import merge_lessons
from tests.conftest import snapshot

SPEC = ModelSpec("scripted/sleep", None, "test")
SEED = """# Lessons

What I have learned.

## Keep replies short
<!-- id: L1; helpful: 0; harmful: 0 -->
Three sentences at most unless asked for more.

## Quote the failing line
<!-- id: L2; helpful: 0; harmful: 0 -->
When a test fails, quote the line that failed.
"""


def bare(tmp_path: Path, name: str = "remote.git") -> Path:
    path = tmp_path / name
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return path


def fsck(git_dir: Path) -> None:
    proc = subprocess.run(["git", f"--git-dir={git_dir}", "fsck", "--strict", "--no-progress"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def git(git_dir: Path, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True,
                          text=True, check=True).stdout


def events(agent: Agent) -> list[dict]:
    return logmerge_events(agent.journal.path.read_bytes())


def logmerge_events(data: bytes) -> list[dict]:
    return [e.data for e in logmerge.parse(data)[0]]


def titles(agent: Agent) -> dict[str, str]:
    doc = lessons_fmt.parse((agent.folder / "lessons.md").read_text())[0]
    assert doc is not None
    return {lesson.title: lesson.id or "" for lesson in doc.lessons}


def add_lesson_by_hand(agent: Agent, title: str, body: str, lesson_id: str) -> None:
    path = agent.folder / "lessons.md"
    path.write_text(path.read_text().rstrip("\n") + f"\n\n## {title}\n<!-- id: {lesson_id}; "
                    f"helpful: 0; harmful: 0 -->\n{body}\n")


@pytest.fixture
def machines(tmp_path: Path, blank: Agent) -> tuple[Agent, Agent, Path]:
    """Machine A (with a few plain-id events from before it ever synced), the remote it
    pushed to, and machine B copied from that remote."""
    blank.write({"lessons.md": SEED}, "human", "Seed lessons")
    blank.journal.append({"session": "s0", "kind": "user", "content": "Hello"},
                         {"session": "s0", "kind": "assistant", "content": "Hi."})
    remote = bare(tmp_path)
    first = sync.sync(blank, str(remote))
    assert first.pushed and first.pulled == "nothing"
    outcome = sync.clone(tmp_path / "laptop" / "blank", str(remote))
    assert outcome.pulled == "clone" and outcome.events_in == 2
    return blank, Agent.open(tmp_path / "laptop" / "blank"), remote


def test_first_sync_fills_an_empty_remote_and_a_new_folder_copies_it(machines, tmp_path):
    a, b, remote = machines
    for name in ("persona.md", "lessons.md", "tools.yaml"):
        assert (a.folder / name).read_bytes() == (b.folder / name).read_bytes()
    assert a.journal.path.read_bytes() == b.journal.path.read_bytes()
    assert [v.commit for v in a.history.versions()] == [v.commit for v in b.history.versions()]
    assert b.history.dirty() == []
    heads = git(remote, "for-each-ref", "--format=%(refname)").split()
    assert heads == [remotes.LOG, remotes.MEMORY]
    # each copy has its own tag for new event ids
    assert a.journal.machine_tag() and b.journal.machine_tag()
    assert a.journal.machine_tag() != b.journal.machine_tag()
    for git_dir in (a.history.git_dir, b.history.git_dir, remote):
        fsck(git_dir)


def test_edits_on_both_machines_a_sleep_on_one_and_a_hand_edit_on_the_other(machines, model):
    a, b, remote = machines
    # A: a conversation, then a sleep pass that learns a lesson from it
    a.journal.append({"session": "s1", "kind": "user", "content": "Use ruff, not flake8."},
                     {"session": "s1", "kind": "assistant", "content": "Noted."})
    said = [e["id"] for e in events(a) if e.get("content") == "Use ruff, not flake8."][0]
    model.push(json.dumps({"summary": "ruff", "operations": [
        {"op": "add", "title": "Lint with ruff", "body": "The team uses ruff, not flake8.",
         "rationale": "corrected", "evidence": [said]}]}))
    core.apply(core.propose(a, SPEC))
    assert titles(a)["Lint with ruff"] == "L3"
    # B: its own conversation and a hand edit that also adds a lesson numbered L3
    b.journal.append({"session": "s2", "kind": "user", "content": "Answer in French."})
    add_lesson_by_hand(b, "Answer in French", "The user reads French best.", "L3")
    (b.folder / "tools.yaml").write_text((b.folder / "tools.yaml").read_text() + "# B's note\n")

    first = sync.sync(a, str(remote))            # A pushes first: a fast-forward there
    assert first.pushed and first.pulled == "nothing"
    second = sync.sync(b, str(remote))           # B merges, renumbering its own new lesson
    assert second.pulled == "merge" and second.pushed
    hand = [v for v in b.history.versions() if v.author == "human"][0]
    assert hand.subject == "Hand edit of lessons.md, tools.yaml"    # recorded before the merge
    latest = b.history.versions()[0]
    assert latest.author == "sync" and hand.number < latest.number
    assert second.renumbered == {"L3": "L4"}     # B's, not yet pushed: A's L3 is published
    assert "Lessons this machine added, given new ids" in latest.message and "L3 -> L4" in \
        latest.message
    assert second.events_in == 3                 # A's two events and its sleep event
    third = sync.sync(a, str(remote))            # A takes the merge as it is
    assert third.pulled == "fast-forward"

    for name in ("persona.md", "lessons.md", "tools.yaml", "archive.md"):
        assert (a.folder / name).read_bytes() == (b.folder / name).read_bytes() \
            if (a.folder / name).exists() else not (b.folder / name).exists()
    assert titles(a) == {"Keep replies short": "L1", "Quote the failing line": "L2",
                         "Lint with ruff": "L3", "Answer in French": "L4"}
    assert "# B's note" in (a.folder / "tools.yaml").read_text()
    merged = a.history.latest()
    assert merged is not None and merged.author == "sync"
    assert "this machine's version" in merged.subject and "the remote's version" in merged.subject
    assert a.history.dirty() == [] and b.history.dirty() == []
    # every event of both machines, on both, with distinct ids
    ids_a, ids_b = [e["id"] for e in events(a)], [e["id"] for e in events(b)]
    assert len(set(ids_a)) == len(ids_a) and set(ids_a) == set(ids_b)
    contents = {e.get("content") for e in events(a)}
    assert {"Hello", "Use ruff, not flake8.", "Answer in French."} <= contents
    # the lesson's evidence resolves on the machine that did not make it
    lesson = lessons_fmt.parse((b.folder / "lessons.md").read_text())[0].get("L3")
    assert lesson.title == "Lint with ruff" and lesson.evidence == [said]
    assert b.journal.find([said])[said]["content"] == "Use ruff, not flake8."
    for git_dir in (a.history.git_dir, b.history.git_dir, remote):
        fsck(git_dir)
    # nothing new: a sync changes nothing and pushes nothing
    before = snapshot(b)
    again = sync.sync(b, str(remote))
    assert not again.pushed and again.pulled == "nothing" and snapshot(b) == before


def test_a_sleep_after_sync_reads_each_arrived_event_exactly_once(machines, model):
    a, b, remote = machines
    # a copy starts from what the other machine learnt: the shared events are read already
    assert core.propose(b, SPEC) is None
    b.journal.append({"session": "s2", "kind": "user", "content": "from B"})
    model.push(json.dumps({"operations": [], "summary": "nothing"}))
    core.apply(core.propose(b, SPEC))            # B's cursor is now past its e3 and e4
    a.journal.append({"session": "s1", "kind": "user", "content": "from A"})    # A's e3
    sync.sync(a, str(remote))
    outcome = sync.sync(b, str(remote))
    assert outcome.events_in == 1
    model.push(json.dumps({"operations": [], "summary": "nothing"}))
    proposal = core.propose(b, SPEC)
    assert proposal is not None and proposal.events == 1
    sent = model.calls[-1]["messages"][1]["content"]
    assert "from A" in sent and "from B" not in sent and "Hello" not in sent
    core.apply(proposal)
    assert core.propose(b, SPEC) is None         # seen once: nothing new now
    b.journal.append({"session": "s3", "kind": "user", "content": "later"})
    new = [e for e in b.journal.read(b.sleep_cursor()).events if e["kind"] == "user"]
    assert [e["content"] for e in new] == ["later"]
    # numbered past every event of both machines
    numbers = [event_number(e["id"]) for e in events(b)]
    assert event_number(new[0]["id"]) == max(numbers) and numbers.count(max(numbers)) == 1


def test_a_real_conflict_changes_nothing_and_names_file_and_lesson(machines, cli):
    a, b, remote = machines
    for agent, text in ((a, "Two sentences at most."), (b, "One paragraph, never a list.")):
        path = agent.folder / "lessons.md"
        path.write_text(path.read_text().replace("Three sentences at most unless asked for more.",
                                                 text))
    sync.sync(a, str(remote))
    b.record_hand_edits()
    before = snapshot(b)
    log_before = b.journal.path.read_bytes()
    result = cli("sync", b.folder, remote)
    assert result.exit_code == 1
    first = result.stderr.strip().splitlines()[0]
    assert "lessons.md" in first and "L1" in first and "Keep replies short" in first
    assert snapshot(b) == before and b.journal.path.read_bytes() == log_before
    assert git(remote, "rev-parse", remotes.MEMORY).strip() == a.history.head()


def test_a_rejected_push_is_retried_after_fetch_and_merge(machines, monkeypatch):
    a, b, remote = machines
    add_lesson_by_hand(a, "From A", "A's lesson.", "L3")
    add_lesson_by_hand(b, "From B", "B's lesson.", "L3")
    real = remotes.push
    pushes: list[bool] = []

    def b_gets_there_first(history, url, updates):
        if not pushes:
            pushes.append(True)
            monkeypatch.setattr(remotes, "push", real)
            sync.sync(b, url)                   # the other machine pushes in between
            monkeypatch.setattr(remotes, "push", b_gets_there_first)
        ok = real(history, url, updates)
        pushes.append(ok)
        return ok

    monkeypatch.setattr(remotes, "push", b_gets_there_first)
    outcome = sync.sync(a, str(remote))
    assert pushes[1:] == [False, True] and outcome.tries == 2 and outcome.pushed
    assert set(titles(a)) >= {"From A", "From B"}
    assert git(remote, "rev-parse", remotes.MEMORY).strip() == a.history.head()
    ids = list(titles(a).values())
    assert len(set(ids)) == len(ids)
    fsck(remote)


def test_remote_from_persona_and_its_validation(machines, cli, tmp_path):
    a, _, remote = machines
    persona = a.folder / "persona.md"
    persona.write_text(persona.read_text().replace("---\n", f"---\nremote: {remote}\n", 1))
    result = cli("sync", a.folder, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["remote"] == str(remote)
    persona.write_text(persona.read_text().replace(f"remote: {remote}", "remote: --upload-pack=x"))
    bad = cli("sync", a.folder)
    assert bad.exit_code == 1 and "remote must be a path or URL" in bad.stderr


def test_an_agent_with_no_remote_is_told_how_to_set_one(blank: Agent, cli):
    before = snapshot(blank)
    result = cli("sync", blank.folder)
    assert result.exit_code == 2 and "has no remote to sync with" in result.stderr
    assert "agentmem sync AGENT PATH-OR-URL) or set 'remote:' in persona.md" in result.stderr
    assert snapshot(blank) == before


def test_old_plain_ids_keep_resolving_and_new_ids_never_collide(machines):
    a, b, remote = machines
    assert [e["id"] for e in events(b)] == ["e1", "e2"]
    assert b.journal.find(["e1"])["e1"]["content"] == "Hello"
    new_a = a.journal.append({"kind": "user", "content": "a"})[0]["id"]
    new_b = b.journal.append({"kind": "user", "content": "b"})[0]["id"]
    assert event_number(new_a) == event_number(new_b) == 3 and new_a != new_b
    sync.sync(a, str(remote))
    sync.sync(b, str(remote))
    found = b.journal.find([new_a, new_b, "e2"])
    assert found[new_a]["content"] == "a" and found[new_b]["content"] == "b"
    assert found["e2"]["content"] == "Hi."


def test_a_copied_folder_gets_its_own_machine_tag(machines, tmp_path):
    import shutil

    a, _, _ = machines
    copy = tmp_path / "copy"
    shutil.copytree(a.folder, copy)
    assert Agent.open(copy).journal.machine_tag() not in (None, a.journal.machine_tag())


def test_forget_on_one_side_is_not_synced_back_nor_over(machines, tmp_path):
    from agentmem import forget

    a, b, remote = machines
    add_lesson_by_hand(a, "Customer", "The customer is Jane Doe.", "L3")
    sync.sync(a, str(remote))
    sync.sync(b, str(remote))
    forget.forget(a, forget.text_target("Jane Doe"))
    assert "Jane Doe" not in (a.folder / "lessons.md").read_text()
    before = snapshot(a)
    remote_head = git(remote, "rev-parse", remotes.MEMORY)
    with pytest.raises(Conflict, match="rewritten"):
        sync.sync(a, str(remote))
    assert snapshot(a) == before and git(remote, "rev-parse", remotes.MEMORY) == remote_head
    assert "Jane Doe" not in (a.folder / "lessons.md").read_text()
    # to a new, empty remote it syncs, without the text
    fresh = bare(tmp_path, "fresh.git")
    sync.sync(a, str(fresh))
    assert "Jane Doe" not in git(fresh, "log", "-p", "--all")


def test_an_event_that_differs_on_both_sides_is_refused():
    line = b'{"id": "e1", "time": "t", "kind": "user", "content": "x"}\n'
    other = b'{"id": "e1", "time": "t", "kind": "user", "content": "[forgotten f1]"}\n'
    with pytest.raises(Conflict, match="event e1"):
        logmerge.merge(line, other, Cursor(), "abcd12", {})


def test_lessons_added_at_the_end_on_both_sides_both_survive():
    base = SEED
    mine = SEED + "\n## Mine\n<!-- id: L3; helpful: 0; harmful: 0 -->\nmine\n"
    theirs = SEED + "\n## Theirs\n<!-- id: L4; helpful: 0; harmful: 0 -->\ntheirs\n"
    merged = merge_lessons(base, mine, theirs, "lessons.md")
    doc = lessons_fmt.parse(merged)[0]
    assert [x.id for x in doc.lessons] == ["L1", "L2", "L3", "L4"]
    # and one side's edit of a lesson with the other's addition
    edited = SEED.replace("Three sentences", "Two sentences")
    merged = merge_lessons(base, edited, theirs, "lessons.md")
    assert "Two sentences" in merged and "## Theirs" in merged


def test_a_missing_remote_is_one_clear_line(blank: Agent, cli, tmp_path):
    before = snapshot(blank)
    result = cli("sync", blank.folder, tmp_path / "nowhere.git")
    assert result.exit_code == 1 and "cannot reach the remote" in result.stderr
    assert snapshot(blank) == before


def test_copying_from_a_remote_with_no_agent_leaves_no_folder(tmp_path, cli):
    remote = bare(tmp_path)
    result = cli("sync", tmp_path / "new", remote)
    assert result.exit_code == 1 and "holds no agent" in result.stderr
    assert not (tmp_path / "new").exists()


def test_an_open_log_takes_the_tag_a_sync_elsewhere_created(blank: Agent, tmp_path):
    journal = blank.journal                      # held open across the sync, as a chat holds it
    assert journal.append({"kind": "user", "content": "before"})[0]["id"] == "e1"
    sync.sync(Agent.open(blank.folder), str(bare(tmp_path)))
    after = journal.append({"kind": "user", "content": "after"})[0]["id"]
    assert after == f"e2-{Agent.open(blank.folder).journal.machine_tag()}"


def test_the_command_says_what_it_did(blank: Agent, cli, tmp_path):
    remote = bare(tmp_path)
    pushed = cli("sync", blank.folder, remote)
    assert pushed.exit_code == 0 and "nothing new there" in pushed.stdout and "pushed" in pushed.stdout
    copied = cli("sync", tmp_path / "laptop" / "blank", "--remote", remote)
    assert copied.exit_code == 0 and "copied" in copied.stdout and "version 1" in copied.stdout
    again = cli("sync", blank.folder, remote)
    assert "nothing to push" in again.stdout
    twice = cli("sync", blank.folder, remote, "--remote", tmp_path / "other.git")
    assert twice.exit_code == 2 and "once" in twice.stderr


def test_the_version_before_one_from_a_merged_line_is_its_own_parent(machines, monkeypatch):
    import time
    from types import SimpleNamespace

    from agentmem import history as history_module

    a, b, remote = machines
    add_lesson_by_hand(a, "From A", "A's lesson.", "L3")
    a.record_hand_edits()
    sync.sync(a, str(remote))
    # B's edit is dated after A's (its clock runs ahead): git lists it right after the merge,
    # and A's version right after it
    with monkeypatch.context() as patch:
        patch.setattr(history_module, "time", SimpleNamespace(time=lambda: time.time() + 100))
        (b.folder / "tools.yaml").write_text((b.folder / "tools.yaml").read_text() + "# B\n")
        b.record_hand_edits()
    sync.sync(b, str(remote))
    versions = b.history.versions()
    own = next(v for v in versions if v.subject == "Hand edit of tools.yaml")
    assert versions[versions.index(own) + 1].subject == "Hand edit of lessons.md"
    real = git(b.history.git_dir, "rev-parse", f"{own.commit}^").strip()
    assert b.history.parent(own).commit == real
    b.history.refresh()                          # the path that reads no further back too
    assert b.history.parent(b.history.resolve(str(own.number))).commit == real
    assert "# B" in b.history.diff(b.history.parent(own), own)
    assert "From A" not in b.history.diff(b.history.parent(own), own)


def test_a_remote_holding_another_agents_history_is_refused(machines, tmp_path):
    _, _, remote = machines
    other = Agent.create(str(tmp_path / "other"))
    before = snapshot(other)
    with pytest.raises(Conflict, match="another agent's history"):
        sync.sync(other, str(remote))
    assert snapshot(other) == before


def test_persona_changed_in_the_same_lines_on_both_sides_names_the_file():
    from agentmem.sync.merge import merge_memory

    base = {"persona.md": "---\nname: x\n---\nBe brief.\n"}
    with pytest.raises(Conflict, match=r"^persona\.md: changed in the same lines"):
        merge_memory(base, {"persona.md": "---\nname: x\n---\nBe terse.\n"},
                     {"persona.md": "---\nname: x\n---\nBe thorough.\n"})
    merged = merge_memory(base, {"persona.md": "---\nname: y\n---\nBe brief.\n"},
                          {"persona.md": "---\nname: x\n---\nBe thorough.\n"})
    assert merged.files["persona.md"] == "---\nname: y\n---\nBe thorough.\n"


def test_a_lesson_removed_on_one_side_and_changed_on_the_other_is_a_conflict():
    removed = SEED.split("## Quote the failing line")[0].rstrip("\n") + "\n"
    changed = SEED.replace("quote the line that failed", "quote the whole traceback")
    with pytest.raises(Conflict, match="lesson L2 'Quote the failing line'"):
        merge_lessons(SEED, removed, changed, "lessons.md")


def test_a_bare_name_is_copied_into_the_agents_home(machines, cli, tmp_path):
    _, _, remote = machines
    result = cli("sync", "mirror", remote)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "home" / "mirror" / "lessons.md").read_text() == SEED
    assert cli("sync", "mirror").exit_code == 2        # no remote: it is not set in persona.md


def test_a_lesson_counted_on_one_side_and_edited_on_the_other_keeps_both():
    counted = SEED.replace("<!-- id: L1; helpful: 0; harmful: 0 -->",
                           "<!-- id: L1; evidence: e7-aaaaaa; helpful: 2; harmful: 0 -->")
    edited = SEED.replace("Three sentences at most unless asked for more.",
                          "Three sentences at most unless asked for more.\nNo preamble.") \
        .replace("<!-- id: L1; helpful: 0; harmful: 0 -->",
                 "<!-- id: L1; evidence: e5; helpful: 1; harmful: 1 -->")
    lesson = lessons_fmt.parse(merge_lessons(SEED, counted, edited, "lessons.md"))[0].get("L1")
    assert lesson.body.endswith("No preamble.") and lesson.helpful == 3 and lesson.harmful == 1
    assert lesson.evidence == ["e7-aaaaaa", "e5"]


def test_events_arriving_while_a_batch_sleep_is_out_are_refused(machines):
    a, b, remote = machines
    a.journal.append({"kind": "user", "content": "from A"})
    sync.sync(a, str(remote))
    b.update_state(batch={"status": "submitted", "id": "batch_1"})
    before = snapshot(b)
    with pytest.raises(Conflict, match="batch sleep"):
        sync.sync(b, str(remote))
    assert snapshot(b) == before
    b.update_state(batch={"status": "applied", "id": "batch_1"})
    assert sync.sync(b, str(remote)).events_in == 1


def test_a_token_in_the_remote_url_is_never_shown_or_kept(blank: Agent, cli, monkeypatch):
    for proxy in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                  "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)      # port 9 on this machine, nothing else
    monkeypatch.setenv("NO_PROXY", "*")
    url = "https://me:ghp_0123456789abcdefghijABCDEFGHIJ012345@127.0.0.1:9/me/agent.git"
    result = cli("sync", blank.folder, url)
    assert result.exit_code == 1 and "cannot reach the remote https://127.0.0.1:9/" in result.stderr
    assert "ghp_" not in result.stderr + result.stdout
    assert remotes.display(url) == "https://127.0.0.1:9/me/agent.git"


def test_ssh_is_never_left_waiting_for_a_person(blank: Agent, cli, tmp_path, monkeypatch):
    """An ssh remote whose host key or passphrase would be asked for fails at once, in one
    line: git's ssh runs with BatchMode (a fake ssh on PATH records how it was called)."""
    calls = tmp_path / "ssh-calls"
    fake = tmp_path / "bin" / "ssh"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n'
                    'echo "Host key verification failed." >&2\nexit 255\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{__import__('os').environ['PATH']}")
    monkeypatch.delenv("GIT_SSH_COMMAND", raising=False)
    monkeypatch.delenv("GIT_SSH", raising=False)
    before = snapshot(blank)
    result = cli("sync", blank.folder, "ssh://git@example.invalid/agent.git")
    assert result.exit_code == 1 and "cannot reach the remote" in result.stderr
    assert "-o BatchMode=yes" in calls.read_text()
    assert snapshot(blank) == before
    monkeypatch.setenv("GIT_SSH_COMMAND", f"{fake} -o Mine=1")      # a person's own: kept
    cli("sync", blank.folder, "ssh://git@example.invalid/agent.git")
    assert calls.read_text().splitlines()[-1].startswith("-o Mine=1")


def test_a_sleep_on_one_machine_is_not_learnt_again_on_the_other(machines, model):
    a, b, remote = machines
    a.journal.append({"session": "s1", "kind": "user", "content": "Use ruff, not flake8."},
                     {"session": "s1", "kind": "assistant", "content": "Noted."})
    said = [e["id"] for e in events(a) if e.get("content") == "Use ruff, not flake8."][0]
    b.journal.append({"session": "s2", "kind": "user", "content": "Answer in French."})
    model.push(json.dumps({"summary": "ruff", "operations": [
        {"op": "add", "title": "Lint with ruff", "body": "The team uses ruff, not flake8.",
         "rationale": "corrected", "evidence": [said]}]}))
    core.apply(core.propose(a, SPEC))
    tag_a, tag_b = a.journal.machine_tag(), b.journal.machine_tag()
    # the pass read the shared plain events and A's two: one mark per machine
    assert events(a)[-1]["kind"] == "sleep"
    assert events(a)[-1]["consumed"] == ["e2", f"e4-{tag_a}"]
    sync.sync(a, str(remote))
    assert sync.sync(b, str(remote)).events_in == 3          # A's two events and its sleep
    assert b.journal.count_new(b.sleep_cursor()) == 1        # B's own event only
    model.push(json.dumps({"summary": "nothing", "operations": []}))
    proposal = core.propose(b, SPEC)
    assert proposal is not None and proposal.events == 1
    sent = model.calls[-1]["messages"][1]["content"]
    assert "Answer in French." in sent and "Use ruff" not in sent and "Noted." not in sent
    core.apply(proposal)
    # the cursor moved past A's events too: nothing is offered again
    assert core.propose(b, SPEC) is None
    assert set(events(b)[-1]["consumed"]) == {f"e3-{tag_b}", f"e5-{tag_a}"}
    assert list(titles(b)).count("Lint with ruff") == 1


def test_learnable_skips_only_what_a_sleep_event_says_it_consumed():
    from agentmem.journal import consumed, learnable

    log = [{"id": "e1", "kind": "user"}, {"id": "e2-aaaa11", "kind": "user"},
           {"id": "e2-bbbb22", "kind": "user"}, {"id": "e3-aaaa11", "kind": "feedback"},
           {"id": "e4-aaaa11", "kind": "sleep", "consumed": ["e1", "e2-aaaa11"]},
           {"id": "e5-bbbb22", "kind": "user"}]
    assert [e["id"] for e in learnable(log)] == ["e2-bbbb22", "e3-aaaa11", "e5-bbbb22"]
    assert consumed(log) == ["e1", "e4-aaaa11", "e5-bbbb22"]
    # a sleep event written before marks were recorded skips nothing (old logs)
    old = [{**e, "consumed": None} if e["kind"] == "sleep" else e for e in log]
    assert [e["id"] for e in learnable(old)] == ["e1", "e2-aaaa11", "e2-bbbb22", "e3-aaaa11",
                                                 "e5-bbbb22"]


def test_batch_sleep_skips_what_the_other_machines_sleep_consumed(machines, model, cli,
                                                                 tmp_path, monkeypatch):
    from wire import openai_batch

    a, b, remote = machines
    a.journal.append({"session": "s1", "kind": "user", "content": "Use ruff, not flake8."},
                     {"session": "s1", "kind": "assistant", "content": "Noted."})
    noted = [e["id"] for e in events(a) if e.get("content") == "Noted."][0]
    model.push(json.dumps({"summary": "nothing", "operations": []}))
    core.apply(core.propose(a, SPEC))
    sync.sync(a, str(remote))
    sync.sync(b, str(remote))
    b.journal.append({"session": "s2", "kind": "user", "content": "Answer in French."})
    # an answer citing an event B's request did not show (A's pass consumed it) is refused
    answer = json.dumps({"summary": "french", "operations": [
        {"op": "add", "title": "Answer in French", "body": "The user reads French best.",
         "rationale": "asked", "evidence": [noted]}]})
    monkeypatch.setenv("AGENTMEM_BATCHES", str(tmp_path / "batches"))
    monkeypatch.setenv("AGENTMEM_RETRIES", "0")
    with openai_batch.serve(lambda line: answer) as server:
        result = cli("sleep", b.folder, "--batch", "--model", "openai/gpt-4o-mini")
        assert result.exit_code == 0, result.stderr
        [(_, lines)] = server.inputs.items()
        sent = json.dumps(lines[0]["body"]["messages"])
        assert "Answer in French." in sent and "Noted." not in sent and "ruff" not in sent
        assert Agent.open(b.folder).read_state()["batch"]["events"] == 1
        cli("sleep", b.folder, "--collect")
        result = cli("sleep", b.folder, "--collect", "--yes", "--json")
    [outcome] = json.loads(result.stdout)
    assert outcome["status"] == "refused" and noted in outcome["message"]


def test_the_lesson_not_yet_pushed_is_renumbered_with_its_references():
    from agentmem.sync.merge import merge_memory

    archive = "# Archive\n\nRetired lessons.\n"
    mine_lessons = SEED.split("## Quote the failing line")[0] + \
        "## Mine\n<!-- id: L3; helpful: 0; harmful: 0 -->\nQuote the whole traceback.\n"
    base = {"lessons.md": SEED, "archive.md": archive}
    local = {"lessons.md": mine_lessons, "archive.md": archive + (
        "\n## Quote the failing line\n<!-- id: L2; helpful: 0; harmful: 0 -->\n"
        "When a test fails, quote the line that failed.\n\n_Retired 2026-12-05: merged into "
        "L3. The same advice_\n")}
    remote = {"lessons.md": SEED + "\n## Theirs\n<!-- id: L3; helpful: 0; harmful: 0 -->\n"
              "theirs\n", "archive.md": archive}
    merged = merge_memory(base, local, remote, highest_local=3)
    assert merged.renumbered == {"L3": "L4"}
    doc = lessons_fmt.parse(merged.files["lessons.md"])[0]
    assert {x.id: x.title for x in doc.lessons} == {"L1": "Keep replies short", "L3": "Theirs",
                                                    "L4": "Mine"}
    assert "merged into L4. The same advice" in merged.files["archive.md"]
    # the remote's lesson keeps its id and its text byte for byte
    assert "## Theirs\n<!-- id: L3; helpful: 0; harmful: 0 -->\ntheirs\n" in \
        merged.files["lessons.md"]


def test_the_command_names_a_renumbered_lesson(machines, cli):
    a, b, remote = machines
    add_lesson_by_hand(a, "From A", "A's lesson.", "L3")
    add_lesson_by_hand(b, "From B", "B's lesson.", "L3")
    assert cli("sync", a.folder, remote).exit_code == 0
    result = cli("sync", b.folder, remote)
    assert result.exit_code == 0, result.stderr
    assert "lesson L3 added here is now L4 (the remote had given L3 to another lesson)" in \
        result.stdout
    assert titles(b)["From A"] == "L3" and titles(b)["From B"] == "L4"


def test_the_agent_is_not_locked_while_sync_talks_to_the_remote(machines, monkeypatch):
    """A chat's memory edit or a sleep pass during the fetch goes ahead (no lock held over the
    network), and what it wrote is merged and pushed in the same sync."""
    a, b, remote = machines
    b.journal.append({"kind": "user", "content": "from B"})
    (b.folder / "tools.yaml").write_text((b.folder / "tools.yaml").read_text() + "# B\n")
    sync.sync(b, str(remote))
    real = remotes.fetch
    wrote: list[str] = []

    def fetch_while_someone_writes(history, url, refs):
        other = Agent.open(a.folder)                 # another session of the same agent
        with other.sleep_lock():                     # a sleep pass could start
            pass
        lessons = (other.folder / "lessons.md").read_text()
        version = other.write({"lessons.md": lessons + "\n## Written meanwhile\n<!-- id: L3; "
                               "helpful: 0; harmful: 0 -->\nDuring the fetch.\n"},
                              "agent", "An edit while sync fetched")
        wrote.append(version.commit)
        other.journal.append({"kind": "user", "content": "said meanwhile"})
        return real(history, url, refs)

    monkeypatch.setattr(remotes, "fetch", fetch_while_someone_writes)
    outcome = sync.sync(a, str(remote))
    assert wrote and outcome.pushed and outcome.pulled == "merge"
    pushed = git(remote, "rev-parse", remotes.MEMORY).strip()
    assert pushed == a.history.head()
    assert git(remote, "merge-base", "--is-ancestor", wrote[0], pushed) == ""
    monkeypatch.setattr(remotes, "fetch", real)
    sync.sync(b, str(remote))
    assert titles(b)["Written meanwhile"] == "L3"
    assert "said meanwhile" in {e.get("content") for e in events(b)}


def test_two_syncs_of_one_agent_take_turns(machines):
    from agentmem.errors import Locked
    from agentmem.locks import AgentLock

    a, _, remote = machines
    with AgentLock(a.state_dir / sync.SYNC_LOCK, "held", "wait"):
        before = snapshot(a)
        with pytest.raises(Locked, match="a sync is already running"):
            sync.sync(Agent.open(a.folder), str(remote))
        assert snapshot(a) == before


def test_skip_reverted_matches_the_reverted_version_by_commit_not_number(machines, model,
                                                                         monkeypatch):
    """Both machines' memory edits made version 3; after a sync, the revert of A's edit leaves
    out A's session only."""
    import time
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from agentmem import history as history_module
    from agentmem import journal as journal_module
    from agentmem.chat import ChatSession
    from agentmem.portable import finetune
    from agentmem.scripted import ToolCall

    a, b, remote = machines
    chat = ModelSpec("scripted/test", None, "test")

    def session(agent: Agent, user: str, old: str, new: str) -> None:
        model.push(ToolCall("memory", {"command": "str_replace", "path": "/memories/lessons.md",
                                       "old_str": old, "new_str": new, "reason": user},
                            id="c1"), f"Done: {user}")
        with ChatSession(agent, chat) as s:
            s.send(user)

    session(a, "Shorter replies", "Three sentences at most", "Two sentences at most")
    with monkeypatch.context() as later:         # B's session runs a little later
        later.setattr(history_module, "time", SimpleNamespace(time=lambda: time.time() + 100))
        later.setattr(journal_module, "now_iso", lambda: (datetime.now(UTC) + timedelta(
            seconds=100)).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        session(b, "Whole tracebacks", "quote the line that failed",
                "quote the whole traceback")
    edits = {agent.folder: [e for e in events(agent) if e["kind"] == "memory_edit"]
             for agent in (a, b)}
    assert edits[a.folder][0]["version"] == edits[b.folder][0]["version"] == 3
    a_edit = next(v for v in a.history.versions() if v.author == "agent")
    sync.sync(a, str(remote))
    sync.sync(b, str(remote))
    sync.sync(a, str(remote))
    a.revert(a_edit.commit)
    assert "Two sentences" not in (a.folder / "lessons.md").read_text()
    for agent in (a, b):
        sync.sync(agent, str(remote))
        result = finetune.finetune(agent, skip_reverted=True)
        users = [json.loads(x)["messages"][1]["content"] for x in result.text.splitlines()]
        assert users == ["Hello", "Whole tracebacks"], agent.folder
        assert "left out 1 sessions: their memory edits were later reverted" in result.notes
