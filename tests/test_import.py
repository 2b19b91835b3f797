"""agentmem import: Letta agent files (the five real exports in ../shared/af-samples) and
Markdown instruction files become agent folders, whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentmem.agent import Agent
from agentmem.history import History

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO.parent / "shared" / "af-samples"
SAMPLE_FILES = sorted(SAMPLES.glob("*.af")) if SAMPLES.is_dir() else []
needs_samples = pytest.mark.skipif(not SAMPLE_FILES, reason=f"the Letta samples are not at {SAMPLES}"
                                   " (they sit beside the clone, as ../shared/af-samples)")

# what each sample must give: (name, model, lessons, pinned, log events)
EXPECTED = {
    "v1legacy_memgpt_agent_with_convo.af": ("memgpt_agent", "openai/gpt-4.1", 1, 0, 63),
    "v2_doubleencoded_memgpt_agent.af": ("memgpt_agent", "openai/gpt-4o-mini", 1, 0, 0),
    "v2_loop.af": ("Loop", "anthropic/claude-sonnet-4-5-20250929", 8, 0, 3),
    "v2_memgpt_agent_with_convo.af": ("memgpt_agent", "openai/gpt-4o-mini", 1, 0, 0),
    "v2_sleeptime_group_evie.af": ("Evie", "anthropic/claude-opus-4-5-20251101", 16, 4, 0),
}


def sample(name: str) -> Path:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def test_all_five_samples_are_known():
    if not SAMPLE_FILES:
        pytest.skip(f"the Letta samples are not at {SAMPLES}")
    assert sorted(p.name for p in SAMPLE_FILES) == sorted(EXPECTED)


@needs_samples
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_imports_then_show_chat_and_sleep_work(cli, tmp_path: Path, model, name: str):
    agent_name, model_string, n_lessons, n_pinned, n_events = EXPECTED[name]
    dest = tmp_path / "imported"
    result = cli("import", sample(name), dest)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(dest.resolve())
    agent = Agent.open(dest)
    memory = agent.load()
    assert memory.persona.settings["name"] == agent_name
    assert memory.persona.settings.get("model") == model_string
    assert len(memory.lessons.lessons) == n_lessons
    assert sum(1 for x in memory.lessons.lessons if x.pinned) == n_pinned
    assert len(agent.journal.read().events) == n_events
    versions = agent.history.versions()
    assert [v.author for v in versions] == ["import"]
    assert "Skipped:" in versions[0].message and "built-in tools" in versions[0].message

    shown = cli("show", dest, "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["name"] == agent_name

    model.push("Hello from the imported agent.")
    chat = cli("chat", dest, "--model", "scripted/test", "-m", "Who are you?")
    assert chat.exit_code == 0, chat.stderr
    assert "Hello from the imported agent." in chat.stdout
    system = model.calls[0]["messages"][0]["content"]
    assert memory.persona.body.strip()[:200] in system     # the imported persona was sent
    user = [e for e in agent.journal.read().events if e["kind"] == "user"][-1]
    add = {"op": "add", "title": "Greet by name", "body": "Say who you are when asked.",
           "rationale": "the user asked", "evidence": [user["id"]]}

    def sleeper(messages):       # a long imported log is read in several chunks, one call each
        seen = user["id"] + " " in messages[-1]["content"]
        return json.dumps({"summary": "learned who asks", "operations": [add] if seen else []})

    model.responder = sleeper
    slept = cli("sleep", dest, "--yes", "--model", "scripted/test")
    assert slept.exit_code == 0, slept.stderr
    assert (dest / "lessons.md").read_text().count("## Greet by name") == 1
    # the imported log was offered to the pass as new experience
    prompt = json.dumps([c["messages"] for c in model.calls[1:]])
    if n_events:
        first_user = next(e for e in agent.journal.read().events if e["kind"] == "user")
        assert first_user["content"][:40].strip() in prompt


@needs_samples
def test_v1_messages_keep_their_times_tool_calls_and_results(tmp_path: Path):
    from agentmem.portable.importer import import_file

    agent, imported = import_file(str(sample("v1legacy_memgpt_agent_with_convo.af")),
                                  str(tmp_path / "v1"))
    events = agent.journal.read().events
    kinds = {e["kind"] for e in events}
    assert kinds == {"session_start", "session_end", "user", "assistant", "tool_call", "tool_result"}
    assert len({e["session"] for e in events}) == 1
    first_user = next(e for e in events if e["kind"] == "user")
    assert first_user["content"] == "hi my name is actually sarah not chad "
    assert first_user["time"] == "2025-04-01T03:51:08.745Z"     # Letta's own time, in UTC
    call = next(e for e in events if e["kind"] == "tool_call")
    assert call["name"] == "core_memory_replace"
    assert call["arguments"]["new_content"] == "First name: Sarah"
    answer = next(e for e in events if e["kind"] == "tool_result")
    assert answer["call_id"] == call["call_id"] and answer["ok"] is True
    reply = next(e for e in events if e["kind"] == "assistant")
    assert reply["content"] == "More human than human is our motto."    # send_message's text
    assert reply["reasoning"].startswith("Bootup sequence complete")    # the inner thoughts
    # Letta's login/heartbeat messages are not experience
    assert not any('"heartbeat"' in str(e.get("content")) for e in events)
    message = agent.history.versions()[0].message
    assert "6 system messages" in message and "6 user messages Letta wrote itself" in message
    assert "core_memory_replace" in message          # a built-in tool, named as dropped
    assert "human" in [x.title for x in agent.load().lessons.lessons]
    assert "I am BigChungus." in agent.load().persona.body     # the persona block
    assert "You are Letta" in agent.load().persona.body         # and the system prompt


@needs_samples
def test_evie_read_only_blocks_are_pinned_labels_kept_budgets_from_limits(tmp_path: Path):
    from agentmem.portable.importer import import_file

    agent, _ = import_file(str(sample("v2_sleeptime_group_evie.af")), str(tmp_path / "evie"))
    memory = agent.load()
    titles = [x.title for x in memory.lessons.lessons]
    # a block with headings: one lesson per section, titled "label: heading"
    assert "community_authority_figures: Admins" in titles
    assert "community_authority_figures: Moderators" in titles
    assert "discord_message_formats" in titles            # a block without headings
    pinned = {x.title for x in memory.lessons.lessons if x.pinned}
    assert pinned == {"about_me", "guardrails", "memory_editing_rules", "persona_rules"}
    assert "<!-- pin: Letta block 'guardrails' is read-only -->" in memory.texts["lessons.md"]
    message = agent.history.versions()[0].message
    assert "companion-sleeptime_copy" in message          # the group's other agent
    budgets = memory.persona.budgets
    assert budgets["lessons"] > 4000 and budgets["persona"] > 2000


@needs_samples
def test_custom_python_tools_are_listed_not_runnable(tmp_path: Path):
    from agentmem.portable.importer import import_file

    agent, _ = import_file(str(sample("v2_loop.af")), str(tmp_path / "loop"))
    tools_text = (agent.folder / "tools.yaml").read_text()
    assert "#   note (json): Manage notes in your vault" in tools_text
    assert agent.load().tools == []
    message = agent.history.versions()[0].message
    assert "custom tools, listed in tools.yaml but not runnable" in message and ": note" in message
    assert "web_search" in message                         # a built-in, dropped


def test_model_handles_become_litellm_strings():
    from agentmem.portable.letta import model_of

    assert model_of({"model": "openai/gpt-4o-mini"})[0] == "openai/gpt-4o-mini"
    assert model_of({"llm_config": {"model": "gemini-2.5-flash",
                                    "model_endpoint_type": "google_ai"}})[0] == \
        "gemini/gemini-2.5-flash"
    assert model_of({"llm_config": {"model": "llama3", "model_endpoint_type": "ollama",
                                    "model_endpoint": "http://box:11434"}})[:2] == \
        ("ollama/llama3", "http://box:11434")
    model, base, note = model_of({"llm_config": {"model": "x", "model_endpoint_type": "weird"}})
    assert model is None and base is None and note and "weird" in note


AGENTS_MD = """\
# Project rules

