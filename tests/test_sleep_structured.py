"""Structured output for sleep: the answer is asked for with a JSON schema where litellm says the
model takes one, in JSON mode where it takes only that, and by the prompt alone otherwise (or as
persona.md's `sleep: {output: ...}` says). Tested at the wire, through the loopback stand-ins of
OpenAI, Anthropic and Ollama: what the request carries, that the answer that comes back parses
and is applied by `agentmem sleep --yes --json`, and that the JSON names the mode."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import wire
from conftest import FLAKE8_CORRECTED
from wire import anthropic, ollama, openai

from agentmem import llm
from agentmem.agent import Agent
from agentmem.sleep.ops import COMMON, FIELDS, OPS, OPTIONAL, SCHEMA_NAME, output_schema, parse_output

ANSWER = {"summary": "The team lints with ruff.", "operations": [
    {"op": "add", "title": "Lint with ruff, not flake8", "body": "The team uses ruff.",
     "rationale": "the user corrected me", "evidence": ["e3"]}]}
LESSON = "## Lint with ruff, not flake8"
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {
    "name": SCHEMA_NAME, "schema": output_schema(), "strict": True}}


@pytest.fixture
def learner(blank: Agent) -> Agent:
    blank.journal.append(*FLAKE8_CORRECTED)
    return blank


@pytest.fixture
def server() -> Iterator[wire.StandIn]:
    with wire.serve() as stand_in:
        yield stand_in


def sleep_json(cli, agent: Agent, model: str) -> dict:
    result = cli("sleep", agent.folder, "--yes", "--json", "--model", model)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert LESSON in (agent.folder / "lessons.md").read_text()
    assert data["version"] == agent.history.versions()[0].number
    assert agent.history.versions()[0].author == "sleep"
    return data


# -- the schema --------------------------------------------------------------------------------
def test_the_schema_is_derived_from_the_operation_tables_in_strict_form():
    schema = output_schema()
    assert schema["required"] == ["operations", "summary"]
    assert schema["additionalProperties"] is False
    branches = schema["properties"]["operations"]["items"]["anyOf"]
    assert [b["properties"]["op"]["enum"] for b in branches] == [[kind] for kind in OPS]
    for kind, branch in zip(OPS, branches, strict=True):
        fields = COMMON | set(FIELDS[kind]) | set(OPTIONAL.get(kind, {}))
        assert set(branch["properties"]) == fields and set(branch["required"]) == fields
        assert branch["additionalProperties"] is False
        for key in OPTIONAL.get(kind, {}):        # strict: required, but may be null
            assert "null" in branch["properties"][key]["type"]
    merge = branches[OPS.index("merge")]["properties"]["ids"]
    assert merge == {"type": "array", "items": {"type": "string"}}


def test_an_answer_in_the_strict_shape_parses_with_its_nulls_read_as_left_out():
    text = json.dumps({"summary": "s", "operations": [
        {"op": "update", "id": "L1", "body": "b", "title": None, "rationale": "r",
         "evidence": ["e1"]},
        {"op": "counter", "id": "L1", "helpful": 1, "harmful": None, "rationale": "r",
         "evidence": ["e1"]}]})
    operations, _ = parse_output(text)
    assert "title" not in operations[0] and operations[1] == {
        "op": "counter", "id": "L1", "helpful": 1, "rationale": "r", "evidence": ["e1"]}
    with pytest.raises(Exception, match="'body' is missing or empty"):   # a required field
        parse_output(text.replace('"body": "b"', '"body": null'))


def test_litellm_is_asked_which_form_each_model_takes():
    """From litellm's tables: nothing is asked of a server (an Ollama on localhost neither)."""
    with wire.offline():
        assert llm.structured_output("openai/gpt-4.1-mini") == "schema"
        assert llm.structured_output("openai/x") == "json"           # OpenAI-compatible server
        assert llm.structured_output("anthropic/claude-x") == "schema"   # a forced tool needs one
        assert llm.structured_output("ollama_chat/llama3") == "json"
        assert llm.structured_output("ollama/llama3") == "json"
        assert llm.structured_output("scripted/x") == "prompt"


# -- OpenAI --------------------------------------------------------------------------------------
def test_openai_gets_the_schema(cli, learner: Agent, server: wire.StandIn):
    wire.config(api_base=server.url + "/v1")
    server.push(openai.reply(json.dumps(ANSWER)))
    data = sleep_json(cli, learner, "openai/gpt-4.1-mini")
    assert data["output_mode"] == "schema"
    [request] = server.requests
    assert request.body["response_format"] == SCHEMA_FORMAT


