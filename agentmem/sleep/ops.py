"""The sleep model's operations: their schema, reading them out of a reply, and applying them.

An operation is a JSON object (add, update, merge, retire, counter, persona_warning) with a
rationale and the log events it rests on. Everything here is pure: text in, text out, no disk
and no model; an operation that is malformed, names a lesson that does not exist or a pinned
one, or cites an event the pass did not read raises Rejected, and the whole pass is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agentmem import lessons as lessons_fmt
from agentmem import persona as persona_fmt
from agentmem.agent import BLANK_ARCHIVE
from agentmem.errors import InvalidAgent
from agentmem.guards import Destructive, Rejected
from agentmem.journal import event_number
from agentmem.lessons import Lesson, LessonsDoc
from agentmem.memory import ARCHIVE

Operation = dict[str, Any]       # one operation, as parsed from the model's JSON
Texts = dict[str, str | None]    # memory file name -> its text (None: no such file)

OUTPUT_TOKENS = 4096             # the most tokens one reply of the sleep model may take
OPS = ("add", "update", "merge", "retire", "counter", "persona_warning")
FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "add": {"title": str, "body": str},
    "update": {"id": str, "body": str},
    "merge": {"ids": list, "title": str, "body": str},
    "retire": {"id": str},
    "counter": {"id": str},
    "persona_warning": {"text": str},
}
# fields an operation of a kind may leave out (or, as a strict JSON schema has them, send as null)
OPTIONAL: dict[str, dict[str, type]] = {"update": {"title": str},
                                        "counter": {"helpful": int, "harmful": int}}
COMMON = {"op", "rationale", "evidence"}
WARNINGS_HEADING = "## Warnings"
RETIRED_NOTE = "\n\n_Retired "      # begins the note on an archived copy (_Editor.archive_copy)
# what str.splitlines() (and so every parser here, and decode_text for \r) breaks a line at,
# besides \n: in a model's text each would become a line break, a heading, a fence, on read-back
LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
MAX_EVIDENCE = 12   # ids kept on a lesson (newest); older ones stay in the history

# -- what one reply and one operation may hold. A reply is at most OUTPUT_TOKENS tokens; 32
# characters a token is eight times the usual four, more than any real reply holds (long
# whitespace runs, \uXXXX escapes), and still bounds what is parsed and kept.
MAX_OUTPUT_CHARS = OUTPUT_TOKENS * 32
MAX_TITLE_CHARS = 200         # a title is a heading: one short line
MAX_WARNING_CHARS = 400       # a warning is one line in persona.md ("I tend to X; check Y")
MAX_RATIONALE_CHARS = 1000    # a sentence or two; it goes into the version's message and notes


def one_line(text: str) -> str:
    """Model text for a one-line place (a commit message, an archive note): whitespace and
    line breaks of every kind collapsed to single spaces."""
    return " ".join(text.split())


def clip(text: str, limit: int = 60) -> str:
    """Model text quoted in a refusal: one line, at most `limit` characters."""
    text = one_line(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def describe(op: Operation) -> str:
    """One line for an operation (review, commit message, log): the model's text in it is
    collapsed to one line, so it cannot add lines (trailers) to a version's message."""
    kind = op["op"]
    target = op.get("id") or ", ".join(op.get("ids", [])) or op.get("title") or op.get("text", "")
    if kind == "add":
        target = f"\"{op['title']}\""
    elif kind == "persona_warning":
        target = f"\"{op['text']}\""
    return one_line(f"{kind} {target}: {op['rationale']} [{' '.join(op['evidence'])}]")


# -- the schema the model is asked to answer in ------------------------------------------------
SCHEMA_NAME = "sleep_operations"
OUTPUT_MODES = ("schema", "json", "prompt")    # how a reply is asked for; persona: sleep.output
_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", list: "array"}