You work on the billing service. Be terse.

## Testing
Run `make test` before every commit.

### Slow tests
Mark them with @slow.

## Style
```
## not a heading inside code
```
Use black.

## Empty
"""


def test_markdown_headings_become_lessons_text_before_them_persona(cli, tmp_path: Path):
    repo = tmp_path / "billing"
    repo.mkdir()
    (repo / "AGENTS.md").write_text(AGENTS_MD)
    result = cli("import", repo / "AGENTS.md", tmp_path / "agent")
    assert result.exit_code == 0, result.stderr
    memory = Agent.open(tmp_path / "agent").load()
    assert memory.persona.body == "# Project rules\n\nYou work on the billing service. Be terse.\n"
    lessons = {x.title: x.body.strip() for x in memory.lessons.lessons}
    assert lessons == {"Testing": "Run `make test` before every commit.\n\n### Slow tests\n"
                                  "Mark them with @slow.",
                       "Style": "```\n## not a heading inside code\n```\nUse black."}
    message = Agent.open(tmp_path / "agent").history.versions()[0].message
    assert "heading 'Empty': no text under it" in message
    # no DEST: named after the repository folder, under $AGENTMEM_HOME
    again = cli("import", repo / "AGENTS.md")
    assert again.exit_code == 0, again.stderr
    assert Path(again.stdout.strip()).name == "billing"


def test_markdown_as_persona_keeps_it_whole(cli, tmp_path: Path):
    (tmp_path / "CLAUDE.md").write_text(AGENTS_MD)
    result = cli("import", tmp_path / "CLAUDE.md", tmp_path / "agent", "--as", "persona")
    assert result.exit_code == 0, result.stderr
    memory = Agent.open(tmp_path / "agent").load()
    assert memory.persona.body == AGENTS_MD
    assert memory.lessons.lessons == []


# -- bad input: one clear line, nothing left behind --------------------------------------------

def _nothing_left(parent: Path, dest: Path) -> None:
    assert not dest.exists()
    assert not [p for p in parent.iterdir() if ".import-" in p.name]


@pytest.mark.parametrize("content, name, says", [
    (b"this is { not json", "x.af", "is not valid JSON"),
    (b'{"hello": "world"}', "x.af", "not a Letta agent file"),
    (b"[1, 2, 3]", "x.af", "holds a JSON list"),
    (b'"\\"just a string\\""', "x.af", "holds a JSON str"),
    (b'{"agents": []}', "x.af", "holds no agent"),
    (b"", "x.af", "is empty"),
    (b"  \n\n", "AGENTS.md", "is empty"),
    (b"\xff\xfe\x00bad", "AGENTS.md", "is not UTF-8"),
])
def test_bad_input_is_one_line_and_no_folder(cli, tmp_path: Path, content: bytes, name: str,
                                              says: str):
    source = tmp_path / name
    source.write_bytes(content)
    dest = tmp_path / "out" / "agent"
    result = cli("import", source, dest)
    assert result.exit_code != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and says in errors[0], result.stderr
    _nothing_left(tmp_path, tmp_path / "out")


def test_a_file_over_the_cap_is_refused_before_reading(cli, tmp_path: Path, monkeypatch):
    from agentmem.portable import source as source_mod

    big = tmp_path / "big.af"
    with open(big, "wb") as fh:             # sparse: no disk, and never read
        fh.truncate(source_mod.MAX_IMPORT_BYTES + 1)
    opened: list[str] = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: (opened.append(str(f)),
                                                             real_open(f, *a, **k))[1])
    result = cli("import", big, tmp_path / "agent")
    monkeypatch.undo()
    assert result.exit_code == 2
    assert "over the 200 MB an import reads" in result.stderr
    assert str(big) not in opened
    _nothing_left(tmp_path, tmp_path / "agent")


def test_destination_checks(cli, tmp_path: Path, agent: Agent):
    source = tmp_path / "AGENTS.md"
    source.write_text(AGENTS_MD)
    inside = cli("import", source, tmp_path)                     # FILE inside DEST
    assert inside.exit_code == 2 and "is inside the destination" in inside.stderr
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    taken = cli("import", source, full)
    assert taken.exit_code == 2 and "already exists and is not empty" in taken.stderr
    nested = cli("import", source, agent.folder / "sub")
    assert nested.exit_code == 2 and "is inside the agent folder" in nested.stderr
    assert not (agent.folder / "sub").exists()
    file_dest = tmp_path / "afile"
    file_dest.write_text("x")
    assert "exists and is not a folder" in cli("import", source, file_dest).stderr
    wrong = cli("import", source, tmp_path / "a", "--as", "everything")
    assert wrong.exit_code == 2 and "--as everything is not a choice" in wrong.stderr
    empty = tmp_path / "empty"
    empty.mkdir()                                                 # an empty folder is fine
    assert cli("import", source, empty).exit_code == 0
    assert (empty / "persona.md").is_file()



def test_the_folder_printed_is_the_path_as_it_is(cli, tmp_path: Path):
    source = tmp_path / "AGENTS.md"
    source.write_text(AGENTS_MD)
    dest = tmp_path / "x[bold]y[red]z"            # rich markup in a folder name is not markup
    result = cli("import", source, dest)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{dest.resolve()}\n"

def test_a_failure_part_way_leaves_nothing_not_even_new_parents(tmp_path: Path, monkeypatch):
    from agentmem.portable.importer import import_file

    source = tmp_path / "AGENTS.md"
    source.write_text(AGENTS_MD)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(History, "commit", broken)
    from agentmem.errors import AgentmemError

    with pytest.raises(AgentmemError, match="No space left on device; nothing was created"):
        import_file(str(source), str(tmp_path / "new" / "deeper" / "agent"))
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    agent, _ = import_file(str(source), str(tmp_path / "new" / "deeper" / "agent"))
    assert [v.author for v in agent.history.versions()] == ["import"]


def test_a_key_in_an_imported_file_is_redacted_and_the_version_says_so(cli, tmp_path: Path):
    """A key pasted into an instruction file (or a Letta block) never reaches the history."""
    key = "sk-proj-" + "A1b2C3d4E5f6G7h8J9k0L1m2N3p4Q5r6"
    (tmp_path / "AGENTS.md").write_text(f"Be brief.\n\n## Deploys\nUse the key {key} to deploy.\n")
    result = cli("import", tmp_path / "AGENTS.md", tmp_path / "agent")
    assert result.exit_code == 0, result.stderr
    agent = Agent.open(tmp_path / "agent")
    assert key not in (tmp_path / "agent" / "lessons.md").read_text()
    assert "Use the key [REDACTED] to deploy." in (tmp_path / "agent" / "lessons.md").read_text()
    [version] = agent.history.versions()
    assert "secrets in lessons.md: replaced by [REDACTED]" in version.message
    assert key not in agent.history.git("log", "-p", "--all").stdout