def test_an_openai_compatible_server_gets_json_mode(cli, learner: Agent, server: wire.StandIn):
    wire.config(api_base=server.url + "/v1")
    server.push(openai.reply(json.dumps(ANSWER)))
    data = sleep_json(cli, learner, "openai/x")
    assert data["output_mode"] == "json"
    assert server.requests[0].body["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize("mode,sent", [("prompt", None), ("json", {"type": "json_object"}),
                                       ("schema", SCHEMA_FORMAT)])
def test_persona_md_chooses_the_form(cli, learner: Agent, server: wire.StandIn, mode, sent):
    wire.config(api_base=server.url + "/v1")
    wire.persona(learner, sleep={"output": mode})
    server.push(openai.reply(json.dumps(ANSWER)))
    data = sleep_json(cli, learner, "openai/x")
    assert data["output_mode"] == mode
    assert server.requests[0].body.get("response_format") == sent


def test_the_schema_a_request_carries_is_in_the_plans_estimate(learner: Agent):
    """--max-tokens and --max-cost see the schema's tokens too: it is sent with every chunk."""
    from agentmem import sleep as core
    from agentmem.models import ModelSpec
    from agentmem.sleep.passes import format_tokens

    spec = ModelSpec("openai/x", None, "test")
    planned = {}
    for mode in ("prompt", "json", "schema"):
        wire.persona(learner, sleep={"output": mode})
        planned[mode] = core.plan(learner, spec).prompt_tokens
    assert format_tokens("prompt") == 0 and format_tokens("schema") > 300
    assert planned["json"] - planned["prompt"] == format_tokens("json") > 0
    assert planned["schema"] - planned["prompt"] == format_tokens("schema")


def test_an_unknown_form_in_persona_md_is_an_error(cli, learner: Agent):
    path = learner.folder / "persona.md"
    path.write_text(path.read_text().replace("---\n", "---\nsleep:\n  output: xml\n", 1))
    result = cli("sleep", learner.folder, "--yes", "--model", "openai/x")
    assert result.exit_code == 1
    assert "sleep setting 'output' must be one of: auto, schema, json, prompt" in result.stderr


def test_a_schema_the_provider_refuses_falls_back_to_the_prompt_once(cli, learner: Agent,
                                                                      server: wire.StandIn):
    wire.config(api_base=server.url + "/v1")
    server.push(openai.error(400, "Invalid schema for response_format 'sleep_operations': "
                             "'anyOf' is not permitted.", param="response_format"),
                openai.reply(json.dumps(ANSWER)))
    data = sleep_json(cli, learner, "openai/gpt-4.1-mini")
    assert data["output_mode"] == "prompt" and data["usage"]["calls"] == 1
    first, second = server.requests
    assert first.body["response_format"] == SCHEMA_FORMAT
    assert "response_format" not in second.body and second.body["messages"] == \
        first.body["messages"]
    assert any("refused the answer's schema form" in w and "Invalid schema" in w
               for w in data["warnings"])


@pytest.mark.parametrize("message,blames_form", [
    ("Invalid schema for response_format 'x': 'anyOf' is not permitted.", True),
    ("'response_format.type' must be 'json_schema' or 'text'", True),
    ("This model does not support JSON mode.", True),
    ("format must be one of: json (got a schema)", True),
    ("output_format is not supported for this model", True),
    ("Invalid date format in field 'x'.", False),
    ("messages: text content blocks must be non-empty; check the message format.", False),
    ("Unsupported value: 'temperature' does not support 0 with this model.", False)])
def test_only_a_400_about_the_answers_form_falls_back(message: str, blames_form: bool):
    from agentmem.sleep.passes import FORMAT_REFUSED

    assert bool(FORMAT_REFUSED.search(message)) is blames_form


def test_another_bad_request_is_not_sent_again(cli, learner: Agent, server: wire.StandIn):
    wire.config(api_base=server.url + "/v1")
    before = (learner.folder / "lessons.md").read_text()
    server.push(openai.error(400, "Unsupported value: 'temperature' does not support 0 with "
                             "this model.", param="temperature"))
    result = cli("sleep", learner.folder, "--yes", "--model", "openai/gpt-4.1-mini")
    assert result.exit_code == 1 and len(server.requests) == 1
    assert "sleep pass stopped, nothing was changed" in result.stderr
    assert (learner.folder / "lessons.md").read_text() == before


