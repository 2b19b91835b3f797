"""The agent's self-edit tool: the command set of Anthropic's memory tool, confined to the
agent's own persona.md and lessons.md.

Hard limits, enforced in code: only those two files (no `..`, absolute paths, symlinks,
encoded or look-alike tricks: here), never tools.yaml or persona.md's front matter, never a
pinned block, never a secret (agentmem.guards, shared with the sleep pass), a size cap per file
(here), and a result that must still validate. A rejected edit returns an error string to the
model and changes nothing on disk.

An edit made after untrusted tool output in the same turn may carry injected instructions: its
version's message ends with an `Agentmem-Untrusted:` line, and a persona.md edit is made only
when a person confirms it (the `confirm` callable; without one it is refused).
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentmem import lessons as lessons_fmt
from agentmem import persona as persona_fmt
from agentmem.agent import Agent
from agentmem.errors import AgentmemError, InvalidAgent
from agentmem.fsutil import decode_text
from agentmem.guards import EDITABLE, Rejected, guard_agent_edit
from agentmem.history import UNTRUSTED_LINE, Version
from agentmem.memory import validate
from agentmem.tokens import estimate
from agentmem.toolrun import parse_arguments

ROOT = "/memories"
COMMANDS = ("view", "create", "str_replace", "insert", "delete", "rename")
CAP_FACTOR = 2          # a file may grow to twice its token budget, no more
LINE_WIDTH = 6          # line numbers as Anthropic's reference memory tool pads them
FILES = f"{ROOT}/persona.md and {ROOT}/lessons.md"

# Anthropic's own memory tool: Claude models from Claude 4 on are trained on its commands and
# messages. litellm passes the type through for anthropic/ models and adds the beta header
# (context-management-2025-06-27) itself.
NATIVE: dict[str, Any] = {"type": "memory_20250818", "name": "memory"}
_NATIVE_MODEL = re.compile(r"claude-[a-z]+-(\d+)\b")

SCHEMA: dict[str, Any] = {"type": "function", "function": {
    "name": "memory",
    "description": (
        "View and edit your own memory files: /memories/persona.md (identity and standing "
        "instructions; the settings block at the top is read-only) and /memories/lessons.md "
        "(what you have learned, one '## Title' section per lesson). Both files always exist "
        "and are the only ones: view them, then change them with str_replace or insert (create "
        "fails on an existing file; delete and rename are refused). Always give a short reason "
        "for an edit."),
    "parameters": {"type": "object", "properties": {
        "command": {"type": "string", "enum": list(COMMANDS)},
        "path": {"type": "string", "description": "/memories/persona.md or /memories/lessons.md"},
        "view_range": {"type": "array", "items": {"type": "integer"},
                       "description": "view: [first line, last line]; -1 means the end"},
        "file_text": {"type": "string", "description": "create: the whole new file"},
        "old_str": {"type": "string", "description": "str_replace: exact text to replace once"},
        "new_str": {"type": "string", "description": "str_replace: replacement text"},
        "insert_line": {"type": "integer", "description": "insert: after this line (0 = top)"},
        "insert_text": {"type": "string", "description": "insert: the text to insert"},
        "old_path": {"type": "string"}, "new_path": {"type": "string"},
        "reason": {"type": "string", "description": "why you are making this edit"},
    }, "required": ["command"]}}}


def schema_for(model: str) -> dict[str, Any]:
    """The memory tool as offered to `model`: Anthropic's native memory tool to Claude models
    it supports (Claude 4 on, named claude-FAMILY-N, through Anthropic's API), whose commands
    and messages this tool answers in the shapes they were trained on; the function schema,
    with the same commands, to every other model."""
    from agentmem.models import provider_of

    name = model.split("/", 1)[1] if "/" in model else model
    match = _NATIVE_MODEL.match(name)
    if provider_of(model) == "anthropic" and match and int(match.group(1)) >= 4:
        return NATIVE
    return SCHEMA


@dataclass(frozen=True)
class PendingEdit:
    """A persona.md edit that follows untrusted tool output, waiting for a person's yes."""

    path: str
    command: str
    reason: str
    source: str      # the tools whose output came earlier in the turn
    diff: str        # what the edit would change, as a unified diff


class Unconfirmed(Rejected):
    """A persona.md edit after untrusted tool output that no person confirmed."""

    def __init__(self, message: str, edit: PendingEdit) -> None:
        super().__init__(message)
        self.edit = edit


ConfirmEdit = Callable[[PendingEdit], bool]


@dataclass
class ToolOutcome:
    ok: bool
    output: str
    command: str = ""
    path: str = ""
    version: Version | None = None
    reason: str = ""
    refused: PendingEdit | None = None     # an edit refused because no person confirmed it


def has_surrogate(value: Any) -> bool:
    """Whether a JSON value holds a lone surrogate (valid JSON, but no UTF-8 can encode it)."""
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_surrogate(v) for v in value)
    return False


