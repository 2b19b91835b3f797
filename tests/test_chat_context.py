"""The context window: the current turn always goes out whole, or the turn fails with a clear
error and nothing is sent. The window is litellm's default for a model it does not know."""

from __future__ import annotations

from typing import Any

import pytest

from agentmem import llm
from agentmem.agent import Agent
from agentmem.chat import ChatSession, ContextOverflow
from agentmem.models import ModelSpec
from agentmem.scripted import ToolCall

SPEC = ModelSpec("scripted/test", None, "test")
WINDOW = 8192      # what llm.context_window answers for a model litellm does not know


@pytest.fixture
def full(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> Agent:
    """The sample agent with lessons.md filled to its 5500-token budget, served by a model
    whose window litellm does not know: the system prompt takes most of the window."""
    monkeypatch.setattr(llm, "context_window", lambda model, default=WINDOW: default)
    persona = agent.folder / "persona.md"
    persona.write_text(persona.read_text().replace("lessons: 4000", "lessons: 5500"))
    lessons = agent.folder / "lessons.md"
    text = lessons.read_text()
    n = 0
    while len(text) < 4 * 5400:
        n += 1
        text += f"\n## Lesson {n} about a detail\n" + "Check this detail carefully. " * 12 + "\n"
    lessons.write_text(text)
    return agent


def events(agent: Agent) -> list[dict[str, Any]]:
    return agent.journal.read().events


def test_a_message_with_lessons_filling_the_window_is_sent(cli, full: Agent, model):
    model.push(ToolCall("memory", {"command": "view", "path": "/memories/lessons.md",
                                   "view_range": [1, 2]}, id="v1"), "Reviewed.")
    result = cli("chat", full.folder, "-m", "Review this diff please")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Reviewed.\n"
    first, second = model.calls
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert first["messages"][-1] == {"role": "user", "content": "Review this diff please"}
    # the tool loop of the current turn stays too
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "tool"]
    assert second["messages"][1]["content"] == "Review this diff please"
    assert "nearly fills the model's 8192-token context window" in result.stderr


def test_old_turns_are_dropped_but_never_the_current_message(full: Agent, model):
    model.push("One.", "Two.")
    with ChatSession(full, SPEC) as session:
        session.send("first " + "x" * 2000)
        session.send("second")
    sent = model.calls[1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[-1] == {"role": "user", "content": "second"}


def test_a_turn_that_cannot_fit_fails_with_one_line_and_sends_nothing(cli, full: Agent, model):
    start = full.journal.last_event_number()
    result = cli("chat", full.folder, "-m", "please review " + "y" * 12_000)
    assert result.exit_code == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    error = errors[0]
    assert error.startswith("Error: scripted/test: the system prompt (~")
    assert "and your message (~3" in error
    assert "do not fit the model's 8192-token context window" in error
    assert error.endswith("nothing was sent")
    hint = result.stderr.split("hint: ", 1)[1]
    assert "budgets: lessons:" in hint and "agentmem sleep" in hint and "--model" in hint
    assert model.calls == []
    logged = [e for e in events(full) if int(e["id"][1:]) > start]
    assert [e["kind"] for e in logged] == ["session_start", "user", "turn_failed", "session_end"]
    assert logged[2]["error_kind"] == "context_window"


def test_a_failed_turn_leaves_the_session_usable(full: Agent, model):
    model.push("Short answer.")
    with ChatSession(full, SPEC) as session:
        with pytest.raises(ContextOverflow):
            session.send("z" * 12_000)
        assert session.turns == []
        assert session.send("short question").text == "Short answer."
    assert [m["role"] for m in model.calls[0]["messages"]] == ["system", "user"]
    assert model.calls[0]["messages"][-1]["content"] == "short question"


def test_the_context_window_setting_is_the_window_chat_fits_to(cli, agent: Agent, model,
                                                               monkeypatch: pytest.MonkeyPatch):
    """A model litellm does not know is taken as 8192 tokens; context_window: says otherwise,
    and the refusal names that setting."""
    monkeypatch.setattr(llm, "context_window", lambda model, default=WINDOW: default)
    path = agent.folder / "persona.md"
    big = "word " * 9000
    result = cli("chat", agent.folder, "-m", big)
    assert result.exit_code == 1 and "context_window:" in result.stderr
    text = path.read_text().replace("budgets:", "context_window: 1000\nbudgets:", 1)
    path.write_text(text)
    result = cli("show", agent.folder)
    assert result.exit_code != 0 and "context_window must be a number of tokens" in result.stderr
    path.write_text(text.replace("context_window: 1000", "context_window: 64000"))
    model.push("fits now")
    result = cli("chat", agent.folder, "-m", big)
    assert result.exit_code == 0, result.stderr
    assert "fits now" in result.stdout


def test_a_message_with_bytes_that_are_not_utf8_is_answered_not_a_traceback(cli, agent: Agent,
                                                                            model):
    model.push("ok")
    result = cli("chat", agent.folder, "-m", "look at \udcff this")   # argv bytes, undecoded
    assert result.exit_code == 0, result.stderr
    assert "ok" in result.stdout
    assert any("\udcff" in str(e.get("content")) for e in events(agent))
