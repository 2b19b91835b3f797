from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentmem.scenarios import JUDGE_SKIPPED, Check, load_scenario

EVALS = Path(__file__).resolve().parents[1] / "evals"
OK = "name: x\npersona: p\nprobes: [{user: q, expect: {contains: a}}]\n"   # a valid start


@pytest.fixture
def offline(monkeypatch):
    """An --offline run installs the scenario's scripted model; afterwards an empty script
    takes its place, so a later test that calls the scripted model without queueing fails."""
    monkeypatch.setenv("AGENTMEM_RETRY_DELAY", "0")
    yield
    from agentmem import llm
    from agentmem.scripted import Script

    llm.install_scripted(Script())


def test_shipped_suite_runs_offline_and_the_conditions_differ(cli, offline):
    result = cli("eval", EVALS, "--offline", "--json")
    assert result.exit_code == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data["offline"] is True and "not a model's intelligence" in data["note"]
    scenarios = {s["name"]: s for s in data["scenarios"]}
    assert len(scenarios) >= 12
    totals = data["totals"]
    assert totals["errors"] == 0 and totals["refused_passes"] == 0
    assert totals["agentmem"]["passed"] == totals["agentmem"]["total"]
    assert totals["memory_checks"]["passed"] == totals["memory_checks"]["total"]
    # the no-memory baseline misses what was learned: the checks really discriminate
    assert totals["no_memory"]["passed"] < totals["agentmem"]["passed"]
    assert totals["canary_retention"]["kept"] == totals["canary_retention"]["total"] > 0
    fc = scenarios["factual-correction"]
    assert fc["probes"]["agentmem"] == {"passed": 1, "total": 1}
    assert fc["probes"]["no_memory"] == {"passed": 0, "total": 1}
    assert fc["memory_tokens"]["after"] > fc["memory_tokens"]["before"]
    assert fc["events"] > 0 and fc["sleeps"] == 1


def test_a_refused_pass_and_failed_checks_fail_the_offline_run(cli, offline, tmp_path: Path):
    text = (EVALS / "factual-correction.yaml").read_text()
    broken = text.replace("evidence: [s1.t2, s2.t2]", "evidence: [e999]")
    path = tmp_path / "broken.yaml"
    path.write_text(broken)
    result = cli("eval", path, "--offline")
    assert result.exit_code == 1
    assert "Error:" not in result.stderr           # the report itself says what failed
    assert "sleep pass refused" in result.stderr and "e999" in result.stderr
    assert "probe 'I am about to push. Which linter should I run?' failed" in result.stderr


def test_table_output_names_every_condition(cli, offline):
    result = cli("eval", EVALS / "factual-correction.yaml", "--offline")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("factual-correction") and "1/1" in line and "0/1" in line
               for line in lines)
    assert "corrections applied after sleep: 1/1 (no memory 0, append-only 1)" in result.stdout
    assert "offline run on the scripted model" in result.stderr


