"""Sleep: consolidate recent experience into memory as small, checked edit operations.

A pass asks the sleep model for operations (add, update, merge, retire, counter,
persona_warning) on the log events since the last pass, applies them in code,
deterministically, and records ONE version authored `sleep`. A pass whose output is empty,
truncated, invalid, hallucinated, touches pinned or human-only text, shrinks memory too much
or grows it past its size caps is refused whole, with nothing written, the cursor unmoved and
the raw output kept for inspection.

    ops.py       the operations: schema, parsing a reply, applying them to texts (pure)
    guards.py    checks on a pass's whole result: lessons kept, shrink, size caps
    context.py   what the model is shown: events as lines, chunks, the messages
    passes.py    one pass over one agent: prepare, plan, propose, apply, run_pass
    fleet.py     many agents at once: threads, worker processes, one summary per agent

The rules every agent-authored edit obeys (pins, front matter, secrets) are agentmem.guards,
shared with the memory tool.
"""

from __future__ import annotations

from agentmem.sleep.context import sleep_messages
from agentmem.sleep.fleet import run_many, sleep_one
from agentmem.sleep.guards import check_result, lesson_cap, unarchived_loss
from agentmem.sleep.ops import MAX_OUTPUT_CHARS, apply_operations, describe, parse_output
from agentmem.sleep.passes import (
    PassResult,
    Plan,
    Proposal,
    apply,
    budget_warnings,
    estimate_cost,
    keep_refused,
    plan,
    prepare,
    propose,
    run_pass,
)

__all__ = [
    "MAX_OUTPUT_CHARS", "PassResult", "Plan", "Proposal", "apply", "apply_operations",
    "budget_warnings", "check_result", "describe", "estimate_cost", "keep_refused",
    "lesson_cap", "parse_output", "plan", "prepare", "propose", "run_many", "run_pass",
    "sleep_messages", "sleep_one", "unarchived_loss",
]
