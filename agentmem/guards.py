"""What a write the agent authors may change: the rules its memory tool and its sleep pass share.

An agent (in chat, through the memory tool) or its sleep model edits only the text of
persona.md below the settings block and lessons.md; a sleep pass also appends to archive.md.
tools.yaml, persona.md's front matter and pinned blocks are people's; no edit may add a secret.
A write that breaks a rule raises Rejected, whose message is one line saying which rule.
"""

from __future__ import annotations

from agentmem import persona as persona_fmt
from agentmem.pins import pins_preserved
from agentmem.redact import count_secrets

EDITABLE = ("persona.md", "lessons.md")     # the files the agent edits, within these rules


class Rejected(Exception):
    """Text the model wrote, or an edit it asked for, that a guard will not let through. Low
    level and message-only: the memory tool returns the message to the model as a tool error;
    a sleep pass turns it into errors.Refused, with the raw output kept."""


class Destructive(Rejected):
    """A Rejected edit that would touch what people own (a pinned lesson): a sleep pass is
    refused for it outright, never sent back to the model to be repaired."""


def guard_agent_edit(before: dict[str, str | None], after: dict[str, str | None],
                     *, allow_archive: bool = False) -> None:
    """Reject an agent edit that touches tools.yaml, the archive (unless `allow_archive`: a
    sleep pass, whose own checks say how), the front matter or a pin, or adds a secret."""
    for name in ("tools.yaml",) if allow_archive else ("tools.yaml", "archive.md"):
        if before.get(name) != after.get(name):
            raise Rejected(f"{name} can only be changed by people")
    old_p, new_p = before.get("persona.md") or "", after.get("persona.md") or ""
    old_split, new_split = persona_fmt.split(old_p), persona_fmt.split(new_p)
    if new_split is None or old_split is None or old_split[0] != new_split[0]:
        raise Rejected("the settings block at the top of persona.md (between the --- lines) is "
                       "read-only; edit only the text below it")
    for name in ("persona.md", "lessons.md", "archive.md"):
        new_text = after.get(name) or ""
        old_text = before.get(name) or ""
        if new_text != old_text and count_secrets(new_text) > count_secrets(old_text):
            raise Rejected(f"{name}: the edit would store something that looks like a secret "
                           "(an API key, token or private key); memory is versioned and shared, "
                           "so secrets never go there")
    for name in EDITABLE:
        if before.get(name) != after.get(name) and \
                not pins_preserved(before.get(name) or "", after.get(name) or ""):
            raise Rejected(f"{name}: text between <!-- pin --> and <!-- /pin --> is human-owned "
                           "and cannot be changed, removed or added by you")
