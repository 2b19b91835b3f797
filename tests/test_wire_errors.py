"""Provider failures over the wire: each is one line naming its cause and the fix, retried the
right number of times (agentmem's retries only: one HTTP request per attempt), nothing
half-written to memory, and the failed turn logged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import wire
from wire import anthropic, ollama, openai

from agentmem.agent import Agent

PROVIDERS: dict[str, tuple[ModuleType, str, str]] = {   # stand-in module, model, api_base path
    "openai": (openai, "openai/x", "/v1"),
    "anthropic": (anthropic, "anthropic/claude-x", ""),
    "ollama": (ollama, "ollama_chat/llama3", ""),
}


@pytest.fixture(autouse=True)
def _quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTMEM_RETRY_DELAY", "0")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy")


@pytest.fixture
def server() -> Iterator[wire.StandIn]:
    with wire.serve() as stand_in:
        yield stand_in


def point(server: wire.StandIn, provider: str, url: str | None = None) -> str:
    """Aim agentmem at the stand-in (or at `url`) for `provider`; returns the model."""
    _, model, path = PROVIDERS[provider]
    wire.config(api_base=(url or server.url) + path)
    return model


def memory(agent: Agent) -> tuple[Any, ...]:
    """The memory files and the versions: what must not change when a turn fails."""
    agent.history.refresh()
    return (tuple((agent.folder / name).read_bytes()
                  for name in ("persona.md", "lessons.md", "tools.yaml")),
            tuple(v.commit for v in agent.history.versions()))


def failure(result: Any) -> tuple[str, str]:
    """The one `Error:` line and its hint of a failed command."""
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line[7:] for line in result.stderr.splitlines() if line.startswith("Error: ")]
    hints = [line[6:] for line in result.stderr.splitlines() if line.startswith("hint: ")]
    assert len(errors) == 1 and len(hints) == 1, result.stderr
    return errors[0], hints[0]


def retry_lines(result: Any) -> list[str]:
    return [line for line in result.stderr.splitlines() if "; retrying in " in line]


def chat_fails(cli: Any, agent: Agent, model: str, *more: str) -> tuple[Any, str, str]:
    """`chat -m` that fails: the result, its error line and hint, and the failed turn logged
    with that error, memory untouched."""
    before = memory(agent)
    result = cli("chat", agent.folder, "-m", "hi", "--model", model, *more)
    message, hint = failure(result)
    assert memory(agent) == before
    failed = wire.events(agent)[-2]
    assert failed["kind"] == "turn_failed" and failed["error"] == message
    return result, message, hint


# -- HTTP statuses -------------------------------------------------------------------------------
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_401_names_the_key_variable(cli, agent: Agent, server: wire.StandIn, provider: str):
    module, *_ = PROVIDERS[provider]
    server.push(module.unauthorized())
    _, message, hint = chat_fails(cli, agent, point(server, provider))
    assert "rejected the API key (HTTP 401" in message
    variable = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}[provider]
    assert variable in hint
    assert len(server.requests) == 1                              # not retried


def test_401_from_a_local_server_says_it_wants_a_key(cli, agent: Agent, server: wire.StandIn):
    server.push(openai.unauthorized())
    _, _, hint = chat_fails(cli, agent, point(server, "openai"))
    assert hint == f"the server at {server.url}/v1 wants a key: set OPENAI_API_KEY " \
                   "(export OPENAI_API_KEY=...)"


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
def test_404_names_the_model_and_where_it_came_from(cli, agent: Agent, server: wire.StandIn,
                                                     provider: str):
    module, *_ = PROVIDERS[provider]
    server.push(module.unknown_model())
    model = point(server, provider)
    _, message, hint = chat_fails(cli, agent, model)
    assert message.startswith(f"{model}: the provider does not know this model, set by --model "
                              "(HTTP 404")
    assert "--model" in hint and "api_base" in hint
    assert len(server.requests) == 1


def test_404_for_a_model_from_persona_md_says_so(cli, agent: Agent, server: wire.StandIn):
    wire.persona(agent, model="openai/x")
    server.push(openai.unknown_model())
    point(server, "openai")
    result = cli("chat", agent.folder, "-m", "hi")
    message, hint = failure(result)
    assert "set by persona.md 'model:'" in message and "persona.md 'model:'" in hint


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_429_honours_retry_after_up_to_the_cap(cli, agent: Agent, server: wire.StandIn,
                                               monkeypatch, provider: str):
    module, *_ = PROVIDERS[provider]
    monkeypatch.setenv("AGENTMEM_RETRY_MAX_WAIT", "0.05")
    server.push(module.rate_limited(retry_after="7"), module.stream(["ok"]))
    result = cli("chat", agent.folder, "-m", "hi", "--model", point(server, provider))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "ok\n"
    [line] = retry_lines(result)
    assert "rate limited by the provider (HTTP 429" in line and line.endswith("retrying in 0.05 s")
    assert len(server.requests) == 2


def test_retry_after_replaces_the_backoff(cli, agent: Agent, server: wire.StandIn, monkeypatch):
    """A provider that asks for 20 ms gets 20 ms, not the (here absurd) one-minute backoff."""
    monkeypatch.setenv("AGENTMEM_RETRY_DELAY", "60")
    limited = openai.rate_limited()
    limited.headers = {**limited.headers, "retry-after-ms": "20"}
    server.push(limited, openai.stream(["ok"]))
    result = cli("chat", agent.folder, "-m", "hi", "--model", point(server, "openai"))
    assert result.exit_code == 0, result.stderr
    assert retry_lines(result)[0].endswith("retrying in 0.02 s")


def test_429_beyond_the_retries_fails_after_three_requests(cli, agent: Agent,
                                                           server: wire.StandIn):
    server.push(*[openai.rate_limited(retry_after="0")] * 3)
    result, message, hint = chat_fails(cli, agent, point(server, "openai"))
    assert "rate limited by the provider (HTTP 429" in message and "AGENTMEM_RETRIES" in hint
    assert len(server.requests) == 3 and len(retry_lines(result)) == 2


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_500_is_retried_twice_by_default(cli, agent: Agent, server: wire.StandIn, provider: str):
    module, *_ = PROVIDERS[provider]
    server.push(*[module.server_error()] * 3)
    result, message, _ = chat_fails(cli, agent, point(server, provider))
    assert "the provider had an internal error (HTTP 500" in message
    assert len(server.requests) == 3          # agentmem's 3 attempts, no SDK retries inside
    lines = retry_lines(result)
    assert len(lines) == 2 and all("internal error" in line for line in lines)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_no_retries_means_exactly_one_request(cli, agent: Agent, server: wire.StandIn,
                                              monkeypatch, provider: str):
    module, *_ = PROVIDERS[provider]
    monkeypatch.setenv("AGENTMEM_RETRIES", "0")
    server.push(module.server_error())
    result, _, _ = chat_fails(cli, agent, point(server, provider))
    assert len(server.requests) == 1 and retry_lines(result) == []


def test_context_window_exceeded_says_what_to_do(cli, agent: Agent, server: wire.StandIn):
    server.push(openai.context_exceeded())
    _, message, hint = chat_fails(cli, agent, point(server, "openai"))
    assert "too long for the model's context window" in message
    assert "new session" in hint and "context_window:" in hint
    assert len(server.requests) == 1


def test_content_filter_is_an_error_not_an_empty_answer(cli, agent: Agent, server: wire.StandIn):
    server.push(openai.stream([], finish="content_filter"))
    _, message, hint = chat_fails(cli, agent, point(server, "openai"))
    assert message == "openai/x: the provider's content filter stopped the reply"
    assert hint == "rephrase the message"
    assert len(server.requests) == 1


# -- below HTTP ----------------------------------------------------------------------------------
@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
def test_connection_refused_names_the_url_and_asks_if_the_server_runs(
        cli, agent: Agent, server: wire.StandIn, provider: str):
    closed = wire.closed_port()
    result, message, hint = chat_fails(cli, agent, point(server, provider, closed))
    assert message.startswith(f"{PROVIDERS[provider][1]}: could not connect to {closed}/")
    assert message.endswith(": connection refused") and "internal error" not in message
    assert hint.startswith("is the server running?") and closed in hint
    assert retry_lines(result) == []          # a server that is not there is not retried


def test_dns_failure_names_the_host(cli, agent: Agent, server: wire.StandIn):
    _, message, hint = chat_fails(cli, agent,
                                  point(server, "openai", "http://no-such-host.invalid"))
    assert "could not look up the host no-such-host.invalid" in message
    assert "host name" in hint


def test_tls_to_a_plain_http_server_says_so(cli, agent: Agent, server: wire.StandIn):
    url = server.url.replace("http://", "https://")
    _, message, hint = chat_fails(cli, agent, point(server, "openai", url))
    assert f"the TLS handshake with {url}/v1/chat/completions failed" in message
    assert "http://" in hint
    assert server.requests == []


def test_timeout_names_the_limit_and_the_variable(cli, agent: Agent, server: wire.StandIn,
                                                  monkeypatch):
    monkeypatch.setenv("AGENTMEM_TIMEOUT", "0.2")
    monkeypatch.setenv("AGENTMEM_RETRIES", "0")
    slow = openai.stream(["late"])
    slow.delay = 1.0
    server.push(slow)
    _, message, hint = chat_fails(cli, agent, point(server, "openai"))
    assert message == (f"openai/x: the model did not answer in time: nothing from "
                       f"{server.url}/v1/chat/completions within 0.2 s")
    assert "AGENTMEM_TIMEOUT" in hint


@pytest.mark.parametrize("provider", ["openai", "anthropic", "ollama"])
def test_a_stream_cut_after_text_fails_without_a_retry(cli, agent: Agent, server: wire.StandIn,
                                                       provider: str):
    module, *_ = PROVIDERS[provider]
    shown = {"openai": 3, "anthropic": 5, "ollama": 2}[provider]   # events through " an answer"
    server.push(module.stream(["Half", " an answer", " and more"], cut_after=shown))
    result, message, _ = chat_fails(cli, agent, point(server, provider))
    # shown as it came (but for a last word the redactor still held), the line ended
    assert result.stdout.startswith("Half an") and result.stdout.endswith("\n")
    assert "closed mid-reply (the stream was cut)" in message
    assert len(server.requests) == 1          # the text was shown: not asked again


def test_a_stream_cut_before_any_text_is_retried(cli, agent: Agent, server: wire.StandIn):
    server.push(openai.stream(["never"], cut_after=1), openai.stream(["Whole."]))
    result = cli("chat", agent.folder, "-m", "hi", "--model", point(server, "openai"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Whole.\n" and len(server.requests) == 2
    assert "closed mid-reply" in retry_lines(result)[0]


def test_a_connection_closed_without_an_answer_is_retried(cli, agent: Agent,
                                                          server: wire.StandIn):
    server.push(wire.Response(drop=True), openai.stream(["ok"]))
    result = cli("chat", agent.folder, "-m", "hi", "--model", point(server, "openai"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "ok\n" and len(server.requests) == 2
    [line] = retry_lines(result)
    assert f"the server at {server.url}/v1/chat/completions closed the connection without " \
           "answering" in line


def test_a_memory_edit_cut_mid_arguments_writes_nothing(cli, agent: Agent, server: wire.StandIn):
    """The cut comes inside a tool call's arguments: no call runs, no edit lands."""
    edit = {"command": "create", "path": "/memories/lessons.md", "file_text": "# Lessons\n",
            "reason": "start over"}
    cut = openai.stream([], [openai.Call("memory", edit, pieces=6)], cut_after=4)
    server.push(*[cut] * 3)         # role, name, two pieces of the arguments; no text shown
    result, message, _ = chat_fails(cli, agent, point(server, "openai"))
    assert "closed mid-reply" in message
    assert len(server.requests) == 3 and len(retry_lines(result)) == 2
    turn = wire.events(agent)[-3:]
    assert [e["kind"] for e in turn] == ["user", "turn_failed", "session_end"]


