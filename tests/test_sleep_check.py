"""The regression check (sleep --check): replay, judge blind, refuse a pass that makes answers
worse. The agent's replies and the judge's verdicts come from the scripted model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import wire

from agentmem import prompts
from agentmem import sleep as core
from agentmem.agent import Agent
from agentmem.errors import InvalidAgent, Refused
from agentmem.models import ModelSpec
from agentmem.persona import parse
from agentmem.sleep import check
from agentmem.sleep.check import Settings
from tests.conftest import snapshot

SLEEP = ModelSpec("scripted/sleep", None, "test")
SETTINGS = Settings(replay=ModelSpec("scripted/test", None, "test"),
                    judge=ModelSpec("scripted/judge", None, "test"), turns=8, margin=0)

RUFF = """# Lessons

## Lint with ruff
<!-- id: L1; helpful: 0; harmful: 0 -->
This team lints with ruff, never flake8.
"""

RETIRE_RUFF = json.dumps({"summary": "ruff lesson looks stale", "operations": [
    {"op": "retire", "id": "L1", "rationale": "stale", "evidence": ["e3"]}]})
ADD_RUFF = json.dumps({"summary": "the team uses ruff", "operations": [
    {"op": "add", "title": "Lint with ruff", "body": "This team lints with ruff, never flake8.",
     "rationale": "corrected", "evidence": ["e3"]}]})
ADD_UNRELATED = json.dumps({"summary": "short summaries", "operations": [
    {"op": "add", "title": "Keep summaries short", "body": "Three lines at most.",
     "rationale": "asked", "evidence": ["e7"]}]})


def with_log(agent: Agent, lessons: str | None = None) -> Agent:
    """A linter question the user corrected (the agent recorded it), and a rated summary."""
    if lessons is not None:
        agent.write({"lessons.md": lessons}, "human", "Seed lessons")
    agent.journal.append(
        {"session": "s1", "kind": "user", "content": "Which linter should I run?"},           # e1
        {"session": "s1", "kind": "assistant", "content": "Run flake8."},                     # e2
        {"session": "s1", "kind": "user", "content": "No: we use ruff, not flake8."},         # e3
        {"session": "s1", "kind": "assistant", "content": "", "tool_calls": ["memory"]},      # e4
        {"session": "s1", "kind": "memory_edit", "command": "insert", "ok": True},            # e5
        {"session": "s1", "kind": "assistant", "content": "Noted: ruff."},                    # e6
        {"session": "s2", "kind": "user", "content": "Summarise PR 12"},                      # e7
        {"session": "s2", "kind": "assistant", "content": "It adds a parser."},               # e8
        {"session": "s2", "kind": "feedback", "rating": "good", "content": "", "about": "e8"},
        {"session": "s2", "kind": "user", "content": "And PR 13?"},                           # e10
        {"session": "s2", "kind": "turn_failed", "error": "timeout"},                         # e11
    )
    return agent


def answers(messages: list[dict]) -> str:
    """The scripted agent answers from its memory; the scripted judge prefers the answer that
    says ruff (or black, for the checks.yaml question) and sees only the texts A and B."""
    system = messages[0]["content"]
    if system == prompts.SLEEP_SYSTEM:
        raise AssertionError("the sleep pass's answer is queued, not answered here")
    if system == prompts.CHECK_JUDGE_SYSTEM:
        text = messages[1]["content"]
        a = text.split("# Answer A\n\n")[1].split("\n\n# Answer B")[0]
        b = text.split("# Answer B\n\n")[1].split("\n\nWhich answer")[0]
        good_a, good_b = ("ruff" in a or "black" in a), ("ruff" in b or "black" in b)
        return "A" if good_a and not good_b else "B" if good_b and not good_a else "TIE"
    question = messages[-1]["content"]
    if "linter" in question:
        return "Run ruff." if "Lint with ruff" in system else "Run flake8."
    if "formatter" in question:
        return "Use black." if "Format with black" in system else "Use yapf."
    return "It adds a parser."


def judge_calls(model) -> list[str]:
    return [c["messages"][1]["content"] for c in model.calls
            if c["messages"][0]["content"] == prompts.CHECK_JUDGE_SYSTEM]


# -- what is replayed ----------------------------------------------------------------------
def test_rated_and_corrected_turns_come_first_and_unanswered_ones_never(blank: Agent):
    with_log(blank)
    items = check.select(blank, 8)
    # e7 was rated /good, e1 was corrected (the next message made the agent edit its memory);
    # e3 got a reply but no reaction; e10 got no reply (the turn failed)
    assert [i.source for i in items] == ["e7", "e1", "e3"]
    assert items[0].reaction == "The user rated that answer good."
    assert items[1].reply == "Run flake8."
    assert "No: we use ruff, not flake8." in items[1].reaction
    assert items[2].reaction == ""
    assert [i.source for i in check.select(blank, 1)] == ["e7"]


def test_checks_yaml_is_read_and_a_bad_one_is_one_clear_line(blank: Agent):
    (blank.folder / "checks.yaml").write_text(
        "- question: Which formatter?\n  must: name black\n  must_not: [suggest yapf]\n")
    [item] = check.load_checks(blank)
    assert (item.question, item.must, item.must_not, item.source) == (
        "Which formatter?", ["name black"], ["suggest yapf"], "checks.yaml #1")
    for text, message in [
            ("- question: q\n  mst: x\n", "checks.yaml:2: check 1: unknown key 'mst'"),
            ("question: q\n", "checks.yaml:1: must be a list of checks"),
            ("- must: x\n", "checks.yaml:1: check 1 needs a question"),
            ("- question: q\n  must: [1]\n", "checks.yaml:2: check 1: must must be text or a list"),
            ("- question: [q\n", "checks.yaml:1: invalid YAML")]:
        (blank.folder / "checks.yaml").write_text(text)
        with pytest.raises(InvalidAgent) as err:
            check.load_checks(blank)
        assert str(err.value).startswith(message), (text, str(err.value))
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("setting,message", [
    ("check: maybe", "sleep setting 'check' must be true, false, or a mapping (turns, "
     "margin, judge)"),
    ("check: {turns: 0}", "check setting 'turns' must be a whole number, at least 1"),
    ("check: {margin: -1}", "check setting 'margin' must be a whole number, at least 0"),
    ("check: {judge: ''}", "check setting 'judge' must be a model name"),
    ("check: {jduge: x}", "unknown check setting 'jduge' (known: turns, margin, judge)"),
])
def test_the_check_setting_is_validated_with_the_persona(setting: str, message: str):
    persona, problems = parse(f"---\nname: x\nsleep: {{{setting}}}\n---\nbody\n")
    assert persona is None and [p.message for p in problems] == [message]
    assert problems[0].line == 3
    persona, problems = parse("---\nsleep: {check: {turns: 3, margin: 1, judge: gpt-4.1}}\n"
                              "---\nbody\n")
    assert problems == [] and check.setting(persona.settings) == {
        "turns": 3, "margin": 1, "judge": "gpt-4.1"}


# -- the score -----------------------------------------------------------------------------
def test_a_proposal_that_drops_a_lesson_a_turn_depends_on_is_refused(cli, blank: Agent, model):
    with_log(blank, RUFF)
    model.push(RETIRE_RUFF)
    model.responder = answers
    before = snapshot(blank)
    result = cli("sleep", blank.folder, "--check", "--yes", "--json", "--model", "scripted/sleep")
    assert result.exit_code == 1
    assert "the regression check found the proposed memory worse: 1 loss(es), 0 win(s), " \
        "2 tie(s) over 3 replayed request(s)" in result.stderr
    printed = json.loads(result.stdout)
    assert printed["refused"] is True and printed["version"] is None
    assert {k: printed["check"][k] for k in ("wins", "losses", "ties", "turns", "cost")} == {
        "wins": 0, "losses": 1, "ties": 2, "turns": 3, "cost": 0.0}
    assert snapshot(blank) == before             # nothing written, the cursor unmoved
    [kept] = (blank.state_dir / "sleep").glob("refused-*.json")
    data = json.loads(kept.read_text())
    assert "regression check" in data["reason"] and data["outputs"] == [RETIRE_RUFF]
    linter = next(c for c in data["check"]["compared"] if c["source"] == "e1")
    assert (linter["before"], linter["after"], linter["outcome"]) == (
        "Run ruff.", "Run flake8.", "loss")
    assert "check judge: scripted/sleep (from the sleep model, --model)" in result.stderr
    assert "check replay model: scripted/test (from $AGENTMEM_MODEL)" in result.stderr
    # blind: the judge saw the request, what happened before, and two answers, no memory
    [asked] = judge_calls(model)
    assert "Which linter should I run?" in asked and "Lint with ruff" not in asked
    assert "The user then said (a correction the assistant recorded): No: we use ruff" in asked


def test_an_improvement_is_applied_with_its_score_in_the_version_and_json(cli, blank, model):
    with_log(blank)
    model.push(ADD_RUFF)
    model.responder = answers
    result = cli("sleep", blank.folder, "--check", "--yes", "--json", "--model", "scripted/sleep")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["version"] is not None
    assert {k: data["check"][k] for k in ("wins", "losses", "ties", "turns", "cost")} == {
        "wins": 1, "losses": 0, "ties": 2, "turns": 3, "cost": 0.0}
    # the pass (1 call), six replays and one verdict (identical answers are not judged)
    assert data["usage"]["calls"] == 8 and data["check"]["calls"] == 7
    assert "## Lint with ruff" in (blank.folder / "lessons.md").read_text()
    message = blank.history.versions()[0].message
    assert "Check: 1 win(s), 0 loss(es), 2 tie(s) over 3 replayed request(s) (judge " \
        "scripted/sleep)" in message
    [logged] = [e for e in blank.journal.read(None).events if e["kind"] == "sleep"]
    assert (logged["check"]["wins"], logged["check"]["losses"]) == (1, 0)   # the log says too


def test_a_tie_is_applied(cli, blank: Agent, model):
    with_log(blank)
    model.push(ADD_UNRELATED)
    model.responder = answers
    result = cli("sleep", blank.folder, "--check", "--yes", "--model", "scripted/sleep")
    assert result.exit_code == 0, result.stderr
    assert "Check: 0 win(s), 0 loss(es), 3 tie(s)" in result.stderr
    assert "## Keep summaries short" in (blank.folder / "lessons.md").read_text()
    assert judge_calls(model) == []          # identical answers tie without asking


def test_a_tie_is_asked_again_in_the_other_order_and_that_verdict_stands(blank: Agent, model):
    with_log(blank)
    model.push(ADD_RUFF)
    proposal = core.propose(blank, SLEEP)
    assert proposal is not None
    rng = random.Random(7)
    after_first = random.Random(7).random() < 0.5
    # one request only: the linter question, answered differently by the two memories
    settings = Settings(SETTINGS.replay, SETTINGS.judge, turns=1, margin=0)
    blank.journal.append({"session": "s3", "kind": "user", "content": "Which linter now?"},
                         {"session": "s3", "kind": "assistant", "content": "flake8"},
                         {"session": "s3", "kind": "feedback", "rating": "bad", "content": "",
                          "about": "e13"})
    # the second verdict names the proposed memory's answer ("Run ruff."), in its slot then
    second_verdict = "B" if after_first else "A"
    model.push("Run flake8.", "Run ruff.", "TIE", second_verdict)
    report = check.verify(proposal, settings, rng=rng)
    first, second = [c["messages"][1]["content"] for c in model.calls[-2:]]
    a_first = first.split("# Answer A\n\n")[1].split("\n\n")[0]
    a_second = second.split("# Answer A\n\n")[1].split("\n\n")[0]
    assert a_first == ("Run ruff." if after_first else "Run flake8.")
    assert a_second != a_first and {a_first, a_second} == {"Run ruff.", "Run flake8."}
    assert report.compared[0].verdicts == ["TIE", second_verdict]
    assert (report.wins, report.losses, report.ties) == (1, 0, 0)     # the second one stands
    assert proposal.check is report and proposal.calls == 5


def test_a_tie_both_ways_is_a_tie_and_an_unreadable_verdict_refuses(blank: Agent, model):
    with_log(blank)
    model.push(ADD_RUFF)
    proposal = core.propose(blank, SLEEP)
    settings = Settings(SETTINGS.replay, SETTINGS.judge, turns=1, margin=0)
    model.push("It adds a parser, quickly.", "It adds a parser.", "TIE", "tie.")
    report = check.verify(proposal, settings, rng=random.Random(1))
    assert (report.wins, report.losses, report.ties) == (0, 0, 1)
    before = snapshot(blank)
    model.push("It adds a parser, quickly.", "It adds a parser.", "I prefer the first one")
    with pytest.raises(Refused) as err:
        check.verify(proposal, settings, rng=random.Random(1))
    assert "the regression check's judge gave no verdict: expected A, B or TIE" in str(err.value)
    assert snapshot(blank) == before


def test_the_margin_lets_a_small_loss_through_and_persona_turns_the_check_on(cli, blank, model):
    with_log(blank, RUFF)
    wire.persona(blank, sleep={"check": {"margin": 1}})
    model.push(RETIRE_RUFF)
    model.responder = answers
    result = cli("sleep", blank.folder, "--yes", "--model", "scripted/sleep")   # no --check
    assert result.exit_code == 0, result.stderr
    assert "Check: 0 win(s), 1 loss(es), 2 tie(s)" in result.stderr
    assert "## Lint with ruff" not in (blank.folder / "lessons.md").read_text()


def test_checks_yaml_is_replayed_with_its_criteria_and_a_bad_one_stops_before_any_call(
        cli, blank: Agent, model):
    blank.journal.append({"session": "s1", "kind": "user", "content": "We format with black."})
    (blank.folder / "checks.yaml").write_text(
        "- question: Which formatter should I use?\n  must: name black\n"
        "  must_not: [suggest yapf]\n")
    model.push(json.dumps({"summary": "black", "operations": [
        {"op": "add", "title": "Format with black", "body": "Use black.", "rationale": "said",
         "evidence": ["e1"]}]}))
    model.responder = answers
    result = cli("sleep", blank.folder, "--check", "--yes", "--json", "--model", "scripted/sleep")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["check"]["wins"] == 1
    [asked] = judge_calls(model)
    assert "- must: name black\n- must not: suggest yapf" in asked
    assert "When this was asked before" not in asked       # a written check has no history
    blank.journal.append({"session": "s1", "kind": "user", "content": "more"})
    (blank.folder / "checks.yaml").write_text("- question: q\n  mst: x\n")
    before, calls = snapshot(blank), len(model.calls)
    result = cli("sleep", blank.folder, "--check", "--yes", "--model", "scripted/sleep")
    assert result.exit_code == 1
    assert "checks.yaml:2: check 1: unknown key 'mst'" in result.stderr
    assert snapshot(blank) == before and len(model.calls) == calls


def test_max_cost_counts_the_check_and_refuses_before_any_call(cli, blank: Agent, model):
    from agentmem import llm

    for name, price in (("scripted/cheap", 0.0), ("scripted/test", 0.0), ("scripted/dear", 0.01)):
        llm.litellm().register_model({name: {
            "input_cost_per_token": price, "output_cost_per_token": price,
            "litellm_provider": "scripted", "mode": "chat", "max_input_tokens": 100000}})
    with_log(blank, RUFF)
    before = snapshot(blank)
    result = cli("sleep", blank.folder, "--check", "--yes", "--max-cost", "1", "--model",
                 "scripted/cheap", "--judge-model", "scripted/dear")
    assert result.exit_code == 1
    assert "this pass and its regression check (12 calls at most for 3 replayed request(s)) " \
        "would cost up to ~$" in result.stderr and "over --max-cost 1" in result.stderr
    assert model.calls == [] and snapshot(blank) == before
    # without the check the same cap holds the pass
    model.push(ADD_UNRELATED)
    result = cli("sleep", blank.folder, "--yes", "--max-cost", "1", "--model", "scripted/cheap")
    assert result.exit_code == 0, result.stderr


def test_verify_refuses_before_replaying_when_the_pass_has_spent_the_cap(blank: Agent, model):
    from agentmem import llm

    llm.litellm().register_model({"scripted/dear2": {
        "input_cost_per_token": 0.01, "output_cost_per_token": 0.01,
        "litellm_provider": "scripted", "mode": "chat", "max_input_tokens": 100000}})
    with_log(blank, RUFF)
    model.push(RETIRE_RUFF)
    proposal = core.propose(blank, SLEEP)
    settings = Settings(SETTINGS.replay, ModelSpec("scripted/dear2", None, "t"))
    with pytest.raises(Refused) as err:
        check.verify(proposal, settings, max_cost=0.5)
    assert "and its regression check (12 calls at most) would cost up to" in str(err.value)
    assert len(model.calls) == 1                     # only the pass's own call


def test_judge_model_goes_with_check(cli, blank: Agent):
    result = cli("sleep", blank.folder, "--judge-model", "scripted/j")
    assert result.exit_code == 2 and "add --check" in result.stderr
    wire.persona(blank, sleep={"check": True})                  # or with persona.md's check
    result = cli("sleep", blank.folder, "--judge-model", "scripted/j", "--dry-run", "--model",
                 "scripted/sleep")
    assert result.exit_code == 0, result.stderr
    assert "check judge: scripted/j (from --judge-model)" in result.stderr


def test_many_agents_are_checked_each_on_its_own(cli, tmp_path: Path, model):
    harmed = with_log(Agent.create(str(tmp_path / "fleet" / "a-harmed")), RUFF)
    helped = with_log(Agent.create(str(tmp_path / "fleet" / "b-helped")))

    def reply(messages: list[dict]) -> str:
        if messages[0]["content"] == prompts.SLEEP_SYSTEM:
            return RETIRE_RUFF if "Lint with ruff" in messages[1]["content"] else ADD_RUFF
        return answers(messages)

    model.responder = reply
    harmed_before = snapshot(harmed)
    result = cli("sleep", tmp_path / "fleet", "--yes", "--check", "--model", "scripted/sleep")
    assert result.exit_code == 1              # one agent's pass was refused
    assert "a-harmed: sleep pass refused, nothing was changed: the regression check found the " \
        "proposed memory worse: 1 loss(es), 0 win(s)" in result.stdout.replace("\n", " ")
    assert "b-helped: 1 operation(s), version" in result.stdout
    assert "check 1 won 0 lost 2 tied" in result.stdout
    assert snapshot(harmed) == harmed_before
    assert "Check: 1 win(s), 0 loss(es), 2 tie(s)" in helped.history.versions()[0].message
    # --json: the refused agent's proposal comes with its score
    result = cli("sleep", tmp_path / "fleet", "--yes", "--check", "--json", "--model",
                 "scripted/sleep")
    bad, good = json.loads(result.stdout)
    assert not bad["ok"] and "regression check found the proposed memory worse" in bad["message"]
    assert {k: bad["proposal"]["check"][k] for k in ("wins", "losses", "ties", "cost")} == {
        "wins": 0, "losses": 1, "ties": 2, "cost": 0.0}
    assert good["ok"] and good["message"] == "nothing new since the last sleep"


def test_sleep_in_a_chat_runs_the_check_when_the_persona_turns_it_on(cli, blank: Agent, model,
                                                                     monkeypatch):
    from agentmem import console

    monkeypatch.setattr(console, "stdin_is_tty", lambda: True)
    blank.write({"lessons.md": RUFF}, "human", "Seed lessons")
    wire.persona(blank, sleep={"check": True})
    model.push("Run ruff.", RETIRE_RUFF)          # the chat's reply, then the pass's answer
    model.responder = answers
    lessons = (blank.folder / "lessons.md").read_text()
    result = cli("chat", blank.folder, input="Which linter should I run?\n/good\n/sleep\n/exit\n")
    assert "check judge: scripted/test (from the sleep model, the chat session's " \
        "$AGENTMEM_MODEL)" in result.stderr
    assert "the regression check found the proposed memory worse: 1 loss(es)" in \
        result.stderr.replace("\n", " ")
    assert (blank.folder / "lessons.md").read_text() == lessons


def test_nothing_to_compare_is_said_and_the_pass_applies(blank: Agent, model):
    blank.journal.append({"session": "s1", "kind": "user", "content": "We format with black."})
    model.push(json.dumps({"summary": "black", "operations": [
        {"op": "add", "title": "Format with black", "body": "Use black.", "rationale": "said",
         "evidence": ["e1"]}]}))
    proposal = core.propose(blank, SLEEP)
    report = check.verify(proposal, SETTINGS)          # no answered turn, no checks.yaml
    assert report.line() == ("Check: nothing compared (no answered request in the log, and no "
                             "checks.yaml)") and report.calls == 0
    version = core.apply(proposal)
    assert version is not None and report.line() in version.message
    blank.journal.append({"session": "s1", "kind": "user", "content": "ok"})
    model.push(json.dumps({"summary": "", "operations": []}))
    proposal = core.propose(blank, SLEEP)
    assert check.verify(proposal, SETTINGS).line() == (
        "Check: nothing compared (the proposal changes no memory)")


def test_watch_runs_the_check_persona_md_turns_on(blank: Agent, model):
    """`agentmem watch` sleeps through run_pass too: persona.md's `sleep: check:` holds there,
    so a harmful background pass is refused, reported, and writes nothing."""
    from agentmem.watcher import Watcher

    with_log(blank, RUFF)
    wire.persona(blank, sleep={"check": True})
    model.push(RETIRE_RUFF)
    model.responder = answers
    before = snapshot(blank)
    events = []
    watcher = Watcher([blank], events.append, model="scripted/sleep", idle_minutes=0,
                      min_events=1)
    watcher.maybe_sleep(blank)
    [failed] = [e for e in events if e.kind == "sleep_failed"]
    assert "regression check found the proposed memory worse" in failed.message
    assert snapshot(blank) == before
    assert judge_calls(model)


def test_the_checks_cost_is_counted_in_json_and_in_the_pass_usage(cli, blank: Agent, model):
    """Priced models: --json's check cost is what the replays and verdicts cost, and the
    pass's usage counts the pass's own call and the check's together."""
    from agentmem import llm

    for name in ("scripted/priced-sleep", "scripted/priced-judge"):
        llm.litellm().register_model({name: {
            "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
            "litellm_provider": "scripted", "mode": "chat", "max_input_tokens": 100000}})
    with_log(blank)
    model.push(ADD_RUFF)
    model.responder = answers
    result = cli("sleep", blank.folder, "--check", "--yes", "--json", "--model",
                 "scripted/priced-sleep", "--judge-model", "scripted/priced-judge")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    judged = [c for c in model.calls if c["messages"][0]["content"] == prompts.CHECK_JUDGE_SYSTEM]
    assert len(judged) == 1 and data["check"]["calls"] == 7
    assert data["check"]["cost"] > 0
    assert data["usage"]["cost"] > data["check"]["cost"]      # the pass's own call, and the check


