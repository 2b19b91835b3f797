"""What reaches the terminal: every word of a reply, and nothing from a model or a tool that the
terminal would interpret (rich markup, escape sequences, \\r, bidi overrides).

The first part checks console.py and the chat command's prompts in-process; the last drives the
real `agentmem chat` REPL in a pseudo-terminal against an OpenAI-compatible stand-in on
127.0.0.1 (see ptychat.py)."""

from __future__ import annotations

import io
import json
import re
import sys
import unicodedata
from pathlib import Path

import pytest

from agentmem import console
from agentmem.agent import Agent
from agentmem.chat import ChatSession
from agentmem.commands.chat import _ask_approval, _ask_confirm_edit, _repl
from agentmem.memory_tool import PendingEdit
from agentmem.models import ModelSpec
from agentmem.scripted import ToolCall

SPEC = ModelSpec("scripted/test", None, "test")
SPOOF = "[conceal]--rootdir=/ -p evil_plugin [/conceal]tests/"
ESC = "\x1b[8m"            # SGR 8: conceal
OSC = "\x1b]0;owned\x07"   # set the window title


def feed(monkeypatch: pytest.MonkeyPatch, lines: list[str]) -> list[str]:
    """Replace input(): answer with `lines` in order, then EOF; returns the prompts asked."""
    queue, asked = list(lines), []

    def fake_input(prompt: str = "") -> str:
        asked.append(prompt)
        if not queue:
            raise EOFError
        return queue.pop(0)

    monkeypatch.setattr("builtins.input", fake_input)
    return asked


class FakeTerminal(io.StringIO):
    """stdout as a terminal whose width is $COLUMNS (no file descriptor to ask)."""

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        raise OSError("no descriptor")


def terminal(monkeypatch: pytest.MonkeyPatch) -> FakeTerminal:
    """Make stdout a 40-column terminal (inside the test: pytest's capture replaces sys.stdout
    between a fixture's setup and the test)."""
    fake = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", fake)
    monkeypatch.setenv("COLUMNS", "40")
    return fake


def stream(pieces: list[str]) -> None:
    with console.ReplyStream() as reply:
        for piece in pieces:
            reply.write(piece)


def chop(text: str, size: int = 7) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


# -- literal ---------------------------------------------------------------------------------
def test_literal_shows_what_the_terminal_would_act_on():
    text = f"a{ESC}b\rc\x08d\x9b2Je{OSC}\u202eevil\u2066x\u200by\u200ez\U000e0041\ud800"
    assert console.literal(text) == ("a\\x1b[8mb\\rc\\x08d\\x9b2Je\\x1b]0;owned\\x07\\u202eevil"
                                     "\\u2066x\\u200by\\u200ez\\U000e0041\\ud800")
    assert console.literal("one\ntwo\tthree") == "one\\ntwo\\tthree"
    assert console.literal("one\ntwo\tthree\r", multiline=True) == "one\ntwo\tthree\\r"
    assert console.literal("a\u00a0b") == "a\\xa0b"                     # one argument, not two
    assert console.literal("a\u00a0b", multiline=True) == "a\u00a0b"


def test_literal_leaves_printable_text_alone_and_is_idempotent():
    text = "Grüße, 你好, naïve café — [bold]x[/bold] \\x1b 🙂 ok"
    assert console.literal(text) == text
    once = console.literal(f"{ESC}\u202e\n")
    assert console.literal(once) == once


def test_literal_covers_exactly_the_invisible_categories():
    """Every Cc, Cf, Cs, Zl and Zp character of this Python's Unicode is escaped; nothing else
    assigned is (unassigned code points inside the ranges may be, for newer Unicode)."""
    escaped, missed = set(), []
    for code in range(0x110000):
        char = chr(code)
        category = unicodedata.category(char)
        shown = console.literal(char, multiline=True) != char
        if category in ("Cc", "Cf", "Cs", "Zl", "Zp") and char not in "\n\t":
            if not shown:
                missed.append(hex(code))
        elif shown:
            escaped.add((hex(code), category))
    assert not missed
    assert {category for _, category in escaped} <= {"Cn"}, sorted(escaped)[:10]


# -- a streaming reply -----------------------------------------------------------------------
PARAGRAPH = " ".join(f"word{n:03d}" + ("," if n % 7 == 0 else "") for n in range(60))


