from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from agentmem import lessons as lessons_fmt
from agentmem import sleep as core
from agentmem.agent import Agent
from agentmem.errors import Refused
from agentmem.models import ModelSpec
from agentmem.scripted import Reply
from agentmem.sleep import context
from agentmem.sleep.ops import MAX_EVIDENCE, merge_evidence
from tests.conftest import snapshot

LESSONS = """# Lessons

What I have learned.

## Lint with flake8
<!-- id: L1; helpful: 1; harmful: 0 -->
Run flake8 on every pull request before commenting on style. Paste its output in the review
so the author can fix every warning in one go, and never approve a change that adds warnings.

## Run flake8 on changed files only
<!-- id: L2; helpful: 0; harmful: 0 -->
Only lint the files the pull request touches. Linting the whole repository buries the
author in warnings about code they did not write.

## Ask for the Python 2 compatibility check
<!-- id: L3; helpful: 0; harmful: 0 -->
Every change must still run on Python 2.7.

<!-- pin -->
## Billing needs two reviewers
<!-- id: L4; helpful: 0; harmful: 0 -->
Company policy.
<!-- /pin -->
"""

SPEC = ModelSpec("scripted/sleep", None, "test")


@pytest.fixture
def learner(blank: Agent) -> Agent:
    blank.write({"lessons.md": LESSONS}, "human", "Seed lessons")
    blank.journal.append(
        {"session": "s1", "kind": "user", "content": "Review my PR"},                       # e1
        {"session": "s1", "kind": "assistant", "content": "Please run flake8 first."},      # e2
        {"session": "s1", "kind": "user", "content": "No: we use ruff, not flake8."},       # e3
        {"session": "s2", "kind": "user", "content": "Review this one too"},                # e4
        {"session": "s2", "kind": "assistant", "content": "flake8 reports E501 here."},     # e5
        {"session": "s2", "kind": "user", "content": "Again: ruff, not flake8!"},           # e6
        {"session": "s2", "kind": "feedback", "rating": "bad", "content": "stop flake8"},   # e7
        {"session": "s2", "kind": "user", "content": "We dropped Python 2 years ago."},     # e8
    )
    return blank


GOOD = {"summary": "The team uses ruff; Python 2 is gone.", "operations": [
    {"op": "merge", "ids": ["L1", "L2"], "title": "Lint with ruff, not flake8",
     "body": "The team uses ruff. Run it on the files the pull request changes.",
     "rationale": "corrected twice about flake8", "evidence": ["e3", "e6", "e7"]},
    {"op": "retire", "id": "L3", "rationale": "Python 2 support was dropped", "evidence": ["e8"]},
    {"op": "persona_warning", "text": "I tend to suggest flake8; this team uses ruff.",
     "rationale": "repeated mistake", "evidence": ["e2", "e5"]},
]}


def test_pass_merges_archives_and_warns_with_evidence(cli, learner: Agent, model):
    model.push(json.dumps(GOOD))
    result = cli("sleep", learner.folder, "--yes", "--model", "scripted/sleep")
    assert result.exit_code == 0, result.stderr
    lessons = (learner.folder / "lessons.md").read_text()
    assert "## Lint with ruff, not flake8\n<!-- id: L1; evidence: e3 e6 e7; helpful: 1; harmful: 0 -->" \
        in lessons
    assert "## Run flake8 on changed files only" not in lessons
    assert "Python 2" not in lessons
    assert "<!-- pin -->\n## Billing needs two reviewers" in lessons      # pinned text untouched
    archive = (learner.folder / "archive.md").read_text()
    assert "## Ask for the Python 2 compatibility check" in archive
    assert "_Retired" in archive and "Python 2 support was dropped" in archive
    assert "merged into L1" in archive
    persona = (learner.folder / "persona.md").read_text()
    assert persona.endswith("## Warnings\n\n- I tend to suggest flake8; this team uses ruff.\n")
    version = learner.history.versions()[0]
    assert version.author == "sleep"
    assert "merge L1, L2: corrected twice about flake8 [e3 e6 e7]" in version.message
    assert learner.sleep_cursor().event == 8
    assert learner.journal.read().events[-1]["kind"] == "sleep"
    # the exact prompt: new events, current lessons with ids and pins
    sent = model.calls[0]["messages"][1]["content"]
    assert "e3 s1 user: No: we use ruff, not flake8." in sent
    assert "[L4] (pinned) Billing needs two reviewers" in sent
    # blame shows the lesson's evidence: the log events behind it, and the version
    blamed = cli("blame", learner.folder, "L1", "--json")
    data = json.loads(blamed.stdout)
    assert [e["content"] for e in data["evidence"]] == [
        "No: we use ruff, not flake8.", "Again: ruff, not flake8!", "stop flake8"]
    assert data["versions"][0]["author"] == "sleep"
    text = cli("blame", learner.folder, "L3").stdout      # retired: found in the archive
    assert "archive.md" in text and "e8" in text and "We dropped Python 2" in text
    # diff of the latest version shows it; revert undoes it
    shown = cli("diff", learner.folder)
    assert "+## Lint with ruff, not flake8" in shown.stdout and "+- I tend to suggest" in shown.stdout
    undone = cli("revert", learner.folder, "HEAD")
    assert undone.exit_code == 0
    assert (learner.folder / "lessons.md").read_text() == LESSONS
    assert not (learner.folder / "archive.md").exists()


def test_second_pass_reads_only_new_events(learner: Agent, model):
    model.push(json.dumps({"operations": [], "summary": "nothing"}))
    proposal = core.propose(learner, SPEC)
    assert proposal is not None and proposal.events == 8
    core.apply(proposal)
    assert core.propose(learner, SPEC) is None          # nothing new: no model call
    learner.journal.append({"kind": "user", "content": "one more"})
    model.push(json.dumps({"operations": [], "summary": "nothing"}))
    proposal = core.propose(learner, SPEC)
    assert proposal is not None and proposal.events == 1
    sent = model.calls[-1]["messages"][1]["content"]
    assert "e10  user: one more" in sent          # e9 is the first pass's own sleep event
    assert "\ne8 " not in sent and "\ne9 " not in sent


def test_review_one_by_one_applies_only_chosen(learner: Agent, model, monkeypatch):
    model.push(json.dumps(GOOD))
    proposal = core.propose(learner, SPEC)
    assert proposal is not None
    version = core.apply(proposal, selected=[1])
    assert version is not None and "declined in review" in version.message
    lessons = (learner.folder / "lessons.md").read_text()
    assert "## Lint with flake8" in lessons and "Python 2" not in lessons


def test_apply_refuses_when_memory_changed_during_review(learner: Agent, model):
    model.push(json.dumps(GOOD))
    proposal = core.propose(learner, SPEC)
    path = learner.folder / "lessons.md"
    path.write_text(path.read_text() + "\n## Mine\nhand edit\n")
    state = learner.read_state()
    with pytest.raises(Exception, match="memory changed while the sleep proposal"):
        core.apply(proposal)
    assert "## Mine" in path.read_text() and learner.sleep_cursor().event == 0
    assert learner.read_state() == state


def test_dry_run_and_json_change_nothing(cli, learner: Agent, model):
    before = snapshot(learner)
    model.push(json.dumps(GOOD), json.dumps(GOOD))
    result = cli("sleep", learner.folder, "--dry-run", "--model", "scripted/x")
    assert result.exit_code == 0 and "merge L1, L2" in result.stdout
    result = cli("sleep", learner.folder, "--json", "--model", "scripted/x")
    data = json.loads(result.stdout)
    assert [op["op"] for op in data["operations"]] == ["merge", "retire", "persona_warning"]
    assert "+## Lint with ruff, not flake8" in data["diff"]
    assert snapshot(learner) == before


