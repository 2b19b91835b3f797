"""Sleep: consolidate recent experience into memory as small, checked edit operations.

A pass reads the log events after the cursor (cost proportional to new events, not to the log),
asks the sleep model for operations (add, update, merge, retire, counter, persona_warning),
applies them in code, deterministically, and records ONE version authored `sleep`. Every guard
is enforced here: a pass whose output is empty, truncated, invalid, hallucinated, touches
pinned or human-only text, shrinks memory too much or grows it past its size caps is refused
whole, with nothing written, the cursor unmoved and the raw output kept for inspection.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agentmem import baton, llm, prompts
from agentmem import lessons as lessons_fmt
from agentmem import persona as persona_fmt
from agentmem.agent import ARCHIVE, BLANK_ARCHIVE, INTENT, Agent, validate
from agentmem.errors import AgentmemError, Conflict, InvalidAgent, ModelError, Refused
from agentmem.fsutil import atomic_write
from agentmem.history import CURSOR_TRAILER, Version
from agentmem.journal import Cursor, event_number
from agentmem.lessons import Lesson, LessonsDoc
from agentmem.locks import FileLock, LockTimeout
from agentmem.memory_tool import Refusal, guard_agent_edit
from agentmem.models import ModelSpec
from agentmem.pins import pins_preserved
from agentmem.redact import redact_obj
from agentmem.tokens import estimate

OUTPUT_TOKENS = 4096
DEFAULT_MAX_SHRINK = 0.3
EVENT_CHARS = 600
OPS = ("add", "update", "merge", "retire", "counter", "persona_warning")
FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "add": {"title": str, "body": str},
    "update": {"id": str, "body": str},
    "merge": {"ids": list, "title": str, "body": str},
    "retire": {"id": str},
    "counter": {"id": str},
    "persona_warning": {"text": str},
}
OPTIONAL: dict[str, set[str]] = {"update": {"title"}, "counter": {"helpful", "harmful"}}
COMMON = {"op", "rationale", "evidence"}
WARNINGS_HEADING = "## Warnings"
# what str.splitlines() (and so every parser here, and decode_text for \r) breaks a line at,
# besides \n: in a model's text each would become a line break, a heading, a fence, on read-back
RETIRED_NOTE = "\n\n_Retired "      # begins the note retire() adds to an archived lesson
LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"

# -- size caps: a pass may grow memory only so far, as it may shrink it only so far (max_shrink).
# Lessons are measured in estimated tokens (agentmem.tokens), as the persona's `budgets:` are.
# A reply is at most OUTPUT_TOKENS tokens; 32 characters a token is eight times the usual four,
# more than any real reply holds (long whitespace runs, \uXXXX escapes), and still bounds what
# is parsed and kept.
MAX_OUTPUT_CHARS = OUTPUT_TOKENS * 32
MAX_TITLE_CHARS = 200         # a title is a heading: one short line
MAX_WARNING_CHARS = 400       # a warning is one line in persona.md ("I tend to X; check Y")
MAX_RATIONALE_CHARS = 1000    # a sentence or two; it goes into the version's message and notes
# one lesson (title and body) may take an eighth of the lessons budget: 500 tokens of the
# default 4000, some 2,000 characters, five times the "one to four sentences" the model is asked
# for; and 250 tokens however small the budget, so that a lesson can always be written
LESSON_SHARE = 8
LESSON_MIN_TOKENS = 250
# a pass consolidates, and the model is asked for a short list: 40 lessons of ~100 tokens
# would fill the whole default lessons budget
MAX_NEW_LESSONS = 40
# being over budget is a warning (people decide), but a pass may leave lessons.md (persona.md's
# body) at most twice its budget, or, when it was near or past that already, half a budget more
# than it found
GROWTH_FACTOR = 2
GROWTH_MARGIN = 0.5
# archive.md is exempt from the budgets: it grows by what a pass archives. Each copy may hold
# the lesson's text as the pass found it (or, for text the pass wrote itself, as much as one
# lesson may hold), and this much besides: its metadata (up to MAX_EVIDENCE ids) and the
# retirement note (date, "merged into ...", the rationale)
ARCHIVE_NOTE_CHARS = MAX_RATIONALE_CHARS + 500


def one_line(text: str) -> str:
    """Model text for a one-line place (a commit message, an archive note): whitespace and
    line breaks of every kind collapsed to single spaces."""
    return " ".join(text.split())


@dataclass
class Proposal:
    agent: Agent
    spec: ModelSpec
    operations: list[dict[str, Any]]
    before: dict[str, str | None]
    after: dict[str, str | None]
    cursor: Cursor
    events: int
    summary: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    calls: int = 0
    warnings: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    max_shrink: float = 0.3

    def diff(self) -> str:
        out: list[str] = []
        for name in ("persona.md", "lessons.md", ARCHIVE):
            a, b = self.before.get(name) or "", self.after.get(name) or ""
            if a != b:
                out += difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True),
                                            f"a/{name}", f"b/{name}")
        return "".join(line if line.endswith("\n") else line + "\n" for line in out)

    def to_json(self) -> dict[str, Any]:
        return {"agent": str(self.agent.folder), "model": self.spec.model, "events": self.events,
                "operations": self.operations, "summary": self.summary,
                "usage": {"prompt_tokens": self.prompt_tokens,
                          "completion_tokens": self.completion_tokens,
                          "cost": round(self.cost, 8), "calls": self.calls},
                "warnings": self.warnings, "diff": self.diff()}


# -- reading the model's output --------------------------------------------------------------
def parse_output(text: str) -> tuple[list[dict[str, Any]], str]:
    """The operations in a model reply; Refusal when it is not exactly the JSON we asked for."""
    if len(text) > MAX_OUTPUT_CHARS:
        raise Refusal(f"the model's output is {len(text):,} characters, over the cap of "
                      f"{MAX_OUTPUT_CHARS:,} for one reply")
    body = text.strip()
    if not body:
        raise Refusal("the model's output was empty")
    fence = re.fullmatch(r"```(?:json)?\s*\n(.*)\n```", body, re.S)
    if fence:
        body = fence.group(1).strip()
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise Refusal(f"the model's output is not valid JSON ({exc})") from None
    except RecursionError:      # the JSON parser recurses once per level of [ or {
        raise Refusal("the model's output is not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict) or not isinstance(data.get("operations"), list):
        raise Refusal('the model\'s output must be an object with an "operations" list')
    if _has_surrogate(list(data)) or _has_surrogate(data.get("summary")):
        raise Refusal(_SURROGATE.format(where="the model's output"))
    extra = set(data) - {"operations", "summary"}
    if extra:
        raise Refusal(f"unexpected keys in the model's output: {', '.join(sorted(extra))}")
    summary = data.get("summary", "")
    if not isinstance(summary, str):
        raise Refusal("summary must be text")
    for n, op in enumerate(data["operations"], 1):
        if isinstance(op, dict):      # a model that wrote \r\n in its JSON strings meant \n
            op.update({k: v.replace("\r\n", "\n") for k, v in op.items()
                       if k in ("title", "body", "text") and isinstance(v, str)})
        check_operation(op, n)
    return data["operations"], one_line(summary)


def check_operation(op: Any, n: int) -> None:
    if not isinstance(op, dict):
        raise Refusal(f"operation {n} is not an object")
    if _has_surrogate(op):
        raise Refusal(_SURROGATE.format(where=f"operation {n}"))
    kind = op.get("op")
    if kind not in OPS:
        raise Refusal(f"operation {n}: unknown op {_clip(repr(kind))} (allowed: {', '.join(OPS)})")
    where = f"operation {n} ({kind})"
    allowed = COMMON | set(FIELDS[kind]) | OPTIONAL.get(kind, set())
    extra = set(op) - allowed
    if extra:
        raise Refusal(f"{where}: unexpected field(s) {', '.join(sorted(extra))}")
    for key, kind_type in FIELDS[kind].items():
        value = op.get(key)
        if not isinstance(value, kind_type) or (isinstance(value, str) and not value.strip()):
            raise Refusal(f"{where}: '{key}' is missing or empty")
    if not isinstance(op.get("rationale"), str) or not op["rationale"].strip():
        raise Refusal(f"{where}: every operation needs a rationale")
    evidence = op.get("evidence")
    if (not isinstance(evidence, list) or not evidence
            or not all(isinstance(e, str) and re.fullmatch(r"e\d+", e) for e in evidence)):
        raise Refusal(f"{where}: evidence must be a non-empty list of event ids like \"e12\"")
    if "title" in op and (not isinstance(op["title"], str) or not op["title"].strip()
                          or len(op["title"].strip().splitlines()) > 1):
        raise Refusal(f"{where}: title must be one non-empty line")
    if kind == "merge" and (len(op["ids"]) < 2 or not all(isinstance(i, str) for i in op["ids"])
                            or len(set(op["ids"])) != len(op["ids"])):
        raise Refusal(f"{where}: merge needs two or more distinct lesson ids")
    if kind == "counter":
        for key in ("helpful", "harmful"):
            value = op.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10:
                raise Refusal(f"{where}: {key} must be a whole number from 0 to 10")
        if not op.get("helpful") and not op.get("harmful"):
            raise Refusal(f"{where}: a counter operation must change a counter")
    if kind == "persona_warning" and len(op["text"].strip().splitlines()) > 1:
        raise Refusal(f"{where}: a warning is one line")
    for key, cap in (("title", MAX_TITLE_CHARS), ("text", MAX_WARNING_CHARS),
                     ("rationale", MAX_RATIONALE_CHARS)):
        if key in op and len(op[key].strip()) > cap:
            raise Refusal(f"{where}: {key} is {len(op[key].strip()):,} characters, over the cap "
                          f"of {cap:,}")
    for key in ("title", "body", "text", "rationale"):
        if key in op and ("<!--" in op[key] or "-->" in op[key]):
            raise Refusal(f"{where}: {key} may not contain HTML comments (metadata, pins)")
    if "body" in op and any(c in op["body"] for c in LINE_BREAKS):
        raise Refusal(f"{where}: a lesson body breaks lines with \\n only (no \\r, form "
                      "feeds or Unicode line separators)")
    lines = {key: op[key].split("\n") for key in ("body", "text") if key in op}
    if any(re.match(r"#{1,2}\s", line) for line in lines.get("body", [])):
        raise Refusal(f"{where}: a lesson body may not contain # or ## headings")
    for key, text in lines.items():
        if sum(bool(re.match(r"\s*(```|~~~)", line)) for line in text) % 2:
            raise Refusal(f"{where}: {key} opens a code block it never closes")


_SURROGATE = ("{where} holds a lone surrogate (a \\ud800-\\udfff escape that is no character), "
              "which cannot be written as UTF-8")
_SURROGATES = re.compile("[\ud800-\udfff]")


def _has_surrogate(value: Any) -> bool:
    """Whether any text in a parsed JSON value (keys too) holds a lone surrogate. Iterative:
    a value may be nested as deep as the JSON parser allows."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATES.search(item):
                return True
        elif isinstance(item, dict):
            todo += item
            todo += item.values()
        elif isinstance(item, list):
            todo += item
    return False


