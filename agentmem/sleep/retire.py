"""Retiring lessons that ratings show do harm: a rule in code, beside the model's operations.

A lesson whose `harmful` count exceeds its `helpful` count by at least `sleep: retire_margin`
(persona.md, default DEFAULT_MARGIN) is proposed for retirement by the pass that reads a /bad
rating which counted against it, whatever the model proposed. The operation is an ordinary
`retire`, applied and guarded like the model's; its rationale names the counts and its
evidence is those ratings' event ids. A pinned lesson is never proposed (the pass says why it
is left), nor one the model's operations already retired or merged away. A person who declines
the operation in review is not asked again until another /bad counts against the lesson.
"""

from __future__ import annotations

from typing import Any

from agentmem.errors import InvalidAgent
from agentmem.guards import Rejected
from agentmem.memory import validate
from agentmem.sleep.guards import check_result
from agentmem.sleep.ops import Operation, Texts, apply_operations, check_operation

DEFAULT_MARGIN = 3


def margin(settings: dict[str, Any]) -> int:
    return int((settings.get("sleep") or {}).get("retire_margin", DEFAULT_MARGIN))


def harmful_retirements(texts: Texts, events: list[dict[str, Any]]
                        ) -> tuple[list[Operation], list[str]]:
    """The retire operations the rule proposes for memory as `texts` hold it, given the log
    events a pass read; and a warning for each pinned lesson the rule would have retired."""
    memory, problems = validate(texts)
    if memory is None:
        raise InvalidAgent(problems)
    needed = margin(memory.persona.settings)
    debits: dict[str, list[str]] = {}
    for event in events:
        if event.get("kind") == "feedback" and event.get("rating") == "bad":
            for lesson_id in event.get("lessons") or []:
                if isinstance(lesson_id, str):
                    debits.setdefault(lesson_id, []).append(str(event["id"]))
    operations: list[Operation] = []
    warnings: list[str] = []
    for lesson in memory.lessons.lessons:
        if lesson.id not in debits or lesson.harmful - lesson.helpful < needed:
            continue
        counts = (f"rated harmful {lesson.harmful}, helpful {lesson.helpful}: "
                  f"{lesson.harmful - lesson.helpful} more harmful than helpful, at least the "
                  f"retire margin ({needed})")
        if lesson.pinned:
            warnings.append(f"lesson {lesson.id} is {counts}, but it is pinned: a person owns "
                            "it, so it is not retired")
            continue
        operations.append({"op": "retire", "id": lesson.id, "evidence": debits[lesson.id],
                           "rationale": f"{counts}; retired by that rule"})
    for n, op in enumerate(operations, 1):
        check_operation(op, n)
    return operations, warnings


def add_retirements(texts: Texts, before: Texts, events: list[dict[str, Any]], known: set[str],
                    max_shrink: float, used_ids: set[str]
                    ) -> tuple[list[Operation], list[str], Texts]:
    """The rule's operations on top of the model's (`texts`, what a pass's answers left), the
    warnings, and the texts after them, guarded as a reply's operations are, and the whole pass
    from `before` too; Rejected (or InvalidAgent) when a guard refuses them."""
    operations, warnings = harmful_retirements(texts, events)
    if not operations:
        return [], warnings, texts
    result = apply_operations(texts, operations, known, used_ids=used_ids)
    check_result(texts, result, max_shrink, operations, used_ids)
    if texts is not before:
        check_result(before, result, max_shrink, used_ids=used_ids)
    return operations, warnings, result


def counted_ratings(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The /good and /bad ratings among `events` that the ratings rule already counted when
    they were given: {rating event id: the lesson ids it counted for}."""
    return {str(e["id"]): {i for i in e.get("lessons") or [] if isinstance(i, str)}
            for e in events if e.get("kind") == "feedback" and e.get("lessons")}


def check_recount(operations: list[Operation], counted: dict[str, set[str]]) -> None:
    """Rejected when a `counter` operation counts a rating again for a lesson the rating was
    already counted for when it was given (each rating counts once: docs/format.md)."""
    for n, op in enumerate(operations, 1):
        if op.get("op") != "counter":
            continue
        again = [e for e in op.get("evidence") or [] if op.get("id") in counted.get(str(e), ())]
        if again:
            raise Rejected(f"operation {n} (counter): rating {', '.join(again)} was already "
                           f"counted for {op['id']} when it was given; count only what no "
                           "rating counted")