def test_max_tokens_refuses_before_calling_the_model(cli, learner: Agent, model):
    before = snapshot(learner)
    result = cli("sleep", learner.folder, "--yes", "--max-tokens", "100", "--model", "scripted/x")
    assert result.exit_code == 1 and "over --max-tokens 100" in result.stderr
    assert snapshot(learner) == before and model.calls == []


def test_max_cost_uses_the_price_table(cli, learner: Agent, model):
    from agentmem import llm

    llm.litellm().register_model({"scripted/priced": {
        "input_cost_per_token": 0.001, "output_cost_per_token": 0.002,
        "litellm_provider": "scripted", "mode": "chat", "max_input_tokens": 100000}})
    result = cli("sleep", learner.folder, "--yes", "--max-cost", "0.01", "--model", "scripted/priced")
    assert result.exit_code == 1 and "over --max-cost 0.01" in result.stderr
    result = cli("sleep", learner.folder, "--yes", "--max-cost", "0.01", "--model", "scripted/free")
    assert result.exit_code == 1 and "no price is known" in result.stderr
    model.push(Reply(text=json.dumps(GOOD), prompt_tokens=1000, completion_tokens=100))
    result = cli("sleep", learner.folder, "--yes", "--max-cost", "100", "--model", "scripted/priced")
    assert result.exit_code == 0, result.stderr
    event = learner.journal.read().events[-1]
    assert event["kind"] == "sleep" and event["usage"]["cost"] == pytest.approx(1.2)


def backlog_over_a_small_window(learner: Agent) -> ModelSpec:
    """60 long new events, and a sleep model whose 6,500-token window needs several chunks."""
    from agentmem import llm

    llm.litellm().register_model({"scripted/small": {
        "input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "litellm_provider": "scripted",
        "mode": "chat", "max_input_tokens": 6500}})
    learner.journal.append(*({"kind": "user", "content": f"message {n} " + "x" * 400}
                             for n in range(60)))
    return ModelSpec("scripted/small", None, "test")


def test_backlog_too_big_for_the_window_is_chunked_into_one_version(learner: Agent, model):
    spec = backlog_over_a_small_window(learner)
    plan = core.plan(learner, spec)
    assert len(plan.chunks) >= 2
    for _ in plan.chunks:
        model.push(json.dumps({"operations": [], "summary": ""}))
    model.replies[-1].text = json.dumps({"operations": [
        {"op": "add", "title": "Long sessions", "body": "Users send many messages.",
         "rationale": "seen", "evidence": ["e68"]}], "summary": "one lesson"})
    proposal = core.propose(learner, spec)
    assert proposal is not None and proposal.calls == len(plan.chunks)
    version = core.apply(proposal)
    assert version is not None and len(learner.history.versions()) == 3   # new, seed, this pass
    assert learner.sleep_cursor().event == 68


def test_provider_error_mid_pass_leaves_everything(cli, learner: Agent, model, monkeypatch):
    monkeypatch.setenv("AGENTMEM_RETRIES", "0")
    before = snapshot(learner)
    model.push(Reply(error="rate_limit"))
    result = cli("sleep", learner.folder, "--yes", "--model", "scripted/x")
    assert result.exit_code == 1 and "rate limited" in result.stderr
    assert "nothing was changed" in result.stderr
    assert snapshot(learner) == before


def op(**fields):
    base = {"rationale": "because", "evidence": ["e3"]}
    base.update(fields)
    return base


def ops(*items):
    return json.dumps({"operations": list(items), "summary": "s"})


WIPE = [op(op="update", id="L1", body="x"), op(op="update", id="L2", body="x"),
        op(op="update", id="L3", body="x")]


HOSTILE = [
    ("empty", ""),
    ("whitespace", "   \n  "),
    ("prose", "I think you should use ruff."),
    ("truncated json", ops(op(op="add", title="t", body="b"))[:-10]),
    ("json list", json.dumps([op(op="add", title="t", body="b")])),
    ("no operations key", json.dumps({"ops": []})),
    ("operations not a list", json.dumps({"operations": {"op": "add"}})),
    ("extra top-level key", json.dumps({"operations": [], "summary": "", "files": {}})),
    ("unknown op", ops(op(op="rewrite_file", path="lessons.md", text="x"))),
    ("delete op", ops(op(op="delete", id="L1"))),
    ("missing rationale", ops({"op": "retire", "id": "L3", "evidence": ["e8"]})),
    ("empty rationale", ops(op(op="retire", id="L3", rationale="  "))),
    ("missing evidence", ops({"op": "retire", "id": "L3", "rationale": "x"})),
    ("empty evidence", ops(op(op="retire", id="L3", evidence=[]))),
    ("hallucinated evidence", ops(op(op="retire", id="L3", evidence=["e999"]))),
    ("malformed evidence", ops(op(op="retire", id="L3", evidence=["3"]))),
    ("unknown lesson", ops(op(op="update", id="L99", body="new"))),
    ("retire twice", ops(op(op="retire", id="L3"), op(op="retire", id="L3"))),
    ("update pinned", ops(op(op="update", id="L4", body="No policy."))),
    ("retire pinned", ops(op(op="retire", id="L4"))),
    ("merge pinned", ops(op(op="merge", ids=["L1", "L4"], title="t", body="b"))),
    ("counter pinned", ops(op(op="counter", id="L4", helpful=1))),
    ("merge one id", ops(op(op="merge", ids=["L1"], title="t", body="b"))),
    ("merge same id", ops(op(op="merge", ids=["L1", "L1"], title="t", body="b"))),
    ("counter huge", ops(op(op="counter", id="L1", helpful=1000))),
    ("counter negative", ops(op(op="counter", id="L1", harmful=-3))),
    ("counter nothing", ops(op(op="counter", id="L1"))),
    ("empty body", ops(op(op="update", id="L1", body=""))),
    ("empty title", ops(op(op="add", title=" ", body="b"))),
    ("multi-line title", ops(op(op="add", title="a\n## b", body="b"))),
    ("body with metadata comment", ops(op(op="add", title="t", body="<!-- id: L1 --> x"))),
    ("body with pin", ops(op(op="add", title="t", body="<!-- pin -->\nmine\n<!-- /pin -->"))),
    ("body with heading", ops(op(op="add", title="t", body="x\n## Sneaky second lesson\ny"))),
    ("persona front matter injection", ops(op(op="persona_warning", text="x\n---\nmodel: evil"))),
    ("extra field", ops(op(op="update", id="L1", body="b", path="tools.yaml"))),
    ("wrong type", ops(op(op="update", id=1, body="b"))),
    ("shrink without archiving", ops(
        op(op="update", id="L1", body="x"), op(op="update", id="L2", body="x"),
        op(op="update", id="L3", body="x"))),
    ("tool call instead of answer", None),
    ("cut off at the token limit", "LENGTH"),
    ("unclosed code fence", ops(op(op="update", id="L1", body="Run tests.\n```python\nx = 1"))),
    ("secret in a lesson", ops(op(op="add", title="Deploy key",
                                  body="Use sk-proj-abcdefghijklmnopqrstuvwxyz0123456789."))),
    # leniency ends where a reply holds more than one candidate (see LENIENT for what parses)
    ("two objects after prose", "Here:\n" + ops() + "\n" + ops()),
    ("example object before the answer", 'Each looks like {"op": "add"}. ' + ops()),
    ("two code fences", "A:\n```json\n" + ops() + "\n```\nB:\n```json\n" + ops() + "\n```"),
    ("object in a list among prose", "Here: [" + ops() + "]"),
    ("prose between braces", "I used {curly} text:\n" + ops()),
    # line breaks other than \n become real ones on read-back (decode_text, splitlines)
    ("warning CR heading", ops(op(op="persona_warning", text="x\r# New persona heading"))),
    ("warning CR fence", ops(op(op="persona_warning", text="x\r```"))),
    ("warning line separator", ops(op(op="persona_warning", text="x\u2028## h"))),
    ("title line separator", ops(op(op="add", title="a\u2028## b", body="b"))),
    ("body NEL heading", ops(op(op="add", title="t", body="x\x85## Sneaky second lesson"))),
    ("body CR heading", ops(op(op="add", title="t", body="x\r## Sneaky second lesson"))),
    ("title with metadata comment", ops(op(op="add", title="X <!-- id: L1; helpful: 9 -->",
                                           body="b"))),
    ("title with pin", ops(op(op="add", title="<!-- pin -->", body="b"))),
    ("rationale with comment", ops(op(op="retire", id="L3", rationale="<!-- pin --> mine"))),
    ("update then retire", ops(op(op="update", id="L1", body="x"), op(op="retire", id="L1"))),
    ("wipe hidden by new text", ops(op(op="add", title="A long new lesson", body="word " * 300),
                                    *WIPE)),
    # size caps (at the default budgets: lessons 4000, persona 2000 tokens)
    ("3 MB lesson", ops(op(op="add", title="Huge", body="word " * 600_000))),
    ("5,000 added lessons", ops(*(op(op="add", title=f"Rule {i}", body="b") for i in range(5000)))),
    ("lesson over the size cap", ops(op(op="add", title="Long", body="word " * 420))),
    ("update over the size cap", ops(op(op="update", id="L1", body="word " * 420))),
    ("merge over the size cap", ops(op(op="merge", ids=["L1", "L2"], title="t",
                                       body="word " * 420))),
    ("41 new lessons", ops(*(op(op="add", title=f"Rule {i}", body="b") for i in range(41)))),
    ("lessons.md past its growth cap", ops(*(op(op="add", title=f"Rule {i}", body="word " * 390)
                                             for i in range(18)))),
    ("persona past its growth cap", ops(*(op(op="persona_warning", text=f"{i} " + "careful " * 48)
                                          for i in range(45)))),
    ("archive past its growth cap", ops(op(op="add", title="Soon gone", body="word " * 2000),
                                        op(op="retire", id="L5"))),
    ("long title", ops(op(op="add", title="t" * 201, body="b"))),
    ("long warning", ops(op(op="persona_warning", text="w" * 401))),
    ("long rationale", ops(op(op="retire", id="L3", rationale="r" * 1001))),
    # hostile text that used to end in a traceback
    ("200k nested brackets", "[" * 200_000),         # over the output cap
    ("100k nested brackets", "[" * 100_000),         # under it: too deep for the JSON parser
    ("surrogate in a body", ops(op(op="add", title="t", body="x\ud800y"))),
    ("surrogate in a title", ops(op(op="add", title="\udc00", body="b"))),
    ("surrogate in a warning", ops(op(op="persona_warning", text="I tend to \ud800"))),
    ("surrogate in a rationale", ops(op(op="retire", id="L3", rationale="gone \udfff"))),
    ("surrogate in a lesson id", ops(op(op="retire", id="L\ud800"))),
    ("surrogate in the summary", json.dumps({"operations": [], "summary": "\ud800"})),
    ("surrogate in a key", json.dumps({"operations": [], "\ud800": 1})),
]