# -- applying operations, deterministically --------------------------------------------------
def apply_operations(before: dict[str, str | None], operations: list[dict[str, Any]],
                     known_events: set[str], today: str | None = None,
                     used_ids: set[str] | frozenset[str] = frozenset()) -> dict[str, str | None]:
    """The memory texts after the operations. Pure: same input, same output."""
    today = today or datetime.now(UTC).strftime("%Y-%m-%d")
    doc, problems = lessons_fmt.parse(before.get("lessons.md") or "")
    if doc is None:
        raise InvalidAgent(problems)
    archive, problems = lessons_fmt.parse(before.get(ARCHIVE) or BLANK_ARCHIVE, ARCHIVE)
    if archive is None:
        raise InvalidAgent(problems)

    def reserved() -> set[str]:        # archived ids stay taken; the archive grows as we go
        return _reserved_ids(archive, used_ids)

    doc = doc.with_ids(reserved())
    persona_text = before.get("persona.md") or ""

    def lesson(lesson_id: str, where: str) -> Lesson:
        found = doc.get(lesson_id)
        if found is None:
            raise Refusal(f"{where}: lesson {_clip(lesson_id)} does not exist")
        if found.pinned:
            raise Refusal(f"{where}: lesson {lesson_id} is pinned (human-owned)")
        return found

    def archive_copy(old: Lesson, note: str, evidence: list[str]) -> None:
        body = old.body.rstrip() + f"{RETIRED_NOTE}{today}: {one_line(note)}_"
        archive.append(old.changed(body=body, id=_archive_id(archive, old.id or ""),
                                   evidence=_union(old.evidence, evidence)))

    def retire(old: Lesson, note: str, evidence: list[str]) -> None:
        doc.replace(old.id or "", None)
        archive_copy(old, note, evidence)

    for n, op in enumerate(operations, 1):
        kind = op["op"]
        where = f"operation {n} ({kind})"
        unknown = [e for e in op["evidence"] if e not in known_events]
        if unknown:
            raise Refusal(f"{where}: evidence {', '.join(unknown)} is not among the log events "
                          "this pass read")
        evidence = list(op["evidence"])
        if kind == "add":
            doc.append(Lesson(title=op["title"].strip(), body=op["body"].strip(),
                              id=doc.next_id(reserved()),
                              evidence=evidence, raw=None))
        elif kind == "update":
            old = lesson(op["id"], where)
            doc.replace(old.id or "", old.changed(
                title=(op.get("title") or old.title).strip(), body=op["body"].strip(),
                evidence=_union(old.evidence, evidence)))
        elif kind == "merge":
            parts = [lesson(i, where) for i in op["ids"]]
            merged = parts[0].changed(
                title=op["title"].strip(), body=op["body"].strip(),
                evidence=_union(*(p.evidence for p in parts), evidence),
                helpful=sum(p.helpful for p in parts), harmful=sum(p.harmful for p in parts))
            # every original goes to the archive, the first too: its id lives on as the merge
            archive_copy(parts[0], f"merged into {parts[0].id} (this is its text before the "
                                   f"merge). {op['rationale']}", evidence)
            for other in parts[1:]:
                retire(other, f"merged into {parts[0].id}. {op['rationale']}", evidence)
            doc.replace(parts[0].id or "", merged)
        elif kind == "retire":
            retire(lesson(op["id"], where), op["rationale"].strip(), evidence)
        elif kind == "counter":
            old = lesson(op["id"], where)
            doc.replace(old.id or "", old.changed(
                helpful=old.helpful + op.get("helpful", 0), harmful=old.harmful + op.get("harmful", 0),
                evidence=_union(old.evidence, evidence)))
        elif kind == "persona_warning":
            persona_text = _add_warning(persona_text, op["text"].strip())
    after = dict(before)
    after["lessons.md"] = doc.render()
    after["persona.md"] = persona_text
    if archive.lessons:
        after[ARCHIVE] = archive.render()
    return after


