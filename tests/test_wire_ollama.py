"""The real CLI against a loopback stand-in for Ollama's /api/chat (litellm's `ollama_chat/`
provider, streamed as NDJSON): what agentmem sends and what lands on disk."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import wire
from wire import ollama

from agentmem.agent import Agent

MODEL = "ollama_chat/llama3"


@pytest.fixture
def server() -> Iterator[wire.StandIn]:
    with wire.serve() as stand_in:
        wire.config(api_base=stand_in.url)
        yield stand_in


def test_chat_streams_ndjson(cli, agent: Agent, server: wire.StandIn):
    server.push(ollama.stream(["The", " diff", " is fine."], usage=(640, 4)))
    result = cli("chat", agent.folder, "-m", "Review this please", "--model", MODEL)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "The diff is fine.\n"
    [request] = server.requests
    assert request.path == ollama.PATH and "authorization" not in request.headers
    body = request.body
    assert body["model"] == "llama3" and body["stream"] is True
    assert body["messages"][0]["role"] == "system"
    assert "You review Python pull requests" in body["messages"][0]["content"]
    assert body["messages"][-1]["content"] == "Review this please"
    assert "memory" in {t["function"]["name"] for t in body["tools"]}
    usage = wire.events(agent, "assistant")[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (640, 4)


def test_memory_tool_call_lands_as_a_version(cli, agent: Agent, server: wire.StandIn):
    insert = wire.insert_lesson(agent, "\n## Prefer pathlib\nThe team uses pathlib.\n",
                                "the user prefers pathlib")
    server.push(ollama.stream([], [ollama.Call("memory", insert)]), ollama.stream(["Noted."]))
    result = cli("chat", agent.folder, "-m", "We use pathlib.", "--model", MODEL)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Noted.\n"
    assert "## Prefer pathlib" in (agent.folder / "lessons.md").read_text()
    assert agent.history.versions()[0].author == "agent"
    messages = server.requests[1].body["messages"]
    assert messages[-2]["role"] == "assistant"
    [call] = messages[-2]["tool_calls"]
    assert call["function"]["name"] == "memory"
    arguments = call["function"]["arguments"]
    assert (json.loads(arguments) if isinstance(arguments, str) else arguments) == insert
    assert messages[-1]["role"] == "tool"


def test_sleep_yes_over_the_wire(cli, blank: Agent, server: wire.StandIn):
    blank.journal.append({"session": "s1", "kind": "user", "content": "We lint with ruff."})
    answer = {"summary": "ruff", "operations": [{
        "op": "add", "title": "Lint with ruff", "body": "The team uses ruff.",
        "rationale": "the user said so", "evidence": ["e1"]}]}
    server.push(ollama.reply(json.dumps(answer)))
    result = cli("sleep", blank.folder, "--yes", "--model", MODEL)
    assert result.exit_code == 0, result.stderr
    [request] = server.requests
    body = request.body
    assert body["model"] == "llama3" and body["stream"] is False
    assert body["options"]["temperature"] == 0 and body["options"]["num_predict"] == 4096
    assert "e1 s1 user: We lint with ruff." in body["messages"][-1]["content"]
    assert "## Lint with ruff" in (blank.folder / "lessons.md").read_text()
    assert blank.history.versions()[0].author == "sleep"