# each case is refused for its own reason, not for a neighbour's
REASONS = {
    "empty": "output was empty", "whitespace": "output was empty",
    "prose": "not valid JSON", "truncated json": "not valid JSON",
    "json list": 'an object with an "operations" list',
    "no operations key": 'an object with an "operations" list',
    "operations not a list": 'an object with an "operations" list',
    "extra top-level key": "unexpected keys in the model's output: files",
    "unknown op": "unknown op 'rewrite_file'", "delete op": "unknown op 'delete'",
    "missing rationale": "needs a rationale", "empty rationale": "needs a rationale",
    "missing evidence": "evidence must be a non-empty list",
    "empty evidence": "evidence must be a non-empty list",
    "hallucinated evidence": "evidence e999 is not among the log events",
    "malformed evidence": "evidence must be a non-empty list",
    "unknown lesson": "lesson L99 does not exist", "retire twice": "2 (retire): lesson L3 does not",
    "update pinned": "L4 is pinned", "retire pinned": "L4 is pinned",
    "merge pinned": "L4 is pinned", "counter pinned": "L4 is pinned",
    "merge one id": "two or more distinct", "merge same id": "two or more distinct",
    "counter huge": "helpful must be a whole number from 0 to 10",
    "counter negative": "harmful must be a whole number from 0 to 10",
    "counter nothing": "must change a counter", "empty body": "'body' is missing or empty",
    "empty title": "'title' is missing or empty", "multi-line title": "title must be one",
    "body with metadata comment": "body may not contain HTML comments",
    "body with pin": "body may not contain HTML comments",
    "body with heading": "may not contain # or ## headings",
    "persona front matter injection": "a warning is one line",
    "extra field": "unexpected field(s) path", "wrong type": "'id' is missing or empty",
    "shrink without archiving": "without archiving them",
    "tool call instead of answer": "called a tool", "cut off at the token limit": "truncated",
    "unclosed code fence": "opens a code block it never closes",
    "secret in a lesson": "looks like a secret",
    "two objects after prose": "holds more than one JSON value among its prose",
    "example object before the answer": "holds more than one JSON value among its prose",
    "two code fences": "holds more than one JSON value among its prose",
    "object in a list among prose": "holds a JSON object inside a list",
    "prose between braces": "not valid JSON",
    "warning CR heading": "a warning is one line", "warning CR fence": "a warning is one line",
    "warning line separator": "a warning is one line",
    "title line separator": "title must be one",
    "body NEL heading": "breaks lines with \\n only", "body CR heading": "breaks lines with \\n only",
    "title with metadata comment": "title may not contain HTML comments",
    "title with pin": "title may not contain HTML comments",
    "rationale with comment": "rationale may not contain HTML comments",
    "update then retire": "without archiving them", "wipe hidden by new text": "without archiving them",
    "3 MB lesson": "output is 3,000,120 characters, over the cap of 131,072",
    "5,000 added lessons": "output is 468,922 characters, over the cap of 131,072 for one reply",
    "lesson over the size cap": 'lesson L5 ("Long") would be ~526 tokens, over the cap of 500 '
                                "tokens for one lesson (1/8 of the 4,000-token lessons budget",
    "update over the size cap": "lesson L1 (\"Lint with flake8\") would be ~529 tokens, over the "
                                "cap of 500",
    "merge over the size cap": 'lesson L1 ("t") would be ~526 tokens, over the cap of 500',
    "41 new lessons": "add 41 lessons, over the cap of 40 new lessons per pass",
    "lessons.md past its growth cap": "lessons.md would grow from ~184 to ~9,257 tokens, "
                                      "over this pass's cap of ~8,000 (2x its 4,000-token budget",
    "persona past its growth cap": "persona.md's body would grow from ~48 to ~4,425 tokens, over "
                                   "this pass's cap of ~4,000 (2x its 2,000-token budget",
    "archive past its growth cap": "archive.md would grow by 10,205 characters, over this "
                                   "pass's cap of 3,500 for the 1 lesson(s) it archives",
    "long title": "title is 201 characters, over the cap of 200",
    "long warning": "text is 401 characters, over the cap of 400",
    "long rationale": "rationale is 1,001 characters, over the cap of 1,000",
    "200k nested brackets": "output is 200,000 characters, over the cap of 131,072",
    "100k nested brackets": "not valid JSON (nested too deeply)",
    "surrogate in a body": "operation 1 holds a lone surrogate",
    "surrogate in a title": "operation 1 holds a lone surrogate",
    "surrogate in a warning": "operation 1 holds a lone surrogate",
    "surrogate in a rationale": "operation 1 holds a lone surrogate",
    "surrogate in a lesson id": "operation 1 holds a lone surrogate",
    "surrogate in the summary": "the model's output holds a lone surrogate",
    "surrogate in a key": "the model's output holds a lone surrogate",
}