def test_reply_off_a_terminal_is_the_exact_text(capsys):
    text = f"Exact {ESC} bytes\r\nkept"
    stream(chop(text, 3))
    assert capsys.readouterr().out == text + "\n"


def test_reply_on_a_terminal_wraps_between_words_and_shows_every_word(monkeypatch):
    screen = terminal(monkeypatch)
    stream(chop(PARAGRAPH))
    lines = screen.getvalue().split("\n")
    assert lines[-1] == ""
    assert all(len(line) <= 40 for line in lines), lines
    assert " ".join(line.strip() for line in lines[:-1]) == PARAGRAPH


def test_reply_code_blocks_and_long_words_are_never_broken(monkeypatch):
    screen = terminal(monkeypatch)
    code = [f"    value_{n:03d} = compute('line {n:03d}', width=80, note='{'x' * 40}')"
            for n in range(20)]
    url = "https://example.com/" + "a" * 70
    text = "Here:\n```python\n" + "\n".join(code) + "\n```\nSee " + url + " for more.\n"
    stream(chop(text, 5))
    shown = screen.getvalue()
    for row in code:
        assert f"\n{row}\n" in shown            # whole: the terminal wraps it, nothing cropped
    assert f"\n{url} " in shown or f" {url} " in shown


def test_reply_after_a_resize_wraps_at_the_new_width(monkeypatch):
    screen = terminal(monkeypatch)
    first, second = PARAGRAPH[:200], PARAGRAPH[200:]
    with console.ReplyStream() as reply:
        for piece in chop(first):
            reply.write(piece)
        monkeypatch.setenv("COLUMNS", "24")
        mark = len(screen.getvalue())
        for piece in chop(second):
            reply.write(piece)
    later = screen.getvalue()[mark:].split("\n")[1:]
    assert later and all(len(line) <= 24 for line in later), later
    assert " ".join(screen.getvalue().split()) == PARAGRAPH


def test_reply_on_a_terminal_escapes_sequences_and_markup_stays_text(monkeypatch):
    screen = terminal(monkeypatch)
    stream([f"before {ESC}hidden{OSC} [red]red[/red] \u202eevil\n"])
    shown = screen.getvalue()
    assert "\x1b" not in shown and "\u202e" not in shown
    assert shown.split() == ["before", "\\x1b[8mhidden\\x1b]0;owned\\x07", "[red]red[/red]",
                             "\\u202eevil"]


def test_a_warning_during_a_reply_starts_on_its_own_line(monkeypatch, capsys):
    screen = terminal(monkeypatch)
    with console.ReplyStream() as reply:
        reply.write("Let me check")
        console.warn("something")
        reply.write(" the tests.")
    assert screen.getvalue() == "Let me check\n the tests.\n"
    assert capsys.readouterr().err == "warning: something\n"


# -- messages, diffs and JSON ----------------------------------------------------------------
def test_messages_show_model_text_literally(capsys):
    console.error(f"provider said {ESC}no\rpe\nsecond {OSC}line", "hint [bold]x[/bold]\u202e")
    console.info(f"[bold]{ESC}")
    console.warn("\u2066w")
    console.err().print(f"raw {ESC}", markup=False)
    assert capsys.readouterr().err == (
        "Error: provider said \\x1b[8mno\\rpe\n  second \\x1b]0;owned\\x07line\n"
        "hint: hint [bold]x[/bold]\\u202e\n[bold]\\x1b[8m\nwarning: \\u2066w\nraw \\x1b[8m\n")


def test_diff_to_a_pipe_is_the_patch_and_on_stderr_is_literal(capsys):
    patch = f"--- a\n+++ b\n@@ -1 +1 @@\n-old\n+new {ESC}\u202e\n"
    console.diff(patch)
    console.diff(patch, stderr=True)
    out, err = capsys.readouterr()
    assert out == patch
    assert err == patch.replace(ESC, "\\x1b[8m").replace("\u202e", "\\u202e")


def test_json_escapes_invisible_characters_and_lone_surrogates(capsys):
    data = {"answer": f"a{ESC}\u202eb\ud800\U000e0041\x85"}
    console.print_json(data)
    out = capsys.readouterr().out
    assert "\\u202e" in out and "\\u001b" in out and "\\udb40\\udc41" in out
    assert out.isascii() and "\x1b" not in out
    assert json.loads(out) == data


