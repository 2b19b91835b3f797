"""The real CLI against a loopback stand-in for Anthropic's Messages API (litellm's own HTTP
handler, not an SDK): what agentmem sends and what lands on disk from what comes back."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import wire
from wire import anthropic

from agentmem.agent import Agent
from agentmem.memory_tool import SCHEMA as MEMORY_SCHEMA

MODEL = "anthropic/claude-x"


@pytest.fixture
def server(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> Iterator[wire.StandIn]:
    """A stand-in the agent reaches through persona.md's api_base:, with a dummy key set."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy")
    with wire.serve() as stand_in:
        wire.persona(agent, api_base=stand_in.url)
        yield stand_in


def test_chat_streams_text_deltas(cli, agent: Agent, server: wire.StandIn):
    server.push(anthropic.stream(["Looks", " good", " to me."], usage=(812, 7)))
    result = cli("chat", agent.folder, "-m", "Review this please", "--model", MODEL)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Looks good to me.\n"
    [request] = server.requests
    assert request.path == anthropic.PATH
    assert request.headers["x-api-key"] == wire.HIDDEN
    assert request.headers["anthropic-version"] == "2023-06-01"
    body = request.body
    assert body["model"] == "claude-x" and body["stream"] is True
    assert "You review Python pull requests" in json.dumps(body["system"])
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Review this please"}]}]
    tools = {t["name"]: t for t in body["tools"]}
    assert tools["memory"]["input_schema"] == MEMORY_SCHEMA["function"]["parameters"]
    usage = wire.events(agent, "assistant")[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (812, 7)


def test_memory_tool_use_arrives_in_pieces_and_lands_as_a_version(
        cli, agent: Agent, server: wire.StandIn):
    insert = wire.insert_lesson(agent, "\n## Prefer pathlib\nThe team uses pathlib, not os.path.\n",
                                "the user prefers pathlib")
    use = anthropic.ToolUse("memory", insert, pieces=11)
    assert any(piece[-1].isalnum() for piece in use.split()[:-1])     # split mid-token
    server.push(anthropic.stream(["I will remember that."], [use]),
                anthropic.stream(["Done."]))
    result = cli("chat", agent.folder, "-m", "We use pathlib.", "--model", MODEL)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "I will remember that.Done.\n"
    assert "## Prefer pathlib" in (agent.folder / "lessons.md").read_text()
    latest = agent.history.versions()[0]
    assert latest.author == "agent" and latest.subject == "the user prefers pathlib"
    assistant, result_turn = server.requests[1].body["messages"][-2:]
    assert {"type": "tool_use", "id": use.id, "name": "memory", "input": insert} in \
        assistant["content"]
    [block] = [b for b in result_turn["content"] if b["type"] == "tool_result"]
    assert block["tool_use_id"] == use.id and "lessons.md" in json.dumps(block["content"])


def test_sleep_yes_over_the_wire(cli, agent: Agent, server: wire.StandIn):
    agent.journal.append({"session": "s9", "kind": "user", "content": "We lint with ruff."})
    user_event = wire.events(agent, "user")[-1]["id"]
    wire.persona(agent, context_window=200000)       # the sample's whole log in one request
    answer = {"summary": "ruff", "operations": [{
        "op": "add", "title": "Lint with ruff", "body": "The team uses ruff.",
        "rationale": "the user said so", "evidence": [user_event]}]}
    # the answer's schema goes as a tool litellm forces, and comes back as its input
    server.push(anthropic.reply(uses=[anthropic.ToolUse("json_tool_call", answer)]))
    result = cli("sleep", agent.folder, "--yes", "--model", MODEL)
    assert result.exit_code == 0, result.stderr
    [request] = server.requests
    body = request.body
    assert body["model"] == "claude-x" and not body.get("stream")
    assert body["max_tokens"] == 4096 and body["temperature"] == 0
    assert [t["name"] for t in body["tools"]] == ["json_tool_call"]      # test_sleep_structured
    assert f"{user_event} s9 user: We lint with ruff." in json.dumps(body["messages"])
    assert "## Lint with ruff" in (agent.folder / "lessons.md").read_text()
    assert agent.history.versions()[0].author == "sleep"
