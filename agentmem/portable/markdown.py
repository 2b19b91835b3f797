"""A Markdown instruction file (AGENTS.md, CLAUDE.md, ...) -> Imported.

Headings of level 1 and 2 start lessons (deeper ones stay inside their lesson's text); the text
before the first of them is the persona. A lone `#` title on the first heading line stays with
the persona. `as_persona` keeps the whole file as the persona, with no lessons.
"""

from __future__ import annotations

import re

from agentmem.errors import UsageError
from agentmem.lessons import FENCE, Lesson
from agentmem.portable.source import Imported, ImportedLesson

SPLIT = re.compile(r"^(#{1,2})\s+(\S.*?)\s*#*\s*$")


def parse(data: bytes, where: str, name: str, *, as_persona: bool = False) -> Imported:
    try:
        text = data.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError:
        raise UsageError(f"{where} is not UTF-8 text; nothing was created",
                         "save it as UTF-8 and import it again") from None
    if "\x00" in text:
        raise UsageError(f"{where} is binary, not Markdown; nothing was created")
    source = f"Markdown file {where}"
    if as_persona:
        return Imported(name=name, settings={"name": name}, persona_body=text.strip("\n") + "\n",
                        source=source)
    headings = _headings(text)
    lines = text.split("\n")
    # a single level-1 heading before any level-2 one is the document's title: persona
    if headings and headings[0][1] == 1 and sum(1 for h in headings if h[1] == 1) == 1:
        headings = headings[1:]
    cut = headings[0][0] if headings else len(lines)
    persona = "\n".join(lines[:cut]).strip("\n")
    lessons: list[ImportedLesson] = []
    skipped: list[str] = []
    for i, (line_no, _level, title) in enumerate(headings):
        end = headings[i + 1][0] if i + 1 < len(headings) else len(lines)
        body = "\n".join(lines[line_no + 1:end]).strip("\n")
        if body.strip():
            lessons.append(ImportedLesson(Lesson(title, body)))
        else:
            skipped.append(f"heading '{title}': no text under it")
    if not persona.strip():
        persona = f"# {name}"
    return Imported(name=name, settings={"name": name}, persona_body=persona + "\n",
                    lessons=lessons, skipped=skipped, source=source)


def _headings(text: str) -> list[tuple[int, int, str]]:
    """(0-based line, level, title) of each level-1 or level-2 heading outside fenced code."""
    out = []
    fenced = False
    for no, line in enumerate(text.split("\n")):
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else SPLIT.match(line)
        if match:
            out.append((no, len(match.group(1)), match.group(2)))
    return out