@pytest.mark.parametrize("body,message", [
    ("name: x\n", "'persona' is required text"),
    ("name: x\npersona: p\n", "'probes' must list at least one probe"),
    ("name: x\npersona: p\nprobes: [{user: q}]\n", "probe 1 needs 'user' and 'expect'"),
    ("name: x\npersona: p\nprobs: []\n", "unknown key(s) probs"),
    ("name: x\npersona: p\nsessions: [{turns: []}]\nprobes: [{user: q, expect: {}}]\n",
     "session 1 needs a non-empty 'turns' list"),
    ("name: [x\n", "invalid YAML"),
    (f"{OK}sessions: 5\n", "'sessions' must be a list"),
    (f"{OK}canary: hello\n", "'canary' must be a mapping"),
    (f"{OK}canary: {{title: t}}\n", "canary: body must be non-empty text"),
    (f"{OK}sleep_every: abc\n", "'sleep_every' must be a whole number"),
    (f"{OK}budgets: 5\n", "'budgets' must be a mapping"),
    (f"{OK}budgets: {{lesons: 5}}\n", "unknown key(s) lesons"),
    (f"{OK}budgets: {{lessons: -1}}\n", "budgets: lessons must be a whole number >= 1"),
    (f"{OK}sessions: [{{turns: [{{user: hi, agent_edit: {{body: b}}}}]}}]\n",
     "session 1, turn 1: agent_edit: title must be non-empty text"),
    (f"{OK}sessions: [{{turns: [{{rating: meh}}]}}]\n", "session 1, turn 1: rating is good or bad"),
    (f"{OK}sessions: [{{turns: [{{user: 5}}]}}]\n", "session 1, turn 1: user must be non-empty text"),
    ("name: x\npersona: p\nprobes: [{user: q, expect: {regex: '('}}]\n",
     "probe 1: expect: regex /(/ is invalid"),
    ("name: x\npersona: p\nprobes: [{user: q, expect: {contains: {a: 1}}}]\n",
     "probe 1: expect: contains must be text or a list of texts"),
    ("name: x\npersona: p\nprobes: [{user: q, expect: {}}]\n", "probe 1: expect checks nothing"),
    ("name: x\npersona: p\nprobes: [{user: q, expect: {contains: a}, marker: a}]\n",
     "probe 1: marker, learned_reply, unlearned_reply go together"),
    ("name: x\npersona: p\nprobes: [{user: q, expect: {contains: a, judge: '  '}}]\n",
     "probe 1: expect: judge must be non-empty text"),
    ("name: x\npersona: p\nprobes: [{user: q, expect: {contains: a}, kind: other}]\n",
     "probe 1: kind is correction or retention"),
    (f"{OK}memory: {{unchanged: yes please}}\n", "memory: unchanged is true or false"),
    (f"{OK}memory: {{max_lessons_tokens: many}}\n", "memory: max_lessons_tokens must be a whole"),
    (f"{OK}scripted_sleeps: [{{operations: {{op: add}}}}]\n",
     "scripted_sleeps 1: operations must be a list"),
    (f"{OK}sessions: {{}}\n", "'sessions' must be a list"),
    (f"{OK}sessions: [{{turns: [{{user: hi}}], extra: 1}}]\n", "session 1: unknown key(s) extra"),
    ("name: x\npersona: p\nprobes: [{user: q, expect: {contains: [3.10]}}]\n",
     "quote numbers like"),
    ("name: x\npersona: p\nprobes: [{user: q, expect: {contains: true}}]\n",
     "contains must be text"),
    ("name: x\npersona: p\nprobes: [{user: q, expect: {contains: a}, marker: m, "
     "learned_reply: null, unlearned_reply: u}]\n", "probe 1: learned_reply must be non-empty"),
    (f"{OK}sleep_check: {{turns: 0}}\n", "sleep_check: turns must be a whole number >= 1"),
    (f"{OK}sleep_check: {{must_refuse: maybe}}\n", "sleep_check: must_refuse is true or false"),
    (f"{OK}sleep_check: {{marker: m}}\n",
     "sleep_check: marker, learned_reply, unlearned_reply go together"),
    (f"{OK}sleep_check: {{judge: x}}\n", "'sleep_check': unknown key(s) judge"),
    (f"{OK}sleep_repair: {{first_answer: ''}}\n",
     "sleep_repair: first_answer must be non-empty text"),
    (f"{OK}sleep_repair: {{must_repair: maybe}}\n", "sleep_repair: must_repair is true or false"),
    (f"{OK}sleep_repair: {{answers: [x]}}\n", "'sleep_repair': unknown key(s) answers"),
    (f"{OK}sleep_repair: [x]\n", "'sleep_repair' must be a mapping"),
])
def test_bad_scenarios_get_a_clear_error(tmp_path: Path, body: str, message: str):
    from agentmem.errors import UsageError

    path = tmp_path / "s.yaml"
    path.write_text(body)
    with pytest.raises(UsageError) as err:
        load_scenario(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_number_is_checked_as_text(tmp_path: Path):
    from agentmem.scenarios import _check

    path = tmp_path / "s.yaml"
    path.write_text("name: x\npersona: p\nprobes: [{user: q, expect: {contains: [0, 42]}}]\n")
    check = _check(load_scenario(path).probes[0]["expect"])
    assert check.contains == ["0", "42"] and check.evaluate("42 and 0")[0] is True


def test_checks():
    assert Check(contains=["ruff"]).evaluate("Run RUFF now") == (True, "ok")
    assert Check(not_contains=["flake8"]).evaluate("flake8 it")[0] is False
    assert Check(regex=r"^\d+ items$").evaluate("12 items")[0] is True
    assert Check(judge="polite").evaluate("hi", judge=lambda c, a: False) == (False,
                                                                              "judge: not 'polite'")
    assert Check(judge="polite").evaluate("hi", judge=lambda c, a: True) == (True, "ok")
    # no judge model: not graded, and said so (never silently passed as "ok")
    assert Check(judge="polite").evaluate("hi") == (True, JUDGE_SKIPPED)
    assert Check(contains=["x"], judge="polite").evaluate("hi")[0] is False


def test_eval_without_a_model_says_how_to_choose_one(cli):
    result = cli("eval", EVALS / "factual-correction.yaml")
    assert result.exit_code == 2 and "--offline" in result.stderr


def _variant(tmp_path: Path, name: str, *edits: tuple[str, str]) -> Path:
    """A shipped scenario with some text replaced (each replacement must apply)."""
    text = (EVALS / f"{name}.yaml").read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_the_offline_judge_grades_through_the_model_and_can_fail(cli, offline, tmp_path: Path):
    # both answers pass `contains`: only the judge (the scripted one, through litellm) tells
    # the learned answer from the other
    path = tmp_path / "judged.yaml"
    path.write_text("""\
name: judged
persona: You summarise incidents.
sessions:
  - turns:
      - user: Summarise the outage.
        reply: It was an outage.
      - user: Always start with a TL;DR line.
        reply: Will do.
scripted_sleeps:
  - summary: TL;DR first
    operations:
      - {op: add, title: Start with TL;DR, body: Open every summary with a TL;DR line.,
         rationale: asked, evidence: [s1.t2]}
probes:
  - user: Summarise the outage.
    expect: {contains: [outage], judge: Opens with a TL;DR line.}
    marker: TL;DR
    learned_reply: "TL;DR: an outage."
    unlearned_reply: There was an outage.
""")
    result = cli("eval", path, "--offline", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    details = {p["condition"]: p for p in data["scenarios"][0]["probe_details"]}
    assert details["agentmem"]["ok"] is True and details["append_only"]["ok"] is True
    assert details["no_memory"]["ok"] is False
    assert details["no_memory"]["why"] == "judge: not 'Opens with a TL;DR line.'"
    assert data["totals"]["judge_skipped"] == 0


def test_offline_takes_no_judge_model_and_needs_the_offline_answers(cli, offline, tmp_path: Path):
    result = cli("eval", EVALS / "preference.yaml", "--offline", "--judge-model", "gpt-4.1")
    assert result.exit_code == 2 and "scripted judge" in result.stderr
    path = tmp_path / "s.yaml"
    path.write_text("name: x\npersona: p\nprobes: [{user: q, expect: {contains: a}}]\n")
    result = cli("eval", path, "--offline")
    assert result.exit_code == 2
    assert f"{path}: probe 1 needs marker, learned_reply, unlearned_reply for --offline" \
        in result.stderr


def test_judge_checks_without_a_judge_model_are_counted_as_skipped(capsys):
    from agentmem.commands.eval import _table
    from agentmem.evaluation import ProbeResult, ScenarioResult, totals

    result = ScenarioResult("s", probes=[
        ProbeResult("agentmem", "q", "a", True, JUDGE_SKIPPED, judge_skipped=True),
        ProbeResult("no_memory", "q", "b", False, "missing 'x'", judge_skipped=True),
        ProbeResult("agentmem", "q2", "a", True, "ok", kind="retention")])
    t = totals([result])
    assert t["judge_skipped"] == 2            # ungraded: neither passed nor counted
    assert t["agentmem"]["correction"] == {"passed": 0, "total": 0}
    assert t["agentmem"]["retention"] == {"passed": 1, "total": 1}
    assert t["no_memory"]["correction"] == {"passed": 0, "total": 0}
    _table([result], t, "openai/gpt-4.1-mini")
    out = capsys.readouterr()
    assert "corrections applied after sleep: 0/0 (no memory 0, append-only 0); knowledge " \
        "retained: 1/1" in out.out
    assert "2 answer(s) not counted: their 'judge:' criterion was not graded" in out.err


def test_a_noisy_session_that_changes_memory_fails_the_unchanged_check(cli, offline, tmp_path):
    path = _variant(tmp_path, "noisy-session", ("    operations: []\n", """    operations:
      - op: add
        title: The user greets in the morning
        body: Say good morning back.
        rationale: seen once
        evidence: [s1.t1]
"""))
    result = cli("eval", path, "--offline", "--json")
    assert result.exit_code == 1
    checks = json.loads(result.stdout)["scenarios"][0]["memory_checks"]
    assert {"check": "memory unchanged (lessons.md, persona.md body)", "ok": False,
            "detail": "lessons.md"} in checks


def test_a_refused_pass_keeps_the_scenario_folder_and_says_where(cli, offline, tmp_path: Path,
                                                                 monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = _variant(tmp_path, "factual-correction", ("evidence: [s1.t2, s2.t2]", "evidence: [e999]"))
    result = cli("eval", path, "--offline")
    assert result.exit_code == 1
    assert "sleep pass refused: sleep pass refused" not in result.stderr
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("agentmem-eval-")]
    assert len(kept) == 1 and str(kept[0]) in result.stderr.replace("\n", "")
    refused = list((kept[0] / "agentmem" / ".agentmem" / "sleep").iterdir())
    assert refused, "the refused model output is kept for inspection"


def test_the_default_suite_is_found_outside_a_clone(cli, offline, tmp_path: Path, monkeypatch):
    from agentmem import scenarios
    from agentmem.scenarios import default_suite

    monkeypatch.chdir(tmp_path)
    assert default_suite().resolve() == EVALS       # this checkout: the repository's evals/
    result = cli("eval", "--offline", "--only", "factual")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[3].startswith("factual-correction")
    installed = tmp_path / "site" / "agentmem"      # an install: agentmem/evals beside the code
    (installed / "evals").mkdir(parents=True)
    monkeypatch.setattr(scenarios, "__file__", str(installed / "scenarios.py"))
    assert default_suite() == installed / "evals"
    (tmp_path / "evals").mkdir()                     # ./evals comes first: the user's own suite
    assert default_suite() == Path("evals")


def test_a_judge_model_without_a_key_is_named_before_anything_runs(cli, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    result = cli("eval", EVALS / "factual-correction.yaml", "--model", "openai/gpt-4.1-mini",
                 "--judge-model", "anthropic/claude-sonnet-4-5")
    assert result.exit_code == 1
    assert "no API key for anthropic/claude-sonnet-4-5 (model from --judge-model)" in result.stderr
    assert "running" not in result.stderr           # refused before the first scenario


def test_the_regression_check_scenario_refuses_its_harmful_pass(cli, offline):
    result = cli("eval", EVALS / "check-refuses-harmful-pass.yaml", "--offline", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    [scenario] = data["scenarios"]
    assert scenario["check_refused"] == 1 and scenario["refused"] == []
    [score] = scenario["checks"]
    assert {k: score[k] for k in ("wins", "losses", "ties", "refused")} == {
        "wins": 0, "losses": 1, "ties": 0, "refused": True}
    assert score["judge"] == "scripted/judge"
    assert {"check": "the regression check refused the sleep pass", "ok": True,
            "detail": "0 won, 1 lost, 0 tied"} in scenario["memory_checks"]
    assert data["totals"]["check_refused"] == 1 and data["totals"]["refused_passes"] == 0


def test_a_check_scenario_fails_when_its_pass_is_not_refused_or_is_refused_unasked(
        cli, offline, tmp_path: Path):
    harmless = _variant(tmp_path, "check-refuses-harmful-pass", (
        "      - op: retire\n        id: L1\n",
        "      - op: counter\n        id: L1\n        helpful: 1\n        harmful: 0\n"))
    result = cli("eval", harmless, "--offline", "--json")
    assert result.exit_code == 1
    [scenario] = json.loads(result.stdout)["scenarios"]
    assert scenario["check_refused"] == 0 and scenario["checks"][0]["refused"] is False
    assert {"check": "the regression check refused the sleep pass", "ok": False,
            "detail": "0 won, 0 lost, 1 tied"} in scenario["memory_checks"]
    unasked = _variant(tmp_path, "check-refuses-harmful-pass",
                       ("  must_refuse: true\n", "  must_refuse: false\n"))
    result = cli("eval", unasked, "--offline")
    assert result.exit_code == 1
    assert "regression check found the proposed memory worse" in result.stderr.replace("\n", " ")


def test_the_repair_scenario_is_saved_by_its_repair_round(cli, offline):
    result = cli("eval", EVALS / "repair-saves-pass.yaml", "--offline", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    [scenario] = data["scenarios"]
    assert scenario["refused"] == [] and scenario["sleeps"] == 1
    assert scenario["repaired"] == ["operation 1 (add): unexpected field(s) text"]
    assert {"check": "a repair round saved a sleep pass", "ok": True,
            "detail": "operation 1 (add): unexpected field(s) text"} in scenario["memory_checks"]
    assert scenario["probes"]["agentmem"] == {"passed": 1, "total": 1}      # the lesson learned
    assert scenario["probes"]["no_memory"] == {"passed": 0, "total": 1}
    assert data["totals"]["repaired_passes"] == 1 and data["totals"]["refused_passes"] == 0


def test_without_sleep_repair_the_broken_answer_would_refuse_the_pass(cli, offline,
                                                                      tmp_path: Path):
    """The scenario's answer needs the round: a pass with repair off is refused by it, and a
    pass that needed no repair fails must_repair."""
    from agentmem.sleep.ops import parse_output

    answer = load_scenario(EVALS / "repair-saves-pass.yaml").data["sleep_repair"]["first_answer"]
    with pytest.raises(Exception, match="unexpected field"):
        parse_output(answer.replace("s1.t2", "e2"))
    fine = _variant(tmp_path, "repair-saves-pass", ('"text": "Never', '"body": "Never'))
    result = cli("eval", fine, "--offline", "--json")
    assert result.exit_code == 1
    [scenario] = json.loads(result.stdout)["scenarios"]
    assert scenario["repaired"] == [] and {
        "check": "a repair round saved a sleep pass", "ok": False,
        "detail": "no pass needed one"} in scenario["memory_checks"]


def test_offline_needs_the_first_answer_of_a_repair_scenario(cli, offline, tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\npersona: p\nsleep_repair: {must_repair: true}\nprobes: [{user: q, "
                    "expect: {contains: a}, marker: a, learned_reply: a, unlearned_reply: b}]\n")
    result = cli("eval", path, "--offline")
    assert result.exit_code != 0
    assert "sleep_repair needs first_answer for --offline" in result.stderr