def test_a_reply_wrapped_in_prose_applies_without_a_repair_round(cli, learner: Agent,
                                                                 server: wire.StandIn):
    wire.config(api_base=server.url + "/v1")
    server.push(openai.reply("Here is what I learned:\n\n```json\n" + json.dumps(ANSWER, indent=2)
                             + "\n```\n\nLet me know if you want changes."))
    data = sleep_json(cli, learner, "openai/x")
    assert data["usage"]["calls"] == 1 and data["repaired"] == []


def test_the_repair_round_asks_for_the_same_form(cli, learner: Agent, server: wire.StandIn):
    wire.config(api_base=server.url + "/v1")
    server.push(openai.reply(json.dumps(ANSWER)[:-2]), openai.reply(json.dumps(ANSWER)))
    data = sleep_json(cli, learner, "openai/gpt-4.1-mini")
    assert data["usage"]["calls"] == 2 and "not valid JSON" in data["repaired"][0]
    assert [r.body["response_format"] for r in server.requests] == [SCHEMA_FORMAT] * 2


# -- Anthropic: litellm turns the schema into a forced tool call, or Anthropic's output format --
@pytest.fixture
def claude(learner: Agent, server: wire.StandIn, monkeypatch: pytest.MonkeyPatch) -> Agent:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-dummy")
    wire.persona(learner, api_base=server.url)
    return learner


def test_anthropic_answers_through_the_forced_tool_and_it_is_not_refused_as_a_tool_call(
        cli, claude: Agent, server: wire.StandIn):
    server.push(anthropic.reply(uses=[anthropic.ToolUse("json_tool_call", ANSWER)]))
    data = sleep_json(cli, claude, "anthropic/claude-x")
    assert data["output_mode"] == "schema" and data["usage"]["calls"] == 1
    [request] = server.requests
    [tool] = request.body["tools"]
    assert tool["name"] == "json_tool_call" and tool["input_schema"] == output_schema()
    assert request.body["tool_choice"] == {"type": "tool", "name": "json_tool_call"}


def test_anthropic_native_output_format_carries_the_schema(cli, claude: Agent,
                                                           server: wire.StandIn):
    server.push(anthropic.reply(json.dumps(ANSWER)))
    data = sleep_json(cli, claude, "anthropic/claude-sonnet-4-5")
    assert data["output_mode"] == "schema"
    body = server.requests[0].body
    assert body["output_format"]["type"] == "json_schema" and "tools" not in body
    branches = body["output_format"]["schema"]["properties"]["operations"]["items"]["anyOf"]
    assert [b["properties"]["op"]["enum"] for b in branches] == [[kind] for kind in OPS]


def test_anthropic_with_the_prompt_alone(cli, claude: Agent, server: wire.StandIn):
    wire.persona(claude, sleep={"output": "prompt"})
    server.push(anthropic.reply(json.dumps(ANSWER)))
    data = sleep_json(cli, claude, "anthropic/claude-x")
    assert data["output_mode"] == "prompt"
    body = server.requests[0].body
    assert "tools" not in body and "output_format" not in body and "tool_choice" not in body


# -- Ollama ----------------------------------------------------------------------------------------
def test_ollama_gets_json_mode(cli, learner: Agent, server: wire.StandIn):
    wire.config(api_base=server.url)
    server.push(ollama.reply(json.dumps(ANSWER)))
    data = sleep_json(cli, learner, "ollama_chat/llama3")
    assert data["output_mode"] == "json"
    assert server.requests[0].body["format"] == "json"


def test_ollama_gets_the_schema_when_persona_md_asks(cli, learner: Agent, server: wire.StandIn):
    wire.config(api_base=server.url)
    wire.persona(learner, sleep={"output": "schema"})
    server.push(ollama.reply(json.dumps(ANSWER)))
    data = sleep_json(cli, learner, "ollama_chat/llama3")
    assert data["output_mode"] == "schema"
    assert server.requests[0].body["format"] == output_schema()


def test_ollama_with_the_prompt_alone(cli, learner: Agent, server: wire.StandIn):
    wire.config(api_base=server.url)
    wire.persona(learner, sleep={"output": "prompt"})
    server.push(ollama.reply(json.dumps(ANSWER)))
    data = sleep_json(cli, learner, "ollama_chat/llama3")
    assert data["output_mode"] == "prompt" and "format" not in server.requests[0].body