MAX_EVIDENCE = 12   # ids kept on a lesson (newest); older ones stay in the history


def _union(*lists: list[str]) -> list[str]:
    ids = list(dict.fromkeys(e for items in lists for e in items))
    if len(ids) <= MAX_EVIDENCE:
        return ids
    return sorted(sorted(ids, key=lambda e: event_number(e) or 0)[-MAX_EVIDENCE:], key=ids.index)


def _archive_id(archive: LessonsDoc, lesson_id: str) -> str:
    if archive.get(lesson_id) is None:
        return lesson_id
    n = 2
    while archive.get(f"{lesson_id}-{n}") is not None:
        n += 1
    return f"{lesson_id}-{n}"


def _add_warning(persona_text: str, text: str) -> str:
    parts = persona_fmt.split(persona_text)
    if parts is None:
        raise Refusal("persona.md has no front matter")
    front, body, _ = parts
    line = f"- {text}\n"
    if any(existing.strip() == line.strip() for existing in body.splitlines()):
        return persona_text
    lines = body.splitlines(keepends=True)
    heading = next((i for i, x in enumerate(lines) if x.strip() == WARNINGS_HEADING), None)
    if heading is None:
        body = body.rstrip("\n") + f"\n\n{WARNINGS_HEADING}\n\n{line}"
    else:
        end = next((i for i in range(heading + 1, len(lines)) if lines[i].startswith("#")),
                   len(lines))
        while end > heading + 1 and not lines[end - 1].strip():
            end -= 1
        if lines and not lines[end - 1].endswith("\n"):
            lines[end - 1] += "\n"
        lines.insert(end, line)
        body = "".join(lines)
    return f"---\n{front}---\n{body}"


def _check_lessons_kept(before: dict[str, str | None], after: dict[str, str | None],
                        operations: list[dict[str, Any]]) -> None:
    """Every lesson is still there unless an operation retired or merged it away."""
    old, _ = lessons_fmt.parse(before.get("lessons.md") or "")
    new, _ = lessons_fmt.parse(after.get("lessons.md") or "")
    if old is None or new is None:
        return
    gone = {op["id"] for op in operations if op["op"] == "retire"}
    gone |= {i for op in operations if op["op"] == "merge" for i in op["ids"][1:]}
    added = sum(op["op"] == "add" for op in operations)
    ids_after = {x.id for x in new.lessons}
    missing = sorted(x.id for x in old.lessons if x.id and x.id not in gone and x.id not in ids_after)
    if missing or len(new.lessons) != len(old.lessons) - len(gone) + added:
        raise Refusal("the result would lose lessons no operation retired "
                      f"({', '.join(missing) or 'a lesson without an id'})")