def test_review_with_the_check_in_a_real_terminal_over_http(blank: Agent, tmp_path: Path):
    """`agentmem sleep AGENT --check` in a pseudo-terminal against the OpenAI stand-in over
    HTTP: the models and the judge are named, the proposal and the score are shown, and the
    operation picked one by one is applied."""

    import wire
    from ptychat import Terminal, terminal_env
    from wire import openai

    with_log(blank, RUFF)
    with wire.serve() as server:
        wire.persona(blank, model="openai/x", api_base=server.url + "/v1")
        server.push(openai.reply(ADD_UNRELATED),              # the pass
                    *[openai.reply("Run ruff.") for _ in range(6)])   # alike: no verdicts
        env = terminal_env()
        term = Terminal(["sleep", str(blank.folder), "--check"], env, tmp_path, columns=100)
        try:
            shown = term.expect("or discard [d]? ")
            assert "check judge: openai/x" in shown
            assert "Keep summaries short" in shown
            assert "Check: 0 win(s), 0 loss(es), 3 tie(s)" in shown
            term.send("r\r")
            term.expect("apply this one? [y/N] ")
            term.send("y\r")
            assert term.wait() == 0
        finally:
            term.close()
    assert "## Keep summaries short" in (blank.folder / "lessons.md").read_text()
    latest = blank.history.versions()[0]
    assert latest.author == "sleep" and "Check: 0 win(s), 0 loss(es), 3 tie(s)" in latest.message