def output_schema() -> dict[str, Any]:
    """The JSON schema of a reply, derived from OPS, FIELDS, OPTIONAL and COMMON, in the form
    strict structured outputs accept (OpenAI's): every object lists all its properties as
    required and allows no others, so an optional field is required but may be null (read as
    left out), and each kind of operation is its own branch of an anyOf. What a schema cannot
    say (lengths, evidence ids like "e12", counters from 0 to 10) parse_output still checks."""
    def field(kind_type: type | tuple[type, ...], nullable: bool = False) -> dict[str, Any]:
        name = _JSON_TYPES[kind_type if isinstance(kind_type, type) else kind_type[0]]
        spec: dict[str, Any] = {"type": [name, "null"] if nullable else name}
        if name == "array":
            spec["items"] = {"type": "string"}
        return spec

    branches = []
    for kind in OPS:
        properties: dict[str, Any] = {
            "op": {"type": "string", "enum": [kind]},
            **{key: field(kind_type) for key, kind_type in FIELDS[kind].items()},
            **{key: field(kind_type, nullable=True)
               for key, kind_type in OPTIONAL.get(kind, {}).items()},
            "rationale": {"type": "string"},
            "evidence": {"type": "array", "items": {"type": "string"}}}
        branches.append({"type": "object", "properties": properties,
                         "required": list(properties), "additionalProperties": False})
    return {"type": "object",
            "properties": {"operations": {"type": "array", "items": {"anyOf": branches}},
                           "summary": {"type": "string"}},
            "required": ["operations", "summary"], "additionalProperties": False}


def response_format(mode: str) -> dict[str, Any] | None:
    """What a request asks for in `mode` (OUTPUT_MODES): the schema, JSON mode, or nothing (the
    prompt alone says what to answer)."""
    if mode == "schema":
        return {"type": "json_schema",
                "json_schema": {"name": SCHEMA_NAME, "schema": output_schema(), "strict": True}}
    if mode == "json":
        return {"type": "json_object"}
    return None


# -- reading the model's output --------------------------------------------------------------
def parse_output(text: str) -> tuple[list[Operation], str]:
    """The operations in a model reply, and its summary as one line; Rejected when the reply is
    not exactly the JSON we asked for."""
    if len(text) > MAX_OUTPUT_CHARS:
        raise Rejected(f"the model's output is {len(text):,} characters, over the cap of "
                       f"{MAX_OUTPUT_CHARS:,} for one reply")
    body = text.strip()
    if not body:
        raise Rejected("the model's output was empty")
    fence = re.fullmatch(r"```(?:json)?\s*\n(.*)\n```", body, re.S)
    if fence:
        body = fence.group(1).strip()
    data = _load_json(body)
    if not isinstance(data, dict) or not isinstance(data.get("operations"), list):
        raise Rejected('the model\'s output must be an object with an "operations" list')
    if _has_surrogate(list(data)) or _has_surrogate(data.get("summary")):
        raise Rejected(_SURROGATE.format(where="the model's output"))
    extra = set(data) - {"operations", "summary"}
    if extra:
        raise Rejected(f"unexpected keys in the model's output: {', '.join(sorted(extra))}")
    summary = data.get("summary", "")
    if not isinstance(summary, str):
        raise Rejected("summary must be text")
    for n, op in enumerate(data["operations"], 1):
        if isinstance(op, dict):      # a model that wrote \r\n in its JSON strings meant \n
            op.update({k: v.replace("\r\n", "\n") for k, v in op.items()
                       if k in ("title", "body", "text") and isinstance(v, str)})
            # a strict schema (output_schema) has every field, an optional one as null
            for key in OPTIONAL.get(str(op.get("op")), {}):
                if key in op and op[key] is None:
                    del op[key]
        check_operation(op, n)
    return data["operations"], one_line(summary)


