"""The command line, end to end: every command through the real CLI (in-process CliRunner),
plus a few subprocess runs for `python -m agentmem` and import costs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentmem import __version__
from agentmem.agent import Agent
from agentmem.samples import samples_root
from tests.conftest import snapshot

SAMPLES = ("code-reviewer", "ops-oncall", "research-assistant")
MEMORY = ("persona.md", "lessons.md", "tools.yaml")
HISTORY_LINE = re.compile(r"^\s*(\d+) ([0-9a-f]{7})  .*? (human|agent|sleep|revert|import|new)\s+(.*)$")
REPO = Path(__file__).resolve().parent.parent


# -- helpers ---------------------------------------------------------------------------------

def add_lesson(folder: Path, title: str, body: str) -> None:
    path = folder / "lessons.md"
    path.write_text(path.read_text(encoding="utf-8") + f"\n## {title}\n{body}\n", encoding="utf-8")


def append_persona(folder: Path, text: str) -> None:
    path = folder / "persona.md"
    path.write_text(path.read_text(encoding="utf-8") + f"\n{text}\n", encoding="utf-8")


def replace_in(folder: Path, name: str, old: str, new: str) -> None:
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def memory_files(folder: Path) -> dict[str, str]:
    return {n: (folder / n).read_text(encoding="utf-8") for n in MEMORY if (folder / n).exists()}


def history_json(cli, folder: Path) -> dict:
    result = cli("history", folder, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def three_versions(agent: Agent) -> Agent:
    """v1 new, v2 a persona hand edit, v3 a lessons hand edit (all recorded)."""
    append_persona(agent.folder, "Always answer in English.")
    assert agent.record_hand_edits() is not None
    add_lesson(agent.folder, "Prefer pathlib", "Use pathlib, not os.path.")
    assert agent.record_hand_edits() is not None
    return agent


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 2, stderr
    assert lines[0].startswith("Error: ")
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in stderr


# -- new -------------------------------------------------------------------------------------

def test_new_blank_creates_a_valid_agent_with_one_version(cli, tmp_path: Path):
    target = tmp_path / "scratchpad"
    result = cli("new", target)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(target.resolve())
    assert "created scratchpad" in result.stderr
    for name in (*MEMORY, "log.jsonl"):
        assert (target / name).is_file()
    assert "name: scratchpad" in (target / "persona.md").read_text()
    assert (target / ".agentmem" / "git" / "HEAD").is_file()
    assert not (target / ".git").exists()
    data = history_json(cli, target)
    assert data["uncommitted"] == []
    assert [(v["number"], v["author"], v["subject"]) for v in data["versions"]] == [
        (1, "new", "Create agent")]
    show = cli("show", target, "--json")
    assert show.exit_code == 0, show.stderr
    summary = json.loads(show.stdout)
    assert summary["lessons"] == 0 and summary["versions"] == 1
    assert summary["log"] == {"events": 0, "since_sleep": 0}


@pytest.mark.parametrize("sample", SAMPLES)
def test_new_from_each_sample_copies_its_files_and_log(cli, tmp_path: Path, sample: str):
    target = tmp_path / "copy"
    result = cli("new", target, "--from", sample)
    assert result.exit_code == 0, result.stderr
    assert f"from sample '{sample}'" in result.stderr
    source = samples_root() / sample
    for name in (*MEMORY, "log.jsonl"):
        assert (target / name).read_bytes() == (source / name).read_bytes(), name
    data = history_json(cli, target)
    assert data["uncommitted"] == []
    assert [(v["author"], v["subject"]) for v in data["versions"]] == [
        ("new", f"Create agent from sample '{sample}'")]
    # the sample itself gained no history
    assert not (source / ".agentmem").exists()
    show = cli("show", target, "--json")
    assert show.exit_code == 0, show.stderr
    assert json.loads(show.stdout)["log"]["events"] > 0


def test_new_from_a_folder_path_copies_memory_but_not_history(cli, agent: Agent, tmp_path: Path):
    add_lesson(agent.folder, "Prefer pathlib", "Use pathlib.")
    agent.record_hand_edits()
    target = tmp_path / "clone"
    result = cli("new", target, "--from", agent.folder)
    assert result.exit_code == 0, result.stderr
    assert memory_files(target) == memory_files(agent.folder)
    assert (target / "log.jsonl").read_bytes() == (agent.folder / "log.jsonl").read_bytes()
    versions = history_json(cli, target)["versions"]
    assert len(versions) == 1 and versions[0]["author"] == "new"
    assert str(agent.folder) in versions[0]["subject"]


def test_new_bare_name_resolves_under_agentmem_home(cli, tmp_path: Path):
    home = Path(os.environ["AGENTMEM_HOME"])
    result = cli("new", "scratch")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str((home / "scratch").resolve())
    assert (home / "scratch" / "persona.md").is_file()
    assert not (Path.cwd() / "scratch").exists()
    # and the bare name finds it again from anywhere
    show = cli("show", "scratch", "--json")
    assert show.exit_code == 0, show.stderr
    assert json.loads(show.stdout)["path"] == str((home / "scratch").resolve())
    assert cli("history", "scratch").exit_code == 0


def test_new_into_a_non_empty_folder_is_a_usage_error_and_changes_nothing(cli, tmp_path: Path):
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")
    result = cli("new", target, "--from", "code-reviewer")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "already exists and is not empty")
    assert result.stdout == ""
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    assert (target / "notes.txt").read_text() == "mine\n"


def test_new_over_an_existing_agent_changes_nothing(cli, agent: Agent):
    before = snapshot(agent)
    result = cli("new", agent.folder)
    assert result.exit_code == 2
    assert "already exists" in result.stderr
    assert snapshot(agent) == before


def test_new_from_unknown_sample_lists_the_samples_and_creates_nothing(cli, tmp_path: Path):
    target = tmp_path / "x"
    result = cli("new", target, "--from", "no-such-sample")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "no sample agent 'no-such-sample'")
    hint = result.stderr.strip().splitlines()[1]
    for sample in SAMPLES:
        assert sample in hint
    assert not target.exists()


def test_new_list_samples(cli, tmp_path: Path):
    result = cli("new", "--list-samples")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == list(SAMPLES)
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize("name", ["2024", "yes", "@bot", "a: b", "[x]"])
def test_new_blank_accepts_any_folder_name(cli, tmp_path: Path, name: str):
    target = tmp_path / name
    result = cli("new", target)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(cli("show", target, "--json").stdout)
    assert summary["name"] == name


def test_new_onto_an_existing_file_is_a_usage_error(cli, tmp_path: Path):
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    result = cli("new", target)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, str(target))
    assert target.read_text() == "mine\n"


def test_new_under_a_file_is_a_one_line_error(cli, tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine\n")
    result = cli("new", tmp_path / "notes.txt" / "agent")
    assert result.exit_code in (1, 2)
    assert_one_line_error(result.stderr)


# -- show ------------------------------------------------------------------------------------

def test_show_text(cli, agent: Agent):
    result = cli("show", agent.folder)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"code-reviewer  {agent.folder}")
    assert "model        openai/gpt-4.1-mini" in out
    assert re.search(r"persona\.md\s+~\d+ tokens / 1500 budget", out)
    assert re.search(r"lessons\.md\s+~\d+ tokens / 4000 budget\s+\(12 lessons, 1 pinned\)", out)
    assert re.search(r"tools\.yaml\s+~\d+ tokens\s+\(3 tools\)", out)
    from agentmem.journal import BOOKKEEPING

    new = sum(1 for e in agent.journal.read().events if e["kind"] not in BOOKKEEPING)
    assert 0 < new < 55            # session starts and ends are no experience to learn from
    assert re.search(rf"log\.jsonl\s+55 events, {new} since last sleep", out)
    assert re.search(r"versions\s+1 \(latest #1 [0-9a-f]{7} new: Create agent from sample", out)
    assert re.search(r"last sleep\s+never", out)
    assert "warning" not in result.stderr


def test_show_json(cli, agent: Agent):
    result = cli("show", agent.folder, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["name"] == "code-reviewer"
    assert summary["path"] == str(agent.folder)
    assert summary["lessons"] == 12
    assert summary["versions"] == 1
    assert summary["latest_version"]["number"] == 1
    assert summary["latest_version"]["author"] == "new"
    assert summary["last_sleep"] is None
    assert summary["uncommitted"] == []
    files = {f["file"]: f for f in summary["files"]}
    assert set(files) == {"persona.md", "lessons.md", "tools.yaml"}
    assert files["persona.md"]["budget"] == 1500
    assert files["lessons.md"]["budget"] == 4000
    assert files["tools.yaml"]["budget"] is None
    for f in files.values():
        assert isinstance(f["tokens"], int) and f["tokens"] > 0
        assert f["over_budget"] is False
    assert files["lessons.md"]["detail"] == "12 lessons, 1 pinned"
    # a longer file has more tokens
    assert files["lessons.md"]["tokens"] > files["persona.md"]["tokens"]


def test_show_counts_versions_and_flags_over_budget(cli, agent: Agent):
    three_versions(agent)
    replace_in(agent.folder, "persona.md", "persona: 1500", "persona: 10")
    agent.record_hand_edits()
    summary = json.loads(cli("show", agent.folder, "--json").stdout)
    assert summary["versions"] == 4
    assert summary["lessons"] == 13
    assert summary["latest_version"]["number"] == 4
    assert summary["latest_version"]["author"] == "human"
    persona = next(f for f in summary["files"] if f["file"] == "persona.md")
    assert persona["budget"] == 10 and persona["over_budget"] is True
    text = cli("show", agent.folder).stdout
    assert re.search(r"persona\.md\s+~\d+ tokens / 10 budget\s+over budget", text)


def test_show_warns_about_uncommitted_hand_edits_on_stderr(cli, agent: Agent):
    add_lesson(agent.folder, "Prefer pathlib", "Use pathlib.")
    before = snapshot(agent)
    result = cli("show", agent.folder)
    assert result.exit_code == 0, result.stderr
    assert "warning: uncommitted hand edits in lessons.md" in result.stderr
    assert "warning" not in result.stdout
    assert "13 lessons" in result.stdout
    data = json.loads(cli("show", agent.folder, "--json").stdout)
    assert data["uncommitted"] == ["lessons.md"]
    # show only reads: the hand edit is still unrecorded
    assert snapshot(agent) == before


# -- history ---------------------------------------------------------------------------------

def test_history_lists_newest_first_with_authors(cli, agent: Agent):
    three_versions(agent)
    result = cli("history", agent.folder)
    assert result.exit_code == 0, result.stderr
    rows = [HISTORY_LINE.match(line) for line in result.stdout.splitlines()]
    assert all(rows), result.stdout
    assert [(int(m[1]), m[3]) for m in rows] == [(3, "human"), (2, "human"), (1, "new")]
    assert rows[0][4] == "Hand edit of lessons.md"
    assert rows[1][4] == "Hand edit of persona.md"
    assert rows[2][4] == "Create agent from sample 'code-reviewer'"
    commits = [v.commit for v in agent.history.versions()]
    assert [m[2] for m in rows] == [c[:7] for c in commits]


def test_history_limit(cli, agent: Agent):
    three_versions(agent)
    for flag in ("-n", "--limit"):
        result = cli("history", agent.folder, flag, "2")
        assert result.exit_code == 0, result.stderr
        numbers = [int(HISTORY_LINE.match(line)[1]) for line in result.stdout.splitlines()]
        assert numbers == [3, 2]
    assert len(cli("history", agent.folder, "-n", "0").stdout.splitlines()) == 3


def test_history_json(cli, agent: Agent):
    three_versions(agent)
    data = history_json(cli, agent.folder)
    assert data["uncommitted"] == []
    versions = data["versions"]
    assert [v["number"] for v in versions] == [3, 2, 1]
    assert [v["author"] for v in versions] == ["human", "human", "new"]
    assert [v["commit"] for v in versions] == [v.commit for v in agent.history.versions()]
    for v in versions:
        assert set(v) == {"number", "commit", "time", "author", "subject", "message", "log_position"}
        assert re.fullmatch(r"[0-9a-f]{40}", v["commit"])
        assert v["log_position"] == 55
        assert "Agentmem-Author" not in v["message"]
    limited = json.loads(cli("history", agent.folder, "--json", "-n", "1").stdout)
    assert [v["number"] for v in limited["versions"]] == [3]


def test_history_shows_uncommitted_hand_edits_first(cli, agent: Agent):
    add_lesson(agent.folder, "Prefer pathlib", "Use pathlib.")
    append_persona(agent.folder, "Be brief.")
    before = snapshot(agent)
    result = cli("history", agent.folder)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].lstrip().startswith("*")
    assert "uncommitted hand edits: lessons.md, persona.md" in lines[0]
    assert HISTORY_LINE.match(lines[1])[1] == "1"
    data = history_json(cli, agent.folder)
    assert data["uncommitted"] == ["lessons.md", "persona.md"]
    assert len(data["versions"]) == 1
    assert snapshot(agent) == before


# -- diff ------------------------------------------------------------------------------------

def test_diff_default_is_the_latest_change(cli, agent: Agent):
    three_versions(agent)
    result = cli("diff", agent.folder)
    assert result.exit_code == 0, result.stderr
    assert "version 3 (human): Hand edit of lessons.md" in result.stderr
    assert "+## Prefer pathlib" in result.stdout
    assert "diff --git a/lessons.md b/lessons.md" in result.stdout
    assert "persona.md" not in result.stdout
    assert "Always answer in English" not in result.stdout


def test_diff_default_for_a_fresh_agent_is_its_creation(cli, agent: Agent):
    result = cli("diff", agent.folder)
    assert result.exit_code == 0, result.stderr
    assert "version 1 (new)" in result.stderr
    for name in MEMORY:
        assert f"+++ b/{name}" in result.stdout


def test_diff_shows_uncommitted_hand_edits_without_recording_them(cli, agent: Agent):
    three_versions(agent)
    replace_in(agent.folder, "lessons.md", "Label every comment [blocking] or [nit]",
               "Label every comment [blocking], [nit] or [question]")
    before = snapshot(agent)
    result = cli("diff", agent.folder)
    assert result.exit_code == 0, result.stderr
    assert "uncommitted hand edits" in result.stderr
    assert "-## Label every comment [blocking] or [nit]" in result.stdout
    assert "+## Label every comment [blocking], [nit] or [question]" in result.stdout
    assert "Prefer pathlib" not in result.stdout      # version 3's change is not repeated
    data = json.loads(cli("diff", agent.folder, "--json").stdout)
    assert data["to"] == "working tree"
    assert data["from"]["number"] == 3
    assert snapshot(agent) == before


def test_diff_one_version_is_that_versions_change(cli, agent: Agent):
    three_versions(agent)
    result = cli("diff", agent.folder, "2")
    assert result.exit_code == 0, result.stderr
    assert "version 2 (human): Hand edit of persona.md" in result.stderr
    assert "+Always answer in English." in result.stdout
    assert "lessons.md" not in result.stdout
    assert "Prefer pathlib" not in result.stdout
    # '#2' is accepted too
    assert cli("diff", agent.folder, "#2").stdout == result.stdout


def test_diff_two_versions(cli, agent: Agent):
    three_versions(agent)
    result = cli("diff", agent.folder, "1", "3")
    assert result.exit_code == 0, result.stderr
    assert "version 1 to version 3" in result.stderr
    assert "+Always answer in English." in result.stdout
    assert "+## Prefer pathlib" in result.stdout
    backwards = cli("diff", agent.folder, "3", "1")
    assert backwards.exit_code == 0, backwards.stderr
    assert "-## Prefer pathlib" in backwards.stdout
    assert "-Always answer in English." in backwards.stdout
    same = cli("diff", agent.folder, "2", "2")
    assert same.exit_code == 0 and same.stdout == ""
    assert "no changes" in same.stderr


def test_diff_relative_positions(cli, agent: Agent):
    three_versions(agent)
    head1 = cli("diff", agent.folder, "HEAD~1")
    assert head1.exit_code == 0, head1.stderr
    assert "version 2 (human)" in head1.stderr
    assert head1.stdout == cli("diff", agent.folder, "2").stdout
    assert cli("diff", agent.folder, "~1").stdout == head1.stdout
    assert cli("diff", agent.folder, "HEAD").stdout == cli("diff", agent.folder, "3").stdout
    assert cli("diff", agent.folder, "HEAD~2").stdout == cli("diff", agent.folder, "1").stdout
    too_far = cli("diff", agent.folder, "HEAD~3")
    assert too_far.exit_code == 1
    assert_one_line_error(too_far.stderr, "goes back further than the 3 versions")


def test_diff_by_short_hash(cli, agent: Agent):
    three_versions(agent)
    commit = agent.history.versions()[1].commit       # version 2
    by_number = cli("diff", agent.folder, "2")
    for ref in (commit[:7], commit[:12], commit, commit[:7].upper()):
        result = cli("diff", agent.folder, ref)
        assert result.exit_code == 0, (ref, result.stderr)
        assert result.stdout == by_number.stdout
        assert "version 2 (human)" in result.stderr


def test_diff_stat(cli, agent: Agent):
    three_versions(agent)
    result = cli("diff", agent.folder, "1", "3", "--stat")
    assert result.exit_code == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert rows == {"lessons.md": ["+3", "-0"], "persona.md": ["+2", "-0"]}
    assert "@@" not in result.stdout


def test_diff_json_structure(cli, agent: Agent):
    three_versions(agent)
    replace_in(agent.folder, "persona.md", "Always answer in English.", "Always answer in French.")
    agent.record_hand_edits()
    result = cli("diff", agent.folder, "HEAD~1", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"from", "to", "label", "files", "diff"}
    assert data["from"]["number"] == 2 and data["to"]["number"] == 3
    assert data["label"] == "version 3 (human): Hand edit of lessons.md"
    assert [f["file"] for f in data["files"]] == ["lessons.md"]
    entry = data["files"][0]
    assert set(entry) == {"file", "added", "removed", "diff"}
    assert (entry["added"], entry["removed"]) == (3, 0)
    assert entry["diff"].startswith("diff --git a/lessons.md b/lessons.md")
    assert entry["diff"] == data["diff"]
    latest = json.loads(cli("diff", agent.folder, "--json").stdout)
    persona = latest["files"][0]
    assert (persona["file"], persona["added"], persona["removed"]) == ("persona.md", 1, 1)
    both = json.loads(cli("diff", agent.folder, "1", "4", "--json").stdout)
    assert "".join(f["diff"] for f in both["files"]) == both["diff"]
    assert [f["file"] for f in both["files"]] == ["lessons.md", "persona.md"]


def test_diff_since_sleep_without_a_sleep_is_a_clear_error(cli, agent: Agent):
    three_versions(agent)
    result = cli("diff", agent.folder, "--since-sleep")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "never slept")
    assert result.stdout == ""
    bad = cli("diff", agent.folder, "2", "--since-sleep")
    assert bad.exit_code == 2
    assert "--since-sleep takes no versions" in bad.stderr


def test_hints_name_only_commands_that_exist(cli, agent: Agent):
    from typer.main import get_command

    from agentmem.cli import app

    commands = set(get_command(app).commands)   # type: ignore[attr-defined]
    result = cli("diff", agent.folder, "--since-sleep")
    named = re.findall(r"agentmem ([a-z-]+)", result.stderr)
    assert named
    assert set(named) <= commands


@pytest.mark.parametrize("ref", ["99", "zzz", "HEAD~9", "deadbeef"])
def test_diff_unknown_version_is_one_error_line_and_a_hint(cli, agent: Agent, ref: str):
    result = cli("diff", agent.folder, ref)
    assert result.exit_code == 1
    assert_one_line_error(result.stderr)
    assert ref in result.stderr.splitlines()[0]
    assert "agentmem history" in result.stderr.splitlines()[1]
    assert result.stdout == ""


def test_diff_unknown_version_in_a_real_process_has_no_traceback(agent: Agent):
    proc = subprocess.run([sys.executable, "-m", "agentmem", "diff", str(agent.folder), "nope"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert_one_line_error(proc.stderr, "unknown version 'nope'")


# -- revert ----------------------------------------------------------------------------------

def test_revert_by_number_undoes_only_that_version(cli, agent: Agent):
    three_versions(agent)
    result = cli("revert", agent.folder, "2")
    assert result.exit_code == 0, result.stderr
    assert re.fullmatch(r"4 [0-9a-f]{7} Revert version 2: Hand edit of persona\.md\n", result.stdout)
    assert "Always answer in English" not in (agent.folder / "persona.md").read_text()
    assert "## Prefer pathlib" in (agent.folder / "lessons.md").read_text()
    v1 = agent.history.versions()[-1]
    assert (agent.folder / "persona.md").read_text() == agent.history.file_at(v1, "persona.md")
    data = history_json(cli, agent.folder)
    assert [(v["number"], v["author"]) for v in data["versions"]] == [
        (4, "revert"), (3, "human"), (2, "human"), (1, "new")]
    assert data["uncommitted"] == []
    again = cli("revert", agent.folder, "2")
    assert again.exit_code == 2
    assert "already undone" in again.stderr


def test_revert_head_undoes_the_latest_change(cli, agent: Agent):
    three_versions(agent)
    after_v2 = memory_files(agent.folder)
    after_v2["lessons.md"] = agent.history.file_at(agent.history.versions()[1], "lessons.md")
    result = cli("revert", agent.folder, "HEAD")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("4 ")
    assert "Revert version 3: Hand edit of lessons.md" in result.stdout
    assert memory_files(agent.folder) == after_v2
    assert "Always answer in English" in (agent.folder / "persona.md").read_text()


def test_revert_adjacent_lessons_undoes_one_lesson(cli, agent: Agent):
    add_lesson(agent.folder, "First new lesson", "one")
    agent.record_hand_edits()
    add_lesson(agent.folder, "Second new lesson", "two")
    agent.record_hand_edits()
    result = cli("revert", agent.folder, "2")
    assert result.exit_code == 0, result.stderr
    lessons = (agent.folder / "lessons.md").read_text()
    assert "## First new lesson" not in lessons
    assert "## Second new lesson" in lessons
    assert json.loads(cli("show", agent.folder, "--json").stdout)["lessons"] == 13


def test_revert_to_restores_a_whole_state(cli, agent: Agent):
    created = memory_files(agent.folder)
    three_versions(agent)
    result = cli("revert", agent.folder, "--to", "1")
    assert result.exit_code == 0, result.stderr
    assert "4 " in result.stdout and "Restore memory as of version 1" in result.stdout
    assert memory_files(agent.folder) == created
    versions = history_json(cli, agent.folder)["versions"]
    assert [v["author"] for v in versions] == ["revert", "human", "human", "new"]
    # history keeps everything: version 3 is still reachable
    assert "+## Prefer pathlib" in cli("diff", agent.folder, "3").stdout
    again = cli("revert", agent.folder, "--to", "1")
    assert again.exit_code == 2
    assert "already as it was at version 1" in again.stderr


@pytest.mark.parametrize("args", [(), ("2", "--to", "1")], ids=["neither", "both"])
def test_revert_needs_exactly_one_of_version_and_to(cli, agent: Agent, args: tuple[str, ...]):
    three_versions(agent)
    before = snapshot(agent)
    result = cli("revert", agent.folder, *args)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "give either a VERSION to undo or --to VERSION")
    assert result.stdout == ""
    assert snapshot(agent) == before


def test_revert_conflict_changes_nothing(cli, agent: Agent):
    replace_in(agent.folder, "persona.md", "# Code reviewer", "# Code reviewer (v2)")
    agent.record_hand_edits()
    replace_in(agent.folder, "persona.md", "# Code reviewer (v2)", "# Code reviewer (v3)")
    agent.record_hand_edits()
    before = snapshot(agent)
    result = cli("revert", agent.folder, "2")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "persona.md", "nothing was changed", "--to")
    assert result.stdout == ""
    assert snapshot(agent) == before
    assert "# Code reviewer (v3)" in (agent.folder / "persona.md").read_text()


def test_revert_version_one_is_a_clear_error(cli, agent: Agent):
    three_versions(agent)
    before = snapshot(agent)
    result = cli("revert", agent.folder, "1")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "version 1 created the agent; it cannot be undone", "--to")
    assert snapshot(agent) == before


def test_revert_unknown_version(cli, agent: Agent):
    before = snapshot(agent)
    result = cli("revert", agent.folder, "42")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "no version 42")
    assert snapshot(agent) == before


def test_hand_edit_then_revert_keeps_the_hand_edit_in_history(cli, agent: Agent):
    three_versions(agent)
    before_edit = memory_files(agent.folder)
    add_lesson(agent.folder, "Hand-written lesson", "written in an editor")
    hand_edited = memory_files(agent.folder)
    result = cli("revert", agent.folder, "HEAD")
    assert result.exit_code == 0, result.stderr
    assert "Revert version 4: Hand edit of lessons.md" in result.stdout
    # the files are back to the hand edit's predecessor...
    assert memory_files(agent.folder) == before_edit
    # ...and the hand edit is its own version, so nothing was lost
    data = history_json(cli, agent.folder)
    assert data["uncommitted"] == []
    assert [(v["number"], v["author"], v["subject"]) for v in data["versions"][:2]] == [
        (5, "revert", "Revert version 4: Hand edit of lessons.md"),
        (4, "human", "Hand edit of lessons.md")]
    assert "+## Hand-written lesson" in cli("diff", agent.folder, "4").stdout
    assert agent.history.file_at(agent.history.versions()[1], "lessons.md") == hand_edited["lessons.md"]
    # and it can be brought back
    assert cli("revert", agent.folder, "HEAD").exit_code == 0
    assert memory_files(agent.folder) == hand_edited


# -- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["show", "history", "diff"])
def test_missing_agent_path(cli, tmp_path: Path, command: str):
    missing = tmp_path / "nowhere"
    result = cli(command, missing)
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, f"no agent '{missing}'", "agentmem new")
    assert not missing.exists()


def test_missing_bare_name_mentions_agentmem_home(cli):
    result = cli("show", "ghost")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "no agent 'ghost'", os.environ["AGENTMEM_HOME"])


@pytest.mark.parametrize("command", ["show", "history", "diff", "revert"])
def test_folder_without_persona_is_not_an_agent(cli, tmp_path: Path, command: str):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "lessons.md").write_text("# Lessons\n")
    args = [folder, "HEAD"] if command == "revert" else [folder]
    result = cli(command, *args)
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "is not an agent folder (no persona.md)")
    assert sorted(p.name for p in folder.iterdir()) == ["lessons.md"]   # no .agentmem left behind


def test_show_reports_corrupt_persona_yaml_with_its_line(cli, agent: Agent):
    replace_in(agent.folder, "persona.md", "model: openai/gpt-4.1-mini\n",
               "model: openai/gpt-4.1-mini\n  oops: indented\n")
    before = snapshot(agent)
    result = cli("show", agent.folder)
    assert result.exit_code == 1
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith("Error: persona.md:5: invalid YAML")
    assert "hint: " in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(agent) == before
    # history and diff still work, so the broken edit can be seen and undone
    assert cli("history", agent.folder).exit_code == 0
    diff = cli("diff", agent.folder)
    assert diff.exit_code == 0 and "+  oops: indented" in diff.stdout


def test_show_reports_unknown_setting_with_its_line(cli, agent: Agent):
    replace_in(agent.folder, "persona.md", "model: openai/gpt-4.1-mini\n",
               "model: openai/gpt-4.1-mini\nmodle: typo\n")
    result = cli("show", agent.folder)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: persona.md:5: unknown setting 'modle'")


def test_torn_last_log_line_does_not_break_show_or_history(cli, agent: Agent):
    with open(agent.folder / "log.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"id": "e56", "time": "2026-11-20T14:03:11.201Z", "kind": "user", "cont')
    show = cli("show", agent.folder, "--json")
    assert show.exit_code == 0, show.stderr
    summary = json.loads(show.stdout)
    assert summary["log"]["events"] == 55
    assert summary["lessons"] == 12
    text = cli("show", agent.folder)
    assert text.exit_code == 0 and "55 events" in text.stdout
    history = cli("history", agent.folder)
    assert history.exit_code == 0, history.stderr
    assert HISTORY_LINE.match(history.stdout.splitlines()[0])[1] == "1"
    assert cli("diff", agent.folder).exit_code == 0


# -- the program itself ----------------------------------------------------------------------

def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout
    from typer.main import get_command

    from agentmem.cli import app

    commands = set(get_command(app).commands)   # type: ignore[attr-defined]
    assert {"new", "show", "chat", "history", "diff", "revert"} <= commands
    for command in commands:
        assert re.search(rf"^\W*{command}\s", result.stdout, re.M), command
    assert cli("-h").stdout == result.stdout


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"agentmem {__version__}\n"


def test_python_dash_m_agentmem_help_and_version():
    proc = subprocess.run([sys.executable, "-m", "agentmem", "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout and "revert" in proc.stdout
    version = subprocess.run([sys.executable, "-m", "agentmem", "--version"], capture_output=True,
                             text=True, cwd=REPO, timeout=120)
    assert version.returncode == 0
    assert version.stdout.strip() == f"agentmem {__version__}"


LITELLM_PROBE = """\
import sys
sys.argv = ['agentmem', *{args!r}]
from agentmem.cli import main
try:
    main()
