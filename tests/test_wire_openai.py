"""The real CLI against a loopback stand-in for OpenAI's chat completions API: what agentmem
sends (messages, tools, the stream flag) and what lands on disk from what comes back."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import wire
from conftest import FLAKE8_CORRECTED
from wire import openai

from agentmem.agent import Agent
from agentmem.memory_tool import SCHEMA as MEMORY_SCHEMA


@pytest.fixture
def server() -> Iterator[wire.StandIn]:
    with wire.serve() as stand_in:
        wire.config(api_base=stand_in.url + "/v1")
        yield stand_in


@pytest.fixture
def learner(blank: Agent) -> Agent:
    blank.journal.append(*FLAKE8_CORRECTED)
    return blank


RUFF = {"summary": "The team lints with ruff.", "operations": [
    {"op": "add", "title": "Lint with ruff, not flake8", "body": "The team uses ruff.",
     "rationale": "the user corrected me", "evidence": ["e3"]}]}


def test_chat_streams_over_sse(cli, agent: Agent, server: wire.StandIn):
    server.push(openai.stream(["Looks ", "good", " to me."], usage=(1234, 56)))
    result = cli("chat", agent.folder, "-m", "Review this please", "--model", "openai/x")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Looks good to me.\n"
    [request] = server.requests
    assert request.method == "POST" and request.path == openai.PATH
    assert request.headers["authorization"] == wire.HIDDEN          # a key went, hidden here
    body = request.body
    assert body["model"] == "x" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    system, user = body["messages"]
    assert system["role"] == "system" and "You review Python pull requests" in system["content"]
    assert user == {"role": "user", "content": "Review this please"}
    tools = {t["function"]["name"]: t for t in body["tools"]}
    assert tools["memory"] == MEMORY_SCHEMA and {"grep_repo", "git_diff"} <= set(tools)
    assistant = wire.events(agent, "assistant")[-1]
    assert assistant["content"] == "Looks good to me."
    assert assistant["usage"]["prompt_tokens"] == 1234        # from the last chunk's usage
    assert assistant["usage"]["completion_tokens"] == 56


def test_chat_json_asks_without_streaming(cli, agent: Agent, server: wire.StandIn):
    server.push(openai.reply("Fine.", usage=(300, 2)))
    result = cli("chat", agent.folder, "-m", "hi", "--json", "--model", "openai/x")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["answer"] == "Fine." and data["usage"]["prompt_tokens"] == 300
    [request] = server.requests
    assert "stream" not in request.body and "stream_options" not in request.body


def test_memory_edits_arrive_as_tool_call_deltas_and_land_as_versions(
        cli, agent: Agent, server: wire.StandIn):
    """Two tool calls in one turn, each name in one chunk and its arguments in many."""
    insert = wire.insert_lesson(agent, "\n## Use pathlib, not os.path\nThe team prefers pathlib.\n",
                                "user corrected me about os.path")
    view = {"command": "view", "path": "/memories/lessons.md", "view_range": [1, 2]}
    server.push(openai.stream(["Let me note that."], [
                    openai.Call("memory", view, id="call_view", pieces=4),
                    openai.Call("memory", insert, id="call_insert", pieces=9)]),
                openai.stream(["Noted: ", "pathlib."]))
    result = cli("chat", agent.folder, "-m", "We use pathlib, not os.path.", "--model", "openai/x")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Let me note that.Noted: pathlib.\n"
    assert "## Use pathlib, not os.path" in (agent.folder / "lessons.md").read_text()
    latest = agent.history.versions()[0]
    assert latest.author == "agent" and latest.subject == "user corrected me about os.path"
    # the second request carries the assistant's calls and both results, in order
    follow_up = server.requests[1].body["messages"]
    calls = follow_up[-3]
    assert calls["role"] == "assistant"
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in calls["tool_calls"]] == [("call_view", "memory", view),
                                              ("call_insert", "memory", insert)]
    assert [(m["role"], m["tool_call_id"]) for m in follow_up[-2:]] == [
        ("tool", "call_view"), ("tool", "call_insert")]
    assert "# Lessons" in follow_up[-2]["content"]
    edits = wire.events(agent, "memory_edit")
    assert edits[-1]["ok"] is True and edits[-1]["version"] == latest.number


def test_sleep_yes_over_the_wire(cli, learner: Agent, server: wire.StandIn):
    server.push(openai.reply(json.dumps(RUFF)))
    result = cli("sleep", learner.folder, "--yes", "--model", "openai/x")
    assert result.exit_code == 0, result.stderr
    [request] = server.requests
    body = request.body
    assert body["model"] == "x" and "stream" not in body and "tools" not in body
    assert body["temperature"] == 0 and body["max_tokens"] == 4096
    assert "e3 s1 user: No: we use ruff, not flake8." in body["messages"][-1]["content"]
    assert "## Lint with ruff, not flake8" in (learner.folder / "lessons.md").read_text()
    version = learner.history.versions()[0]
    assert version.author == "sleep" and version.subject == "The team lints with ruff."
    assert learner.sleep_cursor().event == 3


def _sleep_answer(request: wire.Request) -> wire.Response:
    """The sleep model's answer, citing the user's message it was shown as evidence."""
    shown = request.body["messages"][-1]["content"]
    event = re.search(r"^(e\d+) \S+ user: We lint with ruff\.$", shown, re.M)
    assert event, shown
    answer = {"summary": "ruff, not flake8", "operations": [{
        "op": "add", "title": "Lint with ruff", "body": "The team uses ruff.",
        "rationale": "the user said so", "evidence": [event.group(1)]}]}
    return openai.reply(json.dumps(answer))


def test_repl_sleep_over_the_wire(cli, blank: Agent, server: wire.StandIn, monkeypatch):
    """A chat turn, then /sleep in the same session: the proposal comes over the wire, is shown,
    and applied on 'a'."""
    from agentmem import console

    monkeypatch.setattr(console, "stdin_is_tty", lambda: True)
    wire.persona(blank, sleep_model="openai/x-sleep")
    server.push(openai.stream(["Noted."]), _sleep_answer)
    result = cli("chat", blank.folder, "--model", "openai/x",
                 input="We lint with ruff.\n/sleep\na\n/exit\n")
    assert result.exit_code == 0, result.stderr
    assert [r.body["model"] for r in server.requests] == ["x", "x-sleep"]
    assert "stream" not in server.requests[1].body
    assert "+## Lint with ruff" in result.stdout                    # the proposal's diff
    assert "applied as version" in result.stderr
    assert "## Lint with ruff" in (blank.folder / "lessons.md").read_text()
    assert blank.history.versions()[0].author == "sleep"
