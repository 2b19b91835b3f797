"""Which model each path talks to, checked at the wire: a session never talks to a provider the
user did not choose. Chat, /sleep, watch, batch sleep and eval (its judge too) each send only to
the model the rules in models.resolve pick, and say which one before they send."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import wire
from wire import openai

from agentmem import models
from agentmem.agent import Agent
from agentmem.models import ModelSpec

NOTHING = {"summary": "", "operations": []}


@pytest.fixture
def server() -> Iterator[wire.StandIn]:
    with wire.serve() as stand_in:
        wire.config(api_base=stand_in.url + "/v1")
        yield stand_in


def sent_models(server: wire.StandIn) -> list[str]:
    return [r.body["model"] for r in server.requests]


# -- the rules ---------------------------------------------------------------------------------
SESSION = ModelSpec("ollama_chat/llama3", "http://127.0.0.1:11434", "--model")


def test_a_sleep_model_set_nowhere_is_the_chat_sessions_own(monkeypatch):
    monkeypatch.setenv("AGENTMEM_MODEL", "openai/from-env")
    spec = models.resolve(None, {"model": "openai/from-persona"}, sleep=True, fallback=SESSION)
    assert spec == ModelSpec("ollama_chat/llama3", "http://127.0.0.1:11434",
                             "the chat session's --model")
    assert spec.describe("sleep model") == (
        "sleep model: ollama_chat/llama3 (from the chat session's --model), "
        "api_base http://127.0.0.1:11434")


@pytest.mark.parametrize("where", ["flag", "env", "persona", "config"])
def test_a_sleep_model_set_explicitly_wins_over_the_session(monkeypatch, tmp_path: Path,
                                                            where: str):
    settings: dict[str, str] = {}
    flag = None
    if where == "flag":
        flag = "openai/chosen"
    elif where == "env":
        monkeypatch.setenv("AGENTMEM_SLEEP_MODEL", "openai/chosen")
    elif where == "persona":
        settings["sleep_model"] = "openai/chosen"
    else:
        wire.config(sleep_model="openai/chosen")
    spec = models.resolve(flag, settings, sleep=True, fallback=SESSION)
    assert spec.model == "openai/chosen"
    assert spec.source == {"flag": "--model", "env": "$AGENTMEM_SLEEP_MODEL",
                           "persona": "persona.md 'sleep_model:'",
                           "config": f"{tmp_path / 'config.yaml'} 'sleep_model:'"}[where]


def test_without_a_session_the_sleep_model_falls_back_to_the_chat_model(monkeypatch):
    assert models.resolve(None, {"model": "openai/p"}, sleep=True).source == \
        "persona.md 'model:'"
    monkeypatch.setenv("AGENTMEM_MODEL", "openai/e")
    assert models.resolve(None, {"model": "openai/p"}, sleep=True).model == "openai/e"


def test_api_base_says_where_it_came_from(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("AGENTMEM_API_BASE", "http://127.0.0.1:3/v1")
    assert models.resolve("openai/x", {}).api_base_source == "$AGENTMEM_API_BASE"
    wire.config(api_base="http://127.0.0.1:2/v1")
    assert models.resolve("openai/x", {}).api_base_source == \
        f"{tmp_path / 'config.yaml'} 'api_base:'"
    spec = models.resolve("openai/x", {"api_base": "http://127.0.0.1:1/v1"})
    assert (spec.api_base, spec.api_base_source) == ("http://127.0.0.1:1/v1",
                                                     "persona.md 'api_base:'")


# -- each path, over the wire ------------------------------------------------------------------
def test_chat_sends_only_to_its_model_flag(cli, agent: Agent, server: wire.StandIn, monkeypatch):
    monkeypatch.setenv("AGENTMEM_MODEL", "openai/from-env")
    monkeypatch.setenv("AGENTMEM_SLEEP_MODEL", "openai/sleep-env")
    server.push(openai.stream(["ok"]))
    result = cli("chat", agent.folder, "-m", "hi", "--model", "openai/x")
    assert result.exit_code == 0, result.stderr
    assert sent_models(server) == ["x"]


@pytest.mark.parametrize("setting,sent,said", [
    # the persona names a model (as the samples do); the session runs on --model: /sleep must
    # not send the session's log to the persona's provider
    ({"model": "openai/persona-model"}, ["x", "x"],
     "sleep model: openai/x (from the chat session's --model)"),
    ({"sleep_model": "openai/x-sleep"}, ["x", "x-sleep"],
     "sleep model: openai/x-sleep (from persona.md 'sleep_model:')"),
])
def test_repl_sleep_picks_its_model_and_says_so(cli, blank: Agent, server: wire.StandIn,
                                                monkeypatch, setting: dict[str, str],
                                                sent: list[str], said: str):
    from agentmem import console

    monkeypatch.setattr(console, "stdin_is_tty", lambda: True)
    wire.persona(blank, **setting)
    server.push(openai.stream(["Noted."]), openai.reply(json.dumps(NOTHING)))
    result = cli("chat", blank.folder, "--model", "openai/x", input="We use ruff.\n/sleep\nd\n/exit\n")
    assert result.exit_code == 0, result.stderr
    assert sent_models(server) == sent
    assert said in result.stderr


def test_sleep_says_which_model_before_sending(cli, blank: Agent, server: wire.StandIn):
    blank.journal.append({"session": "s1", "kind": "user", "content": "We use ruff."})
    wire.persona(blank, model="openai/persona-model")
    server.push(openai.reply(json.dumps(NOTHING)))
    result = cli("sleep", blank.folder, "--yes")
    assert result.exit_code == 0, result.stderr
    assert sent_models(server) == ["persona-model"]
    assert "sleep model: openai/persona-model (from persona.md 'model:')" in result.stderr


@pytest.mark.parametrize("flag,persona,expected", [
    (None, {"model": "openai/p"}, "p"),                              # the chat model
    (None, {"model": "openai/p", "sleep_model": "openai/s"}, "s"),    # the sleep model
    ("openai/w", {"model": "openai/p", "sleep_model": "openai/s"}, "w"),  # watch --model
])
def test_watch_passes_use_the_sleep_model_rules(blank: Agent, server: wire.StandIn,
                                                flag: str | None, persona: dict[str, str],
                                                expected: str):
    from agentmem.watcher import Watcher, WatchEvent

    wire.persona(blank, **persona)
    blank.journal.append({"session": "s1", "kind": "user", "content": "We use ruff."})
    server.push(openai.reply(json.dumps(NOTHING)))
    seen: list[WatchEvent] = []
    Watcher([blank], seen.append, model=flag, idle_minutes=0, min_events=1).maybe_sleep(blank)
    assert [e.kind for e in seen] == ["sleep"], seen
    assert sent_models(server) == [expected]


def test_batch_sleep_uses_each_agents_own_model(cli, tmp_path: Path, server: wire.StandIn):
    folder = tmp_path / "team"
    for name, settings in (("a", {"model": "openai/a-chat"}),
                           ("b", {"model": "openai/b-chat", "sleep_model": "openai/b-sleep"})):
        agent = Agent.create(str(folder / name))
        wire.persona(agent, **settings)
        agent.journal.append({"session": "s1", "kind": "user", "content": "We use ruff."})
    server.push(*[openai.reply(json.dumps(NOTHING))] * 2)
    result = cli("sleep", folder, "--yes", "--jobs", "1")
    assert result.exit_code == 0, result.stderr
    assert sorted(sent_models(server)) == ["a-chat", "b-sleep"]
    server.push(*[openai.reply(json.dumps(NOTHING))] * 2)
    for name in ("a", "b"):
        Agent.open(str(folder / name)).journal.append({"kind": "user", "content": "More."})
    result = cli("sleep", folder, "--yes", "--jobs", "1", "--model", "openai/all")
    assert result.exit_code == 0, result.stderr
    assert sent_models(server)[2:] == ["all", "all"]


SCENARIO = """\
name: wire
description: one turn, one probe graded by the judge
persona: You answer questions.
sessions:
  - turns:
      - user: We use ruff.