except SystemExit:
    pass
print('litellm' in sys.modules)
"""


PROBE_EXPECT = {"history": "Create agent from sample", "diff": "+++ b/persona.md",
                "show": "12 lessons", "--help": "Usage"}


@pytest.mark.parametrize("command", list(PROBE_EXPECT))
def test_commands_without_a_model_never_import_litellm(agent: Agent, command: str):
    args = [command] if command.startswith("-") else [command, str(agent.folder)]
    proc = subprocess.run([sys.executable, "-c", LITELLM_PROBE.format(args=args)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert PROBE_EXPECT[command] in proc.stdout      # the command really ran
    assert proc.stdout.strip().splitlines()[-1] == "False"


PARSERS_LOADED = ("print(sorted(m for m in ('agentmem.lessons', 'agentmem.tooldefs', 'yaml') "
                  "if m in sys.modules))")


@pytest.mark.parametrize("command", ["history", "diff"])
def test_history_and_diff_never_load_the_memory_parsers(agent: Agent, command: str):
    """They read versions only: the lesson and tool parsers (and yaml) stay unloaded."""
    probe = LITELLM_PROBE.replace("print('litellm' in sys.modules)", PARSERS_LOADED)
    proc = subprocess.run([sys.executable, "-c", probe.format(args=[command, str(agent.folder)])],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert PROBE_EXPECT[command] in proc.stdout      # the command really ran
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_new_without_a_name_is_a_usage_error(cli):
    result = cli("new")
    assert result.exit_code == 2 and "give the new agent's NAME" in result.stderr


def test_model_text_in_history_blame_and_revert_is_shown_literally(cli, agent: Agent):
    """A version subject or lesson title a model wrote is never read as markup or escapes."""
    hostile = "[conceal]hidden[/conceal] \x1b]0;title\x07 ok"
    agent.update(lambda t: {"lessons.md": (t["lessons.md"] or "") + "\n## [bold]Loud[/bold]\nx\n"},
                 "agent", hostile)
    out = cli("history", agent.folder).stdout
    assert "[conceal]hidden[/conceal]" in out and "\x1b" not in out and "\\x1b" in out
    result = cli("revert", agent.folder, "HEAD")
    assert result.exit_code == 0 and "[conceal]hidden[/conceal]" in result.stdout


def test_new_prints_the_folder_as_it_is_even_with_brackets(cli, tmp_path: Path):
    """The path on stdout is for scripts: never read as rich markup."""
    target = tmp_path / "x[bold]y[red]z"
    result = cli("new", target)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(target)