@pytest.mark.parametrize("name,output", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_or_malformed_output_is_refused_whole(cli, learner: Agent, model, name, output):
    from agentmem.scripted import ToolCall

    if output is None:
        model.push(ToolCall("memory", {"command": "view"}))
    elif output == "LENGTH":
        model.push(Reply(text=ops(op(op="add", title="t", body="b")), finish_reason="length"))
    else:
        model.push(output)
    before = snapshot(learner)
    result = cli("sleep", learner.folder, "--yes", "--model", "scripted/x", "--no-repair")
    assert result.exit_code == 1, result.stdout
    assert "Error: sleep pass refused, nothing was changed" in result.stderr
    assert REASONS[name] in " ".join(result.stderr.split()), result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and REASONS[name] in errors[0], result.stderr    # one line
    assert "Traceback" not in result.output
    assert "raw output is in" in result.stderr
    assert snapshot(learner) == before
    kept = list((learner.state_dir / "sleep").glob("refused-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["outputs"]
    assert kept[0].stat().st_size < 2 * core.MAX_OUTPUT_CHARS + 10_000   # a runaway reply too


# one JSON object that prose or a code fence surrounds parses (HOSTILE: what stays refused)
LENIENT = [
    ("fenced json alone", "```json\n" + json.dumps(GOOD) + "\n```"),
    ("prose before", "Here are the operations:\n" + json.dumps(GOOD, indent=2)),
    ("prose after", json.dumps(GOOD) + "\n\nI merged the two flake8 lessons."),
    ("code fence with prose", "Here you go:\n```json\n" + json.dumps(GOOD) + "\n```\nDone."),
]


@pytest.mark.parametrize("name,output", LENIENT, ids=[x[0] for x in LENIENT])
def test_one_json_object_among_prose_is_accepted(learner: Agent, model, name, output):
    model.push(output)
    proposal = core.propose(learner, SPEC, repair=False)
    assert proposal is not None and proposal.operations == GOOD["operations"]
    assert proposal.summary == GOOD["summary"]


def test_two_passes_of_one_agent_never_overlap(learner: Agent, model):
    lock = learner.sleep_lock()
    lock.acquire()
    try:
        result = core.run_pass(learner, SPEC)
    finally:
        lock.release()
    assert not result.ok and "already running" in result.message


def test_many_agents_run_concurrently_and_failures_are_isolated(cli, tmp_path, model):
    from agentmem.agent import Agent

    root = tmp_path / "fleet"
    for n in range(6):
        a = Agent.create(str(root / f"a{n}"))
        a.journal.append({"kind": "user", "content": f"hello {n}"})
    (root / "a3" / "tools.yaml").write_text("tools: [\n")     # one broken agent
    for _ in range(5):
        model.push(json.dumps({"operations": [op(op="add", title="Greets", body="Says hello.",
                                                 evidence=["e1"])], "summary": "s"}))
    result = cli("sleep", root, "--yes", "--jobs", "3", "--model", "scripted/x")
    assert result.exit_code == 1
    assert result.stdout.count("ok ") == 5 and "fail a3: tools.yaml:" in result.stdout
    for n in (0, 1, 2, 4, 5):
        assert "## Greets" in (root / f"a{n}" / "lessons.md").read_text()


def test_several_agents_need_yes_or_dry_run(cli, tmp_path):
    from agentmem.agent import Agent

    for n in range(2):
        Agent.create(str(tmp_path / "fleet" / f"a{n}"))
    result = cli("sleep", tmp_path / "fleet")
    assert result.exit_code == 2 and "add --yes" in result.stderr


def test_over_budget_memory_is_asked_to_consolidate_and_the_user_warned(learner: Agent, model):
    persona = learner.folder / "persona.md"
    persona.write_text(persona.read_text().replace("lessons: 4000", "lessons: 60"))
    learner.record_hand_edits()
    model.push(json.dumps({"operations": [], "summary": "could not shrink"}))
    proposal = core.propose(learner, SPEC)
    assert proposal is not None
    assert "over its budget of 60: merge and retire lessons" in model.calls[0]["messages"][1]["content"]
    assert any("still over its 60-token budget" in w for w in proposal.warnings)


def test_evidence_on_a_lesson_is_capped_to_the_newest_ids():
    ids = [f"e{n}" for n in range(1, 30)]
    kept = merge_evidence(ids[:20], ids[15:])
    assert kept == ids[-MAX_EVIDENCE:]


def fleet(tmp_path, count: int) -> list[Agent]:
    """`count` new agents, each with one new user event to sleep on."""
    agents = []
    for n in range(count):
        a = Agent.create(str(tmp_path / "fleet" / f"a{n}"))
        a.journal.append({"kind": "user", "content": f"hello {n}"})
        agents.append(a)
    return agents


def test_many_agents_across_processes(tmp_path, model):
    agents = fleet(tmp_path, 4)
    model.responder = lambda messages: json.dumps({"operations": [op(
        op="add", title="Greets", body="Says hello.", evidence=["e1"])], "summary": "s"})
    seen = []
    results = core.run_many(agents, jobs=4, processes=2, on_result=seen.append,
                            model="scripted/x", apply_it=True, max_cost=None, max_tokens=None)
    assert len(seen) == 4 and all(r["ok"] for r in results), results
    for agent in agents:         # written by the worker processes, read here
        assert "## Greets" in (agent.folder / "lessons.md").read_text()
        assert Agent.open(agent.folder).history.versions()[0].author == "sleep"


def test_many_agents_report_their_proposals_only_when_asked(cli, tmp_path, model,
                                                            monkeypatch):
    """--json prints each agent's proposal (operations, diff); otherwise none is built."""
    agents = fleet(tmp_path, 2)
    model.responder = lambda messages: json.dumps({"operations": [op(
        op="add", title="Greets", body="Says hello.", evidence=["e1"])], "summary": "s"})
    result = cli("sleep", tmp_path / "fleet", "--yes", "--json", "--model", "scripted/x")
    assert result.exit_code == 0, result.stderr
    printed = json.loads(result.stdout)
    assert len(printed) == 2 and all("+## Greets" in r["proposal"]["diff"] for r in printed)
    for agent in agents:
        agent.journal.append({"kind": "user", "content": "again"})
    built: list[object] = []
    real = core.Proposal.to_json
    monkeypatch.setattr(core.Proposal, "to_json", lambda self: built.append(self) or real(self))
    result = cli("sleep", tmp_path / "fleet", "--yes", "--model", "scripted/x")
    assert result.exit_code == 0 and result.stdout.count("ok ") == 2 and built == []
    for agent in agents:
        agent.journal.append({"kind": "user", "content": "and again"})
    quiet = core.run_many(agents, jobs=2, on_result=lambda _: None, model="scripted/x",
                          apply_it=True, max_cost=None, max_tokens=None, with_proposal=False)
    assert all(r["ok"] and r["version"] and r["proposal"] is None for r in quiet), quiet


def test_text_added_elsewhere_cannot_hide_text_taken_away(learner: Agent, model):
    # three lessons cut to "x", and a long new lesson so that memory grows on the whole
    model.push(json.dumps({"summary": "s", "operations": [
        op(op="add", title="A long new lesson", body="word " * 300), *WIPE]}))
    before = snapshot(learner)
    with pytest.raises(Refused, match=r"would cut \d+ of the lessons' \d+ words .* without "
                                      "archiving them"):
        core.propose(learner, SPEC)
    assert snapshot(learner)["files"] == before["files"]
    assert learner.sleep_cursor().event == 0


def test_a_reviewed_subset_passes_the_same_guards(learner: Agent, model):
    model.push(json.dumps({"summary": "s", "operations": [
        op(op="add", title="Something new", body="A new rule.")]}))
    proposal = core.propose(learner, SPEC)
    assert proposal is not None
    proposal.operations += WIPE        # apply never trusts what it is handed: it checks again
    before = snapshot(learner)
    with pytest.raises(Refused, match="would cut"):
        core.apply(proposal, selected=[1, 2, 3])
    assert snapshot(learner) == before


def test_a_reviewed_subset_that_needs_a_declined_operation_is_a_clear_error(learner: Agent, model):
    from agentmem.errors import Refused

    model.push(json.dumps({"summary": "s", "operations": [
        op(op="add", title="New thing", body="Something new."),
        op(op="counter", id="L5", helpful=1)]}))
    proposal = core.propose(learner, SPEC)
    assert proposal is not None
    before = snapshot(learner)
    with pytest.raises(Refused, match="lesson L5 does not exist"):
        core.apply(proposal, selected=[1])
    assert snapshot(learner) == before


def die_after_the_version(learner: Agent, model, monkeypatch) -> None:
    """A sleep pass that records its version and is killed before its state.json write."""
    model.push(json.dumps(GOOD))
    proposal = core.propose(learner, SPEC)
    assert proposal is not None
    real = Agent.update_state

    def crash_on_confirm(self, **values):
        if "sleep_cursor" in values:
            raise KeyboardInterrupt("killed after the commit, before the cursor write")
        return real(self, **values)

    with monkeypatch.context() as patch:
        patch.setattr(Agent, "update_state", crash_on_confirm)
        with pytest.raises(KeyboardInterrupt):
            core.apply(proposal)


def test_a_crash_after_the_sleep_version_does_not_replay_its_events(learner: Agent, model,
                                                                     monkeypatch):
    die_after_the_version(learner, model, monkeypatch)
    version = learner.history.versions()[0]
    assert version.author == "sleep" and "Agentmem-Sleep-Cursor" not in version.message
    assert learner.sleep_cursor().event == 8            # the committed pass counts
    assert core.propose(learner, SPEC) is None          # its events are not offered again


def test_the_next_write_settles_a_pass_that_died_after_its_version(learner: Agent, model,
                                                                  monkeypatch):
    die_after_the_version(learner, model, monkeypatch)
    intent = learner.state_dir / "intent.json"
    assert intent.exists() and "sleep_cursor" not in learner.read_state()
    versions = len(learner.history.versions())
    assert learner.record_hand_edits() is None            # nothing new to version ...
    assert len(learner.history.versions()) == versions
    state = learner.read_state()                           # ... but the pass's state lands
    assert state["sleep_cursor"]["event"] == 8 and not intent.exists()
    assert state["last_intent"]


def test_a_hand_edit_after_such_a_crash_keeps_the_passs_cursor(learner: Agent, model,
                                                               monkeypatch):
    die_after_the_version(learner, model, monkeypatch)
    lessons = learner.folder / "lessons.md"
    lessons.write_text(lessons.read_text() + "\nA note of my own.\n")    # the files moved on
    assert learner.sleep_cursor().event == 8
    assert learner.record_hand_edits() is not None         # the note is versioned ...
    assert learner.sleep_cursor().event == 8                # ... and the pass still counts
    assert learner.read_state()["sleep_cursor"]["event"] == 8
    assert core.propose(learner, SPEC) is None


@pytest.mark.parametrize("settled", [True, False])
def test_a_leftover_intent_never_moves_the_cursor_back(learner: Agent, model, settled: bool):
    model.push(json.dumps(GOOD))
    assert core.run_pass(learner, SPEC).ok
    intent = learner.state_dir / "intent.json"
    assert not intent.exists() and learner.sleep_cursor().event == 8
    first = learner.read_state()["sleep_cursor"]
    # the unlink of a finished write is not synced, so after a crash its intent may come back;
    # settled=False: one whose state write never happened either (same files, another id)
    files = {"lessons.md": hashlib.sha256((learner.folder / "lessons.md").read_bytes()).hexdigest()}
    leftover = {"id": learner.read_state()["last_intent"] if settled else "0123abcd",
                "author": "sleep", "message": "m", "files": files,
                "state": {"sleep_cursor": {"event": 8, "offset": 1}}}
    intent.write_text(json.dumps(leftover))
    assert learner.sleep_cursor().event == 8
    learner.journal.append({"session": "s3", "kind": "user", "content": "thanks"})   # e10
    model.push(json.dumps({"operations": [], "summary": "nothing"}))
    assert core.run_pass(learner, SPEC).ok          # reads e9 (its sleep event) and e10
    assert learner.sleep_cursor().event == 10 and not intent.exists()
    learner.record_hand_edits()
    assert learner.sleep_cursor().event == 10
    # the first pass's own intent, unsettled, naming its real (recorded) cursor: still older
    intent.write_text(json.dumps({**leftover, "id": "fedcba98", "state": {"sleep_cursor": first}}))
    assert learner.history.has_sleep_cursor(first["event"], first["offset"])
    assert learner.sleep_cursor().event == 10
    learner.record_hand_edits()
    assert learner.read_state()["sleep_cursor"]["event"] == 10


def die_between_two_files(learner: Agent, model, monkeypatch) -> tuple[core.Proposal, list[str]]:
    """A sleep pass killed after its first memory file and before its second; the proposal,
    and the names of the files it did write."""
    from agentmem import fsutil

    model.push(json.dumps(GOOD))
    proposal = core.propose(learner, SPEC)
    assert proposal is not None
    real = fsutil._exchange
    written: list[str] = []

    def die_on_the_second_file(tmp, path):
        if Path(path).parent == learner.folder:
            if written:
                raise KeyboardInterrupt("killed between two memory files")
            written.append(Path(path).name)
        return real(tmp, path)

    with monkeypatch.context() as patch:      # a kill: no clean-up runs after it
        patch.setattr(fsutil, "_exchange", die_on_the_second_file)
        patch.setattr(fsutil, "_undo", lambda done: None)
        patch.setattr(fsutil, "_unlink", lambda path: None)
        with pytest.raises(KeyboardInterrupt):
            core.apply(proposal)
    return proposal, written


def test_a_pass_killed_between_its_files_is_undone_and_offered_again(learner: Agent, model,
                                                                     monkeypatch):
    """A write is all or nothing: files of a pass that died part-way through writing them go
    back to the last version, never recorded as a person's hand edit, and the pass runs again."""
    before = snapshot(learner)
    proposal, written = die_between_two_files(learner, model, monkeypatch)
    assert written and learner.history.dirty() == written      # half of the pass is on disk
    assert learner.record_hand_edits() is None                  # ... and put back, not versioned
    assert snapshot(learner)["files"] == before["files"]
    assert snapshot(learner)["versions"] == before["versions"]
    assert not (learner.state_dir / "intent.json").exists()
    model.push(json.dumps(GOOD))
    again = core.propose(learner, SPEC)
    assert again is not None and again.events == proposal.events  # the same events, again
    version = core.apply(again)
    assert version is not None and version.author == "sleep"
    assert [v.author for v in learner.history.versions()[:2]] == ["sleep", "human"]


def test_the_next_pass_after_a_half_done_one_settles_it_and_succeeds(learner: Agent, model,
                                                                      monkeypatch):
    """The pass builds on the put-back files, so its own write is not refused as 'memory
    changed meanwhile', and the model's answer is not wasted."""
    die_between_two_files(learner, model, monkeypatch)
    model.push(json.dumps(GOOD))
    result = core.run_pass(learner, SPEC)
    assert result.ok, result.message
    assert [v.author for v in learner.history.versions()[:2]] == ["sleep", "human"]
    assert learner.history.dirty() == [] and learner.sleep_cursor().event == 8


def test_an_intent_whose_files_were_never_written_moves_nothing(learner: Agent):
    intent = learner.state_dir / "intent.json"
    intent.write_text(json.dumps({"id": "abc", "author": "sleep", "message": "m",
                                  "files": {"lessons.md": "0" * 64},
                                  "state": {"sleep_cursor": {"event": 8, "offset": 1}}}))
    assert learner.sleep_cursor().event == 0
    before = len(learner.history.versions())
    assert learner.record_hand_edits() is None
    assert len(learner.history.versions()) == before
    assert "sleep_cursor" not in learner.read_state() and not intent.exists()


def test_a_crash_before_the_sleep_version_replays_its_events(learner: Agent, model):
    learner.update_state(pending_sleep_cursor={"event": 8, "offset": 999})
    assert learner.sleep_cursor().event == 0            # announced, never committed


def test_jobs_bounds_the_model_calls_in_flight(tmp_path, model):
    import threading
    import time

    agents = fleet(tmp_path, 8)
    lock = threading.Lock()
    now, most = [0], [0]

    def respond(_messages):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.05)
        with lock:
            now[0] -= 1
        return json.dumps({"operations": [], "summary": "nothing"})

    model.responder = respond
    results = core.run_many(agents, jobs=3, processes=1, on_result=lambda _r: None,
                            model="scripted/x", apply_it=True, max_cost=None, max_tokens=None)
    assert len(results) == 8 and all(r["ok"] for r in results), results
    assert most[0] == 3      # the bound is reached, and never passed, though 7 threads run


def test_a_failing_worker_process_is_reported_not_hung(tmp_path, monkeypatch):
    import multiprocessing
    import os

    from agentmem import llm

    imports: list[tuple[int, int]] = []           # (process, workers alive then)
    real = llm.litellm
    monkeypatch.setattr(llm, "litellm", lambda: imports.append(
        (os.getpid(), len(multiprocessing.active_children()))) or real())
    agents = [Agent(tmp_path / f"a{n}") for n in range(120)]     # never opened: no pass starts
    with pytest.raises(TypeError):
        core.run_many(agents, jobs=4, processes=2, on_result=lambda _r: None, not_an_option=1)
    # litellm loaded in this process before any worker was forked (they inherit it)
    assert imports == [(os.getpid(), 0)]
    assert core.run_many([], jobs=4, on_result=lambda _r: None) == []


def test_an_id_deleted_by_hand_since_the_last_version_is_not_given_out_again(agent: Agent, model):
    path = agent.folder / "lessons.md"
    agent.write({"lessons.md": path.read_text() + "\n## Agent's own\n<!-- id: L13 -->\n"
                 "Learned in chat.\n"}, "agent", "learned")
    text = path.read_text()
    path.write_text(text[:text.index("## Agent's own")])    # a person deletes L13, unrecorded
    agent.update_state(sleep_cursor=agent.journal.end_cursor().to_json())
    agent.journal.append({"kind": "user", "content": "Use pathlib."})
    last = f"e{agent.journal.last_event_number()}"
    model.push(ops(op(op="add", title="Prefer pathlib", body="Use pathlib.", evidence=[last])))
    result = core.run_pass(agent, SPEC)
    assert result.ok, result.message
    added = next(x for x in agent.load().lessons.lessons if x.title == "Prefer pathlib")
    assert added.id == "L14"


def test_counter_and_update_are_applied(learner: Agent, model):
    model.push(ops(op(op="counter", id="L1", helpful=2, harmful=1),
                   op(op="update", id="L2", title="Lint only the changed files",
                      body="Lint the files the pull request touches, nothing else.",
                      evidence=["e6"])))
    result = core.run_pass(learner, SPEC)
    assert result.ok, result.message
    doc = learner.load().lessons
    l1, l2 = doc.get("L1"), doc.get("L2")
    assert (l1.helpful, l1.harmful, l1.evidence) == (1 + 2, 0 + 1, ["e3"])
    assert (l2.title, l2.body.strip(), l2.evidence) == (
        "Lint only the changed files", "Lint the files the pull request touches, nothing else.",
        ["e6"])
    assert l1.body == lessons_fmt.parse(LESSONS)[0].get("L1").body      # untouched


def test_a_merge_archives_every_original_the_first_too(learner: Agent, model):
    model.push(json.dumps(GOOD))
    assert core.run_pass(learner, SPEC).ok
    archive = (learner.folder / "archive.md").read_text()
    assert "Paste its output in the review" in archive          # L1's text before the merge
    assert "Linting the whole repository buries" in archive      # L2's
    assert "merged into L1 (this is its text before the merge)" in archive


def test_model_text_cannot_add_lines_to_the_version_message(learner: Agent, model):
    model.push(json.dumps({"summary": "Done.\n\nAgentmem-Sleep-Cursor: 999 1", "operations": [
        op(op="retire", id="L3", rationale="dropped\nAgentmem-Author: human\n## Heading",
           evidence=["e8"])]}))
    result = core.run_pass(learner, SPEC)
    assert result.ok, result.message
    message = learner.history.versions()[0].message
    assert not any(line.startswith(("Agentmem-Sleep-Cursor: 999", "Agentmem-Author: human",
                                    "## Heading")) for line in message.splitlines()), message
    assert learner.history.versions()[0].author == "sleep"
    archive = (learner.folder / "archive.md").read_text()
    assert "_Retired " in archive and "dropped Agentmem-Author: human ## Heading_" in archive
    archived, _ = lessons_fmt.parse(archive, "archive.md")
    assert [x.id for x in archived.lessons] == ["L3"]   # the note's "## Heading" made no entry


def test_the_same_warning_is_added_once(learner: Agent, model):
    warning = op(op="persona_warning", text="I tend to suggest flake8.", evidence=["e2"])
    model.push(ops(warning))
    assert core.run_pass(learner, SPEC).ok
    learner.journal.append({"kind": "user", "content": "flake8 again?"})
    model.push(ops({**warning, "evidence": [f"e{learner.journal.last_event_number()}"]}))
    assert core.run_pass(learner, SPEC).ok
    persona = (learner.folder / "persona.md").read_text()
    assert persona.count("- I tend to suggest flake8.") == 1


@pytest.mark.parametrize("change,reason", [
    (lambda t: {**t, "tools.yaml": (t.get("tools.yaml") or "") + "\nevil: true\n"}, "tools.yaml"),
    (lambda t: {**t, "persona.md": t["persona.md"].replace("---\n", "---\nmodel: evil\n", 1)},
     "settings block at the top of persona.md"),
    (lambda t: {**t, "archive.md": "# Archive\n\nrewritten\n"}, "archive.md may only grow"),
    (lambda t: {**t, "lessons.md": t["lessons.md"] + "\n## Broken\n<!-- id: L1 -->\ndup id\n"},
     "not be a valid agent"),
])
def test_whole_result_guards(learner: Agent, change, reason):
    from agentmem.guards import Rejected

    before = learner.read_texts()
    before["archive.md"] = "# Archive\n\n## Old\n<!-- id: L9 -->\nold\n"
    with pytest.raises(Rejected, match=reason):
        core.check_result(before, change(dict(before)), 0.3)


def test_pinned_archive_text_is_guarded(learner: Agent):
    from agentmem.guards import Rejected

    before = {**learner.read_texts(),
              "archive.md": "# Archive\n\n<!-- pin -->\n## Kept\n<!-- id: L9 -->\nmine\n<!-- /pin -->\n"}
    after = {**before, "archive.md": before["archive.md"].replace("mine", "theirs")}
    with pytest.raises(Rejected, match="pinned text changed"):
        core.check_result(before, after, 0.3)


def test_later_chunks_are_guarded_on_the_whole_pass(learner: Agent, model, monkeypatch):
    # each chunk cuts one lesson (under the 30% share on its own); together they cut more
    monkeypatch.setattr(context, "chunk_events", lambda lines, limit: [lines[:4], lines[4:]])
    # 87 words of lessons: L1 loses 17 (20%), then L2 loses 12 (14%, 17% of what is left)
    model.push(ops(op(op="update", id="L1", body="Run ruff on every pull request before "
                      "commenting on style, and paste its output in the review.")),
               ops(op(op="update", id="L2", body="Only lint the files the pull request "
                      "touches.", evidence=["e6"])))
    before = snapshot(learner)
    with pytest.raises(Refused, match="without archiving them"):
        core.propose(learner, SPEC)
    assert snapshot(learner) == before


def test_over_budget_warnings_reach_batch_output_and_persona_is_checked(cli, tmp_path, model):
    for agent in fleet(tmp_path, 2):
        persona = agent.folder / "persona.md"
        persona.write_text(persona.read_text().replace("persona: 2000", "persona: 5"))
    model.responder = lambda messages: ops()
    result = cli("sleep", tmp_path / "fleet", "--yes", "--model", "scripted/x")
    assert result.exit_code == 0, result.stderr
    for name in ("a0", "a1"):
        assert f"warning: {name}: persona.md is over its 5-token budget" in result.stderr


def test_a_reviewed_subset_says_so_in_its_subject(learner: Agent, model):
    model.push(json.dumps(GOOD))
    proposal = core.propose(learner, SPEC)
    version = core.apply(proposal, selected=[2])
    assert version.subject == ("Sleep: 1 of 3 proposed operation(s), chosen in review, from 8 "
                               "new events")
    assert "The team uses ruff; Python 2 is gone." in version.message      # kept, as said


@pytest.mark.parametrize("answers,lessons_changed,warned", [
    ("a\n", True, True), ("d\n", False, False), ("r\nn\nn\ny\n", False, True)])
def test_the_terminal_review_applies_all_one_by_one_or_nothing(cli, learner: Agent, model,
                                                               monkeypatch, answers,
                                                               lessons_changed, warned):
    from agentmem import console

    monkeypatch.setattr(console, "stdin_is_tty", lambda: True)
    model.push(json.dumps(GOOD))
    result = cli("sleep", learner.folder, "--model", "scripted/x", input=answers)
    assert result.exit_code == 0, result.stderr
    assert "apply all [a], review one by one [r], or discard [d]?" in result.stdout
    assert ((learner.folder / "lessons.md").read_text() != LESSONS) is lessons_changed
    assert ("I tend to suggest flake8" in (learner.folder / "persona.md").read_text()) is warned
    assert (learner.sleep_cursor().event == 8) is (answers != "d\n")


def test_a_result_that_loses_a_lesson_no_operation_retired_is_refused(learner: Agent):
    from agentmem.guards import Rejected

    before = learner.read_texts()
    text = before["lessons.md"]
    start, end = text.index("## Run flake8 on changed"), text.index("## Ask for the Python 2")
    after = {**before, "lessons.md": text[:start] + text[end:]}          # L2 gone, silently
    with pytest.raises(Rejected, match=r"lose lessons no operation retired \(L2\)"):
        core.check_result(before, after, 1.0, [])


HAND_WRITTEN = """
## Prefer pathlib over os.path
pathlib reads better and handles separators on every platform; use Path objects for every new
file path, and convert os.path code when you touch it anyway.

## Docstrings on public functions
<!-- id: py-style -->
Every public function gets a one-line docstring that says what it returns, and why it exists
when the name alone does not say so; private helpers may go without.
"""


@pytest.mark.parametrize("target", ["id-less", "py-style"])
def test_retiring_a_hand_written_lesson_is_credited_with_its_archived_copy(learner: Agent,
                                                                           model, target):
    # lessons a person wrote: one without metadata (the pass gives it an id), one whose id
    # has a hyphen; retiring either archives it whole, which is no loss
    path = learner.folder / "lessons.md"
    path.write_text(LESSONS + HAND_WRITTEN)
    persona = learner.folder / "persona.md"       # strict: losing one lesson would be too much
    persona.write_text(persona.read_text().replace("budgets:", "sleep: {max_shrink: 0.1}\nbudgets:"))
    learner.record_hand_edits()
    lesson_id = "py-style"
    if target == "id-less":
        planned = core.plan(learner, SPEC)
        shown = core.sleep_messages(planned.texts, planned.chunks[0], 1, 1)[1]["content"]
        lesson_id = shown.split("] (helpful 0, harmful 0) Prefer pathlib")[0].rsplit("[", 1)[1]
        assert lesson_id == "L5"
    model.push(ops(op(op="retire", id=lesson_id, rationale="a person asked")))
    result = core.run_pass(learner, SPEC)
    assert result.ok, result.message
    archive = (learner.folder / "archive.md").read_text()
    assert ("Prefer pathlib" if target == "id-less" else "Docstrings on public") in archive


def test_an_update_then_a_merge_cannot_hide_the_text_it_cut(learner: Agent, model):
    # L1 cut to "x", then merged into a long body: L1's own words are in neither file
    model.push(ops(op(op="update", id="L1", body="x"),
                   op(op="merge", ids=["L1", "L2"], title="Linting",
                      body="Lint with ruff on the files the pull request changes; " * 8)))
    before = snapshot(learner)
    with pytest.raises(Refused, match="without archiving them"):
        core.propose(learner, SPEC)
    assert snapshot(learner) == before


def test_a_retirement_note_in_a_live_lesson_hides_nothing(learner: Agent):
    from agentmem.guards import Rejected

    before = learner.read_texts()
    cut = core.apply_operations(before, [op(op="update", id="L1", body="x"),
                                         op(op="update", id="L2", body="y")], {"e3"})
    # the same cut, with the words put back after a fake note
    hidden = cut["lessons.md"].replace("\nx\n", "\nx\n\n_Retired " + "word " * 60 + "\n")
    with pytest.raises(Rejected, match="without archiving them"):
        core.check_result(before, cut, 0.3)
    core.check_result(before, {**cut, "lessons.md": hidden}, 0.3)    # its words count: kept


def test_crlf_in_the_models_json_strings_is_read_as_newlines(learner: Agent, model):
    model.push(ops(op(op="add", title="Two lines", body="First line.\r\nSecond line.")))
    result = core.run_pass(learner, SPEC)
    assert result.ok, result.message
    assert "First line.\nSecond line." in (learner.folder / "lessons.md").read_text()


@pytest.mark.parametrize("then", [op(op="retire", id="L1"),
                                  op(op="merge", ids=["L1", "L3"], title="Again", body="b " * 40)])
def test_a_lesson_archived_twice_is_credited_with_its_first_copy_only(learner: Agent, then):
    from agentmem.guards import Rejected

    before = learner.read_texts()
    cut = [op(op="update", id="L1", body="x"),      # L1's text is gone from here on
           op(op="merge", ids=["L1", "L2"], title="Lint", body="Lint with ruff. " * 12), then]
    after = core.apply_operations(before, cut, {"e3"})
    with pytest.raises(Rejected, match="without archiving them"):
        core.check_result(before, after, 0.3, cut)


def test_an_archived_copy_named_like_a_persons_lesson_is_credited_to_its_own(learner: Agent):
    before = learner.read_texts()
    before["archive.md"] = "# Archive\n\n## Lint with flake8\n<!-- id: L1 -->\nan older L1\n"
    before["lessons.md"] += "\n## A person's lesson\n<!-- id: L1-2 -->\nShort.\n"
    retire = [op(op="retire", id="L1")]       # its copy is named L1-2, as the person's lesson is
    after = core.apply_operations(before, retire, {"e3"})
    assert "<!-- id: L1-2; evidence: e3" in after["archive.md"]
    core.check_result(before, after, 0.3, retire)        # archived whole: no loss


def test_the_model_is_shown_the_ids_the_pass_will_give(learner: Agent, model):
    # an archive that holds L5 and a used-ids record up to L6: new ids start at L7
    learner.write({"archive.md": "# Archive\n\n## Gone\n<!-- id: L5 -->\nold\n",
                   "lessons.md": LESSONS + "\n## Hand A\nFirst hand-written.\n\n"
                                 "## Hand B\nSecond hand-written.\n"}, "human", "hand lessons")
    learner.update_state(highest_lesson=6)
    used = learner.used_lesson_ids()
    planned = core.plan(learner, SPEC)
    shown = core.sleep_messages(planned.texts, planned.chunks[0], 1, 1, used)[1]["content"]
    hand_b = shown.split("] (helpful 0, harmful 0) Hand B")[0].rsplit("[", 1)[1]
    model.push(ops(op(op="retire", id=hand_b, rationale="the person asked")))
    assert core.run_pass(learner, SPEC).ok
    lessons = (learner.folder / "lessons.md").read_text()
    assert "## Hand A" in lessons and "## Hand B" not in lessons       # the one it was shown


LONG = "word " * 700          # ~875 tokens: over the 500-token cap for a lesson a pass writes


def test_a_persons_long_lessons_may_still_be_counted_and_retired(learner: Agent, model):
    # the caps hold text a pass writes; what it found is never held against it
    path = learner.folder / "lessons.md"
    path.write_text(LESSONS + f"\n## Long one\n<!-- id: L5 -->\n{LONG}\n\n"
                              f"## Long two\n<!-- id: L6 -->\n{LONG}\n")
    learner.record_hand_edits()
    model.push(ops(op(op="counter", id="L5", helpful=1), op(op="retire", id="L6")))
    result = core.run_pass(learner, SPEC)
    assert result.ok, result.message
    assert "## Long two" in (learner.folder / "archive.md").read_text()
    assert learner.load().lessons.get("L5").helpful == 1


def test_the_lesson_cap_is_an_eighth_of_the_budget_and_at_least_250_tokens(learner: Agent):
    from agentmem.guards import Rejected

    assert (core.lesson_cap(4000), core.lesson_cap(40_000), core.lesson_cap(350)) == (500, 5000,
                                                                                        250)
    before = learner.read_texts()
    title = "Edge"
    at_cap = op(op="add", title=title, body="b" * (500 * 4 - len(title) - 1))   # 2,000 chars
    over = op(op="add", title=title, body="b" * (500 * 4 - len(title)))
    for operation, ok in ((at_cap, True), (over, False)):
        after = core.apply_operations(before, [operation], {"e3"})
        if ok:
            core.check_result(before, after, 0.3, [operation])
        else:
            with pytest.raises(Rejected, match=r"~501 tokens, over the cap of 500 tokens"):
                core.check_result(before, after, 0.3, [operation])


def test_memory_over_twice_its_budget_may_grow_by_half_a_budget(learner: Agent, model):
    persona = learner.folder / "persona.md"
    persona.write_text(persona.read_text().replace("lessons: 4000", "lessons: 60"))
    learner.record_hand_edits()        # lessons.md (~184 tokens) is past twice 60 already
    model.push(ops(op(op="add", title="Ruff", body="Use ruff.")))
    result = core.run_pass(learner, SPEC)
    assert result.ok, result.message
    learner.journal.append({"kind": "user", "content": "and more"})
    last = f"e{learner.journal.last_event_number()}"
    model.push(ops(op(op="add", title="Longer", body="word " * 40, evidence=[last])))
    before = snapshot(learner)
    with pytest.raises(Refused, match=r"lessons.md would grow from ~(\d+) to ~\d+ tokens, over "
                                      r"this pass's cap of ~\d+ \(2x its 60-token budget, or 50% "
                                      "of it more than before"):
        core.propose(learner, SPEC)
    assert snapshot(learner) == before


def test_the_new_lesson_cap_holds_for_the_whole_of_a_chunked_pass(learner: Agent, model,
                                                                  monkeypatch):
    monkeypatch.setattr(context, "chunk_events", lambda lines, limit: [lines[:4], lines[4:]])
    model.push(ops(*(op(op="add", title=f"First {i}", body="b") for i in range(21))),
               ops(*(op(op="add", title=f"Second {i}", body="b") for i in range(21))))
    before = snapshot(learner)
    with pytest.raises(Refused, match="add 42 lessons, over the cap of 40 new lessons per pass"):
        core.propose(learner, SPEC)
    assert snapshot(learner) == before


# -- what "since the last sleep" means --------------------------------------------------------
def test_after_a_pass_nothing_is_new_and_nothing_changed_since_it(cli, learner: Agent, model):
    """The pass's own log event is not new experience; --since-sleep starts where the pass
    left memory, so right after it there is nothing to show; show names the pass."""
    model.push(json.dumps(GOOD))
    assert cli("sleep", learner.folder, "--yes", "--model", "scripted/x").exit_code == 0
    summary = json.loads(cli("show", learner.folder, "--json").stdout)
    assert summary["log"]["since_sleep"] == 0
    assert summary["last_sleep"]["version"] == learner.history.versions()[0].number
    result = cli("diff", learner.folder, "--since-sleep")
    assert result.exit_code == 0, result.stderr
    assert "+" not in "".join(line[:1] for line in result.stdout.splitlines())
    path = learner.folder / "lessons.md"
    path.write_text(path.read_text() + "\n## After the pass\nnew\n")
    result = cli("diff", learner.folder, "--since-sleep")
    assert "+## After the pass" in result.stdout


def test_a_pass_that_changes_nothing_is_a_sleep_that_found_nothing(cli, learner: Agent, model):
    model.push(json.dumps({"operations": [], "summary": "nothing to learn"}))
    assert cli("sleep", learner.folder, "--yes", "--model", "scripted/x").exit_code == 0
    summary = json.loads(cli("show", learner.folder, "--json").stdout)
    assert summary["last_sleep"] is not None and summary["last_sleep"]["version"] is None
    assert summary["log"]["since_sleep"] == 0
    assert "nothing to change" in cli("show", learner.folder).stdout
    result = cli("diff", learner.folder, "--since-sleep")
    assert result.exit_code == 0, result.stderr
    assert "never slept" not in result.stderr


def test_the_summaries_of_a_chunked_pass_are_kept_apart(learner: Agent, model):
    spec = backlog_over_a_small_window(learner)
    chunks = len(core.plan(learner, spec).chunks)
    assert chunks >= 2
    for n in range(chunks):
        model.push(json.dumps({"operations": [], "summary": f"part {n}."}))
    proposal = core.propose(learner, spec)
    assert proposal is not None
    assert proposal.summary == "; ".join(f"part {n}" for n in range(chunks))


# -- the repair round -------------------------------------------------------------------------
def test_an_answer_of_the_wrong_form_is_sent_back_once_and_the_fixed_one_applies(cli, learner,
                                                                                 model):
    model.push("Sure! Here are the operations:\n" + json.dumps(GOOD)[:-1], json.dumps(GOOD))
    result = cli("sleep", learner.folder, "--yes", "--model", "scripted/x", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["usage"]["calls"] == 2 and len(data["repaired"]) == 1
    assert "not valid JSON" in data["repaired"][0]
    second = model.calls[1]["messages"]
    assert second[-2]["role"] == "assistant" and second[-2]["content"].startswith("Sure!")
    assert "could not be used: the model's output is not valid JSON" in second[-1]["content"]
    assert data["version"] == learner.history.versions()[0].number


def test_an_answer_broken_twice_is_refused_whole(cli, learner, model):
    before = snapshot(learner)
    model.push("not json", "still not json")
    result = cli("sleep", learner.folder, "--yes", "--model", "scripted/x")
    assert result.exit_code == 1
    assert "after" not in result.stdout and "one repair round" in result.stderr
    assert snapshot(learner) == before


def test_a_destructive_answer_is_never_sent_back(cli, learner, model):
    before = snapshot(learner)
    model.push(json.dumps({"summary": "s", "operations": [
        {"op": "retire", "id": i, "rationale": "r", "evidence": ["e1"]}
        for i in ("L1", "L2", "L3")] + [
        {"op": "update", "id": "L4", "body": "x", "rationale": "r", "evidence": ["e1"]}]}))
    result = cli("sleep", learner.folder, "--yes", "--model", "scripted/x")
    assert len(model.calls) == 1 and result.exit_code == 1
    assert snapshot(learner) == before


def test_no_repair_refuses_at_once(cli, learner, model):
    model.push("not json")
    result = cli("sleep", learner.folder, "--yes", "--model", "scripted/x", "--no-repair")
    assert result.exit_code == 1 and len(model.calls) == 1