probes:
  - user: Which linter?
    expect: {contains: [ruff], judge: The answer names ruff.}
"""


def test_eval_sends_to_its_model_and_judge_only_and_says_so(cli, tmp_path: Path,
                                                            server: wire.StandIn, monkeypatch):
    monkeypatch.setenv("AGENTMEM_MODEL", "openai/from-env")
    monkeypatch.setenv("AGENTMEM_SLEEP_MODEL", "openai/sleep-env")
    suite = tmp_path / "wire.yaml"
    suite.write_text(SCENARIO)

    def answer(request: wire.Request) -> wire.Response:
        if request.body["model"] == "x-judge":
            return openai.reply("YES")
        if "operations" in request.body["messages"][0]["content"]:     # the sleep pass
            return openai.reply(json.dumps(NOTHING))
        return openai.reply("Run ruff.")

    # the turn, the sleep pass, then each condition's probe and its grading
    server.push(*[answer] * 8)
    result = cli("eval", suite, "--model", "openai/x", "--judge-model", "openai/x-judge")
    assert result.exit_code == 0, result.stderr
    assert sent_models(server) == ["x", "x"] + ["x", "x-judge"] * 3
    assert "chat and sleep model: openai/x (from --model)" in result.stderr
    assert "judge model: openai/x-judge (from --judge-model)" in result.stderr


# -- nothing but the chosen provider -----------------------------------------------------------
def test_a_beta_tool_fetches_nothing_but_the_provider(server: wire.StandIn, monkeypatch, capfd):
    """A tool that needs an Anthropic beta header once made litellm fetch its header table from
    GitHub (and print a warning when it could not): offline mode uses the bundled copy."""
    from wire import anthropic

    from agentmem import llm

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy")
    server.push(anthropic.reply("ok", model="claude-sonnet-4-5"))
    spec = ModelSpec("anthropic/claude-sonnet-4-5", server.url, "--model")
    reply = llm.complete(spec, [{"role": "user", "content": "hi"}],
                         tools=[{"type": "memory_20250818", "name": "memory"}])
    assert reply.text == "ok"
    [request] = server.requests
    assert request.body["tools"] == [{"type": "memory_20250818", "name": "memory"}]
    assert "anthropic-beta" in request.headers
    assert "LiteLLM" not in capfd.readouterr().err
    # (and wire.serve's guard saw no connection or name lookup beyond the stand-in)


def test_an_ollama_models_window_and_price_ask_no_server():
    """litellm answers these for `ollama/` models by asking localhost:11434, whatever api_base
    the user chose; agentmem does not ask."""
    from agentmem import llm

    with wire.offline():
        assert llm.context_window("ollama/wire-model") == 8192
        assert llm.price("ollama/wire-model") == (0.0, 0.0)
        assert llm.cost_of("ollama/wire-model", 100, 10) == 0.0
