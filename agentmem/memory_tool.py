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
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentmem import lessons as lessons_fmt
from agentmem import persona as persona_fmt
from agentmem.agent import Agent
from agentmem.errors import AgentmemError, InvalidAgent
from agentmem.guards import EDITABLE, Rejected, guard_agent_edit
from agentmem.history import Version
from agentmem.tokens import estimate
from agentmem.toolrun import parse_arguments

ROOT = "/memories"
COMMANDS = ("view", "create", "str_replace", "insert", "delete", "rename")
CAP_FACTOR = 2          # a file may grow to twice its token budget, no more
UNTRUSTED_LINE = "Agentmem-Untrusted"   # ends a version's message: made after tool output

SCHEMA: dict[str, Any] = {"type": "function", "function": {
    "name": "memory",
    "description": (
        "View and edit your own memory files: /memories/persona.md (identity and standing "
        "instructions; the settings block at the top is read-only) and /memories/lessons.md "
        "(what you have learned, one '## Title' section per lesson). Commands: view, create, "
        "str_replace, insert, delete, rename. Always give a short reason for an edit."),
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


def after_untrusted(message: str) -> bool:
    """Whether a version's message says the edit followed untrusted tool output."""
    return any(line.startswith(UNTRUSTED_LINE + ":") for line in message.splitlines())


def has_surrogate(value: Any) -> bool:
    """Whether a JSON value holds a lone surrogate (valid JSON, but no UTF-8 can encode it)."""
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_surrogate(v) for v in value)
    return False


def resolve_path(raw: Any) -> str:
    """Map a model-given path to one of the editable file names, or refuse."""
    if not isinstance(raw, str) or not raw:
        raise Rejected("path must be a non-empty string such as /memories/lessons.md")
    if len(raw) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise Rejected(f"invalid path {raw!r}")
    if not raw.isascii():
        raise Rejected(f"invalid path {raw!r}: only plain ASCII paths are allowed")
    if any(c in raw for c in ("\\", "%", "~", "*", "?", ":")) or ".." in raw:
        raise Rejected(f"invalid path {raw!r}: use /memories/persona.md or /memories/lessons.md")
    for prefix in (ROOT + "/", ROOT[1:] + "/", "./"):
        if raw.startswith(prefix):
            rest = raw[len(prefix):]
            break
    else:
        rest = raw
    if rest not in EDITABLE:
        raise Rejected(f"access denied: {raw!r} is not one of your memory files "
                      "(/memories/persona.md, /memories/lessons.md)")
    return rest


def numbered(text: str, view_range: Any = None) -> str:
    lines = text.splitlines()
    start, end = 1, len(lines)
    if view_range is not None:
        if (not isinstance(view_range, list) or len(view_range) != 2
                or not all(isinstance(n, int) for n in view_range)):
            raise Rejected("view_range must be [first line, last line]")
        start, end = view_range[0], (len(lines) if view_range[1] == -1 else view_range[1])
        if start < 1 or start > max(1, len(lines)) or end < start:
            raise Rejected(f"view_range {view_range} is outside the file's {len(lines)} lines")
    return "\n".join(f"{n:6}\t{lines[n - 1]}" for n in range(start, min(end, len(lines)) + 1))


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
            outcome.output = f"error: the edit would break the file, so it was not made:\n{exc}"
        except AgentmemError as exc:
            outcome.output = f"error: {exc.message}"
        return outcome

    def _view(self, args: dict[str, Any]) -> str:
        path = args.get("path") or ROOT
        if path in (ROOT, ROOT + "/", "/", "", "."):
            texts = self.agent.read_texts()
            rows = [f"{name}\t{len((texts.get(name) or '').splitlines())} lines" for name in EDITABLE]
            return f"Files in {ROOT}:\n" + "\n".join(rows)
        name = resolve_path(path)
        self._check_link(name)
        text = self.agent.read_texts().get(name) or ""
        return numbered(text, args.get("view_range"))

    def _check_link(self, name: str) -> None:
        path = self.agent.folder / name
        if os.path.islink(path) or path.resolve().parent != self.agent.folder:
            raise Rejected(f"access denied: {name} is a link")

    def _edit(self, command: str, args: dict[str, Any], reason: str) -> tuple[str, Version | None]:
        if command in ("delete", "rename"):
            name = resolve_path(args.get("path") if command == "delete" else args.get("old_path"))
            raise Rejected(f"{name} cannot be {command}d: your memory is exactly persona.md and "
                          "lessons.md. To retire a lesson, remove its section with str_replace")
        name = resolve_path(args.get("path"))
        self._check_link(name)
        budget = 0

        def compute(texts: dict[str, str | None]) -> dict[str, str | None]:
            nonlocal budget
            current = texts.get(name) or ""
            new = apply_command(command, current, args)
            if name == "lessons.md":
                new = self._link_new_lessons(current, new, texts.get("archive.md"))
            memory = persona_fmt.parse(texts.get("persona.md") or "")[0]
            budgets = memory.budgets if memory else persona_fmt.DEFAULT_BUDGETS
            budget = budgets["persona" if name == "persona.md" else "lessons"]
            body = (persona_fmt.split(new) or ("", new, 0))[1] if name == "persona.md" else new
            if estimate(body) > CAP_FACTOR * budget:
                raise Rejected(f"{name} would be ~{estimate(body)} tokens, over its cap of "
                              f"{CAP_FACTOR * budget}; shorten or merge lessons instead")
            return {name: new}

        message = _subject(reason) or f"memory {command} {name}"
        if self.after_untrusted:
            message += f"\n\n{UNTRUSTED_LINE}: after tool output from {self.after_untrusted}"
            if name == "persona.md":
                self._confirm(name, command, reason, compute)
        version = self.agent.update(compute, "agent", message, check=guard_agent_edit)
        if version is None:
            return f"{name}: no change (the text is already like that)", None
        return f"{name} updated (version {version.number})", version

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


def apply_command(command: str, text: str, args: dict[str, Any]) -> str:
    def need(key: str, kind: type) -> Any:
        value = args.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise Rejected(f"{command} needs '{key}' ({kind.__name__})")
        return value

    if command == "create":
        return need("file_text", str)
    if command == "str_replace":
        old, new = need("old_str", str), args.get("new_str", "")
        if not isinstance(new, str):
            raise Rejected("new_str must be a string")
        if not old:
            raise Rejected("old_str must not be empty")
        count = text.count(old)
        if count == 0:
            raise Rejected("no replacement was made: old_str does not appear verbatim in the file "
                          "(view it first)")
        if count > 1:
            raise Rejected(f"no replacement was made: old_str appears {count} times; include more "
                          "context so it is unique")
        return text.replace(old, new, 1)
    if command == "insert":
        line, insert = need("insert_line", int), need("insert_text", str)
        lines = text.splitlines(keepends=True)
        if line < 0 or line > len(lines):
            raise Rejected(f"insert_line {line} is outside the file's {len(lines)} lines")
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.insert(line, insert if insert.endswith("\n") else insert + "\n")
        return "".join(lines)
    raise Rejected(f"unknown command {command!r}")


def _subject(reason: str) -> str:
    """The model's reason as a version's subject: one line, never a trailer of ours."""
    line = " ".join(reason.split())[:300]
    return f"memory edit: {line}" if re.match(r"(?i)agentmem-[\w-]*\s*:", line) else line
