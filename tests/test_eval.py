from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentmem.evaluation import Check, load_scenario

EVALS = Path(__file__).resolve().parents[1] / "evals"


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("AGENTMEM_RETRY_DELAY", "0")
    yield
    from agentmem import llm

    llm._script = None


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
    assert "sleep pass refused" in result.stderr and "e999" in result.stderr
    assert "probe 'I am about to push. Which linter should I run?' failed" in result.stderr


def test_table_output_names_every_condition(cli, offline):
    result = cli("eval", EVALS / "factual-correction.yaml", "--offline")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("factual-correction") and "1/1" in line and "0/1" in line
               for line in lines)
    assert "corrections applied after sleep: 1/1 probes" in result.stdout
    assert "offline run on the scripted model" in result.stderr


@pytest.mark.parametrize("body,message", [
    ("name: x\n", "'persona' is required text"),
    ("name: x\npersona: p\n", "'probes' must list at least one probe"),
    ("name: x\npersona: p\nprobes: [{user: q}]\n", "probe 1 needs 'user' and 'expect'"),
    ("name: x\npersona: p\nprobs: []\n", "unknown key(s) probs"),
    ("name: x\npersona: p\nsessions: [{turns: []}]\nprobes: [{user: q, expect: {}}]\n",
     "session 1 needs a non-empty 'turns' list"),
    ("name: [x\n", "invalid YAML"),
])
def test_bad_scenarios_get_a_clear_error(tmp_path: Path, body: str, message: str):
    from agentmem.errors import UsageError

    path = tmp_path / "s.yaml"
    path.write_text(body)
    with pytest.raises(UsageError) as err:
        load_scenario(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_checks():
    assert Check(contains=["ruff"]).evaluate("Run RUFF now") == (True, "ok")
    assert Check(not_contains=["flake8"]).evaluate("flake8 it")[0] is False
    assert Check(regex=r"^\d+ items$").evaluate("12 items")[0] is True
    assert Check(judge="polite").evaluate("hi", judge=lambda c, a: False) == (False,
                                                                              "judge: not 'polite'")


def test_eval_without_a_model_says_how_to_choose_one(cli):
    result = cli("eval", EVALS / "factual-correction.yaml")
    assert result.exit_code == 2 and "--offline" in result.stderr
