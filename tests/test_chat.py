from __future__ import annotations

import json
from pathlib import Path

from agentmem.agent import Agent
from agentmem.scripted import Reply, ToolCall


def log_events(agent: Agent) -> list[dict]:
    return agent.journal.read().events


def test_one_shot_answer_goes_to_stdout_only(cli, agent: Agent, model):
    model.push("Looks good to me.")
    result = cli("chat", agent.folder, "-m", "Review this please")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Looks good to me.\n"
    kinds = [e["kind"] for e in log_events(agent)[-4:]]
    assert kinds == ["session_start", "user", "assistant", "session_end"]


def test_piped_stdin_and_json(cli, agent: Agent, model):
    model.push(Reply(text="Answer.", prompt_tokens=120, completion_tokens=3))
    result = cli("chat", agent.folder, "--json", input="What is up?\n")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["answer"] == "Answer."
    assert data["usage"]["prompt_tokens"] == 120 and data["usage"]["completion_tokens"] == 3
    assert model.calls[0]["messages"][-1] == {"role": "user", "content": "What is up?\n"}


def test_agent_adds_a_lesson_then_diff_and_revert(cli, agent: Agent, model):
    before = (agent.folder / "lessons.md").read_text()
    model.push(
        ToolCall("memory", {"command": "str_replace", "path": "/memories/lessons.md",
                            "old_str": before.splitlines()[0],
                            "new_str": before.splitlines()[0],
                            "reason": "noop"}),
        ToolCall("memory", {"command": "insert", "path": "/memories/lessons.md",
                            "insert_line": len(before.splitlines()),
                            "insert_text": "\n## Use pathlib, not os.path\nThe team prefers "
                                           "pathlib in new code.\n",
                            "reason": "user corrected me about os.path"}),
        "Noted: pathlib from now on.")
    result = cli("chat", agent.folder, "-m", "We use pathlib here, not os.path.")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "Noted: pathlib from now on."
    text = (agent.folder / "lessons.md").read_text()
    assert "## Use pathlib, not os.path" in text
    latest = agent.history.versions()[0]
    assert latest.author == "agent" and latest.subject == "user corrected me about os.path"
    # the new lesson got an id and the user's message as evidence
    user_event = [e for e in log_events(agent) if e["kind"] == "user"][-1]["id"]
    assert f"<!-- id: L13; evidence: {user_event}; helpful: 0; harmful: 0 -->" in text
    edits = [e for e in log_events(agent) if e["kind"] == "memory_edit"]
    assert edits[-1]["ok"] is True and edits[-1]["version"] == latest.number
    assert edits[-1]["commit"] == latest.commit     # exact, where synced numbers may clash
    # diff shows it, revert undoes it
    shown = cli("diff", agent.folder)
    assert "+## Use pathlib, not os.path" in shown.stdout
    undone = cli("revert", agent.folder, str(latest.number))
    assert undone.exit_code == 0
    assert (agent.folder / "lessons.md").read_text() == before


def test_no_model_configured_says_what_to_set(cli, agent: Agent, monkeypatch, tmp_path: Path):
    monkeypatch.delenv("AGENTMEM_MODEL", raising=False)
    persona = agent.folder / "persona.md"
    persona.write_text(persona.read_text().replace("model: openai/gpt-4.1-mini\n", ""))
    size = agent.journal.path.stat().st_size
    result = cli("chat", agent.folder, "-m", "hi")
    assert result.exit_code == 1
    assert "Error: no model configured" in result.stderr
    assert "--model" in result.stderr and "AGENTMEM_MODEL" in result.stderr
    assert agent.journal.path.stat().st_size == size


def test_missing_key_names_the_variable(cli, agent: Agent):
    size = agent.journal.path.stat().st_size
    result = cli("chat", agent.folder, "-m", "hi")     # persona says openai/gpt-4.1-mini
    assert result.exit_code == 1
    assert "set OPENAI_API_KEY" in result.stderr
    assert agent.journal.path.stat().st_size == size


def test_interactive_session_through_the_cli(cli, agent: Agent, model, monkeypatch):
    """The REPL as a user drives it: a message, a memory edit, /diff, /undo, /good, /exit."""
    from agentmem import console

    monkeypatch.setattr(console, "stdin_is_tty", lambda: True)
    before = (agent.folder / "lessons.md").read_text()
    model.push("Hello! Ready to review.",
               ToolCall("memory", {"command": "insert", "path": "/memories/lessons.md",
                                   "insert_line": len(before.splitlines()),
                                   "insert_text": "\n## Prefer pathlib\nUse pathlib.\n",
                                   "reason": "user prefers pathlib"}),
               "Noted.")
    script = "hi\nWe use pathlib.\n/diff\n/undo\n/good\n/nonsense\n/exit\n"
    result = cli("chat", agent.folder, input=script)
    assert result.exit_code == 0, result.stderr
    assert "Hello! Ready to review." in result.stdout and "Noted." in result.stdout
    assert "+## Prefer pathlib" in result.stdout                       # /diff
    assert "undone as version" in result.stderr                        # /undo
    assert "rated the last answer good" in result.stderr
    assert "unknown command /nonsense" in result.stderr
    assert (agent.folder / "lessons.md").read_text() == before
    kinds = [e["kind"] for e in log_events(agent)]
    assert kinds[-1] == "session_end" and "feedback" in kinds
    authors = [v.author for v in agent.history.versions()[:2]]
    assert authors == ["revert", "agent"]