def _load_json(body: str) -> Any:
    """The JSON value in a reply: the whole reply, or else, leniently, the one JSON object in it
    that prose (or a code fence) surrounds: the text from its first { to its last }, when that
    parses whole and is not an item of a list. Anything else (two objects, an example object
    beside the answer, prose between braces) is refused, never guessed at."""
    try:
        return _loads(body)
    except ValueError as exc:
        error = exc
    start, end = body.find("{"), body.rfind("}")
    before, after = body[:start].rstrip(), body[end + 1:].lstrip()
    if start > 0 and end > start or start == 0 and after:
        if before.endswith("["):
            raise Rejected("the model's output holds a JSON object inside a list, among prose; "
                           "expected one JSON object") from None
        span = body[start:end + 1]
        try:
            return _loads(span)
        except ValueError:
            try:
                json.JSONDecoder().raw_decode(span)
            except (ValueError, RecursionError):
                pass      # not JSON between the braces either: the whole reply's error says why
            else:         # it parses up to a point: more than one value between the braces
                raise Rejected("the model's output holds more than one JSON value among its "
                               "prose; expected exactly one JSON object") from None
    raise Rejected(f"the model's output is not valid JSON ({error})") from None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:      # the JSON parser recurses once per level of [ or {
        raise Rejected("the model's output is not valid JSON (nested too deeply)") from None


def check_operation(op: Any, n: int) -> None:
    """Reject operation number `n` unless it has exactly its kind's fields, of the right types
    (check_fields), and text that reads back as written (check_text)."""
    if not isinstance(op, dict):
        raise Rejected(f"operation {n} is not an object")
    if _has_surrogate(op):
        raise Rejected(_SURROGATE.format(where=f"operation {n}"))
    kind = op.get("op")
    if kind not in OPS:
        raise Rejected(f"operation {n}: unknown op {clip(repr(kind))} (allowed: {', '.join(OPS)})")
    where = f"operation {n} ({kind})"
    _check_fields(op, kind, where)
    _check_text(op, where)


def _check_fields(op: Operation, kind: str, where: str) -> None:
    """The fields an operation of `kind` has, their types, and the values they may take."""
    allowed = COMMON | set(FIELDS[kind]) | set(OPTIONAL.get(kind, {}))
    extra = set(op) - allowed
    if extra:
        raise Rejected(f"{where}: unexpected field(s) {', '.join(sorted(extra))}")
    for key, kind_type in FIELDS[kind].items():
        value = op.get(key)
        if not isinstance(value, kind_type) or (isinstance(value, str) and not value.strip()):
            raise Rejected(f"{where}: '{key}' is missing or empty")
    if not isinstance(op.get("rationale"), str) or not op["rationale"].strip():
        raise Rejected(f"{where}: every operation needs a rationale")
    evidence = op.get("evidence")
    if (not isinstance(evidence, list) or not evidence
            or not all(event_number(e) is not None for e in evidence)):
        raise Rejected(f"{where}: evidence must be a non-empty list of event ids like \"e12\"")
    if "title" in op and (not isinstance(op["title"], str) or not op["title"].strip()
                          or len(op["title"].strip().splitlines()) > 1):
        raise Rejected(f"{where}: title must be one non-empty line")
    if kind == "merge" and (len(op["ids"]) < 2 or not all(isinstance(i, str) for i in op["ids"])
                            or len(set(op["ids"])) != len(op["ids"])):
        raise Rejected(f"{where}: merge needs two or more distinct lesson ids")
    if kind == "counter":
        for key in ("helpful", "harmful"):
            value = op.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10:
                raise Rejected(f"{where}: {key} must be a whole number from 0 to 10")
        if not op.get("helpful") and not op.get("harmful"):
            raise Rejected(f"{where}: a counter operation must change a counter")
    if kind == "persona_warning" and len(op["text"].strip().splitlines()) > 1:
        raise Rejected(f"{where}: a warning is one line")


