"""What the sleep model is shown: the log events as one line each, cut into chunks that fit its
context window, and the messages of one call (persona, lessons, one chunk of events)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agentmem import persona as persona_fmt
from agentmem import prompts
from agentmem.journal import BOOKKEEPING
from agentmem.lessons import LessonsDoc
from agentmem.memory import validate
from agentmem.sleep.ops import Texts, reserved_ids
from agentmem.tokens import estimate

EVENT_CHARS = 600                 # an event's text is cut to this many characters
SKIP_KINDS = BOOKKEEPING      # nothing to learn from agentmem's own bookkeeping


def render_lessons(doc: LessonsDoc) -> str:
    rows = []
    for lesson in doc.lessons:
        flags = "pinned" if lesson.pinned else f"helpful {lesson.helpful}, harmful {lesson.harmful}"
        rows.append(f"[{lesson.id}] ({flags}) {lesson.title}\n{lesson.body.strip()}")
    return "\n\n".join(rows) or "(no lessons yet)"


def render_event(event: dict[str, Any]) -> str:
    """One log event as one line, `e12 ab3f KIND (flags): text`: the session's last four
    characters, then what the event says. Tool output is flagged untrusted only where the log
    says so (the memory tool's own results are not); a failed turn shows its error, a failed
    memory edit its error, an edit after untrusted output the tools it followed."""
    kind = str(event.get("kind", "?"))
    render = _RENDERERS.get(kind)
    label, text = render(event) if render else (kind, _text(event.get("content")))
    text = text.replace("\r", " ").replace("\n", " ").strip()
    if len(text) > EVENT_CHARS:
        text = text[:EVENT_CHARS] + " [...]"
    session = str(event.get("session", ""))[-4:]
    return f"{event['id']} {session} {label}: {text}".rstrip()


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _flags(kind: str, *flags: str | None) -> str:
    shown = [f for f in flags if f]
    return f"{kind} ({', '.join(shown)})" if shown else kind


def _assistant(event: dict[str, Any]) -> tuple[str, str]:
    calls = event.get("tool_calls") or []
    text = _text(event.get("content"))
    if calls:
        text = f"{text} [calls: {', '.join(str(c) for c in calls)}]".strip()
    cut = "cut off at the token limit" if event.get("finish_reason") == "length" else None
    return _flags("assistant", cut), text


def _tool_call(event: dict[str, Any]) -> tuple[str, str]:
    return "tool_call", f"{event.get('name')}({json.dumps(event.get('arguments'))[:300]})"


def _tool_result(event: dict[str, Any]) -> tuple[str, str]:
    # an event written before the flag existed is taken as untrusted
    untrusted = "untrusted" if event.get("untrusted", True) is not False else None
    failed = "failed" if event.get("ok") is False else None
    return _flags(f"tool_result {event.get('name')}", untrusted, failed), \
        _text(event.get("content"))


def _memory_edit(event: dict[str, Any]) -> tuple[str, str]:
    ok = event.get("ok") is not False
    what = " ".join(str(x) for x in (event.get("command"), event.get("path")) if x)
    if ok and event.get("version") is not None:
        what += f" -> version {event['version']}"
    elif ok:
        what += " (no change)"
    after = None
    if event.get("after_untrusted"):
        tools = ", ".join(str(t) for t in event.get("untrusted_tools") or []) or "a tool"
        after = f"after untrusted output from {tools}"
    text = f"{what}; reason: {event['reason']}" if event.get("reason") else what
    if not ok:
        text += f"; {_text(event.get('error')) or 'error'}"
    return _flags("memory_edit", None if ok else "failed", after), text


def _feedback(event: dict[str, Any]) -> tuple[str, str]:
    lessons = [i for i in event.get("lessons") or [] if isinstance(i, str)]
    # a /good or /bad the ratings rule counted when it was given: never to be counted again
    label = _flags("feedback", event.get("rating"),
                   f"already counted for {', '.join(lessons)}" if lessons else None)
    if event.get("about"):
        label += f" on {event['about']}"
    return label, _text(event.get("content"))


def _turn_failed(event: dict[str, Any]) -> tuple[str, str]:
    return _flags("turn_failed", event.get("error_kind")), \
        _text(event.get("error")) or prompts.SLEEP_NO_ERROR_TEXT


def _turn_cancelled(event: dict[str, Any]) -> tuple[str, str]:
    return "turn_cancelled", prompts.SLEEP_TURN_CANCELLED


_RENDERERS: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {
    "assistant": _assistant, "tool_call": _tool_call, "tool_result": _tool_result,
              "memory_edit": _memory_edit, "feedback": _feedback, "turn_failed": _turn_failed,
              "turn_cancelled": _turn_cancelled}


def chunk_events(lines: list[str], limit: int) -> list[list[str]]:
    """The event lines in order, cut into chunks of at most `limit` estimated tokens (a line
    longer than that is a chunk of its own)."""
    chunks: list[list[str]] = [[]]
    size = 0
    for line in lines:
        cost = estimate(line) + 1
        if chunks[-1] and size + cost > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += cost
    return chunks


def sleep_messages(texts: Texts, chunk: list[str], part: int, parts: int,
                   used_ids: set[str] | frozenset[str] = frozenset()) -> list[dict[str, str]]:
    """The sleep model's messages. Lessons without an id are shown with the ids the pass will
    give them (apply_operations, with the same `used_ids`), so an operation names the lesson
    the model saw."""
    memory, _ = validate(texts)          # memoised: the pass checked these texts already
    body = memory.persona.body if memory else ""
    doc = memory.lessons.with_ids(reserved_ids(memory.archive or LessonsDoc([]), used_ids)) \
        if memory else None
    budget = (memory.persona.budgets if memory else persona_fmt.DEFAULT_BUDGETS)["lessons"]
    tokens = estimate(texts.get("lessons.md") or "")
    note = prompts.SLEEP_OVER_BUDGET.format(tokens=tokens, budget=budget) if tokens > budget else ""
    user = prompts.SLEEP_USER.format(
        persona=body.strip(), lessons=render_lessons(doc) if doc else "",
        count=len(chunk), part=part, parts=parts,
        events="\n".join(chunk) or "(none)", budget_note=note)
    return [{"role": "system", "content": prompts.SLEEP_SYSTEM}, {"role": "user", "content": user}]