# -- sleep ---------------------------------------------------------------------------------------
def test_a_failed_sleep_pass_changes_nothing_and_says_each_retry(cli, blank: Agent,
                                                                 server: wire.StandIn):
    blank.journal.append({"session": "s1", "kind": "user", "content": "We lint with ruff."})
    before, cursor = memory(blank), blank.sleep_cursor()
    server.push(*[openai.server_error()] * 3)
    result = cli("sleep", blank.folder, "--yes", "--model", point(server, "openai"))
    message, _ = failure(result)
    assert message.startswith("sleep pass stopped, nothing was changed: openai/x: the provider "
                              "had an internal error (HTTP 500")
    assert len(server.requests) == 3 and len(retry_lines(result)) == 2
    assert memory(blank) == before and blank.sleep_cursor() == cursor


def test_a_sleep_answer_cut_mid_body_is_retried(cli, blank: Agent, server: wire.StandIn):
    blank.journal.append({"session": "s1", "kind": "user", "content": "We lint with ruff."})
    answer = {"summary": "ruff", "operations": [{
        "op": "add", "title": "Lint with ruff", "body": "The team uses ruff.",
        "rationale": "the user said so", "evidence": ["e1"]}]}
    whole = openai.reply(json.dumps(answer))
    assert isinstance(whole.body, bytes)
    cut = wire.Response(200, [whole.body[:40]], {"Content-Type": "application/json"}, cut=True)
    server.push(cut, whole)
    result = cli("sleep", blank.folder, "--yes", "--model", point(server, "openai"))
    assert result.exit_code == 0, result.stderr
    assert len(server.requests) == 2 and len(retry_lines(result)) == 1
    assert "## Lint with ruff" in (blank.folder / "lessons.md").read_text()