def unarchived_loss(before: dict[str, str | None], after: dict[str, str | None],
                    used_ids: set[str] | frozenset[str] = frozenset()) -> tuple[int, int]:
    """(words lost, words before) over the unpinned lessons that were there before, each on
    its own, so that text added elsewhere cannot hide text taken away. A lesson this pass
    archived (retired, or merged: its text before the merge) keeps what that copy holds, and
    only that; any other keeps what its new text holds (an update at the same length cuts
    nothing). Lessons without an id are given the ids apply_operations gives them (the same
    `used_ids`), so a pass that retires one is credited with its archived copy."""
    old, _ = lessons_fmt.parse(before.get("lessons.md") or "")
    new, _ = lessons_fmt.parse(after.get("lessons.md") or "")
    was, _ = lessons_fmt.parse(before.get(ARCHIVE) or BLANK_ARCHIVE, ARCHIVE)
    now, _ = lessons_fmt.parse(after.get(ARCHIVE) or BLANK_ARCHIVE, ARCHIVE)
    if old is None or new is None or was is None or now is None:
        return 0, 0               # validate() refuses such a result
    old = old.with_ids(_reserved_ids(was, used_ids))
    ids = {x.id for x in old.lessons}

    def words(lesson: Lesson | None, archived: bool = False) -> int:
        if lesson is None:
            return 0
        body = lesson.body.rsplit(RETIRED_NOTE, 1)[0] if archived else lesson.body
        return len(f"{lesson.title} {body}".split())

    titles = {x.id: x.title for x in old.lessons}
    copies: dict[str, int] = {}        # the first copy this pass archived of each lesson, by id
    for copy in now.lessons[len(was.lessons):]:
        key = copy.id or ""
        base = re.sub(r"-\d+$", "", key)       # L3-2: a later archived copy of L3
        if base != key and base in ids and (key not in ids or copy.title == titles[base]):
            key = base                          # (a lesson of a person's may be named L3-2)
        # the first copy only: a later one, of a lesson cut in between, is no credit
        copies.setdefault(key, words(copy, archived=True))
    lost = total = 0
    for lesson in old.lessons:
        if lesson.pinned:              # guarded whole by the pin checks
            continue
        had = words(lesson)
        total += had
        left = copies[lesson.id] if lesson.id in copies else words(new.get(lesson.id or ""))
        lost += max(0, had - left)
    return lost, total


def _reserved_ids(archive: LessonsDoc, used_ids: set[str] | frozenset[str]) -> set[str]:
    """Ids a new lesson may not take: archived ones (L3-2 reserves L3) and every id used before."""
    return {(x.id or "").split("-")[0] for x in archive.lessons} | set(used_ids)


def check_result(before: dict[str, str | None], after: dict[str, str | None],
                 max_shrink: float, operations: list[dict[str, Any]] | None = None,
                 used_ids: set[str] | frozenset[str] = frozenset()) -> None:
    """Guards on the whole result, whatever the operations were (`used_ids` as given to
    apply_operations)."""
    guard_agent_edit(before, after, allow_archive=True)
    if operations is not None:
        _check_lessons_kept(before, after, operations)
    if before.get(ARCHIVE) != after.get(ARCHIVE) and \
            not pins_preserved(before.get(ARCHIVE) or "", after.get(ARCHIVE) or ""):
        raise Refusal("archive.md: pinned text changed")
    old_archive = before.get(ARCHIVE) or ""
    if old_archive and not (after.get(ARCHIVE) or "").startswith(old_archive.rstrip("\n")):
        raise Refusal("archive.md may only grow: a pass cannot change what was archived")
    memory, problems = validate(after)
    if problems or memory is None:
        raise Refusal("the result would not be a valid agent: " + "; ".join(map(str, problems)))
    _check_growth(before, after, memory.persona.budgets, used_ids)
    lost, words = unarchived_loss(before, after, used_ids)
    if words and lost > max_shrink * words:
        raise Refusal(f"the pass would cut {lost} of the lessons' {words} words ({lost / words:.0%}"
                      f", more than max_shrink {max_shrink:.0%}) without archiving them")