def locate(raw: Any) -> str | None:
    """Where a model-given path points: one of the editable file names, ROOT itself, or None
    for a well-formed path under /memories that names no file there (every other file of the
    agent folder is outside /memories). A path that could reach anything else is refused.
    `lessons.md`, `./lessons.md` and `memories/lessons.md` are taken as /memories/lessons.md."""
    if not isinstance(raw, str) or not raw:
        raise Rejected("path must be a non-empty string such as /memories/lessons.md")
    if len(raw) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise Rejected(f"invalid path {raw!r}")
    if not raw.isascii():
        raise Rejected(f"invalid path {raw!r}: only plain ASCII paths are allowed")
    if any(c in raw for c in ("\\", "%", "~", "*", "?", ":")):
        raise Rejected(f"invalid path {raw!r}: use {FILES}")
    for prefix in ("", "./", ROOT[1:] + "/"):
        if raw.startswith(prefix) and raw[len(prefix):] in EDITABLE:
            return raw[len(prefix):]
    if not raw.startswith(ROOT):
        raise Rejected(f"Path must start with {ROOT}, got: {raw}")
    normal = posixpath.normpath(raw)
    if ".." in raw.split("/") and normal != ROOT and not normal.startswith(ROOT + "/"):
        raise Rejected(f"Path {raw} would escape {ROOT} directory")
    if raw in (ROOT, ROOT + "/"):
        return ROOT
    if normal != raw:                  # `..`, `.` or `//` inside /memories: say it plainly
        raise Rejected(f"invalid path {raw!r}: use {FILES}")
    name = raw[len(ROOT) + 1:] if raw.startswith(ROOT + "/") else ""
    return name if name in EDITABLE else None


def _display(name: str) -> str:
    return ROOT if name == ROOT else f"{ROOT}/{name}"