def _check_text(op: Operation, where: str) -> None:
    """The model's text: within its length caps, and nothing that would read back as something
    else (an HTML comment is metadata or a pin; a stray line break, heading or fence is
    structure)."""
    for key, cap in (("title", MAX_TITLE_CHARS), ("text", MAX_WARNING_CHARS),
                     ("rationale", MAX_RATIONALE_CHARS)):
        if key in op and len(op[key].strip()) > cap:
            raise Rejected(f"{where}: {key} is {len(op[key].strip()):,} characters, over the cap "
                           f"of {cap:,}")
    for key in ("title", "body", "text", "rationale"):
        if key in op and ("<!--" in op[key] or "-->" in op[key]):
            raise Rejected(f"{where}: {key} may not contain HTML comments (metadata, pins)")
    if "body" in op and any(c in op["body"] for c in LINE_BREAKS):
        raise Rejected(f"{where}: a lesson body breaks lines with \\n only (no \\r, form "
                       "feeds or Unicode line separators)")
    lines = {key: op[key].split("\n") for key in ("body", "text") if key in op}
    if any(re.match(r"#{1,2}\s", line) for line in lines.get("body", [])):
        raise Rejected(f"{where}: a lesson body may not contain # or ## headings")
    for key, text in lines.items():
        if sum(bool(re.match(r"\s*(```|~~~)", line)) for line in text) % 2:
            raise Rejected(f"{where}: {key} opens a code block it never closes")


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
def apply_operations(before: Texts, operations: list[Operation], known_events: set[str],
                     today: str | None = None,
                     used_ids: set[str] | frozenset[str] = frozenset()) -> Texts:
    """The memory texts after the operations. Pure: same input, same output."""
    doc, problems = lessons_fmt.parse(before.get("lessons.md") or "")
    if doc is None:
        raise InvalidAgent(problems)
    archive, problems = lessons_fmt.parse(before.get(ARCHIVE) or BLANK_ARCHIVE, ARCHIVE)
    if archive is None:
        raise InvalidAgent(problems)
    editor = _Editor(doc, archive, before.get("persona.md") or "",
                     today or datetime.now(UTC).strftime("%Y-%m-%d"), used_ids)
    for n, op in enumerate(operations, 1):
        where = f"operation {n} ({op['op']})"
        unknown = [e for e in op["evidence"] if e not in known_events]
        if unknown:
            raise Rejected(f"{where}: evidence {', '.join(unknown)} is not among the log events "
                           "this pass read")
        editor.apply(op, where)
    after = dict(before)
    after["lessons.md"] = editor.doc.render()
    after["persona.md"] = editor.persona
    if editor.archive.lessons:
        after[ARCHIVE] = editor.archive.render()
    return after


