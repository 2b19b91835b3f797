"""Forget a text: out of memory, the log, every past version and everything else agentmem keeps.

`survey` finds every place a text occurs (a literal, a pattern, a whole lesson, or what the
secret patterns of agentmem.redact recognise) and computes the agent folder without it: the
memory files, the log (each occurrence becomes `[forgotten f3]`, event ids and structure kept,
so evidence links still resolve), every git object that holds it (commits rewritten with their
number, author, dates and trailers kept), kept sleep outputs, tool writes, state.json. `forget`
carries that out so that a crash at any moment leaves the agent as it was or fully forgotten:
everything new is written first, then the intent (the commit point), then `finish` puts it in
place; after a crash, the next agentmem command runs `finish` (recovery.settle_forget).

The text itself is never written anywhere: not in the intent, the staged files or the receipt.

    target.py      what to forget and what each occurrence becomes (text, regex, lesson, secrets)
    find.py        survey: where it occurs and everything forget would write, or a refusal
    findings.py    what was found, listed for people and as JSON
    gitobjects.py  every git object and ref, read and parsed by hand
    rewrite.py     the history without it, and the `forget` version on top (in memory)
    clean.py       JSON values, log.jsonl and state.json without it (in memory)
    apply.py       forget: stage, the intent (the commit point), finish (also after a crash)
    receipt.py     .agentmem/forget/: the receipts fN.json and the next number
"""

from __future__ import annotations

from agentmem.forget.apply import finish, forget
from agentmem.forget.find import survey
from agentmem.forget.findings import Findings
from agentmem.forget.target import MARKER, Target, lesson_target, secrets_target, text_target

__all__ = [
    "MARKER", "Findings", "Target", "finish", "forget", "lesson_target", "secrets_target",
    "survey", "text_target",
]