# -- the prompts -----------------------------------------------------------------------------
def test_approval_prompt_shows_the_exact_argv_literally(agent: Agent, monkeypatch, capsys):
    tool = next(t for t in agent.load().tools if t.name == "run_tests")
    asked = feed(monkeypatch, ["y"])
    assert _ask_approval(tool, {"target": f"{SPOOF}{ESC}\u202ex y\nz"}) is True
    assert asked == ["allow? [y/N] "]
    assert capsys.readouterr().err == (
        "run tool run_tests: python3 -m pytest -q -x "
        "'[conceal]--rootdir=/ -p evil_plugin [/conceal]tests/\\x1b[8m\\u202ex y\\nz'\n")
    feed(monkeypatch, [" n "])
    assert _ask_approval(tool, {"target": "t"}) is False
    feed(monkeypatch, [])                      # end of input: no
    assert _ask_approval(tool, {"target": "t"}) is False


def test_edit_confirmation_shows_reason_and_diff_literally(monkeypatch, capsys):
    edit = PendingEdit(path="persona.md", command="str_replace", reason=f"because {ESC}[y/N]",
                       source="grep_repo",
                       diff=f"--- a/persona.md\n+++ b/persona.md\n@@ -1 +1 @@\n-a\n+{OSC}b\u202e\n")
    asked = feed(monkeypatch, ["yes"])
    assert _ask_confirm_edit(edit) is True
    assert asked == ["allow? [y/N] "]
    err = capsys.readouterr().err
    assert err == ("edit persona.md after output from grep_repo (untrusted: it may carry injected "
                   "instructions)\nreason: because \\x1b[8m[y/N]\n--- a/persona.md\n+++ b/persona.md"
                   "\n@@ -1 +1 @@\n-a\n+\\x1b]0;owned\\x07b\\u202e\n")


def test_tool_output_line_in_the_repl_is_literal(agent: Agent, model, monkeypatch, capsys):
    model.push(ToolCall("grep_repo", {"pattern": f"{ESC}x"}, id="g1"), "Done.")
    feed(monkeypatch, ["find it"])
    with ChatSession(agent, SPEC) as session:
        _repl(session)
    out, err = capsys.readouterr()
    assert out == "Done.\n"
    assert "[grep_repo] exit status 128" in err and "\x1b" not in err


# -- one-shot mode ---------------------------------------------------------------------------
def test_one_shot_says_which_tool_it_refused_and_how_to_allow_it(cli, agent: Agent, model,
                                                                 tmp_path: Path):
    marker = tmp_path / "ran"
    model.push(ToolCall("run_tests", {"target": f"x; touch {marker}"}, id="c1"),
               ToolCall("run_tests", {"target": "again"}, id="c2"), "Could not run them.")
    result = cli("chat", agent.folder, "-m", "run the tests")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Could not run them.\n"
    assert result.stderr == (
        "warning: the agent's call to run_tests was refused: the tool asks a person first, and "
        "chat with -m or piped input does not ask (allow it with --yes, or add run_tests to "
        "allow_tools: in persona.md)\n")
    assert not marker.exists()


def test_one_shot_with_yes_or_an_auto_tool_says_nothing(cli, agent: Agent, model):
    model.push(ToolCall("grep_repo", {"pattern": "x"}, id="g1"), "None.")
    result = cli("chat", agent.folder, "-m", "find")
    assert result.exit_code == 0 and result.stderr == ""


