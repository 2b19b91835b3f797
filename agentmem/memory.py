"""Memory as parsed: the agent's files checked together, every problem found at once."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentmem.errors import Problem
from agentmem.history import TRACKED

if TYPE_CHECKING:   # the parsers (and yaml) load only when a command reads memory
    from agentmem import persona, tooldefs
    from agentmem.lessons import LessonsDoc

ARCHIVE = "archive.md"
MEMORY_FILES = ("persona.md", "lessons.md", "tools.yaml")


@dataclass
class Memory:
    """A validated snapshot of the agent's memory files."""

    persona: persona.Persona
    lessons: LessonsDoc
    tools: list[tooldefs.ToolDef]
    archive: LessonsDoc | None
    texts: dict[str, str]


def validate(texts: dict[str, str | None]) -> tuple[Memory | None, list[Problem]]:
    """Parse and validate memory file contents; returns every problem found.

    Memoised on the exact texts: a chat turn or a sleep pass checks the same files several
    times, and parsing is most of its CPU time. Treat the returned Memory as read-only.
    """
    memory, problems = _validate(tuple(texts.get(name) for name in TRACKED))
    return memory, list(problems)


@functools.lru_cache(maxsize=64)
def _validate(key: tuple[str | None, ...]) -> tuple[Memory | None, tuple[Problem, ...]]:
    memory, problems = _parse(dict(zip(TRACKED, key, strict=True)))
    return memory, tuple(problems)


def _parse(texts: dict[str, str | None]) -> tuple[Memory | None, list[Problem]]:
    from agentmem import lessons as lessons_fmt
    from agentmem import persona, tooldefs

    problems: list[Problem] = []
    missing = [n for n in MEMORY_FILES if texts.get(n) is None]
    for name in missing:
        problems.append(Problem(name, None, "file is missing"))
    if missing:
        return None, problems
    persona_doc, persona_problems = persona.parse(texts["persona.md"] or "")
    if persona_doc is not None:
        from agentmem.pins import pinned_spans

        _, pin_problems = pinned_spans(persona_doc.body, "persona.md")
        persona_problems += [Problem(pin.file, (pin.line or 0) + persona_doc.body_line - 1,
                                     pin.message) for pin in pin_problems]
    lessons_doc, lessons_problems = lessons_fmt.parse(texts["lessons.md"] or "")
    tools, tools_problems = tooldefs.parse(texts["tools.yaml"] or "")
    archive: LessonsDoc | None = None
    archive_problems: list[Problem] = []
    if texts.get(ARCHIVE) is not None:
        archive, archive_problems = lessons_fmt.parse(texts[ARCHIVE] or "", ARCHIVE)
    problems = persona_problems + lessons_problems + tools_problems + archive_problems
    if problems or persona_doc is None or lessons_doc is None or tools is None:
        return None, problems
    present = {name: text for name, text in texts.items() if text is not None}
    return Memory(persona_doc, lessons_doc, tools, archive, present), []
