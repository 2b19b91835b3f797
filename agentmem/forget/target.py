"""What to forget, and what each occurrence becomes: a literal text, a pattern, a whole
lesson (its sections and quotes, resolved from every version) or what the secret patterns of
agentmem.redact recognise."""

from __future__ import annotations

import re

from agentmem.errors import NotFound, UsageError
from agentmem.forget.gitobjects import Objects, decode, tree_entries

MARKER = "[forgotten f{number}]"
MIN_QUOTE = 12               # --lesson: shorter titles and texts are not hunted outside it


class Target:
    """What to forget and what each occurrence becomes: `marker` for a text, a pattern or a
    lesson's quotes, nothing for a lesson's own section, [REDACTED] for a secret (as the
    redactor writes it, so that a later redaction finds nothing more)."""

    def __init__(self, kind: str, pattern: re.Pattern[str] | None = None,
                 lesson: str | None = None) -> None:
        self.kind = kind                  # text, regex, lesson or secrets
        self.pattern = pattern
        self.lesson = lesson
        self.cuts: tuple[str, ...] = ()   # a lesson's sections: removed outright
        self.marker = MARKER.format(number=0)
        self._env: list[str] = []
        if kind == "secrets":
            from agentmem.redact import env_secrets

            self._env = env_secrets()

    def describe(self) -> str:
        """What was forgotten, for the receipt: the kind, never the text."""
        return f"lesson {self.lesson}" if self.kind == "lesson" else self.kind

    def sub(self, text: str) -> tuple[str, int]:
        """`text` without it, and how many occurrences went."""
        if self.kind == "secrets":
            return self._redact(text)
        count = 0
        for cut in self.cuts:
            if cut in text:
                count += text.count(cut)
                text = text.replace(cut, "")
        if self.pattern is not None:
            found = [0]

            def replace(match: re.Match[str]) -> str:
                if not match.group(0):    # a pattern's empty match is no occurrence
                    return ""
                found[0] += 1
                return self.marker

            text = self.pattern.sub(replace, text)
            count += found[0]
        return text, count

    def search(self, text: str) -> bool:
        if self.kind == "secrets":
            return self._redact(text)[1] > 0
        if any(cut in text for cut in self.cuts):
            return True
        if self.pattern is None:
            return False
        match = self.pattern.search(text)
        if match is None:
            return False
        return bool(match.group(0)) or any(m.group(0) for m in self.pattern.finditer(text))

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where it occurs in `text` (character offsets); a secret by its line."""
        if self.kind == "secrets":
            spans, at = [], 0
            for line in text.split("\n"):
                if self.search(line):
                    spans.append((at, at + len(line)))
                at += len(line) + 1
            return spans
        spans = []
        for cut in self.cuts:
            at = text.find(cut)
            while at >= 0:
                spans.append((at, at + len(cut)))
                at = text.find(cut, at + len(cut))
        if self.pattern is not None:
            spans += [m.span() for m in self.pattern.finditer(text) if m.group(0)]
        merged: list[tuple[int, int]] = []
        for start, end in sorted(spans):       # a quote inside a section: one place
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def _redact(self, text: str) -> tuple[str, int]:
        from agentmem.redact import REDACTED, redact

        parts = text.split(REDACTED)          # what is redacted already is no new find
        clean = [redact(part, self._env) for part in parts]
        return REDACTED.join(clean), sum(part.count(REDACTED) for part in clean)


def text_target(text: str, *, regex: bool = False, ignore_case: bool = False) -> Target:
    """A literal text (or, with regex, a Python regular expression; ^ and $ match at lines)."""
    if not text.strip():
        raise UsageError("give the text to forget", "example: agentmem forget ./reviewer 'Jane Doe'")
    flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
    try:
        pattern = re.compile(text if regex else re.escape(text), flags)
    except re.error as exc:
        raise UsageError(f"not a valid regular expression: {exc}",
                         "drop --regex to forget the text as it is written") from None
    if pattern.fullmatch(""):
        raise UsageError("the pattern matches empty text", "give a pattern that needs at "
                         "least one character, e.g. 'Jane\\s+Doe'")
    return Target("regex" if regex else "text", pattern)


def lesson_target(lesson_id: str) -> Target:
    """A whole lesson: its section in every version of lessons.md and archive.md (archived
    copies L7-2, ... included) goes, and its titles and texts wherever they are quoted."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", lesson_id):
        raise UsageError(f"'{lesson_id}' is not a lesson id", "example: --lesson L7")
    return Target("lesson", lesson=lesson_id)


def secrets_target() -> Target:
    """Whatever agentmem.redact recognises as a secret (and key-like environment values)."""
    return Target("secrets")


def resolve_lesson(target: Target, objects: Objects, raw: dict[str, bytes | None]) -> None:
    """The lesson's sections and quotes, from every lessons.md and archive.md the repository
    holds (archived copies are L7, L7-2, ...) and from the files as they are now."""
    from agentmem import lessons as lessons_fmt

    texts = {decode(data) for name in ("lessons.md", "archive.md")
             if (data := raw.get(name)) is not None}
    for kind, body in objects.values():
        if kind == "tree":
            texts |= {decode(objects[child][1]) for mode, name, child in tree_entries(body)
                      if name in (b"lessons.md", b"archive.md") and mode != b"120000"
                      and child in objects}
    ids = re.compile(rf"{re.escape(target.lesson or '')}(?:-\d+)?")
    cuts: set[str] = set()
    quotes: set[str] = set()
    for text in texts:
        doc, _ = lessons_fmt.parse(text)
        for lesson in doc.lessons if doc else []:
            if lesson.id and ids.fullmatch(lesson.id) and lesson.raw:
                cuts.add(lesson.raw)
                quotes |= {q for q in (lesson.title.strip(), lesson.body.strip())
                           if len(q) >= MIN_QUOTE}
    if not cuts:
        raise NotFound(f"no lesson {target.lesson} in lessons.md, archive.md or any version",
                       "see the lessons with: agentmem show AGENT")
    target.cuts = tuple(sorted(cuts, key=len, reverse=True))
    if quotes:
        target.pattern = re.compile("|".join(re.escape(q) for q in
                                             sorted(quotes, key=len, reverse=True)))
