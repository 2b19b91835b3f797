"""Batch sleep end to end through the CLI: `sleep DIR --batch`, `sleep DIR --collect`,
`agentmem batches`, against a loopback stand-in for OpenAI's Files and Batches API."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wire
from conftest import FLAKE8_CORRECTED, snapshot
from wire.openai_batch import BatchStandIn, serve

from agentmem.agent import Agent

LESSONS = """\
# Lessons

What I have learned.

## Lint with flake8
<!-- id: L1; helpful: 1; harmful: 0 -->
Run flake8 on every pull request before commenting on style.

## Ask for the Python 2 compatibility check
<!-- id: L2; helpful: 0; harmful: 0 -->
Every change must still run on Python 2.7.
"""

MODEL = "openai/gpt-4o-mini"          # litellm knows its batch price: half the live one
ADD = json.dumps({"summary": "The team lints with ruff.", "operations": [
    {"op": "add", "title": "Lint with ruff, not flake8", "body": "The team uses ruff.",
     "rationale": "the user corrected me", "evidence": ["e3"]}]})
RETIRE = json.dumps({"summary": "Python 2 is gone.", "operations": [
    {"op": "retire", "id": "L2", "rationale": "Python 2 was dropped", "evidence": ["e3"]}]})


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BatchStandIn]:
    monkeypatch.setenv("AGENTMEM_BATCHES", str(tmp_path / "batches"))
    monkeypatch.setenv("AGENTMEM_RETRIES", "0")
    with serve(lambda line: ADD) as stand_in:
        yield stand_in


def make_fleet(root: Path, count: int) -> list[Agent]:
    agents = []
    for n in range(count):
        agent = Agent.create(str(root / f"a{n}"))
        agent.write({"lessons.md": LESSONS}, "human", "Seed lessons")
        agent.journal.append(*FLAKE8_CORRECTED)
        agents.append(agent)
    return agents


@pytest.fixture
def fleet(tmp_path: Path) -> list[Agent]:
    return make_fleet(tmp_path / "fleet", 3)


def state(agent: Agent) -> dict[str, Any]:
    return Agent.open(agent.folder).read_state()


def versions(agent: Agent) -> list[Any]:
    opened = Agent.open(agent.folder)
    opened.history.refresh()
    return opened.history.versions()


def by_name(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(r["agent"]).name: r for r in results}


def submit(cli, root: Path, *more: str) -> Any:
    result = cli("sleep", root, "--batch", "--model", MODEL, *more)
    assert result.exit_code == 0, result.stderr
    return result


def test_submit_then_collect_applies_each_pass_as_a_live_pass_would(cli, tmp_path, fleet, server,
                                                                    model):
    root = tmp_path / "fleet"
    twin = Agent.open(shutil.copytree(fleet[0].folder, tmp_path / "twin"))
    result = submit(cli, root)
    assert "submitted batch batch_" in result.stdout and "3 agent(s)" in result.stdout
    assert server.requests[:2] == [("POST", "/v1/files"), ("POST", "/v1/batches")]
    [upload] = server.files.values()
    assert upload["purpose"] == "batch"
    [(batch_id, lines)] = server.inputs.items()
    assert [x["custom_id"] for x in lines] == ["agent-0", "agent-1", "agent-2"]
    assert {x["url"] for x in lines} == {"/v1/chat/completions"}
    assert {x["body"]["model"] for x in lines} == {"gpt-4o-mini"}
    entry = state(fleet[0])["batch"]
    assert entry["id"] == batch_id and entry["status"] == "submitted"
    assert entry["start"]["event"] == 0 and entry["end"]["event"] == 3

    # the request is exactly what a live pass over the same agent sends
    model.push(ADD)
    assert cli("sleep", twin.folder, "--yes", "--model", "scripted/x").exit_code == 0
    [live] = model.calls
    assert lines[0]["body"]["messages"] == live["messages"]
    assert {k: lines[0]["body"][k] for k in ("max_tokens", "temperature")} == {
        k: live["params"][k] for k in ("max_tokens", "temperature")}

    # not finished yet: nothing to apply, no --yes needed, nothing changes
    before = [snapshot(a) for a in fleet]
    result = cli("sleep", root, "--collect")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("wait") == 3 and "in_progress" in result.stdout
    # finished: without --yes it refuses, with the hint, and writes nothing
    result = cli("sleep", root, "--collect")
    assert result.exit_code == 2
    assert "3 agent(s) have batch results to collect: add --yes" in result.stderr
    assert [snapshot(a) for a in fleet] == before
    result = cli("sleep", root, "--collect", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    results = by_name(json.loads(result.stdout))
    assert {r["status"] for r in results.values()} == {"applied"}
    for agent in fleet:
        [latest, *_] = versions(agent)
        assert latest.author == "sleep" and latest.subject == "The team lints with ruff."
        assert "## Lint with ruff, not flake8" in (agent.folder / "lessons.md").read_text()
        assert Agent.open(agent.folder).sleep_cursor().event == 3
        assert state(agent)["batch"]["status"] == "applied"
        [event] = wire.events(agent, "sleep")
        assert event["model"] == MODEL and event["usage"]["prompt_tokens"] == 210
    # nothing pending any more: a second collect applies nothing twice
    result = cli("sleep", root, "--collect", "--yes")
    assert result.exit_code == 0 and "no batch is pending" in result.stderr
    assert all(len(versions(a)) == 3 for a in fleet)


def test_costs_are_at_batch_prices(cli, tmp_path, fleet, server):
    from agentmem import llm

    submit(cli, tmp_path / "fleet")
    cli("sleep", tmp_path / "fleet", "--collect", "--yes")       # in progress
    assert cli("sleep", tmp_path / "fleet", "--collect", "--yes").exit_code == 0
    info = llm.litellm().get_model_info(MODEL)
    one = 210 * info["input_cost_per_token_batches"] + 40 * info["output_cost_per_token_batches"]
    assert one == pytest.approx((210 * info["input_cost_per_token"]
                                 + 40 * info["output_cost_per_token"]) / 2)
    [event] = wire.events(fleet[0], "sleep")
    assert event["usage"]["cost"] == pytest.approx(one)
    data = json.loads(cli("batches", "--json").stdout)
    assert data[0]["cost"] == pytest.approx(3 * one) and data[0]["applied"] == 3


def test_a_model_without_a_batch_price_costs_half_its_live_price():
    from agentmem import llm

    live = llm.price("openai/gpt-4")
    assert live is not None
    assert llm.batch_price("openai/gpt-4") == (live[0] / 2, live[1] / 2, "half the live price")
    completion = llm.batch_completion("openai/gpt-4", {"choices": [{"message": {
        "content": "hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1000,
                                                              "completion_tokens": 10}},
        llm.batch_price("openai/gpt-4"))
    assert completion.cost == pytest.approx((1000 * live[0] + 10 * live[1]) / 2)


def test_refusals_and_line_errors_are_per_agent_and_resubmitted(cli, tmp_path, fleet, server):
    root = tmp_path / "fleet"
    answers = {"agent-0": ADD, "agent-1": "Sure! I would add a lesson about ruff.",
               "agent-2": {"status_code": 400, "message": "Invalid 'max_tokens': too large."}}
    server.answer = lambda line: answers[line["custom_id"]]
    submit(cli, root)
    before = {a.folder.name: snapshot(a) for a in fleet}
    cli("sleep", root, "--collect", "--yes")
    result = cli("sleep", root, "--collect", "--yes", "--json")
    assert result.exit_code == 1
    assert "2 of 3 agents were not applied; 1 ok" in result.stderr
    results = by_name(json.loads(result.stdout))
    assert results["a0"]["status"] == "applied"
    assert results["a1"]["status"] == "refused"
    assert "sleep pass refused, nothing was changed" in results["a1"]["message"]
    assert results["a2"]["status"] == "failed"
    assert "HTTP 400: Invalid 'max_tokens': too large." in results["a2"]["message"]
    for name in ("a1", "a2"):      # nothing written but the batch's entry in state.json
        agent = Agent.open(tmp_path / "fleet" / name)
        now = snapshot(agent)
        assert now["files"] == before[name]["files"] and now["versions"] == before[name]["versions"]
        assert agent.sleep_cursor().event == 0
    [kept] = (fleet[1].state_dir / "sleep").glob("refused-*.json")
    assert json.loads(kept.read_text())["outputs"] == [answers["agent-1"]]
    assert state(fleet[1])["batch"]["status"] == "refused"
    assert state(fleet[2])["batch"]["status"] == "failed"
    # --batch again: only the two without an applied answer have anything to send
    server.answer = lambda line: ADD
    result = submit(cli, root)
    assert "2 agent(s)" in result.stdout and "a0: not submitted: nothing new" in result.stderr
    second = list(server.inputs.values())[-1]
    assert len(second) == 2
    cli("sleep", root, "--collect", "--yes")
    assert cli("sleep", root, "--collect", "--yes").exit_code == 0
    assert all(state(a)["batch"]["status"] == "applied" for a in fleet)
    assert all(len(versions(a)) == 3 for a in fleet)    # new, seed, ONE sleep


def test_a_line_refused_for_the_answers_form_says_how_to_ask_without_it(cli, tmp_path, fleet,
                                                                        server):
    server.answer = lambda line: {"status_code": 400, "message": "Invalid schema for "
                                  "response_format 'sleep_operations': 'anyOf' is not permitted."}
    submit(cli, tmp_path / "fleet")
    cli("sleep", tmp_path / "fleet", "--collect", "--yes")
    result = cli("sleep", tmp_path / "fleet", "--collect", "--yes")
    assert result.exit_code == 1
    assert "resubmit with sleep --batch (with `sleep: {output: prompt}` in persona.md)" \
        in result.stdout
    assert [len(versions(a)) for a in fleet] == [2, 2, 2]     # new, seed: nothing applied


def test_a_non_http_line_error_is_reported(cli, tmp_path, fleet, server):
    server.answer = lambda line: {"code": "batch_expired", "message": "This request could not "
                                  "be executed before the completion window expired."}
    submit(cli, tmp_path / "fleet")
    cli("sleep", tmp_path / "fleet", "--collect", "--yes")
    result = cli("sleep", tmp_path / "fleet", "--collect", "--yes")
    assert result.exit_code == 1
    assert "batch_expired: This request could not be executed" in result.stdout
    assert [len(versions(a)) for a in fleet] == [2, 2, 2]     # new, seed: nothing applied


def test_memory_changed_after_submission(cli, tmp_path, fleet, server):
    """a0's person edited persona.md: the answer still applies cleanly. a1's person removed the
    lesson the answer retires: refused, with the reason."""
    root = tmp_path / "fleet"
    server.answer = lambda line: RETIRE
    submit(cli, root)
    persona = (fleet[0].folder / "persona.md").read_text() + "\nBe brief.\n"
    fleet[0].write({"persona.md": persona}, "human", "a person's edit")
    fleet[1].write({"lessons.md": LESSONS.split("## Ask for")[0]}, "human", "drop L2 by hand")
    cli("sleep", root, "--collect", "--yes")
    result = cli("sleep", root, "--collect", "--yes", "--json")
    assert result.exit_code == 1
    results = by_name(json.loads(result.stdout))
    assert results["a0"]["status"] == "applied"
    assert any("memory changed after the batch was submitted" in w
               for w in results["a0"]["warnings"])
    lessons = (fleet[0].folder / "lessons.md").read_text()
    assert "Python 2" not in lessons and "Be brief." in (fleet[0].folder / "persona.md").read_text()
    assert results["a1"]["status"] == "refused"
    assert "memory changed after the batch was submitted, and the answer no longer applies " \
           "cleanly" in results["a1"]["message"] and "L2" in results["a1"]["message"]
    assert versions(fleet[1])[0].subject == "drop L2 by hand"
    assert Agent.open(fleet[1].folder).sleep_cursor().event == 0
    assert results["a2"]["status"] == "applied"


def test_a_live_pass_meanwhile_makes_the_answer_stale(cli, tmp_path, fleet, server, model):
    submit(cli, tmp_path / "fleet")
    model.push(json.dumps({"operations": [], "summary": "nothing"}))
    live = cli("sleep", fleet[0].folder, "--yes", "--model", "scripted/x")
    assert live.exit_code == 0
    batch_id = state(fleet[0])["batch"]["id"]
    assert f"batch {batch_id} holds a pass over these events, not yet collected: a pass now " \
        "makes its answer stale" in live.stderr                 # said before the pass runs
    cli("sleep", tmp_path / "fleet", "--collect", "--yes")
    result = cli("sleep", tmp_path / "fleet", "--collect", "--yes", "--json")
    results = by_name(json.loads(result.stdout))
    assert results["a0"]["status"] == "refused"
    assert "slept on since it was submitted" in results["a0"]["message"]
    assert "Lint with ruff" not in (fleet[0].folder / "lessons.md").read_text()


def test_an_expired_batch_is_reported_per_agent_and_resubmitted(cli, tmp_path, fleet, server):
    root = tmp_path / "fleet"
    server.statuses, server.answered = ["in_progress", "expired"], 1
    submit(cli, root)
    cli("sleep", root, "--collect", "--yes")
    result = cli("sleep", root, "--collect", "--yes", "--json")
    assert result.exit_code == 1
    results = by_name(json.loads(result.stdout))
    assert results["a0"]["status"] == "applied"            # answered before it expired
    for name in ("a1", "a2"):
        assert results[name]["status"] == "lost"
        assert "expired without an answer for this agent: resubmit with sleep --batch" in \
            results[name]["message"]
    listed = json.loads(cli("batches", "--json").stdout)
    assert listed[0]["status"] == "expired" and listed[0]["request_counts"] == {
        "total": 3, "completed": 1, "failed": 0}
    server.statuses, server.answered = ["completed"], None
    result = submit(cli, root)
    assert "2 agent(s)" in result.stdout
    assert [x["custom_id"] for x in list(server.inputs.values())[-1]] == ["agent-0", "agent-1"]
    assert cli("sleep", root, "--collect", "--yes").exit_code == 0
    assert all(len(versions(a)) == 3 for a in fleet)


def test_a_failed_batch_leaves_its_agents_free_to_resubmit(cli, tmp_path, fleet, server):
    root = tmp_path / "fleet"
    server.fail_validation = "the model gpt-4o-mini does not support batches"
    submit(cli, root)
    result = cli("sleep", root, "--batch", "--model", MODEL)      # not pending: it failed
    assert result.exit_code == 0 and "3 agent(s)" in result.stdout
    assert len(server.inputs) == 2
    # and a pending batch is not submitted twice
    result = cli("sleep", root, "--batch", "--model", MODEL)
    assert "nothing to submit" in result.stderr and result.stderr.count("is still") == 3


def kill_state_write(patch: pytest.MonkeyPatch, name: str, key: str) -> None:
    """Ctrl-C when agent `name` is about to write `key` to its state.json."""
    real = Agent.update_state

    def killed(self: Agent, **values: Any) -> None:
        if key in values and self.folder.name == name:
            raise KeyboardInterrupt(f"killed before {name}'s {key} state write")
        return real(self, **values)

    patch.setattr(Agent, "update_state", killed)


def test_a_killed_collect_applies_the_rest_next_time_and_none_twice(cli, tmp_path, fleet, server,
                                                                    monkeypatch):
    """Killed (Ctrl-C) after a1's version was recorded, before its state.json write."""
    root = tmp_path / "fleet"
    submit(cli, root)
    cli("sleep", root, "--collect", "--yes")
    with monkeypatch.context() as patch:
        kill_state_write(patch, "a1", "sleep_cursor")
        result = cli("sleep", root, "--collect", "--yes", "--jobs", "1")   # one at a time
    assert result.exit_code == 130
    assert state(fleet[0])["batch"]["status"] == "applied"
    assert state(fleet[1])["batch"]["status"] == "submitted"      # its version landed, though
    assert versions(fleet[1])[0].author == "sleep"
    assert state(fleet[2])["batch"]["status"] == "submitted"
    result = cli("sleep", root, "--collect", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    results = by_name(json.loads(result.stdout))
    assert "a0" not in results                       # collected already: not even looked at
    assert results["a1"]["status"] == "already" and results["a2"]["status"] == "applied"
    assert [len(versions(a)) for a in fleet] == [3, 3, 3]
    # a1's log event comes after its state write, as in a live pass: the kill took it
    assert [len(wire.events(a, "sleep")) for a in fleet] == [1, 0, 1]
    assert all(state(a)["batch"]["status"] == "applied" for a in fleet)


def test_batches_lists_status_counts_and_cost(cli, tmp_path, fleet, server):
    other = make_fleet(tmp_path / "other", 1)
    submit(cli, tmp_path / "fleet")
    submit(cli, tmp_path / "other")
    result = cli("batches")
    assert result.exit_code == 0
    assert result.stdout.count("batch_") == 2 and "in_progress" in result.stdout
    assert "3 agent(s)" in result.stdout and "estimated" in result.stdout
    data = json.loads(cli("batches", tmp_path / "other", "--json").stdout)
    assert len(data) == 1 and data[0]["agents"] == 1 and data[0]["model"] == MODEL
    assert data[0]["id"] == state(other[0])["batch"]["id"]
    assert data[0]["status"] == "completed"       # asked again: one more step
    assert data[0]["request_counts"] == {"total": 1, "completed": 1, "failed": 0}
    assert data[0]["estimate"] > 0 and data[0]["cost"] is None


def test_no_batches_yet(cli, server):
    result = cli("batches")
    assert result.exit_code == 0 and "no batches submitted" in result.stderr
    assert json.loads(cli("batches", "--json").stdout) == []


def test_a_provider_without_a_batch_api_is_refused_before_any_work(cli, tmp_path, fleet, server):
    before = [snapshot(a) for a in fleet]
    result = cli("sleep", tmp_path / "fleet", "--batch", "--model", "scripted/x")
    assert result.exit_code == 2
    assert "batch sleep needs a provider with a batch API" in result.stderr
    assert server.requests == [] and [snapshot(a) for a in fleet] == before


def test_batch_and_collect_together_is_a_usage_error(cli, tmp_path, fleet, server):
    result = cli("sleep", tmp_path / "fleet", "--batch", "--collect")
    assert result.exit_code == 2 and "use one at a time" in result.stderr


def test_max_cost_skips_a_pass_over_it_at_batch_prices(cli, tmp_path, fleet, server):
    result = cli("sleep", tmp_path / "fleet", "--batch", "--model", MODEL, "--max-cost", "1e-9")
    assert result.exit_code == 0
    assert result.stderr.count("at batch prices, over --max-cost") == 3
    assert server.requests == []


def test_a_backlog_over_the_window_sends_its_first_chunk_and_stops_there(cli, tmp_path, server):
    from agentmem import llm
    from agentmem import sleep as core
    from agentmem.models import ModelSpec

    llm.litellm().register_model({"openai/small-window": {
        "input_cost_per_token": 1e-7, "output_cost_per_token": 1e-7, "litellm_provider": "openai",
        "mode": "chat", "max_input_tokens": 6500}})
    [agent] = make_fleet(tmp_path / "fleet", 1)
    agent.journal.append(*({"kind": "user", "content": f"message {n} " + "x" * 400}
                           for n in range(60)))
    plan = core.plan(agent, ModelSpec("openai/small-window", None, "test"))
    assert len(plan.chunks) >= 2
    first = len(plan.chunks[0])
    server.answer = lambda line: ADD
    submit_result = cli("sleep", tmp_path / "fleet", "--batch", "--model", "openai/small-window")
    assert submit_result.exit_code == 0, submit_result.stderr
    [lines] = server.inputs.values()
    user = lines[0]["body"]["messages"][-1]["content"]
    assert f"e{first} " in user and f"e{first + 1} " not in user
    cli("sleep", tmp_path / "fleet", "--collect", "--yes")
    assert cli("sleep", tmp_path / "fleet", "--collect", "--yes").exit_code == 0
    assert Agent.open(agent.folder).sleep_cursor().event == first
    # the rest is the next pass's
    rest = core.plan(Agent.open(agent.folder), ModelSpec("openai/small-window", None, "test"))
    assert rest.events[0]["id"] == f"e{first + 1}"


def test_the_request_asks_for_the_answer_in_the_form_a_live_pass_would(cli, tmp_path, fleet,
                                                                       server):
    from agentmem.models import ModelSpec
    from agentmem.sleep import passes

    submit(cli, tmp_path / "fleet")
    [lines] = server.inputs.values()
    spec = ModelSpec(MODEL, None, "test")
    wanted = passes.request_options(spec, passes.output_mode(spec, {}))
    assert "response_format" in wanted          # gpt-4o-mini takes a JSON schema
    assert {k: lines[0]["body"][k] for k in wanted} == wanted
    assert state(fleet[0])["batch"]["output_mode"] == passes.output_mode(spec, {})


def test_collect_runs_the_regression_check_and_refuses_a_worse_memory(cli, tmp_path, server,
                                                                      model):
    from tests.test_sleep_check import RETIRE_RUFF, RUFF, answers, judge_calls, with_log

    agent = with_log(Agent.create(str(tmp_path / "fleet" / "a0")), RUFF)
    server.answer = lambda line: RETIRE_RUFF
    submit(cli, tmp_path / "fleet")
    cli("sleep", tmp_path / "fleet", "--collect", "--yes")            # in progress
    model.responder = answers        # the agent's replies and the judge's verdicts, live
    result = cli("sleep", tmp_path / "fleet", "--collect", "--yes", "--json", "--check",
                 "--judge-model", "scripted/judge")
    assert result.exit_code == 1
    [outcome] = json.loads(result.stdout)
    assert outcome["status"] == "refused"
    assert "the regression check found the proposed memory worse" in outcome["message"]
    assert "## Lint with ruff" in (agent.folder / "lessons.md").read_text()
    assert Agent.open(agent.folder).sleep_cursor().event == 0
    assert state(agent)["batch"]["status"] == "refused"
    assert judge_calls(model)                    # the judge was asked, live


def test_batch_with_check_says_where_the_check_belongs(cli, tmp_path, fleet, server):
    result = cli("sleep", tmp_path / "fleet", "--batch", "--model", MODEL, "--check")
    assert result.exit_code == 2 and "give --check to sleep --collect" in result.stderr
    assert server.requests == []


def test_a_cancelled_batch_is_reported_per_agent_and_resubmitted(cli, tmp_path, fleet, server):
    """Cancelled at the provider (through litellm's own client, as a person might): every agent
    is reported, and submitted again by the next --batch."""
    from agentmem import llm

    root = tmp_path / "fleet"
    submit(cli, root)
    [batch_id] = server.batches
    lib = llm.litellm()
    where = {"custom_llm_provider": "openai", "api_base": server.url + "/v1", "api_key": "k"}
    assert lib.cancel_batch(batch_id=batch_id, **where).status == "cancelling"
    listed = lib.list_batches(**where)
    assert [b["id"] if isinstance(b, dict) else b.id for b in listed.data] == [batch_id]
    result = cli("sleep", root, "--collect", "--yes", "--json")
    assert result.exit_code == 1
    results = json.loads(result.stdout)
    assert {r["status"] for r in results} == {"lost"}
    assert all(f"batch {batch_id} cancelled: resubmit with sleep --batch" == r["message"]
               for r in results)
    assert all(state(a)["batch"]["status"] == "cancelled" for a in fleet)
    result = submit(cli, root)
    assert "3 agent(s)" in result.stdout and len(server.inputs) == 2


def test_submit_json_names_the_batch_its_agents_and_those_skipped(cli, tmp_path, fleet, server):
    fleet[2].update_state(sleep_cursor=fleet[2].journal.end_cursor().to_json())   # nothing new
    result = cli("sleep", tmp_path / "fleet", "--batch", "--model", MODEL, "--json")
    assert result.exit_code == 0, result.stderr
    [data] = json.loads(result.stdout)
    [batch_id] = server.batches
    assert data["batch"] == batch_id and data["model"] == MODEL
    assert [Path(a).name for a in data["agents"]] == ["a0", "a1"]
    assert data["skipped"] == [{"agent": str(fleet[2].folder),
                                "reason": "nothing new since the last sleep"}]
    assert data["estimate"] > 0


def test_a_refused_submission_is_one_line_and_changes_nothing(cli, tmp_path, fleet, server):
    server.reject = (400, "Enqueued token limit reached for gpt-4o-mini in organization org-x.")
    before = [snapshot(a) for a in fleet]
    result = cli("sleep", tmp_path / "fleet", "--batch", "--model", MODEL)
    assert result.exit_code == 1
    assert "creating the batch:" in result.stderr and "Enqueued token limit" in result.stderr
    assert [snapshot(a) for a in fleet] == before
    assert json.loads(cli("batches", "--json").stdout) == []


@pytest.mark.parametrize("answers,status", [("a\n", "applied"), ("d\n", "discarded"),
                                            ("r\ny\n", "applied")])
def test_one_agent_is_reviewed_on_a_terminal_as_a_live_pass_is(cli, tmp_path, server, monkeypatch,
                                                               answers, status):
    from agentmem import console

    [agent] = make_fleet(tmp_path / "fleet", 1)
    submit(cli, agent.folder)
    cli("sleep", agent.folder, "--collect")                           # in progress
    before = snapshot(agent)
    result = cli("sleep", agent.folder, "--collect")                  # no terminal: not applied
    assert result.exit_code == 0 and "not applied: no terminal to ask on" in result.stderr
    assert snapshot(agent) == before
    monkeypatch.setattr(console, "stdin_is_tty", lambda: True)
    result = cli("sleep", agent.folder, "--collect", "--json", input=answers)  # never asks
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert "not applied: --json never asks; run with --yes" in result.stderr
    assert snapshot(agent) == before
    result = cli("sleep", agent.folder, "--collect", input=answers)
    assert result.exit_code == 0, result.stderr
    assert "apply all [a], review one by one [r], or discard [d]?" in result.stdout
    assert "Lint with ruff, not flake8" in result.stdout                # the proposal, shown
    assert state(agent)["batch"]["status"] == status
    applied = "## Lint with ruff, not flake8" in (agent.folder / "lessons.md").read_text()
    assert applied is (status == "applied")
    assert (Agent.open(agent.folder).sleep_cursor().event == 3) is applied
    if status == "discarded":          # nothing written; the next --batch asks again
        assert snapshot(agent)["versions"] == before["versions"]
        assert "1 agent(s)" in submit(cli, agent.folder).stdout


def test_a_submission_killed_after_the_batch_was_created_is_adopted_not_sent_twice(
        cli, tmp_path, fleet, server, monkeypatch):
    """Killed after the provider created the batch, with only a0's state.json naming it: the
    next --batch finds the batch by the token in its metadata and records it for every agent,
    so nothing is submitted (or paid for) twice, and --collect applies all three."""
    root = tmp_path / "fleet"
    with monkeypatch.context() as patch:
        kill_state_write(patch, "a1", "batch")
        result = cli("sleep", root, "--batch", "--model", MODEL)
    assert result.exit_code == 130
    [batch_id] = server.batches
    assert server.batches[batch_id]["metadata"]["agentmem_submission"]
    assert state(fleet[0])["batch"]["id"] == batch_id and "batch" not in state(fleet[1])
    result = submit(cli, root)
    assert list(server.batches) == [batch_id] and len(server.inputs) == 1
    assert all(state(a)["batch"]["id"] == batch_id for a in fleet)
    assert not list((tmp_path / "batches" / "submitting").glob("*.json"))
    result = cli("sleep", root, "--collect", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert {r["status"] for r in json.loads(result.stdout)} == {"applied"}


def test_a_submission_killed_before_the_provider_had_it_is_dropped_and_sent_again(
        cli, tmp_path, fleet, server, monkeypatch):
    from agentmem import llm

    root = tmp_path / "fleet"

    def killed(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise KeyboardInterrupt("killed before the batch was created")

    with monkeypatch.context() as patch:
        patch.setattr(llm, "batch_submit", killed)
        assert cli("sleep", root, "--batch", "--model", MODEL).exit_code == 130
    assert len(list((tmp_path / "batches" / "submitting").glob("*.json"))) == 1
    result = submit(cli, root)
    assert "3 agent(s)" in result.stdout and len(server.batches) == 1
    assert not list((tmp_path / "batches" / "submitting").glob("*.json"))


@pytest.mark.parametrize("flags", [("--batch", "--dry-run"), ("--collect", "--dry-run"),
                                   ("--collect", "--yes", "--dry-run"),
                                   ("--batch", "--max-tokens", "10")])
def test_a_flag_batch_sleep_cannot_honour_is_refused_not_ignored(cli, tmp_path, fleet, server,
                                                                  flags):
    """--batch --dry-run submitted (and paid for) a batch, --collect --dry-run --yes applied
    the answers, --batch --max-tokens capped nothing: each is a usage error before any work."""
    root = tmp_path / "fleet"
    if "--collect" in flags:
        submit(cli, root)
        cli("sleep", root, "--collect")                     # in progress: next time, done
    sent, before = list(server.requests), [snapshot(a) for a in fleet]
    result = cli("sleep", root, *flags, "--model", MODEL)
    assert result.exit_code == 2
    assert "does not combine with --batch or --collect" in result.stderr
    assert server.requests == sent and [snapshot(a) for a in fleet] == before


def test_collect_max_cost_caps_the_answer_and_its_check(cli, tmp_path, server, model,
                                                       monkeypatch):
    from tests.test_sleep_check import RETIRE_RUFF, RUFF, with_log

    agent = with_log(Agent.create(str(tmp_path / "fleet" / "a0")), RUFF)
    monkeypatch.setenv("AGENTMEM_MODEL", MODEL)    # the replies' model: priced, as the judge
    server.answer = lambda line: RETIRE_RUFF
    submit(cli, tmp_path / "fleet")
    cli("sleep", tmp_path / "fleet", "--collect", "--yes")            # in progress
    result = cli("sleep", tmp_path / "fleet", "--collect", "--yes", "--json", "--check",
                 "--judge-model", "openai/gpt-4o", "--max-cost", "0.0001")
    assert result.exit_code == 1
    [outcome] = json.loads(result.stdout)
    assert outcome["status"] == "refused"
    assert "its regression check" in outcome["message"] and "over --max-cost 0.0001" in \
        outcome["message"]
    assert model.calls == []                            # refused before the check's calls
    assert "## Lint with ruff" in (agent.folder / "lessons.md").read_text()
    assert state(agent)["batch"]["status"] == "refused"


def test_the_estimate_counts_the_schema_the_request_carries(cli, tmp_path, server):
    """Two agents alike but for how the answer is asked for: the one whose request carries the
    JSON schema is estimated that much dearer (the provider counts it as input)."""
    from agentmem import llm
    from agentmem.sleep.passes import format_tokens

    estimates = {}
    for mode in ("prompt", "schema"):
        [agent] = make_fleet(tmp_path / mode, 1)
        wire.persona(agent, sleep={"output": mode})
        result = cli("sleep", agent.folder, "--batch", "--model", MODEL, "--json")
        assert result.exit_code == 0, result.stderr
        [data] = json.loads(result.stdout)
        estimates[mode] = data["estimate"]
        assert state(agent)["batch"]["output_mode"] == mode
    prices = llm.batch_price(MODEL)
    assert prices is not None and format_tokens("schema") > 100
    assert estimates["schema"] - estimates["prompt"] == pytest.approx(
        format_tokens("schema") * prices[0], rel=0.02)


def test_an_answer_written_from_a_lessons_old_text_is_refused_when_a_person_edited_it(
        cli, tmp_path, fleet, server):
    """The answer updates L1 from the text it was shown. a0's person rewrote L1 meanwhile: the
    update would overwrite that edit, so it is refused and the edit kept. a1's person edited
    L2 only: L1's update still applies cleanly."""
    root = tmp_path / "fleet"
    server.answer = lambda line: json.dumps({"summary": "ruff, not flake8", "operations": [
        {"op": "update", "id": "L1", "body": "Run ruff on every pull request.",
         "rationale": "the user corrected me", "evidence": ["e3"]}]})
    submit(cli, root)
    mine = LESSONS.replace("Run flake8 on every pull request", "Run flake8 (config in setup.cfg) "
                           "on every pull request")
    fleet[0].write({"lessons.md": mine}, "human", "a person's edit of L1")
    fleet[1].write({"lessons.md": LESSONS.replace("Python 2.7.", "Python 2.7 and 3.6.")},
                   "human", "a person's edit of L2")
    cli("sleep", root, "--collect", "--yes")
    result = cli("sleep", root, "--collect", "--yes", "--json")
    results = by_name(json.loads(result.stdout))
    assert results["a0"]["status"] == "refused"
    assert "no longer applies cleanly" in results["a0"]["message"]
    assert "L1 was edited after the batch was submitted" in results["a0"]["message"]
    assert (fleet[0].folder / "lessons.md").read_text() == mine
    assert Agent.open(fleet[0].folder).sleep_cursor().event == 0
    assert results["a1"]["status"] == "applied" and results["a2"]["status"] == "applied"
    assert "Run ruff on every pull request." in (fleet[1].folder / "lessons.md").read_text()
    assert "Python 2.7 and 3.6." in (fleet[1].folder / "lessons.md").read_text()


def test_batches_lists_a_batch_whose_provider_cannot_be_asked_as_last_seen(cli, tmp_path, fleet,
                                                                          server):
    """One batch's provider is gone (a local server since stopped): the others are still
    listed, and that one with its last known status and why it was not asked again."""
    other = make_fleet(tmp_path / "other", 1)
    submit(cli, tmp_path / "fleet")
    submit(cli, tmp_path / "other")
    gone = state(other[0])["batch"]["id"]
    path = tmp_path / "batches" / f"{gone}.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "api_base": wire.closed_port() + "/v1"}))
    result = cli("batches")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("batch_") == 2
    assert f"{gone}: status as last seen; asking again failed:" in result.stderr
    data = {b["id"]: b for b in json.loads(cli("batches", "--json").stdout)}
    assert "connection refused" in data[gone]["unreachable"]
    assert data[gone]["status"] == record["status"]
    [reached] = [b for b in data.values() if b["id"] != gone]
    assert "unreachable" not in reached and reached["status"] == "completed"


def test_two_submissions_at_once_never_send_an_agent_twice(tmp_path, fleet, server, monkeypatch):
    """A second `sleep --batch` (a cron run overlapping a slow one) starts while the first is
    sending: it waits for the first to record its batch, then finds every agent pending."""
    import threading

    from agentmem import llm
    from agentmem.sleep import batch as core
    from agentmem.sleep.passes import prepare

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    spec = prepare(fleet[0], MODEL)             # as the command resolves it: the stand-in
    real = llm.batch_submit
    second: dict[str, Any] = {}
    started = threading.Event()

    def other() -> None:
        started.set()
        second["done"] = core.submit([Agent.open(a.folder) for a in fleet], spec)

    def slow(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if not second:
            second["thread"] = threading.Thread(target=other)
            second["thread"].start()
            started.wait(5)
            second["thread"].join(3)        # it may not get past the first: give it the time
        return real(*args, **kwargs)

    monkeypatch.setattr(llm, "batch_submit", slow)
    first = core.submit(fleet, spec)
    second["thread"].join(30)
    assert len(first.agents) == 3 and len(server.batches) == 1
    done = second["done"]
    assert done.batch is None and done.agents == []
    assert len(done.skipped) == 3
    assert all(why.startswith(f"batch {first.batch['id']} is still") for _, why in done.skipped)


def test_an_expired_batch_with_answers_is_collected_before_its_agents_are_sent_again(
        cli, tmp_path, fleet, server):
    """a0 was answered before the batch expired: --batch before --collect would pay for a0
    again and drop its answer, so it asks for the collect first, as for a completed batch."""
    root = tmp_path / "fleet"
    server.statuses, server.answered = ["in_progress", "expired"], 1
    submit(cli, root)
    cli("sleep", root, "--collect", "--yes")                            # in progress
    result = submit(cli, root)
    assert "nothing to submit" in result.stderr and len(server.inputs) == 1
    assert result.stderr.count("expired with answers not yet collected: collect it first") == 3
    server.statuses, server.answered = ["completed"], None
    result = cli("sleep", root, "--collect", "--yes", "--json")
    assert by_name(json.loads(result.stdout))["a0"]["status"] == "applied"
    result = submit(cli, root)                       # a1 and a2, lost, are sent again
    assert [x["custom_id"] for x in list(server.inputs.values())[-1]] == ["agent-0", "agent-1"]
    assert "a0: not submitted: nothing new" in result.stderr


def test_a_batch_whose_provider_cannot_be_asked_holds_back_only_its_own_agents(
        cli, tmp_path, server):
    """Two batches, one at a provider since gone: --collect applies the other's answers and
    reports the gone one's agents, and --batch leaves them alone (never sends one twice)."""
    make_fleet(tmp_path / "fleet", 1)
    make_fleet(tmp_path / "fleet" / "more", 1)
    root = tmp_path / "fleet"
    submit(cli, root)                                 # a0
    submit(cli, root / "more")                        # more/a0, a batch of its own
    gone = Agent.open(root / "more" / "a0")
    entry = state(gone)["batch"]
    gone.update_state(batch={**entry, "api_base": wire.closed_port() + "/v1"})
    cli("sleep", root, root / "more", "--collect", "--yes")          # a0's: in progress
    result = cli("sleep", root, root / "more", "--collect", "--yes", "--json")
    assert result.exit_code == 1
    results = {r["agent"]: r for r in json.loads(result.stdout)}
    assert results[str(root / "a0")]["status"] == "applied"
    lost = results[str(gone.folder)]
    assert lost["status"] == "failed" and "connection refused" in lost["message"]
    assert f"could not ask for batch {entry['id']}" in lost["message"]
    assert state(gone)["batch"]["status"] == "submitted"              # still awaited
    gone.journal.append({"session": "s2", "kind": "user", "content": "more"})
    result = cli("sleep", root / "more", "--batch", "--model", MODEL)
    assert result.exit_code == 0, result.stderr
    assert "nothing to submit" in result.stderr and len(server.inputs) == 2
    assert f"not submitted: could not ask for batch {entry['id']}" in result.stderr


def test_a_reviewed_answer_shows_its_check_score_before_the_question(cli, tmp_path, server,
                                                                    model, monkeypatch):
    """One agent's batch answer, reviewed on a terminal with --check: the score is shown with
    the proposal, as a live `sleep --check` shows it, before the person is asked."""
    from agentmem import console
    from tests.test_sleep_check import ADD_RUFF, answers, with_log

    agent = with_log(Agent.create(str(tmp_path / "fleet" / "a0")))
    server.answer = lambda line: ADD_RUFF
    submit(cli, agent.folder)
    cli("sleep", agent.folder, "--collect")                           # in progress
    model.responder = answers
    monkeypatch.setattr(console, "stdin_is_tty", lambda: True)
    result = cli("sleep", agent.folder, "--collect", "--check", "--judge-model", "scripted/judge",
                 input="a\n")
    assert result.exit_code == 0, result.stderr
    assert "Check: 1 win(s), 0 loss(es), 2 tie(s) over 3 replayed request(s)" in result.stderr
    assert state(agent)["batch"]["status"] == "applied"


def test_collect_reviewed_in_a_real_terminal(cli, tmp_path, server):
    """`sleep AGENT --collect` in a pseudo-terminal, against the batch stand-in over HTTP: the
    answer is shown as a live proposal and asked about; picked one by one, it is applied."""

    from ptychat import Terminal, terminal_env

    [agent] = make_fleet(tmp_path / "fleet", 1)
    submit(cli, agent.folder)
    cli("sleep", agent.folder, "--collect")                   # in progress
    env = terminal_env()
    term = Terminal(["sleep", str(agent.folder), "--collect"], env, tmp_path, columns=100)
    try:
        shown = term.expect("or discard [d]? ")
        assert "Lint with ruff, not flake8" in shown
        term.send("r\r")
        term.expect("apply this one? [y/N] ")
        term.send("y\r")
        assert term.wait() == 0
    finally:
        term.close()
    assert "## Lint with ruff, not flake8" in (agent.folder / "lessons.md").read_text()
    assert state(agent)["batch"]["status"] == "applied"