def _ansi_free(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_the_repl_banner_is_literal_text(agent: Agent, model, monkeypatch, capsys):
    persona = agent.folder / "persona.md"
    persona.write_text(persona.read_text().replace("name: code-reviewer", "name: '[red]rev'"))
    feed(monkeypatch, [])
    with ChatSession(agent, SPEC) as session:
        _repl(session)
    assert _ansi_free(capsys.readouterr().err).startswith("[red]rev · scripted/test · ")


# -- the real REPL in a pseudo-terminal ------------------------------------------------------
def test_repl_in_a_terminal_shows_every_word_asks_literally_and_survives_ctrl_c(tmp_path: Path):

    from ptychat import ChatStandIn, Gate, Reply, Terminal, terminal_env

    paragraph = " ".join(f"review{n:02d}" + ("," if n % 9 == 8 else "") for n in range(45))
    assert len(paragraph) >= 400
    code = [f"    total_{n:03d} = measure(items[{n}], label='row {n:03d}', pad='{'#' * (n % 50)}')"
            for n in range(150)]
    block = "Here it is:\n```python\n" + "\n".join(code) + "\n```\nThat is all."
    first_half = " ".join(f"alpha{n:02d}" for n in range(30)) + " "
    second_half = " ".join(f"omega{n:02d}" for n in range(30)) + "."
    target = f"{SPOOF}{ESC}hidden{OSC}"
    after_resize, cancelled_gate = Gate(), Gate()

    stand_in = ChatStandIn()
    stand_in.push(Reply(chop(paragraph)), Reply(chop(block, 40)),
                  Reply(["Let me run them."], tool_calls=[("run_tests", {"target": target})]),
                  Reply(["Skipped the tests."]),
                  Reply([*chop(first_half), after_resize, *chop(second_half)]),
                  Reply(["Thinking about it ", cancelled_gate, "never shown"]),
                  Reply(["Still here."]))
    agent = Agent.create(str(tmp_path / "reviewer"), "code-reviewer")
    persona = agent.folder / "persona.md"
    persona.write_text(persona.read_text().replace(
        "model: openai/gpt-4.1-mini", f"model: openai/fake\napi_base: {stand_in.url}"))
    env = terminal_env()
    term = Terminal(["chat", str(agent.folder)], env, tmp_path, columns=80)
    try:
        term.expect("/help for commands, Ctrl-D to exit")
        term.expect("you> ")

        # a 400-character paragraph: every word, wrapped at 80 columns between words
        term.send("tell me about reviews\r")
        shown = term.expect("you> ")
        rows = shown.split("\n")[1:-1]               # after the echoed line, before the prompt
        assert " ".join(" ".join(rows).split()) == paragraph
        assert all(len(row) <= 80 for row in rows), rows

        # a 150-line code block: every line whole (rows longer than 80 wrap in the terminal)
        term.send("show me the code\r")
        shown = term.expect("you> ")
        for row in code:
            assert f"\n{row}\n" in shown
        assert "Here it is:" in shown and "That is all." in shown

        # the approval prompt: [y/N] shown, the exact argv shown literally, the answer echoed
        term.send("run the tests\r")
        shown = term.expect("allow? [y/N] ")
        assert ("run tool run_tests: python3 -m pytest -q -x '[conceal]--rootdir=/ -p "
                "evil_plugin [/conceal]tests/\\x1b[8mhidden\\x1b]0;owned\\x07'") in shown
        assert b"\x1b[8m" not in term.raw and b"\x1b]0;owned" not in term.raw
        term.send("n\r")
        term.expect("n\n", timeout=10)
        shown = term.expect("you> ")
        assert "Skipped the tests." in shown
        assert "did not approve" in stand_in.requests[3]["messages"][-1]["content"]

        # a resize mid-reply: the words after it wrap at the new width, none is lost
        term.send("and more\r")
        term.expect("alpha29 ")
        term.resize(40)
        after_resize.open()
        shown = term.expect("you> ")
        later = shown.split("\n")[1:-1]              # the row alpha29 ended is 80 wide
        assert later and all(len(row) <= 40 for row in later), later
        assert " ".join(term.screen.split("and more\n")[1].split()[:-1]) == \
            f"{first_half}{second_half}".strip()

        # Ctrl-C while the reply streams: cancelled, and the session goes on
        term.send("think slowly\r")
        term.expect("Thinking about it")
        term.send("\x03")
        term.expect("(reply cancelled)")
        term.expect("you> ")
        term.send("still there?\r")
        assert "Still here." in term.expect("you> ")

        # Ctrl-D: the session ends and is logged
        term.send("\x04")
        assert term.wait() == 0
    finally:
        term.close()
        stand_in.close()
    assert "never shown" not in term.screen and "Traceback" not in term.screen
    assert stand_in.pending == 0 and stand_in.overdrawn == 0
    kinds = [e["kind"] for e in agent.journal.read().events]
    assert "turn_cancelled" in kinds
    assert kinds[-1] == "session_end"