class _Editor:
    """The texts apply_operations is building: the lessons, the archive (which grows as lessons
    are retired, and whose ids stay taken) and persona.md; one method per kind of operation."""

    def __init__(self, doc: LessonsDoc, archive: LessonsDoc, persona: str, today: str,
                 used_ids: set[str] | frozenset[str]) -> None:
        self.archive, self.persona, self.today, self.used_ids = archive, persona, today, used_ids
        self.doc = doc.with_ids(self.reserved())
        self.kinds: dict[str, Callable[[Operation, str, list[str]], None]] = {
            "add": self.add, "update": self.update, "merge": self.merge, "retire": self.retire,
            "counter": self.counter, "persona_warning": self.persona_warning}

    def apply(self, op: Operation, where: str) -> None:
        kind = self.kinds.get(op["op"])      # check_operation has vetted the kind
        if kind is not None:
            kind(op, where, list(op["evidence"]))

    def reserved(self) -> set[str]:
        return reserved_ids(self.archive, self.used_ids)

    def lesson(self, lesson_id: str, where: str) -> Lesson:
        found = self.doc.get(lesson_id)
        if found is None:
            raise Rejected(f"{where}: lesson {clip(lesson_id)} does not exist")
        if found.pinned:
            raise Destructive(f"{where}: lesson {lesson_id} is pinned (human-owned)")
        return found

    def archive_copy(self, old: Lesson, note: str, evidence: list[str]) -> None:
        body = old.body.rstrip() + f"{RETIRED_NOTE}{self.today}: {one_line(note)}_"
        self.archive.append(old.changed(body=body, id=_archive_id(self.archive, old.id or ""),
                                        evidence=merge_evidence(old.evidence, evidence)))

    def to_archive(self, old: Lesson, note: str, evidence: list[str]) -> None:
        self.doc.replace(old.id or "", None)
        self.archive_copy(old, note, evidence)

    def add(self, op: Operation, where: str, evidence: list[str]) -> None:
        self.doc.append(Lesson(title=op["title"].strip(), body=op["body"].strip(),
                               id=self.doc.next_id(self.reserved()), evidence=evidence, raw=None))

    def update(self, op: Operation, where: str, evidence: list[str]) -> None:
        old = self.lesson(op["id"], where)
        self.doc.replace(old.id or "", old.changed(
            title=(op.get("title") or old.title).strip(), body=op["body"].strip(),
            evidence=merge_evidence(old.evidence, evidence)))

    def merge(self, op: Operation, where: str, evidence: list[str]) -> None:
        parts = [self.lesson(i, where) for i in op["ids"]]
        merged = parts[0].changed(
            title=op["title"].strip(), body=op["body"].strip(),
            evidence=merge_evidence(*(p.evidence for p in parts), evidence),
            helpful=sum(p.helpful for p in parts), harmful=sum(p.harmful for p in parts))
        # every original goes to the archive, the first too: its id lives on as the merge
        self.archive_copy(parts[0], f"merged into {parts[0].id} (this is its text before the "
                                    f"merge). {op['rationale']}", evidence)
        for other in parts[1:]:
            self.to_archive(other, f"merged into {parts[0].id}. {op['rationale']}", evidence)
        self.doc.replace(parts[0].id or "", merged)

    def retire(self, op: Operation, where: str, evidence: list[str]) -> None:
        self.to_archive(self.lesson(op["id"], where), op["rationale"].strip(), evidence)

    def counter(self, op: Operation, where: str, evidence: list[str]) -> None:
        old = self.lesson(op["id"], where)
        self.doc.replace(old.id or "", old.changed(
            helpful=old.helpful + op.get("helpful", 0), harmful=old.harmful + op.get("harmful", 0),
            evidence=merge_evidence(old.evidence, evidence)))

    def persona_warning(self, op: Operation, where: str, evidence: list[str]) -> None:
        self.persona = _add_warning(self.persona, op["text"].strip())


def merge_evidence(*lists: list[str]) -> list[str]:
    """The event ids of several lists, each once, in order; at most MAX_EVIDENCE, the newest."""
    ids = list(dict.fromkeys(e for items in lists for e in items))
    if len(ids) <= MAX_EVIDENCE:
        return ids
    return sorted(sorted(ids, key=lambda e: event_number(e) or 0)[-MAX_EVIDENCE:], key=ids.index)


def reserved_ids(archive: LessonsDoc, used_ids: set[str] | frozenset[str]) -> set[str]:
    """Ids a new lesson may not take: archived ones (L3-2 reserves L3) and every id used before."""
    return {(x.id or "").split("-")[0] for x in archive.lessons} | set(used_ids)


def _archive_id(archive: LessonsDoc, lesson_id: str) -> str:
    if archive.get(lesson_id) is None:
        return lesson_id
    n = 2
    while archive.get(f"{lesson_id}-{n}") is not None:
        n += 1
    return f"{lesson_id}-{n}"


def _add_warning(persona_text: str, text: str) -> str:
    """persona.md with `- text` at the end of its Warnings section (added when missing), unless
    the line is there already."""
    parts = persona_fmt.split(persona_text)
    if parts is None:
        raise Rejected("persona.md has no front matter")
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