def test_batch_sleep_says_each_retry(cli, tmp_path, server: wire.StandIn):
    folder = tmp_path / "team"
    for name in ("a", "b"):
        Agent.create(str(folder / name)).journal.append({"kind": "user", "content": "ruff"})
    nothing = openai.reply(json.dumps({"summary": "", "operations": []}))
    server.push(openai.server_error(), nothing, nothing)
    result = cli("sleep", folder, "--yes", "--jobs", "1", "--model", point(server, "openai"))
    assert result.exit_code == 0, result.stderr
    assert len(server.requests) == 3
    [line] = retry_lines(result)
    assert "internal error (HTTP 500" in line


# -- the retry policy ----------------------------------------------------------------------------
class Limited(Exception):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("rate limited")
        self.litellm_response_headers = headers


def test_retry_after_is_read_in_milliseconds_seconds_or_as_a_date():
    import time
    from email.utils import formatdate

    from agentmem import llm

    assert llm.retry_after(Limited({"retry-after-ms": "250"})) == 0.25
    assert llm.retry_after(Limited({"Retry-After": "7"})) == 7.0
    later = llm.retry_after(Limited({"retry-after": formatdate(time.time() + 60, usegmt=True)}))
    assert later is not None and 50 < later <= 60
    assert llm.retry_after(Limited({"retry-after": "soon"})) is None
    assert llm.retry_after(Limited({})) is None
    policy = llm.Retries(attempts=2, delay=1.0, max_wait=30.0)
    assert [policy.wait(n, None) for n in range(3)] == [1.0, 2.0, 4.0]
    assert policy.wait(0, 7.0) == 7.0 and policy.wait(0, 3600.0) == 30.0


@pytest.mark.parametrize("name,value", [("AGENTMEM_RETRIES", "two"),
                                        ("AGENTMEM_RETRY_DELAY", "-1"),
                                        ("AGENTMEM_TIMEOUT", "nan")])
def test_a_bad_retry_setting_is_one_line(cli, agent: Agent, server: wire.StandIn, monkeypatch,
                                         name: str, value: str):
    monkeypatch.setenv(name, value)
    result = cli("chat", agent.folder, "-m", "hi", "--model", point(server, "openai"))
    message, hint = failure(result)
    assert message == f"${name} must be a number of at least 0, not {value!r}"
    assert name in hint and server.requests == []
