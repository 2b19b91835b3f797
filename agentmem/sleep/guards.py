"""Checks on the whole result of a sleep pass, whatever its operations were.

A result passes only if it keeps to the rules of any agent edit (agentmem.guards), keeps every
lesson no operation retired, only appends to archive.md, still validates, cuts at most
`max_shrink` of the lessons' words without archiving them, and stays within the size caps.
Each failure raises Rejected, and the pass is refused whole.
"""

from __future__ import annotations

import re

from agentmem import lessons as lessons_fmt
from agentmem import persona as persona_fmt
from agentmem.agent import BLANK_ARCHIVE
from agentmem.guards import Rejected, guard_agent_edit
from agentmem.lessons import Lesson, LessonsDoc
from agentmem.memory import ARCHIVE, validate
from agentmem.pins import pins_preserved
from agentmem.sleep.ops import MAX_RATIONALE_CHARS, RETIRED_NOTE, Operation, Texts, clip, reserved_ids
from agentmem.tokens import estimate

DEFAULT_MAX_SHRINK = 0.3      # persona.md `sleep: max_shrink:` when it is not set

# -- size caps: a pass may grow memory only so far, as it may shrink it only so far (max_shrink).
# Lessons are measured in estimated tokens (agentmem.tokens), as the persona's `budgets:` are.
# One lesson (title and body) may take an eighth of the lessons budget: 500 tokens of the
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

def check_result(before: Texts, after: Texts, max_shrink: float,
                 operations: list[Operation] | None = None,
                 used_ids: set[str] | frozenset[str] = frozenset()) -> None:
    """Guards on the whole result, whatever the operations were (`used_ids` as given to
    apply_operations). Without `operations` the lessons-kept check is skipped: that is how a
    pass of several chunks is checked as a whole, each chunk having passed with its own."""
    guard_agent_edit(before, after, allow_archive=True)
    if operations is not None:
        _check_lessons_kept(before, after, operations)
    if before.get(ARCHIVE) != after.get(ARCHIVE) and \
            not pins_preserved(before.get(ARCHIVE) or "", after.get(ARCHIVE) or ""):
        raise Rejected("archive.md: pinned text changed")
    old_archive = before.get(ARCHIVE) or ""
    if old_archive and not (after.get(ARCHIVE) or "").startswith(old_archive.rstrip("\n")):
        raise Rejected("archive.md may only grow: a pass cannot change what was archived")
    memory, problems = validate(after)
    if problems or memory is None:
        raise Rejected("the result would not be a valid agent: " + "; ".join(map(str, problems)))
    docs = _parse_all(before, after)      # parsed once for both (each parse copies every lesson)
    _check_growth(before, after, memory.persona.budgets, used_ids, docs)
    lost, words = _unarchived_loss(docs, used_ids)
    if words and lost > max_shrink * words:
        raise Rejected(f"the pass would cut {lost} of the lessons' {words} words ({lost / words:.0%}"
                       f", more than max_shrink {max_shrink:.0%}) without archiving them")


def _check_lessons_kept(before: Texts, after: Texts, operations: list[Operation]) -> None:
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
        raise Rejected("the result would lose lessons no operation retired "
                       f"({', '.join(missing) or 'a lesson without an id'})")


Docs = tuple[LessonsDoc, LessonsDoc, LessonsDoc, LessonsDoc]


def _parse_all(before: Texts, after: Texts) -> Docs | None:
    """lessons.md before and after, archive.md before and after; None when one does not parse
    (validate() refuses such a result)."""
    docs = (lessons_fmt.parse(before.get("lessons.md") or "")[0],
            lessons_fmt.parse(after.get("lessons.md") or "")[0],
            lessons_fmt.parse(before.get(ARCHIVE) or BLANK_ARCHIVE, ARCHIVE)[0],
            lessons_fmt.parse(after.get(ARCHIVE) or BLANK_ARCHIVE, ARCHIVE)[0])
    old, new, was, now = docs
    if old is None or new is None or was is None or now is None:
        return None
    return old, new, was, now


def unarchived_loss(before: Texts, after: Texts,
                    used_ids: set[str] | frozenset[str] = frozenset()) -> tuple[int, int]:
    """(words lost, words before) over the unpinned lessons found before the pass (pins are
    guarded whole elsewhere): the words the result keeps neither in lessons.md nor in archive.md.

    Each lesson is measured on its own, so that text added elsewhere cannot hide text taken
    away. A lesson the pass archived (retired, or merged: the copy of its text before the merge)
    counts what its first archived copy holds; any other counts what its new text holds, so an
    update of the same length loses nothing. Lessons without an id are given the ids
    apply_operations gives them (pass the same `used_ids`), so that an archived copy of one is
    found."""
    return _unarchived_loss(_parse_all(before, after), used_ids)


