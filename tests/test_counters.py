"""Counters that mean something (issue 14, item 4): /good and /bad count for the lessons a reply
rests on (edited in its turn, or shown and sharing distinctive words with it), sleep retires a
lesson whose harmful count outweighs helpful by the margin, and show lists the extremes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentmem import lessons as lessons_fmt
from agentmem import ratings
from agentmem.agent import Agent
from agentmem.scripted import ToolCall
from tests.conftest import snapshot

LESSONS = """# Lessons

What I have learned.

## Lint with ruff, never flake8
<!-- id: L1; helpful: 0; harmful: 0 -->
The project lints and formats with ruff. Quote ruff rule codes instead of flake8 ones.

## Parametrize SQL queries
<!-- id: L2; helpful: 0; harmful: 0 -->
Never build SQL with f-strings; ask for driver placeholders and a tuple of parameters.

## Mutable default arguments
<!-- id: L3; helpful: 0; harmful: 0 -->
A signature with a list or dict default leaks state between calls; default to None.

<!-- pin -->
## Billing changes need a second reviewer
<!-- id: L4; helpful: 0; harmful: 0 -->
Company policy for anything under billing.
<!-- /pin -->
"""

RUFF_Q = "Should I fix these flake8 warnings?"
RUFF_A = "No: this project uses ruff. Quote the ruff rule codes."


@pytest.fixture
def rated(blank: Agent) -> Agent:
    blank.write({"lessons.md": LESSONS}, "human", "Seed lessons")
    return blank


@pytest.fixture
def tty(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentmem import console

    monkeypatch.setattr(console, "stdin_is_tty", lambda: True)


def lessons(agent: Agent) -> dict[str, tuple[int, int]]:
    doc, _ = lessons_fmt.parse((agent.folder / "lessons.md").read_text())
    assert doc is not None
    return {x.id or "": (x.helpful, x.harmful) for x in doc.lessons}


def feedback(agent: Agent) -> list[dict[str, Any]]:
    return [e for e in agent.journal.read().events if e["kind"] == "feedback"]


def chat(cli, agent: Agent, *lines: str):
    result = cli("chat", agent.folder, input="".join(f"{x}\n" for x in lines) + "/exit\n")
    assert result.exit_code == 0, result.stderr
    return result


# -- /good and /bad in a chat -----------------------------------------------------------------
def test_good_credits_the_shown_lesson_the_exchange_is_about_and_nothing_else(
        cli, rated: Agent, model, tty):
    model.push(RUFF_A)
    versions = len(rated.history.versions())
    result = chat(cli, rated, RUFF_Q, "/good")
    assert "rated the last answer good" in result.stderr
    assert "helpful +1 for L1 (version" in result.stderr
    assert lessons(rated) == {"L1": (1, 0), "L2": (0, 0), "L3": (0, 0), "L4": (0, 0)}
    # one version, by the person who rated, whose diff is the one counter line
    latest = rated.history.versions()[0]
    assert len(rated.history.versions()) == versions + 1
    assert latest.author == "human"
    assert latest.subject.startswith("Rated good (reply e") and latest.subject.endswith(
        "helpful +1 for L1")
    assert "- L1: shown, and shares code, flake8, project, quote, ruff, rule" in latest.message
    diff = rated.history.diff(rated.history.parent(latest), latest)
    assert [x for x in diff.splitlines() if x[:1] in "+-" and x[:3] not in ("+++", "---")] == [
        "-<!-- id: L1; helpful: 0; harmful: 0 -->", "+<!-- id: L1; helpful: 1; harmful: 0 -->"]
    # the rating event names the reply, the lessons and the version
    event = feedback(rated)[-1]
    reply = [e for e in rated.journal.read().events if e["kind"] == "assistant"][-1]
    assert event["rating"] == "good" and event["about"] == reply["id"]
    assert event["lessons"] == ["L1"] and event["version"] == latest.number
    assert event["why"]["L1"].startswith("shown, and shares ")


def test_bad_debits_the_same_way(cli, rated: Agent, model, tty):
    model.push(RUFF_A)
    result = chat(cli, rated, RUFF_Q, "/bad we do not use ruff here")
    assert "harmful +1 for L1" in result.stderr
    assert lessons(rated)["L1"] == (0, 1)
    event = feedback(rated)[-1]
    assert (event["rating"], event["content"], event["lessons"]) == \
        ("bad", "we do not use ruff here", ["L1"])


def test_a_rating_before_any_reply_is_a_usage_line_and_changes_nothing(cli, rated: Agent,
                                                                       model, tty):
    before = snapshot(rated)
    result = chat(cli, rated, "/good")
    assert "warning: usage: /good [TEXT] after a reply, to rate it (no reply yet)\n" \
        in result.stderr
    assert "rated the last answer" not in result.stderr
    assert feedback(rated) == []
    after = snapshot(rated)
    assert after["versions"] == before["versions"]
    assert after["files"]["lessons.md"] == before["files"]["lessons.md"]


def test_an_exchange_that_matches_no_lesson_counts_nothing(cli, rated: Agent, model, tty):
    model.push("Hello! What shall we review?")
    versions = len(rated.history.versions())
    result = chat(cli, rated, "hi there", "/good")
    assert "no lesson counted" in result.stderr
    assert len(rated.history.versions()) == versions
    assert feedback(rated)[-1]["lessons"] == [] and feedback(rated)[-1]["version"] is None


def test_one_shared_word_is_not_enough(cli, rated: Agent, model, tty):
    # "billing" is L4's alone, but one word in common may be chance
    model.push("I looked at the billing module.")
    chat(cli, rated, "Anything odd?", "/good")
    assert lessons(rated)["L4"] == (0, 0)
    assert feedback(rated)[-1]["lessons"] == []


def test_a_reply_is_counted_once(cli, rated: Agent, model, tty):
    model.push(RUFF_A)
    result = chat(cli, rated, RUFF_Q, "/good", "/good", "/bad changed my mind")
    assert lessons(rated)["L1"] == (1, 0)
    assert result.stderr.count("this reply was rated good already; no lesson counted again") == 2
    events = feedback(rated)
    assert [e["lessons"] for e in events] == [["L1"], [], []]
    assert [e.get("already_rated") for e in events] == [None, "good", "good"]


def test_the_next_reply_is_rated_on_its_own(cli, rated: Agent, model, tty):
    model.push(RUFF_A, "Use driver placeholders and a tuple, never f-strings in SQL.")
    chat(cli, rated, RUFF_Q, "/good", "How do I build this SQL query?", "/bad")
    assert lessons(rated)["L1"] == (1, 0) and lessons(rated)["L2"] == (0, 1)


def test_a_pinned_lesson_is_counted(cli, rated: Agent, model, tty):
    model.push("A billing change needs a second reviewer: company policy.")
    chat(cli, rated, "Can I approve this?", "/good")
    assert lessons(rated)["L4"] == (1, 0)
    text = (rated.folder / "lessons.md").read_text()
    assert "<!-- pin -->\n## Billing changes need a second reviewer\n" \
           "<!-- id: L4; helpful: 1; harmful: 0 -->\nCompany policy" in text


def test_the_lesson_the_agent_edited_in_that_turn_is_counted(cli, rated: Agent, model, tty):
    before = (rated.folder / "lessons.md").read_text()
    model.push(ToolCall("memory", {"command": "insert", "path": "/memories/lessons.md",
                                   "insert_line": len(before.splitlines()),
                                   "insert_text": "\n## Prefer pathlib\nUse pathlib in new code.\n",
                                   "reason": "user prefers pathlib"}),
               "Noted.")
    result = chat(cli, rated, "We prefer pathlib.", "/good")
    assert "helpful +1 for L5" in result.stderr
    counts = lessons(rated)
    assert counts["L5"] == (1, 0)
    assert all(counts[i] == (0, 0) for i in ("L1", "L2", "L3", "L4"))
    assert feedback(rated)[-1]["why"] == {"L5": "edited by the agent in that turn"}


def test_an_edit_undone_before_the_rating_is_not_counted(cli, rated: Agent, model, tty):
    lesson_2 = "Never build SQL with f-strings; ask for driver placeholders and a tuple of " \
               "parameters."
    model.push(ToolCall("memory", {"command": "str_replace", "path": "/memories/lessons.md",
                                   "old_str": lesson_2,
                                   "new_str": lesson_2 + " Even for internal ids.",
                                   "reason": "sharpen"}),
               "Done.")
    chat(cli, rated, "Sharpen your lesson.", "/undo", "/good")
    assert lessons(rated)["L2"] == (0, 0)
    assert feedback(rated)[-1]["lessons"] == []


def test_a_lesson_left_out_of_the_prompt_was_not_shown_so_is_not_counted(rated: Agent, model):
    from agentmem.chat import ChatSession
    from agentmem.models import ModelSpec
    from agentmem.tokens import estimate

    # a lessons budget one token short: the lowest-rated lesson (L1) is left out of the prompt
    text = (rated.folder / "lessons.md").read_text().replace(
        "<!-- id: L1; helpful: 0; harmful: 0 -->", "<!-- id: L1; helpful: 0; harmful: 1 -->")
    persona = (rated.folder / "persona.md").read_text().replace(
        "  lessons: 4000\n", f"  lessons: {estimate(text) - 1}\n")
    rated.write({"lessons.md": text, "persona.md": persona}, "human", "tight budget")
    model.push(RUFF_A)
    with ChatSession(rated, ModelSpec("scripted/test", None, "test")) as session:
        session.send(RUFF_Q)
        assert "Lint with ruff" not in model.calls[0]["messages"][0]["content"]
        counted = session.rate("good")
    assert counted is not None and counted.lessons == []
    assert lessons(rated)["L1"] == (0, 1)


def test_a_rating_on_a_broken_lessons_file_is_refused_whole(cli, rated: Agent, model, tty,
                                                           monkeypatch):
    from agentmem.chat import ChatSession

    path = rated.folder / "lessons.md"
    finish = ChatSession._finish

    def finish_then_break(self: ChatSession, text: str, result: Any) -> Any:
        # a person breaks lessons.md after the reply, before the rating
        path.write_text(path.read_text().replace("<!-- id: L3; helpful: 0; harmful: 0 -->",
                                                 "<!-- id: L3; helpful: lots -->"))
        return finish(self, text, result)

    monkeypatch.setattr(ChatSession, "_finish", finish_then_break)
    model.push(RUFF_A)
    broken = None
    result = chat(cli, rated, RUFF_Q, "/good")
    broken = path.read_text()
    assert "Error: " in result.stderr and "helpful must be a whole number" in result.stderr
    assert "fix lessons.md and rate again" in result.stderr
    assert "rated the last answer" not in result.stderr
    assert feedback(rated) == []
    assert "<!-- id: L1; helpful: 0; harmful: 0 -->" in broken


# -- the rule on its own ------------------------------------------------------------------------
def test_words_common_to_many_lessons_are_not_distinctive():
    shown = {f"L{n}": f"Review {topic} in every pull request" for n, topic in
             enumerate(["typing", "naming", "logging", "imports"], 1)}
    # "review", "pull", "request" are in every lesson: sharing them says nothing
    assert ratings.matching(shown, "Please review this pull request") == []
    assert ratings.matching(shown, "Review the logging in this pull request") == []
    shown["L5"] = "Logging: use structlog, never print"
    assert ratings.matching(shown, "Should this print use structlog?") == \
        [("L5", ["print", "structlog"])]


def test_at_most_three_shown_lessons_count_the_most_sharing_first():
    shown = {"L1": "alpha beta gamma", "L2": "delta epsilon zeta eta",
             "L3": "theta iota kappa", "L4": "lambda omicron sigma upsilon"}
    said = "alpha beta delta epsilon zeta theta iota lambda omicron sigma upsilon"
    assert ratings.matching(shown, said) == [
        ("L4", ["lambda", "omicron", "sigma", "upsilon"]), ("L2", ["delta", "epsilon", "zeta"]),
        ("L1", ["alpha", "beta"])]


def test_words_ignore_case_stop_words_numbers_and_a_plural_s():
    assert ratings.words("The Tests USE 2024 flake8 and SQL, ok? classes") == \
        {"test", "flake8", "sql", "classe"}
    # adverbs say nothing of what a lesson is about ("rather" once tied a ruff lesson to a
    # reply about review comments)
    assert ratings.words("a concrete fix rather than a worry, usually, perhaps") == \
        {"concrete", "fix", "worry"}


# -- sleep retires what ratings show to do harm -------------------------------------------------
def counts(agent: Agent, lesson_id: str, helpful: int, harmful: int) -> None:
    path = agent.folder / "lessons.md"
    text = path.read_text().replace(f"<!-- id: {lesson_id}; helpful: 0; harmful: 0 -->",
                                    f"<!-- id: {lesson_id}; helpful: {helpful}; "
                                    f"harmful: {harmful} -->")
    agent.write({"lessons.md": text}, "human", "counts")


def bad(agent: Agent, *lesson_ids: str) -> str:
    return agent.journal.append({"session": "s1", "kind": "feedback", "rating": "bad",
                                 "content": "", "about": None,
                                 "lessons": list(lesson_ids)})[0]["id"]


NOTHING = json.dumps({"operations": [], "summary": "nothing learned"})


def sleep(cli, agent: Agent, model, answer: str = NOTHING, *extra: str):
    model.push(answer)
    result = cli("sleep", agent.folder, "--yes", "--model", "scripted/sleep", *extra)
    assert result.exit_code == 0, result.stderr
    return result


def test_rated_through_chat_over_the_margin_then_sleep_retires_it(cli, rated: Agent, model,
                                                                    tty):
    counts(rated, "L1", 1, 3)
    model.push(RUFF_A)
    chat(cli, rated, RUFF_Q, "/bad")
    assert lessons(rated)["L1"] == (1, 4)
    rating = feedback(rated)[-1]["id"]
    sleep(cli, rated, model)
    assert "L1" not in lessons(rated)
    archive = (rated.folder / "archive.md").read_text()
    assert "## Lint with ruff, never flake8" in archive
    assert "rated harmful 4, helpful 1: 3 more harmful than helpful, at least the retire " \
           "margin (3)" in archive
    latest = rated.history.versions()[0]
    assert latest.author == "sleep"
    assert f"- retire L1: rated harmful 4, helpful 1: 3 more harmful than helpful, at least " \
           f"the retire margin (3); retired by that rule [{rating}]" in latest.message


def test_below_the_margin_nothing_is_retired(cli, rated: Agent, model):
    counts(rated, "L2", 1, 3)
    bad(rated, "L2")
    result = sleep(cli, rated, model, NOTHING, "--dry-run", "--json")
    assert json.loads(result.stdout)["operations"] == []
    assert "L2" in lessons(rated)


def test_the_proposal_names_the_counts_and_the_rating_events(cli, rated: Agent, model):
    counts(rated, "L2", 0, 3)
    first, second = bad(rated, "L2"), bad(rated, "L2", "L3")
    result = sleep(cli, rated, model, NOTHING, "--dry-run", "--json")
    ops = json.loads(result.stdout)["operations"]
    assert ops == [{"op": "retire", "id": "L2", "evidence": [first, second],
                    "rationale": "rated harmful 3, helpful 0: 3 more harmful than helpful, at "
                                 "least the retire margin (3); retired by that rule"}]


def test_the_margin_is_a_persona_setting(cli, rated: Agent, model):
    persona = (rated.folder / "persona.md").read_text().replace(
        "---\n", "---\nsleep:\n  retire_margin: 1\n", 1)
    rated.write({"persona.md": persona}, "human", "margin 1")
    counts(rated, "L3", 2, 3)
    bad(rated, "L3")
    ops = json.loads(sleep(cli, rated, model, NOTHING, "--dry-run", "--json").stdout)["operations"]
    assert [(op["op"], op["id"]) for op in ops] == [("retire", "L3")]
    assert "at least the retire margin (1)" in ops[0]["rationale"]


def test_a_margin_of_zero_is_refused(cli, rated: Agent):
    persona = (rated.folder / "persona.md").read_text().replace(
        "---\n", "---\nsleep:\n  retire_margin: 0\n", 1)
    (rated.folder / "persona.md").write_text(persona)
    result = cli("show", rated.folder)
    assert result.exit_code == 1
    assert "sleep setting 'retire_margin' must be at least 1" in result.stderr


def test_a_pinned_lesson_is_never_retired_and_the_pass_says_why(cli, rated: Agent, model):
    counts(rated, "L4", 0, 5)
    bad(rated, "L4")
    data = json.loads(sleep(cli, rated, model, NOTHING, "--dry-run", "--json").stdout)
    assert data["operations"] == []
    assert any("lesson L4 is rated harmful 5" in w and "pinned" in w for w in data["warnings"])


def test_not_twice_when_the_model_retired_it_too(cli, rated: Agent, model):
    counts(rated, "L2", 0, 4)
    event = bad(rated, "L2")
    answer = json.dumps({"summary": "retire L2", "operations": [
        {"op": "retire", "id": "L2", "rationale": "rated bad", "evidence": [event]}]})
    ops = json.loads(sleep(cli, rated, model, answer, "--dry-run", "--json").stdout)["operations"]
    assert [(op["op"], op["id"], op["rationale"]) for op in ops] == [("retire", "L2", "rated bad")]


def test_only_a_pass_that_reads_a_new_bad_rating_proposes_it(cli, rated: Agent, model):
    """Counts over the margin with no /bad since the last pass (set by hand, or a retirement a
    person declined in review) are not proposed again until another /bad counts."""
    counts(rated, "L3", 0, 4)
    rated.journal.append({"session": "s2", "kind": "user", "content": "anything"})
    ops = json.loads(sleep(cli, rated, model, NOTHING, "--dry-run", "--json").stdout)["operations"]
    assert ops == []
    bad(rated, "L3")
    ops = json.loads(sleep(cli, rated, model, NOTHING, "--dry-run", "--json").stdout)["operations"]
    assert [(op["op"], op["id"]) for op in ops] == [("retire", "L3")]


# -- show ---------------------------------------------------------------------------------------
def test_show_lists_the_most_helpful_and_most_harmful(cli, rated: Agent):
    text = LESSONS
    for lesson_id, helpful, harmful in (("L1", 5, 0), ("L2", 1, 4), ("L3", 2, 1), ("L4", 3, 0)):
        text = text.replace(f"<!-- id: {lesson_id}; helpful: 0; harmful: 0 -->",
                            f"<!-- id: {lesson_id}; helpful: {helpful}; harmful: {harmful} -->")
    rated.write({"lessons.md": text}, "human", "counts")
    shown = cli("show", rated.folder).stdout
    assert "  most helpful L1 (helpful 5, harmful 0) Lint with ruff, never flake8\n" \
           "               L4 (helpful 3, harmful 0) Billing changes need a second reviewer\n" \
           "               L3 (helpful 2, harmful 1) Mutable default arguments\n" \
           "  most harmful L2 (helpful 1, harmful 4) Parametrize SQL queries\n" \
           "               L3 (helpful 2, harmful 1) Mutable default arguments\n" in shown
    data = json.loads(cli("show", rated.folder, "--json").stdout)["ratings"]
    assert [x["id"] for x in data["helpful"]] == ["L1", "L4", "L3"]
    assert [x["id"] for x in data["harmful"]] == ["L2", "L3"]
    assert data["harmful"][0] == {"id": "L2", "title": "Parametrize SQL queries", "helpful": 1,
                                  "harmful": 4, "pinned": False}


def test_show_lists_nothing_without_ratings(cli, rated: Agent):
    assert "most helpful" not in cli("show", rated.folder).stdout
    assert "most harmful" not in cli("show", rated.folder).stdout
    assert json.loads(cli("show", rated.folder, "--json").stdout)["ratings"] == \
        {"helpful": [], "harmful": []}


# -- the real terminal --------------------------------------------------------------------------
def test_good_in_a_terminal_session(rated: Agent, tmp_path):
    """The REPL in a pseudo-terminal against an OpenAI-compatible stand-in (ptychat.py)."""

    from ptychat import ChatStandIn, Reply, Terminal, terminal_env

    stand_in = ChatStandIn()
    stand_in.push(Reply([RUFF_A]))
    persona = rated.folder / "persona.md"
    persona.write_text(persona.read_text().replace(
        "---\n", f"---\nmodel: openai/fake\napi_base: {stand_in.url}\n", 1))
    env = terminal_env()
    term = Terminal(["chat", str(rated.folder)], env, tmp_path, columns=100)
    try:
        term.expect("you> ")
        term.send("/bad\r")
        assert "usage: /bad [TEXT] after a reply, to rate it (no reply yet)" in term.expect("you> ")
        term.send(f"{RUFF_Q}\r")
        assert "Quote the ruff rule codes." in term.expect("you> ")
        term.send("/good spot on\r")
        shown = term.expect("you> ")
        assert "rated the last answer good" in shown and "helpful +1 for L1 (version" in shown
        term.send("\x04")
        assert term.wait() == 0
    finally:
        term.close()
        stand_in.close()
    assert lessons(rated) == {"L1": (1, 0), "L2": (0, 0), "L3": (0, 0), "L4": (0, 0)}
    assert [(e["rating"], e["content"], e["lessons"]) for e in feedback(rated)] == \
        [("good", "spot on", ["L1"])]


def test_a_lesson_gone_by_the_rating_is_named_and_not_counted(cli, rated: Agent, model, tty,
                                                              monkeypatch):
    from agentmem.chat import ChatSession

    path = rated.folder / "lessons.md"
    finish = ChatSession._finish

    def finish_then_delete(self: ChatSession, text: str, result: Any) -> Any:
        # a person deletes the lesson after the reply, before the rating
        lesson_1 = path.read_text().split("## Lint with ruff")[1].split("## Parametrize")[0]
        path.write_text(path.read_text().replace("## Lint with ruff" + lesson_1, ""))
        return finish(self, text, result)

    monkeypatch.setattr(ChatSession, "_finish", finish_then_delete)
    model.push(RUFF_A)
    result = chat(cli, rated, RUFF_Q, "/good")
    assert "not counted, no longer in lessons.md: L1" in result.stderr
    assert "no lesson counted" not in result.stderr
    assert "L1" not in lessons(rated)
    assert feedback(rated)[-1]["lessons"] == []


def test_a_rating_already_counted_is_shown_so_and_a_counter_counting_it_again_is_refused(
        cli, rated: Agent, model):
    """Each rating counts once: the rule counted it when it was given, so the sleep model is
    told so, and a counter operation citing it for the same lesson is refused (after the one
    repair round), while a counter citing it for another lesson passes."""
    rating = rated.journal.append({"session": "s1", "kind": "feedback", "rating": "good",
                                   "content": "", "about": None, "lessons": ["L1"]})[0]["id"]
    again = json.dumps({"summary": "ruff helped", "operations": [
        {"op": "counter", "id": "L1", "helpful": 1, "rationale": "rated good",
         "evidence": [rating]}]})
    model.push(again, again)
    before = snapshot(rated)
    result = cli("sleep", rated.folder, "--yes", "--model", "scripted/sleep")
    assert result.exit_code == 1
    assert f"rating {rating} was already counted for L1 when it was given" in result.stderr
    assert snapshot(rated) == before
    shown = model.calls[0]["messages"][1]["content"]
    assert f"{rating} s1 feedback (good, already counted for L1)" in shown
    other = json.dumps({"summary": "sql helped", "operations": [
        {"op": "counter", "id": "L2", "helpful": 1, "rationale": "rated good",
         "evidence": [rating]}]})
    sleep(cli, rated, model, other)
    assert lessons(rated)["L2"] == (1, 0) and lessons(rated)["L1"] == (0, 0)