def lesson_cap(budget: int) -> int:
    """The most tokens one lesson (title and body) a pass writes may take, for a lessons budget."""
    return max(LESSON_MIN_TOKENS, budget // LESSON_SHARE)


def _check_growth(before: dict[str, str | None], after: dict[str, str | None],
                  budgets: dict[str, int], used_ids: set[str] | frozenset[str]) -> None:
    """The size caps: each lesson the pass wrote, the lessons it added, how far lessons.md and
    persona.md grew against their budgets, and how far archive.md grew against what the pass
    archived. Text the pass found is never held against it (a person's long lesson may still be
    counted, merged away or retired)."""
    old, _ = lessons_fmt.parse(before.get("lessons.md") or "")
    new, _ = lessons_fmt.parse(after.get("lessons.md") or "")
    was, _ = lessons_fmt.parse(before.get(ARCHIVE) or BLANK_ARCHIVE, ARCHIVE)
    now, _ = lessons_fmt.parse(after.get(ARCHIVE) or BLANK_ARCHIVE, ARCHIVE)
    if old is None or new is None or was is None or now is None:
        return                      # validate() refuses such a result
    budget = budgets["lessons"]
    cap = lesson_cap(budget)
    found = {x.text for x in old.lessons}
    for lesson in new.lessons:
        tokens = estimate(lesson.text)
        if tokens > cap and lesson.text not in found:
            raise Refusal(f"lesson {lesson.id} (\"{_clip(lesson.title)}\") would be ~{tokens:,} "
                          f"tokens, over the cap of {cap:,} tokens for one lesson (1/{LESSON_SHARE}"
                          f" of the {budget:,}-token lessons budget, at least {LESSON_MIN_TOKENS})")
    ids = {x.id for x in old.with_ids(_reserved_ids(was, used_ids)).lessons}
    added = sum(x.id not in ids for x in new.lessons)
    if added > MAX_NEW_LESSONS:
        raise Refusal(f"the pass would add {added} lessons, over the cap of {MAX_NEW_LESSONS} new "
                      "lessons per pass")

    def body(persona: str | None) -> str:
        parts = persona_fmt.split(persona or "")
        return parts[1] if parts else ""

    for name, budget_key, was_tokens, now_tokens in (
            ("lessons.md", "lessons", estimate(before.get("lessons.md") or ""),
             estimate(after.get("lessons.md") or "")),
            ("persona.md's body", "persona", estimate(body(before.get("persona.md"))),
             estimate(body(after.get("persona.md"))))):
        limit = max(GROWTH_FACTOR * budgets[budget_key],
                    was_tokens + int(GROWTH_MARGIN * budgets[budget_key]))
        if now_tokens > max(was_tokens, limit):
            raise Refusal(f"{name} would grow from ~{was_tokens:,} to ~{now_tokens:,} tokens, over "
                          f"this pass's cap of ~{limit:,} ({GROWTH_FACTOR}x its "
                          f"{budgets[budget_key]:,}-token budget, or {GROWTH_MARGIN:.0%} of it more "
                          "than before, whichever is larger)")
    copies = now.lessons[len(was.lessons):]
    texts = (f"{x.title}\n{x.body.rsplit(RETIRED_NOTE, 1)[0].strip()}" for x in copies)
    allowed = sum(ARCHIVE_NOTE_CHARS + (len(text) if text in found else cap * 4) for text in texts)
    grew = len(after.get(ARCHIVE) or "") - len(before.get(ARCHIVE) or "")
    if grew > allowed:
        raise Refusal(f"archive.md would grow by {grew:,} characters, over this pass's cap of "
                      f"{allowed:,} for the {len(copies)} lesson(s) it archives (each as the "
                      f"pass found it, or at most one lesson's {cap * 4:,} characters, and "
                      f"{ARCHIVE_NOTE_CHARS:,} for its note)")


def _clip(text: str, limit: int = 60) -> str:
    text = one_line(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


# -- one pass --------------------------------------------------------------------------------
def render_lessons(doc: LessonsDoc) -> str:
    rows = []
    for lesson in doc.lessons:
        flags = "pinned" if lesson.pinned else f"helpful {lesson.helpful}, harmful {lesson.harmful}"
        rows.append(f"[{lesson.id}] ({flags}) {lesson.title}\n{lesson.body.strip()}")
    return "\n\n".join(rows) or "(no lessons yet)"


def render_event(event: dict[str, Any]) -> str:
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


SKIP_KINDS = {"session_start", "session_end", "sleep"}   # bookkeeping, nothing to learn


def chunk_events(lines: list[str], limit: int) -> list[list[str]]:
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


@dataclass
class Plan:
    """What a pass would send, before sending it: for estimates and caps."""

    chunks: list[list[str]]
    events: list[dict[str, Any]]
    cursor: Cursor
    prompt_tokens: int
    over_budget: bool
    warnings: list[str]
    texts: dict[str, str | None]     # the memory files the plan was made from
    memory: Any

    @property
    def output_tokens(self) -> int:
        return OUTPUT_TOKENS * len(self.chunks)


def plan(agent: Agent, spec: ModelSpec) -> Plan:
    if (agent.state_dir / INTENT).exists():
        agent.record_hand_edits()       # settle an interrupted write first: the pass builds on
    texts = agent.read_texts()          # what it leaves (a half-done one is put back)
    memory, problems = validate(texts)
    if memory is None:
        raise InvalidAgent(problems)
    read = agent.journal.read(agent.sleep_cursor())
    events = [e for e in read.events if e.get("kind") not in SKIP_KINDS]
    lines = [render_event(e) for e in events]
    budgets = memory.persona.budgets
    lessons_tokens = estimate(memory.texts["lessons.md"])
    over = lessons_tokens > budgets["lessons"]
    fixed = estimate(prompts.SLEEP_SYSTEM) + estimate(memory.persona.body) + lessons_tokens + 200
    window = memory.persona.settings.get("context_window") or llm.context_window(spec.model)
    limit = max(1000, window - fixed - OUTPUT_TOKENS)
    chunks = chunk_events(lines, limit) if lines else ([[]] if over else [])
    prompt_tokens = sum(fixed + sum(estimate(x) + 1 for x in chunk) for chunk in chunks)
    return Plan(chunks, events, read.end, prompt_tokens, over, list(read.warnings), texts, memory)


def estimate_cost(spec: ModelSpec, p: Plan) -> float | None:
    prices = llm.price(spec.model)
    if prices is None:
        return None
    return p.prompt_tokens * prices[0] + p.output_tokens * prices[1]


def propose(agent: Agent, spec: ModelSpec, *, max_cost: float | None = None,
            max_tokens: int | None = None, on_retry: Callable[[ModelError, float], None] | None = None,
            ) -> Proposal | None:
    """Ask the sleep model for operations. None when there is nothing to do."""
    p = plan(agent, spec)
    if not p.chunks:
        return None
    if max_tokens is not None and p.prompt_tokens + p.output_tokens > max_tokens:
        raise Refused(f"this pass would use up to ~{p.prompt_tokens + p.output_tokens} tokens "
                      f"({len(p.events)} new events), over --max-tokens {max_tokens}",
                      "raise the cap, or sleep more often")
    if max_cost is not None:
        cost = estimate_cost(spec, p)
        if cost is None:
            raise Refused(f"no price is known for {spec.model}, so --max-cost cannot be checked",
                          "drop --max-cost, or use --max-tokens")
        if cost > max_cost:
            raise Refused(f"this pass would cost up to ~${cost:.4f}, over --max-cost {max_cost}",
                          "raise the cap, or use a cheaper sleep model (--model)")
    memory = p.memory                   # the files as planned: a later change is caught at apply
    before: dict[str, str | None] = dict(p.texts)
    current = before
    known = {str(e["id"]) for e in p.events}
    for lesson in memory.lessons.lessons:
        known.update(lesson.evidence)
    max_shrink = float((memory.persona.settings.get("sleep") or {}).get("max_shrink",
                                                                        DEFAULT_MAX_SHRINK))
    proposal = Proposal(agent, spec, [], before, before, p.cursor, len(p.events),
                        warnings=p.warnings, max_shrink=max_shrink)
    summaries = []
    used_ids = agent.used_lesson_ids()
    for n, chunk in enumerate(p.chunks, 1):
        messages = sleep_messages(current, chunk, n, len(p.chunks), used_ids)
        try:
            reply = llm.complete(spec, messages, max_tokens=OUTPUT_TOKENS, temperature=0,
                                 on_retry=on_retry)
        except ModelError as exc:
            raise ModelError(f"sleep pass stopped, nothing was changed: {exc.message}", exc.hint,
                             retryable=exc.retryable, kind=exc.kind) from None
        proposal.calls += 1
        proposal.prompt_tokens += reply.prompt_tokens
        proposal.completion_tokens += reply.completion_tokens
        proposal.cost += reply.cost
        proposal.raw.append(reply.text)
        try:
            if reply.finish_reason == "length":
                raise Refusal("the model's output was cut off at its token limit (truncated)")
            if reply.tool_calls:
                raise Refusal("the model called a tool instead of answering with operations")
            operations, summary = parse_output(reply.text)
            if not operations:          # nothing proposed: nothing to apply or to check
                if summary:
                    summaries.append(summary)
                continue
            result = apply_operations(current, operations, known, used_ids=used_ids)
            check_result(current, result, max_shrink, operations, used_ids)
            if current is not before:         # a later chunk: guard the whole pass too
                check_result(before, result, max_shrink, used_ids=used_ids)
            current = result
        except (Refusal, InvalidAgent) as exc:
            path = keep_refused(agent, proposal, str(exc))
            raise Refused(f"sleep pass refused, nothing was changed: {exc}",
                          f"the model's raw output is in {path}") from None
        proposal.operations += operations
        if summary:
            summaries.append(summary)
    proposal.after = current
    proposal.summary = " ".join(summaries)
    proposal.warnings += budget_warnings(current)
    return proposal


def budget_warnings(texts: dict[str, str | None]) -> list[str]:
    """What is still over its token budget after a pass (never cut silently: people decide)."""
    memory, _ = validate(texts)          # memoised, and checked by the pass already
    if memory is None:
        return []
    budgets, out = memory.persona.budgets, []
    if estimate(memory.texts["lessons.md"]) > budgets["lessons"]:
        out.append(f"lessons.md is still over its {budgets['lessons']}-token budget after this "
                   "pass; merge or retire lessons by hand, or raise the budget in persona.md")
    if estimate(memory.persona.body) > budgets["persona"]:
        out.append(f"persona.md is over its {budgets['persona']}-token budget (a sleep pass only "
                   "adds warnings to it); shorten it by hand, or raise the budget")
    return out


def sleep_messages(texts: dict[str, str | None], chunk: list[str], part: int, parts: int,
                   used_ids: set[str] | frozenset[str] = frozenset()) -> list[dict[str, str]]:
    """The sleep model's messages. Lessons without an id are shown with the ids the pass will
    give them (apply_operations, with the same `used_ids`), so an operation names the lesson
    the model saw."""
    memory, _ = validate(texts)          # memoised: the pass checked these texts already
    body = memory.persona.body if memory else ""
    doc = memory.lessons.with_ids(_reserved_ids(memory.archive or LessonsDoc([]), used_ids)) \
        if memory else None
    budget = (memory.persona.budgets if memory else persona_fmt.DEFAULT_BUDGETS)["lessons"]
    tokens = estimate(texts.get("lessons.md") or "")
    note = prompts.SLEEP_OVER_BUDGET.format(tokens=tokens, budget=budget) if tokens > budget else ""
    user = prompts.SLEEP_USER.format(
        persona=body.strip(), lessons=render_lessons(doc) if doc else "",
        count=len(chunk), part=part, parts=parts,
        events="\n".join(chunk) or "(none)", budget_note=note)
    return [{"role": "system", "content": prompts.SLEEP_SYSTEM}, {"role": "user", "content": user}]


def keep_refused(agent: Agent, proposal: Proposal, reason: str) -> str:
    """Keep a refused pass's raw output for inspection, its secrets redacted: a pass is refused
    for putting a key in memory, and the key must not stay on disk here either."""
    folder = agent.state_dir / "sleep"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"refused-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}.json"
    outputs = [raw if len(raw) <= MAX_OUTPUT_CHARS else
               raw[:MAX_OUTPUT_CHARS] + f"\n[... {len(raw) - MAX_OUTPUT_CHARS} more characters not kept]"
               for raw in proposal.raw]      # what is kept of a runaway reply is bounded too
    kept = redact_obj({"reason": reason, "model": proposal.spec.model, "outputs": outputs})
    atomic_write(path, json.dumps(kept, indent=2) + "\n")
    return str(path)


def describe(op: dict[str, Any]) -> str:
    """One line for an operation (review, commit message, log): the model's text in it is
    collapsed to one line, so it cannot add lines (trailers) to a version's message."""
    kind = op["op"]
    target = op.get("id") or ", ".join(op.get("ids", [])) or op.get("title") or op.get("text", "")
    if kind == "add":
        target = f"\"{op['title']}\""
    elif kind == "persona_warning":
        target = f"\"{op['text']}\""
    return one_line(f"{kind} {target}: {op['rationale']} [{' '.join(op['evidence'])}]")


def apply(proposal: Proposal, selected: list[int] | None = None) -> Version | None:
    """Write the proposal (or the selected operations) as ONE `sleep` version, then move the
    cursor. Refused when memory changed since the proposal was made."""
    agent = proposal.agent
    operations = proposal.operations if selected is None else [
        proposal.operations[i] for i in selected]
    known = {str(e) for op in proposal.operations for e in op["evidence"]}
    after = proposal.after
    if selected is not None:      # a reviewed subset passes every guard a whole pass does
        try:
            used_ids = agent.used_lesson_ids()
            after = apply_operations(proposal.before, operations, known, used_ids=used_ids)
            check_result(proposal.before, after, proposal.max_shrink, operations, used_ids)
        except (Refusal, InvalidAgent) as exc:
            raise Refused(f"the chosen operations cannot be applied on their own: {exc}",
                          "choose again, or apply all") from None
    changes = {k: v for k, v in after.items() if proposal.before.get(k) != v}

    def compute(texts: dict[str, str | None]) -> dict[str, str | None]:
        if {k: texts.get(k) for k in proposal.before} != proposal.before:
            raise Conflict("memory changed while the sleep proposal was being reviewed; nothing "
                           "was written", "run agentmem sleep again")
        return changes

    declined = len(proposal.operations) - len(operations)
    if declined:       # the model's summary may describe what was declined: not the subject
        subject = (f"Sleep: {len(operations)} of {len(proposal.operations)} proposed "
                   f"operation(s), chosen in review, from {proposal.events} new events")
    else:
        subject = proposal.summary or (f"Sleep: {len(operations)} operation(s) from "
                                       f"{proposal.events} new events")
    lines = [subject, "", *(f"- {describe(op)}" for op in operations)]
    if declined:
        lines.append(f"({declined} proposed operation(s) were declined in review; the model "
                     f"said: {proposal.summary})" if proposal.summary else
                     f"({declined} proposed operation(s) were declined in review)")

    def done(version: Version | None) -> dict[str, Any]:
        return {"sleep_cursor": proposal.cursor.to_json(), "pending_sleep_cursor": None,
                "last_sleep": {"time": datetime.now(UTC).isoformat(timespec="seconds"),
                               "version": version.number if version else None,
                               "operations": len(operations)}}

    with agent.locked():    # one lock for the pass's writes (each takes it again, cheaply)
        version = None
        if changes:
            cursor = proposal.cursor
            lines += ["", f"{CURSOR_TRAILER}: {cursor.event} {cursor.offset}"]
            # the cursor moves with the version: named in the write's intent, and written to
            # state.json in the one write that follows the version (see Agent.update)
            version = agent.update(compute, "sleep", "\n".join(lines), state=done)
        else:
            agent.update_state(**done(None))
        agent.journal.append({"kind": "sleep", "version": version.number if version else None,
                              "operations": [describe(op) for op in operations],
                              "events": proposal.events, "model": proposal.spec.model,
                              "usage": {"prompt_tokens": proposal.prompt_tokens,
                                        "completion_tokens": proposal.completion_tokens,
                                        "cost": round(proposal.cost, 8)}})
    return version


@dataclass
class PassResult:
    agent: Agent
    ok: bool
    message: str
    version: Version | None = None
    proposal: Proposal | None = None


def sleep_lock(agent: Agent) -> FileLock:
    return FileLock(str(agent.state_dir / "sleep.lock"), timeout=0)


def run_pass(agent: Agent, spec: ModelSpec, *, apply_it: bool = True, max_cost: float | None = None,
             max_tokens: int | None = None) -> PassResult:
    """Propose and (unless apply_it is False) apply one pass; errors become a failed result."""
    lock = sleep_lock(agent)
    try:
        lock.acquire()
    except LockTimeout:
        return PassResult(agent, False, "a sleep pass is already running for this agent")
    try:
        proposal = propose(agent, spec, max_cost=max_cost, max_tokens=max_tokens)
        if proposal is None:
            return PassResult(agent, True, "nothing new since the last sleep")
        if not apply_it:
            return PassResult(agent, True, f"{len(proposal.operations)} operation(s) proposed",
                              proposal=proposal)
        version = apply(proposal)
        what = f"version {version.number}" if version else "no change"
        return PassResult(agent, True, f"{len(proposal.operations)} operation(s), {what}, "
                          f"{proposal.prompt_tokens}+{proposal.completion_tokens} tokens, "
                          f"${proposal.cost:.4f}", version=version, proposal=proposal)
    except AgentmemError as exc:
        return PassResult(agent, False, exc.message + (f" ({exc.hint})" if exc.hint else ""))
    finally:
        lock.release()


# -- many agents -----------------------------------------------------------------------------
def sleep_one(folder: str, model: str | None, apply_it: bool, max_cost: float | None,
              max_tokens: int | None, with_proposal: bool = True) -> dict[str, Any]:
    """One agent's pass as a plain summary (it may cross a process boundary); its proposal
    (operations, usage, diff) too, unless with_proposal=False."""
    from agentmem import models

    summary: dict[str, Any] = {"agent": folder, "ok": False, "message": "", "version": None,
                               "proposal": None, "warnings": []}
    try:
        agent = Agent.open(folder)
        spec = models.resolve(model, agent.load().persona.settings, sleep=True)
        models.check_key(spec)
        result = run_pass(agent, spec, apply_it=apply_it, max_cost=max_cost,
                          max_tokens=max_tokens)
    except AgentmemError as exc:
        summary["message"] = exc.message
        return summary
    except Exception as exc:  # noqa: BLE001 - one agent's failure must not stop the others
        summary["message"] = f"{type(exc).__name__}: {exc}"
        return summary
    summary.update(agent=str(agent.folder), ok=result.ok, message=result.message,
                   warnings=list(result.proposal.warnings) if result.proposal else [],
                   version=result.version.number if result.version else None,
                   proposal=result.proposal.to_json() if result.proposal and with_proposal
                   else None)
    return summary


_progress: Any = None     # in a worker process: the queue of results back to the parent
_todo: Any = None         # ... and the queue of agent folders to sleep (see run_many)


def _init_worker(progress: Any, todo: Any) -> None:
    global _progress, _todo
    _progress, _todo = progress, todo


def _threaded(jobs: int, options: dict[str, Any]) -> int:
    """A worker process: threads take folders from the shared queue until a None; at most
    `jobs` of them wait on the model at once (see _passes)."""
    def take(run: Callable[[str], dict[str, Any]]) -> int:
        done = 0
        while (folder := _todo.get()) is not None:
            _progress.put(run(folder))
            done += 1
        return done

    return sum(_passes(jobs, options, take, threads=_threads_for(jobs)))


def _threads_for(jobs: int) -> int:
    """A few threads more than model slots: while `jobs` threads wait on the model, the others
    read and write agents around their calls (one computes at a time, the rest wait on the
    disk), so a slot never waits for a pass's disk work. More would only add hand-offs."""
    return jobs + 4


def _passes(jobs: int, options: dict[str, Any], body: Callable[[Callable[[str], dict[str, Any]]], Any],
            threads: int) -> list[Any]:
    """Run `body(run)` on `threads` threads, where run(folder) sleeps one agent: one pass
    computes at a time (agentmem.baton), and at most `jobs` wait on the model at once."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    computing, slots = threading.Lock(), threading.Semaphore(jobs)

    def run(folder: str) -> dict[str, Any]:
        with baton.holding(computing, slots):
            return sleep_one(folder, **options)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda _: body(run), range(threads)))


def run_many(folders: list[str], *, jobs: int, on_result: Callable[[dict[str, Any]], None],
             processes: int | None = None, **options: Any) -> list[dict[str, Any]]:
    """Sleep many agents, with at most `jobs` waiting on the model at once. Threads wait on the
    model; past a few dozen agents the work is spread over one process per core too, since
    parsing, checking and writing need CPU that one Python process (one GIL) cannot give."""
    import gc
    import multiprocessing
    import os
    import queue as queue_mod
    import threading
    from concurrent.futures import ProcessPoolExecutor

    if not folders:
        return []
    if processes is None:
        processes = os.cpu_count() or 1
    processes = max(1, min(processes, jobs, max(1, len(folders) // 50)))
    results: list[dict[str, Any]] = []
    if processes <= 1:
        waiting: queue_mod.SimpleQueue[str] = queue_mod.SimpleQueue()
        lock = threading.Lock()
        for folder in folders:
            waiting.put(folder)

        def take(run: Callable[[str], dict[str, Any]]) -> None:
            while True:
                try:
                    folder = waiting.get_nowait()
                except queue_mod.Empty:
                    return
                summary = run(folder)
                with lock:
                    results.append(summary)
                    on_result(summary)

        _passes(jobs, options, take, threads=min(len(folders), _threads_for(jobs)))
        return results
    threads = [jobs // processes + (i < jobs % processes) for i in range(processes)]
    stops = sum(_threads_for(n) for n in threads)      # one None per worker thread
    context = multiprocessing.get_context("fork")
    # litellm is imported once, here, for all the workers: each would otherwise pay its import
    # (seconds of CPU, ~100 MB) at its first model call. Importing starts no thread.
    llm.litellm()
    # the workers share this process's memory (litellm alone is ~100 MB of objects) until they
    # write to it; the cyclic GC would walk, and so copy, all of it in every worker. No model
    # call may happen in this process before the fork: litellm logs calls on background
    # threads, and a fork while one of them holds an import lock leaves the workers hung.
    gc.freeze()
    try:
        done, todo = context.Queue(), context.Queue()
        with ProcessPoolExecutor(max_workers=processes, mp_context=context,
                                 initializer=_init_worker, initargs=(done, todo)) as spread:
            workers = [spread.submit(_threaded, n, options) for n in threads]
            # filled once the workers exist (its feeder thread starts after the fork); folders
            # are taken as threads free up, so no worker idles while another has a backlog
            for folder in folders:
                todo.put(folder)
            for _ in range(stops):
                todo.put(None)                   # one stop for each worker thread
            try:
                while len(results) < len(folders):
                    try:
                        summary = done.get(timeout=0.5)
                    except queue_mod.Empty:
                        failed = [w for w in workers if w.done() and w.exception() is not None]
                        if failed:
                            failed[0].result()       # re-raises the worker's error
                        continue
                    results.append(summary)
                    on_result(summary)
                for worker in workers:
                    worker.result()
            except BaseException:
                _abandon(todo, done, workers, stops)
                raise
    finally:
        gc.unfreeze()
    return results


def _abandon(todo: Any, done: Any, workers: list[Any], stops: int) -> None:
    """After an error (or Ctrl-C): let the workers finish the passes under way and stop, and
    keep reading their results meanwhile, so no process waits forever on a full pipe."""
    import queue as queue_mod

    while True:                   # no new agent is started
        try:
            todo.get_nowait()
        except queue_mod.Empty:
            break
    for _ in range(stops):
        todo.put(None)
    while not all(w.done() for w in workers):
        try:
            done.get(timeout=0.2)
        except queue_mod.Empty:
            pass
    todo.cancel_join_thread()
    done.cancel_join_thread()

