"""lessons.md: one `## Title` section per lesson, with a one-line metadata comment.

    ## Run the tests before approving a "pure refactor"
    <!-- id: L3; evidence: e12 e40; helpful: 3; harmful: 0 -->
    Refactors that claim no behaviour change broke things twice ...

The comment is invisible when the Markdown is rendered and makes a one-line diff when a counter
moves. A lesson whose comment a person deleted is still a lesson: it gets a fresh id the next
time agentmem writes the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache

from agentmem.errors import Problem
from agentmem.pins import PIN_CLOSE, PIN_OPEN, pinned_spans

FILE = "lessons.md"
HEADING = re.compile(r"^##\s+(\S.*?)(?:\s+#+)?\s*$")   # "## C#" keeps its "#"
FENCE = re.compile(r"^\s*(```|~~~)")
META = re.compile(r"^\s*<!--\s*id\s*:(?P<body>.*?)-->\s*$")
META_START = re.compile(r"^\s*<!--\s*id\s*:")
ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
META_KEYS = ("id", "evidence", "helpful", "harmful")

BLANK_DOC = "# Lessons\n\nWhat I have learned. Each lesson is a `##` section; edit freely.\n"


@dataclass
class Lesson:
    title: str
    body: str
    id: str | None = None
    evidence: list[str] = field(default_factory=list)
    helpful: int = 0
    harmful: int = 0
    line: int = 0             # 1-based line of the heading in the parsed file
    pinned: bool = False
    raw: str | None = None    # exact source text; None once changed (then it is re-rendered)

    def render(self) -> str:
        if self.raw is not None:
            return self.raw
        meta = [f"id: {self.id}"] if self.id else []
        if self.evidence:
            meta.append("evidence: " + " ".join(self.evidence))
        meta += [f"helpful: {self.helpful}", f"harmful: {self.harmful}"]
        body = self.body.strip("\n")
        return f"## {self.title}\n<!-- {'; '.join(meta)} -->\n{body}\n\n"

    def changed(self, **kwargs: object) -> Lesson:
        return replace(self, raw=None, **kwargs)  # type: ignore[arg-type]

    @property
    def text(self) -> str:
        """Title and body as one plain text (what a model sees)."""
        return f"{self.title}\n{self.body.strip()}"


class _Parts(list):  # type: ignore[type-arg]
    """A document's parts: a list that counts its own changes, so that the index of lessons by
    id (LessonsDoc.get) knows when it must be rebuilt, however the list is changed."""

    changes = 0

    def _changed(self) -> None:
        self.changes += 1


def _counting(name: str) -> object:
    method = getattr(list, name)

    def changing(self: _Parts, *args: object) -> object:
        self._changed()
        return method(self, *args)
    changing.__name__ = name
    return changing


for _name in ("__setitem__", "__delitem__", "__iadd__", "__imul__", "append", "extend", "insert",
              "pop", "remove", "clear", "sort", "reverse"):
    setattr(_Parts, _name, _counting(_name))


@dataclass
class LessonsDoc:
    """The file as a sequence of parts: free text (preamble, pin markers) and lessons.

    Lookups by id go through an index built on first use and rebuilt after any change to
    `parts`; a lesson is changed by putting a new one in its place (Lesson.changed), never by
    setting its id."""

    parts: list[str | Lesson]

    def __post_init__(self) -> None:
        self._index: tuple[_Parts, int, dict[str, int]] | None = None

    def __setattr__(self, name: str, value: object) -> None:
        if name == "parts" and isinstance(value, list) and not isinstance(value, _Parts):
            value = _Parts(value)
        object.__setattr__(self, name, value)

    @property
    def lessons(self) -> list[Lesson]:
        return [p for p in self.parts if isinstance(p, Lesson)]

    @property
    def preamble(self) -> str:
        return self.parts[0] if self.parts and isinstance(self.parts[0], str) else ""

    def render(self) -> str:
        pieces: list[str] = []
        tail = ""           # the text so far ends with this (its last two characters)
        for part in self.parts:
            if isinstance(part, Lesson) and part.raw is None and tail and tail != "\n\n":
                gap = "\n" if tail.endswith("\n") else "\n\n"
                pieces.append(gap)
                tail = (tail + gap)[-2:]
            text = part if isinstance(part, str) else part.render()
            if text:
                pieces.append(text)
                tail = (tail + text)[-2:]
        return "".join(pieces)   # one join: adding to a string in a loop can copy it each time

    def replace(self, lesson_id: str, new: Lesson | None) -> None:
        """Replace (or, with None, remove) the lesson with this id."""
        for i, part in enumerate(self.parts):
            if isinstance(part, Lesson) and part.id == lesson_id:
                if new is None:
                    del self.parts[i]
                else:
                    self.parts[i] = new
                return
        raise KeyError(lesson_id)

    def append(self, lesson: Lesson) -> None:
        self.parts.append(lesson)

    def get(self, lesson_id: str) -> Lesson | None:
        """The (first) lesson with this id, from the index by id."""
        parts = self.parts
        assert isinstance(parts, _Parts)
        index = self._index
        if index is None or index[0] is not parts or index[1] != parts.changes:
            by_id: dict[str, int] = {}
            for i, part in enumerate(parts):
                if isinstance(part, Lesson) and part.id is not None:
                    by_id.setdefault(part.id, i)
            index = self._index = (parts, parts.changes, by_id)
        at = index[2].get(lesson_id)
        if at is None:
            return None
        found = parts[at]
        return found if isinstance(found, Lesson) and found.id == lesson_id else None

    def next_id(self, reserved: set[str] | frozenset[str] = frozenset()) -> str:
        """A fresh id, never one in use or in `reserved` (ids of removed or archived lessons)."""
        ids = {lesson.id for lesson in self.lessons if lesson.id} | set(reserved)
        numbers = [int(m.group(1)) for i in ids for m in [re.fullmatch(r"L(\d+)", i)] if m]
        return f"L{max(numbers, default=0) + 1}"

    def with_ids(self, reserved: set[str] | frozenset[str] = frozenset()) -> LessonsDoc:
        """A copy where every unpinned lesson without metadata has been given a fresh id."""
        doc = LessonsDoc(list(self.parts))
        fresh = None                   # the number next_id would give, kept (one scan, not n)
        for i, part in enumerate(doc.parts):
            if isinstance(part, Lesson) and part.id is None and not part.pinned:
                fresh = fresh or int(doc.next_id(reserved)[1:])
                doc.parts[i] = part.changed(id=f"L{fresh}")
                fresh += 1
        return doc


def parse(text: str, file: str = FILE) -> tuple[LessonsDoc | None, list[Problem]]:
    """The document, or None and every problem found. Memoised on the text (a sleep pass parses
    the same files several times); each call gets its own copy, free to change."""
    doc, problems = _parse(text, file)
    if doc is None:
        return None, list(problems)
    return LessonsDoc([p if isinstance(p, str) else _copy(p) for p in doc.parts]), []


def _copy(lesson: Lesson) -> Lesson:
    twin = object.__new__(Lesson)          # copy.copy, without its ~10 µs of protocol
    twin.__dict__.update(lesson.__dict__)
    twin.evidence = list(lesson.evidence)
    return twin


@lru_cache(maxsize=16)
def _parse(text: str, file: str) -> tuple[LessonsDoc | None, tuple[Problem, ...]]:
    lines = text.splitlines(keepends=True)
    spans, problems = pinned_spans(text, file)
    # a lesson starts at a `##` heading and ends at the next heading or pin marker
    kinds: list[str] = []
    in_fence = False
    for line in lines:
        bare = line.rstrip("\r\n")
        # the cheap `in` tests only skip regexes that could not match
        if ("```" in line or "~~~" in line) and FENCE.match(line):
            in_fence = not in_fence
            kinds.append("text")
        elif not in_fence and line.startswith("##") and HEADING.match(bare):
            kinds.append("heading")
        elif not in_fence and "pin" in line and (PIN_OPEN.match(bare) or PIN_CLOSE.match(bare)):
            kinds.append("pin")
        else:
            kinds.append("text")
    parts: list[str | Lesson] = []
    seen: dict[str, int] = {}
    i = 0
    while i < len(lines):
        j = i + 1
        if kinds[i] == "heading":
            while j < len(lines) and kinds[j] == "text":
                j += 1
        else:
            while j < len(lines) and kinds[j] != "heading":
                j += 1
        block = lines[i:j]
        if kinds[i] != "heading":
            parts.append("".join(block))
            i = j
            continue
        lesson, lesson_problems = _parse_block(block, i + 1, file)
        problems += lesson_problems
        first, last = i + 1, j
        i = j
        if lesson is None:
            continue
        lesson.pinned = any(a <= last and first <= b for a, b in spans)
        parts.append(lesson)
        if lesson.id:
            if lesson.id in seen:
                problems.append(Problem(file, lesson.line, f"duplicate lesson id '{lesson.id}' "
                                        f"(also on line {seen[lesson.id]}); give one a new id or "
                                        "delete its metadata comment"))
            seen[lesson.id] = lesson.line
    if problems:
        return None, tuple(problems)
    return LessonsDoc(parts), ()


def _parse_block(block: list[str], line: int, file: str) -> tuple[Lesson | None, list[Problem]]:
    heading = HEADING.match(block[0].rstrip("\r\n"))
    assert heading is not None
    title = heading.group(1)
    lesson = Lesson(title=title, body="", line=line, raw="".join(block))
    body_lines = block[1:]
    for j, raw_line in enumerate(block[1:], start=1):
        stripped = raw_line.strip()
        if not stripped:
            continue
        if META_START.match(stripped):
            match = META.match(stripped)
            if not match:
                return None, [Problem(file, line + j, "lesson metadata comment is not closed "
                                      "with '-->' on the same line")]
            problems = _parse_meta(match.group("body"), lesson, file, line + j)
            if problems:
                return None, problems
            body_lines = block[1:j] + block[j + 1:]
        break
    lesson.body = "".join(body_lines).strip("\n")
    return lesson, []


def _parse_meta(body: str, lesson: Lesson, file: str, line: int) -> list[Problem]:
    fields = [f.strip() for f in ("id:" + body).split(";") if f.strip()]
    for item in fields:
        key, sep, value = item.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in META_KEYS:
            return [Problem(file, line, f"unknown lesson metadata '{item}' "
                            f"(known: {', '.join(META_KEYS)}, separated by ';')")]
        if key == "id":
            if not ID_RE.match(value):
                return [Problem(file, line, f"bad lesson id '{value}': use letters, digits, - "
                                "or _, starting with a letter (e.g. L12)")]
            lesson.id = value
        elif key == "evidence":
            lesson.evidence = [e for e in re.split(r"[\s,]+", value) if e]
        else:
            if not re.fullmatch(r"\d+", value):
                return [Problem(file, line, f"lesson {key} must be a whole number, not '{value}'")]
            setattr(lesson, key, int(value))
    return []


def undo_change(current: str, base: str, other: str) -> str | None:
    """Undo the change base -> ... that turned `other` into `base`, lesson by lesson, in `current`.

    Used when a line-based merge sees a conflict only because two edits were adjacent (two
    lessons appended one after the other). Returns None when a lesson the change touched was
    edited again later, or when text outside lessons changed: then it is a real conflict.
    """
    docs = [parse(t)[0] for t in (current, base, other)]
    cur, bas, oth = docs
    if cur is None or bas is None or oth is None:
        return None
    def loose(doc: LessonsDoc) -> list[str]:
        return [p.strip() for p in doc.parts if isinstance(p, str) and p.strip()]

    if loose(bas) != loose(oth):
        return None

    def key(lesson: Lesson) -> str:
        return lesson.id or f"title:{lesson.title}"

    def table(doc: LessonsDoc) -> dict[str, str]:
        return {key(x): x.render().rstrip() for x in doc.lessons}

    def content(lesson: Lesson) -> str:        # what a person wrote, not the bookkeeping
        return f"## {lesson.title}\n{lesson.body.strip()}"

    b, o, c = table(bas), table(oth), table(cur)
    # a lesson added by hand has no id until agentmem numbers it at its next write: the
    # current file's numbered lesson with the same text is that lesson
    touched = [(k, t) for k, t in b.items() if k.startswith("title:") and k not in c
               and t != o.get(k)]
    for k, text in touched:
        lesson = next(x for x in bas.lessons if key(x) == k)
        same = [x for x in cur.lessons if x.id and content(x) == content(lesson)]
        if len(same) == 1:
            c[k] = text
            for i, part in enumerate(cur.parts):
                if part is same[0]:
                    cur.parts[i] = lesson           # stands in for it under the title key
    result = LessonsDoc(list(cur.parts))
    for k in list(dict.fromkeys([*o, *b])):
        if b.get(k) == o.get(k) or c.get(k) == o.get(k):
            continue
        if c.get(k) != b.get(k):
            return None
        index = {key(p): i for i, p in enumerate(result.parts) if isinstance(p, Lesson)}
        if k not in o:
            del result.parts[index[k]]
            continue
        restored = next(x for x in oth.lessons if key(x) == k)
        if k in index:
            result.parts[index[k]] = restored
            continue
        order = [key(x) for x in oth.lessons]
        before = [p for p in order[: order.index(k)] if p in index]
        at = index[before[-1]] + 1 if before else len(result.parts)
        result.parts.insert(at, restored)
    return result.render()
