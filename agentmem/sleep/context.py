"""What the sleep model is shown: the log events as one line each, cut into chunks that fit its
context window, and the messages of one call (persona, lessons, one chunk of events)."""

from __future__ import annotations

import json
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
    """One log event as one line: `e12 ab3f user: text`, tool output marked untrusted."""
    kind = event.get("kind", "?")
    content = event.get("content")
    if kind == "tool_call":
        content = f"{event.get('name')}({json.dumps(event.get('arguments'))[:300]})"
    elif kind == "feedback":
        content = f"rating={event.get('rating')} {content or ''}".strip()
    elif kind == "memory_edit":
        content = f"{event.get('command')} {event.get('path', '')} ok={event.get('ok')} " \
                  f"{event.get('reason', '')}".strip()
    elif kind == "tool_result":
        kind = "tool_result (untrusted)"
    text = content if isinstance(content, str) else json.dumps(content)
    text = (text or "").replace("\n", " ")
    if len(text) > EVENT_CHARS:
        text = text[:EVENT_CHARS] + " [...]"
    session = str(event.get("session", ""))[-4:]
    return f"{event['id']} {session} {kind}: {text}"


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