def _size(n: int) -> str:
    """A byte count as the reference memory tool lists it: 0B, 812B, 2.3K, 1M."""
    if n == 0:
        return "0B"
    unit = min((n.bit_length() - 1) // 10, 3)
    value = n / 1024 ** unit
    shown = f"{int(value)}" if value == int(value) else f"{value:.1f}"
    return shown + "BKMG"[unit]


def numbered(text: str, view_range: Any = None) -> str:
    """The file's lines numbered as the reference shows them: split at each newline (so a
    final newline shows as a last, empty line), and `view_range` [first, last] taken as it
    takes it (first below 1 is 1, last -1 is the end, lines past the end are not there)."""
    lines = text.split("\n")
    start = 1
    if view_range is not None:
        if not isinstance(view_range, list) or \
                not all(isinstance(n, int) and not isinstance(n, bool) for n in view_range):
            raise Rejected("view_range must be [first line, last line]")
        if len(view_range) == 2:
            first, last = view_range
            start = max(1, first)
            lines = lines[start - 1:len(lines) if last == -1 else last]
    return "\n".join(f"{n:>{LINE_WIDTH}}\t{line}" for n, line in enumerate(lines, start))


class MemoryTool:
    def __init__(self, agent: Agent, evidence: Callable[[], list[str]] | None = None, *,
                 after_untrusted: str | None = None, confirm: ConfirmEdit | None = None) -> None:
        """`after_untrusted` names the tools whose output came earlier in this turn."""
        self.agent = agent
        self.evidence = evidence or (lambda: [])
        self.after_untrusted = after_untrusted
        self.confirm = confirm

    def run(self, raw_arguments: str) -> ToolOutcome:
        try:
            args = parse_arguments(raw_arguments)
        except ValueError:
            return ToolOutcome(False, "error: arguments must be a JSON object")
        if has_surrogate(args):
            command = args.get("command")
            return ToolOutcome(False, "error: text contains an invalid character (lone "
                                      "surrogate), which cannot be stored; nothing was written. "
                                      "Send the text again as valid Unicode",
                               command=command if command in COMMANDS else "")
        command = args.get("command")
        outcome = ToolOutcome(False, "", command=str(command or ""),
                              path=str(args.get("path") or args.get("old_path") or ""),
                              reason=str(args.get("reason") or "")[:500])
        try:
            if command not in COMMANDS:
                raise Rejected(f"unknown command {command!r} (use one of {', '.join(COMMANDS)})")
            if command == "view":
                outcome.output = self._view(args)
            else:
                outcome.output, outcome.version = self._edit(command, args, outcome.reason)
            outcome.ok = True
        except Unconfirmed as exc:
            outcome.output = f"error: {exc}"
            outcome.refused = exc.edit
        except Rejected as exc:
            outcome.output = f"error: {exc}"
        except InvalidAgent as exc:
            outcome.output = self._invalid(exc)
        except AgentmemError as exc:
            outcome.output = f"error: {exc.message}"
        return outcome

    def _invalid(self, exc: InvalidAgent) -> str:
        """An invalid result: the edit's own fault, or files a person left unreadable."""
        try:
            already = bool(validate(self.agent.read_texts())[1])
        except InvalidAgent:
            already = True
        if already:
            return ("error: your memory files are not valid as they are, so nothing was done; a "
                    f"person must fix them first:\n{exc}")
        return f"error: the edit would break the file, so it was not made:\n{exc}"

    def _view(self, args: dict[str, Any]) -> str:
        raw = args.get("path") or ROOT
        where = ROOT if raw in ("/", ".") else locate(raw)
        if where is None:
            raise Rejected(f"The path {raw} does not exist. Please provide a valid path.")
        raw_files = self.agent.read_raw()
        if where == ROOT:
            sizes = {name: len(raw_files.get(name) or b"") for name in sorted(EDITABLE)}
            rows = [f"{_size(sum(sizes.values()))}\t{ROOT}"]
            rows += [f"{_size(size)}\t{ROOT}/{name}" for name, size in sizes.items()]
            return (f"Here're the files and directories up to 2 levels deep in {ROOT}, "
                    "excluding hidden items:\n" + "\n".join(rows))
        self._check_link(where)
        try:
            text = decode_text(raw_files.get(where) or b"")
        except UnicodeDecodeError:
            raise Rejected(f"The file {_display(where)} is not a valid UTF-8 text file and "
                           "cannot be read as memory.") from None
        return (f"Here's the content of {_display(where)} with line numbers:\n"
                + numbered(text, args.get("view_range")))

    def _check_link(self, name: str) -> None:
        path = self.agent.folder / name
        if os.path.islink(path) or path.resolve().parent != self.agent.folder:
            raise Rejected(f"Path {_display(name)} would escape {ROOT} directory")

    def _file(self, raw: Any) -> str:
        """The file a str_replace or insert edits."""
        where = locate(raw)
        if where is None:
            raise Rejected(f"The path {raw} does not exist. Please provide a valid path.")
        if where == ROOT:
            raise Rejected(f"The path {raw} is not a file.")
        self._check_link(where)
        return where

    def _edit(self, command: str, args: dict[str, Any], reason: str) -> tuple[str, Version | None]:
        if command in ("create", "delete", "rename"):
            raise Rejected(_refusal(command, args))
        name = self._file(args.get("path"))
        budget, line, stored = 0, 0, ""

        def compute(texts: dict[str, str | None]) -> dict[str, str | None]:
            nonlocal budget, line, stored
            current = texts.get(name) or ""
            new, line = apply_command(command, current, args, _display(name))
            if name == "lessons.md":
                new = self._link_new_lessons(current, new, texts.get("archive.md"))
            memory = persona_fmt.parse(texts.get("persona.md") or "")[0]
            budgets = memory.budgets if memory else persona_fmt.DEFAULT_BUDGETS
            budget = budgets["persona" if name == "persona.md" else "lessons"]
            body = (persona_fmt.split(new) or ("", new, 0))[1] if name == "persona.md" else new
            if estimate(body) > CAP_FACTOR * budget:
                raise Rejected(f"{name} would be ~{estimate(body)} tokens, over its cap of "
                              f"{CAP_FACTOR * budget}; shorten or merge lessons instead")
            stored = new
            return {name: new}

        message = _subject(reason) or f"memory {command} {name}"
        if self.after_untrusted:
            message += f"\n\n{UNTRUSTED_LINE}: after tool output from {self.after_untrusted}"
            if name == "persona.md":
                self._confirm(name, command, reason, compute)
        version = self.agent.update(compute, "agent", message, check=guard_agent_edit)
        if version is None:
            return (f"No change was made: {_display(name)} already reads like that, so no "
                    "version was recorded."), None
        if command == "insert":
            return f"The file {_display(name)} has been edited.", version
        lines = stored.split("\n")
        snippet = "\n".join(f"{n:>{LINE_WIDTH}}\t{lines[n - 1]}"
                            for n in range(max(0, line - 2) + 1, min(len(lines), line + 3) + 1))
        return ("The memory file has been edited. Here is the snippet showing the change (with "
                "line numbers):\n" + snippet), version

    def _confirm(self, name: str, command: str, reason: str,
                 compute: Callable[[dict[str, str | None]], dict[str, str | None]]) -> None:
        """Ask `confirm` about the edit, as it would apply to the files now; refuse without a yes.
        An edit that would be refused anyway, or change nothing, is not asked about."""
        texts = self.agent.read_texts()
        after = {**texts, **compute(texts)}
        guard_agent_edit(texts, after)
        diff = "".join(difflib.unified_diff(
            (texts.get(name) or "").splitlines(keepends=True),
            (after.get(name) or "").splitlines(keepends=True), f"a/{name}", f"b/{name}"))
        if not diff:
            return
        pending = PendingEdit(name, command, reason, self.after_untrusted or "", diff)
        if self.confirm is None or not self.confirm(pending):
            raise Unconfirmed(
                f"{name} was not changed: this edit came after untrusted tool output "
                f"({pending.source}) in this turn, so a person must confirm it, and none did. "
                "Do not retry it; tell the user what you wanted to change and why", pending)

    def _link_new_lessons(self, old: str, new: str, archive_text: str | None) -> str:
        """Give lessons the agent just wrote an id, and the current turn's events as evidence."""
        before, _ = lessons_fmt.parse(old)
        after, problems = lessons_fmt.parse(new)
        if after is None:
            raise InvalidAgent(problems)
        known = {lesson.id for lesson in (before.lessons if before else []) if lesson.id}
        archive = lessons_fmt.parse(archive_text or "")[0]
        known |= {lesson.id for lesson in (archive.lessons if archive else []) if lesson.id}
        doc = after.with_ids(reserved=known | self.agent.used_lesson_ids())
        # a lesson is the agent's new one when it was not there before; a person's lesson
        # that merely lacks metadata gets an id, but no evidence from this unrelated turn
        old_titles = {x.title for x in (before.lessons if before else [])}
        for i, (was, part) in enumerate(zip(after.parts, doc.parts, strict=True)):
            fresh = isinstance(was, lessons_fmt.Lesson) and (
                was.id not in known if was.id else was.title not in old_titles)
            if fresh and isinstance(part, lessons_fmt.Lesson) and not part.evidence \
                    and not part.pinned:
                doc.parts[i] = part.changed(evidence=self.evidence())
        return doc.render()


def _refusal(command: str, args: dict[str, Any]) -> str:
    """Why create, delete or rename cannot be done here, and what to do instead. The paths are
    checked, and the errors worded, as the reference tool words them for a path it refuses."""
    if command == "rename":
        old_raw, new_raw = args.get("old_path"), args.get("new_path")
        old, new = locate(old_raw), locate(new_raw)
        if new is not None:
            return f"The destination {new_raw} already exists"
        if old is None:
            return f"The path {old_raw} does not exist"
        if old == ROOT:
            return f"Cannot rename the {ROOT} directory itself"
        return (f"{_display(old)} cannot be renamed: agentmem reads your memory from exactly "
                f"{FILES}, so both keep their names. To move text from one to the other, "
                "str_replace it out of one and insert it into the other")
    raw = args.get("path")
    where = locate(raw)
    if command == "create":
        if where == ROOT:
            return f"File {ROOT} already exists"
        if where is not None:
            return (f"File {_display(where)} already exists. It cannot be replaced whole: "
                    "view it, then change it with str_replace or insert")
        return (f"{raw} was not created: your memory is exactly {FILES}, and no other file can "
                "be made. Put what you want to remember in one of them with str_replace or "
                "insert")
    if where is None:
        return f"The path {raw} does not exist"
    if where == ROOT:
        return f"Cannot delete the {ROOT} directory itself"
    instead = ("to retire a lesson, str_replace its whole section (from its '## ' title to "
               "the next one) with an empty new_str" if where == "lessons.md" else
               "to remove text from it, str_replace that text with an empty new_str")
    return (f"{_display(where)} cannot be deleted: your memory is exactly {FILES}. "
            f"Instead, {instead}")


def apply_command(command: str, text: str, args: dict[str, Any], path: str) -> tuple[str, int]:
    """The file's text after a str_replace or insert, and the (0-based) line the change
    starts on. Errors are worded as the reference memory tool words them."""
    def need(key: str, kind: type) -> Any:
        value = args.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise Rejected(f"{command} needs '{key}' ({kind.__name__})")
        return value

    if command == "str_replace":
        old, new = need("old_str", str), args.get("new_str", "")
        if not isinstance(new, str):
            raise Rejected("new_str must be a string")
        if not old:
            raise Rejected("old_str must not be empty")
        count = text.count(old)
        if count == 0:
            raise Rejected(f"No replacement was performed, old_str `{old}` did not appear "
                           f"verbatim in {path}.")
        if count > 1:
            starts, at = [], text.find(old)
            while at != -1:            # overlapping occurrences too, as the reference counts
                starts.append(str(text.count("\n", 0, at) + 1))
                at = text.find(old, at + 1)
            raise Rejected(f"No replacement was performed. Multiple occurrences of old_str "
                           f"`{old}` in lines: {', '.join(starts)}. Please ensure it is unique")
        at = text.index(old)
        return text.replace(old, new, 1), text.count("\n", 0, at)
    if command == "insert":
        line, insert = need("insert_line", int), need("insert_text", str)
        lines = text.split("\n")          # lines end at newlines only, as the reference counts
        if lines[-1] == "":
            lines.pop()
        if line < 0 or line > len(lines):
            raise Rejected(f"Invalid `insert_line` parameter: {line}. It should be within the "
                           f"range [0, {len(lines)}].")
        lines.insert(line, insert.rstrip("\n"))
        new = "\n".join(lines)
        return new if new.endswith("\n") else new + "\n", line
    raise Rejected(f"unknown command {command!r}")


def _subject(reason: str) -> str:
    """The model's reason as a version's subject: one line, never a trailer of ours."""
    line = " ".join(reason.split())[:300]
    return f"memory edit: {line}" if re.match(r"(?i)agentmem-[\w-]*\s*:", line) else line