def _unarchived_loss(docs: Docs | None, used_ids: set[str] | frozenset[str]) -> tuple[int, int]:
    """unarchived_loss over _parse_all's documents (read, never changed)."""
    if docs is None:
        return 0, 0
    old, new, was, now = docs
    old = old.with_ids(reserved_ids(was, used_ids))
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
        if lesson.pinned:
            continue
        had = words(lesson)
        total += had
        left = copies[lesson.id] if lesson.id in copies else words(new.get(lesson.id or ""))
        lost += max(0, had - left)
    return lost, total


def lesson_cap(budget: int) -> int:
    """The most tokens one lesson (title and body) a pass writes may take, for a lessons budget."""
    return max(LESSON_MIN_TOKENS, budget // LESSON_SHARE)


def _check_growth(before: Texts, after: Texts, budgets: dict[str, int],
                  used_ids: set[str] | frozenset[str], docs: Docs | None) -> None:
    """The size caps: each lesson the pass wrote, the lessons it added, how far lessons.md and
    persona.md grew against their budgets, and how far archive.md grew against what the pass
    archived. Text the pass found is never held against it (a person's long lesson may still be
    counted, merged away or retired). `docs`: _parse_all(before, after)."""
    if docs is None:
        return
    old, new, was, now = docs
    cap = lesson_cap(budgets["lessons"])
    found = {x.text for x in old.lessons}
    _check_lessons_size(old, new, was, budgets["lessons"], found, used_ids)
    _check_budget_growth(before, after, budgets)
    _check_archive_growth(before, after, was, now, found, cap)


def _check_lessons_size(old: LessonsDoc, new: LessonsDoc, was: LessonsDoc, budget: int,
                        found: set[str], used_ids: set[str] | frozenset[str]) -> None:
    """Each lesson the pass wrote within lesson_cap, and at most MAX_NEW_LESSONS new ones."""
    cap = lesson_cap(budget)
    for lesson in new.lessons:
        tokens = estimate(lesson.text)
        if tokens > cap and lesson.text not in found:
            raise Rejected(f"lesson {lesson.id} (\"{clip(lesson.title)}\") would be ~{tokens:,} "
                           f"tokens, over the cap of {cap:,} tokens for one lesson (1/{LESSON_SHARE}"
                           f" of the {budget:,}-token lessons budget, at least {LESSON_MIN_TOKENS})")
    ids = {x.id for x in old.with_ids(reserved_ids(was, used_ids)).lessons}
    added = sum(x.id not in ids for x in new.lessons)
    if added > MAX_NEW_LESSONS:
        raise Rejected(f"the pass would add {added} lessons, over the cap of {MAX_NEW_LESSONS} new "
                       "lessons per pass")


def _check_budget_growth(before: Texts, after: Texts, budgets: dict[str, int]) -> None:
    """lessons.md and persona.md's body within GROWTH_FACTOR times their budgets, or
    GROWTH_MARGIN of a budget more than the pass found."""
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
            raise Rejected(f"{name} would grow from ~{was_tokens:,} to ~{now_tokens:,} tokens, over "
                           f"this pass's cap of ~{limit:,} ({GROWTH_FACTOR}x its "
                           f"{budgets[budget_key]:,}-token budget, or {GROWTH_MARGIN:.0%} of it "
                           "more than before, whichever is larger)")


def _check_archive_growth(before: Texts, after: Texts, was: LessonsDoc, now: LessonsDoc,
                          found: set[str], cap: int) -> None:
    """archive.md grows by at most what the pass archived: each copy as the pass found it (or
    one lesson's cap, for text it wrote), and ARCHIVE_NOTE_CHARS for its note."""
    copies = now.lessons[len(was.lessons):]
    texts = (f"{x.title}\n{x.body.rsplit(RETIRED_NOTE, 1)[0].strip()}" for x in copies)
    allowed = sum(ARCHIVE_NOTE_CHARS + (len(text) if text in found else cap * 4) for text in texts)
    grew = len(after.get(ARCHIVE) or "") - len(before.get(ARCHIVE) or "")
    if grew > allowed:
        raise Rejected(f"archive.md would grow by {grew:,} characters, over this pass's cap of "
                       f"{allowed:,} for the {len(copies)} lesson(s) it archives (each as the "
                       f"pass found it, or at most one lesson's {cap * 4:,} characters, and "
                       f"{ARCHIVE_NOTE_CHARS:,} for its note)")
