"""A chat session with an agent: context building, the tool loop, logging. Never prints.

Each turn reloads persona.md and lessons.md from disk (so hand edits are picked up at the next
turn), never reads log.jsonl (start-up and turns cost the same with any log size), and logs
every message, tool call, tool result, feedback and memory edit.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agentmem import llm, prompts, ratings, toolrun
from agentmem.agent import Agent
from agentmem.errors import ModelError
from agentmem.history import Version
from agentmem.lessons import LessonsDoc
from agentmem.memory import Memory
from agentmem.memory_tool import ConfirmEdit, MemoryTool, PendingEdit, schema_for
from agentmem.models import ModelSpec
from agentmem.redact import StreamRedactor, redact
from agentmem.tokens import estimate
from agentmem.tooldefs import ToolDef

MAX_STEPS = 8          # model calls per user message (tool loop)
REPLY_RESERVE = 2048   # tokens kept free for the answer when trimming history
MIN_REPLY = 512        # fewer left for the answer than this: the turn is not sent


def new_session_id() -> str:
    return f"s-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@dataclass
class TurnResult:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    tool_calls: int = 0
    memory_versions: list[Version] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    refused_edits: list[PendingEdit] = field(default_factory=list)   # not confirmed by a person

    def to_json(self) -> dict[str, Any]:
        return {"answer": self.text,
                "usage": llm.usage(self.prompt_tokens, self.completion_tokens, self.cost),
                "tool_calls": self.tool_calls,
                "memory_versions": [v.number for v in self.memory_versions]}


Approver = Callable[[ToolDef, dict[str, Any]], bool]


class ContextOverflow(ModelError):
    """The system prompt and the current turn do not fit the model's context window."""


def fit_lessons(doc: LessonsDoc, budget: int) -> tuple[str, int]:
    """lessons.md as sent, and how many lessons were left out of it (shown_doc)."""
    kept = shown_doc(doc, budget)
    return kept.render(), len(doc.lessons) - len(kept.lessons)


def shown_doc(doc: LessonsDoc, budget: int) -> LessonsDoc:
    """lessons.md as sent: whole when within budget, else without the lowest-rated lessons."""
    if estimate(doc.render()) <= budget:
        return doc
    ranked = sorted((lesson for lesson in doc.lessons if not lesson.pinned),
                    key=lambda x: (x.helpful - 2 * x.harmful, x.line))
    kept = LessonsDoc(list(doc.parts))
    for lesson in ranked:
        if estimate(kept.render()) <= budget:
            break
        kept.parts.remove(lesson)
    return kept


def build_system(memory: Memory, shown: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """The system prompt and warnings about what did not fit; `shown`, when given, gets the id
    and text of each lesson sent (what /good and /bad may count)."""
    budgets = memory.persona.budgets
    warnings = []
    kept = shown_doc(memory.lessons, budgets["lessons"])
    lessons_text = kept.render()
    omitted = len(memory.lessons.lessons) - len(kept.lessons)
    if shown is not None:
        shown.update((lesson.id, lesson.text) for lesson in kept.lessons if lesson.id)
    if omitted:
        warnings.append(f"lessons.md is over its {budgets['lessons']}-token budget: {omitted} "
                        "lower-rated lessons were left out of the context (run agentmem sleep)")
    if estimate(memory.persona.body) > budgets["persona"]:
        warnings.append(f"persona.md is over its {budgets['persona']}-token budget")
    return prompts.system_prompt(memory.persona.body, lessons_text, omitted), warnings


class ChatSession:
    def __init__(self, agent: Agent, spec: ModelSpec, *, approve: Approver | None = None,
                 allow_all_tools: bool = False, confirm_edit: ConfirmEdit | None = None,
                 session_id: str | None = None) -> None:
        """`approve(tool, args)` asks a person before a tool that needs approval runs;
        `confirm_edit(edit)` before a persona.md edit that follows untrusted tool output in
        the same turn. Without them, such tools and edits are refused."""
        self.agent = agent
        self.spec = spec
        self.session_id = session_id or new_session_id()
        self.approve = approve
        self.allow_all_tools = allow_all_tools
        self.confirm_edit = confirm_edit
        self.turns: list[dict[str, Any]] = []     # this session's messages (no system)
        self.agent_versions: list[Version] = []  # memory versions the agent made this session
        self.last_event: str | None = None
        self.last_assistant: str | None = None
        self.user_event: str | None = None
        self.last_turn: ratings.Turn | None = None   # the last completed reply, to rate
        self._shown: dict[str, str] = {}          # lessons in this turn's prompts, by id
        self._untrusted: list[str] = []          # tools whose output came in this turn
        self._lock = agent.session_lock()
        self._window = 0                          # tokens: the setting, else what litellm says
        self._model_window: int | None = None
        self.memory = agent.load()               # refuse to start on an invalid folder

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        """Take the agent's session lock (Locked while another session or a background sleep
        pass holds it) and log the start."""
        self._lock.acquire()
        self._log({"kind": "session_start", "model": self.spec.model})

    def close(self) -> None:
        if self._lock.held:
            self._log({"kind": "session_end"})
            self._lock.release()

    def __enter__(self) -> ChatSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- logging ---------------------------------------------------------------------------
    def _log(self, event: dict[str, Any]) -> dict[str, Any]:
        stored = self.agent.journal.append({"session": self.session_id, **event})[0]
        self.last_event = stored["id"]
        if event["kind"] == "assistant":
            self.last_assistant = stored["id"]
        return stored

    # -- context ---------------------------------------------------------------------------
    def messages(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The system prompt and as many of this session's turns as fit the context window,
        oldest exchanges dropped first. The current turn (the latest user message and the tool
        loop after it) is never dropped; when it cannot fit, ContextOverflow."""
        self.memory = self.agent.load()       # picks up hand edits made since the last turn
        system, warnings = build_system(self.memory, self._shown)
        if self._model_window is None:
            self._model_window = llm.context_window(self.spec.model)
        self._window = self.memory.persona.settings.get("context_window") or self._model_window
        room = self._window - estimate(json.dumps(self.tool_schemas()))
        sizes = [estimate(json.dumps(m)) + 1 for m in self.turns]
        current = next((i for i in range(len(self.turns) - 1, -1, -1)
                        if self.turns[i]["role"] == "user"), 0)
        total, start = estimate(system) + sum(sizes), 0
        while start < current and total > room - REPLY_RESERVE:
            # drop the oldest exchange: everything up to the next user message
            cut = next(i for i in range(start + 1, current + 1) if self.turns[i]["role"] == "user")
            total -= sum(sizes[start:cut])
            start = cut
        if total > room - MIN_REPLY:
            turn = "your message" + (" and this turn's tool calls" if current < len(sizes) - 1
                                     else "")
            raise ContextOverflow(
                f"{self.spec.model}: the system prompt (~{estimate(system)} tokens) and {turn} "
                f"(~{sum(sizes[current:])} tokens) do not fit the model's {self._window}-token "
                f"context window (~{self._window - room} go to tool definitions, {MIN_REPLY} at "
                "least to the reply); nothing was sent",
                "if the model's window is larger, set 'context_window:' in persona.md's front "
                "matter; else lower 'budgets: lessons:' there, shorten persona.md, run 'agentmem "
                "sleep' to condense lessons.md, send a shorter message, or use a model with a "
                "larger window (--model)", kind="context_window")
        if total > room - REPLY_RESERVE:
            warnings.append(f"the prompt nearly fills the model's {self._window}-token context "
                            "window, leaving little room for the reply (lower the lessons budget "
                            "in persona.md or run agentmem sleep)")
        if start:
            warnings.append("older turns of this session were left out to fit the context window")
        return [{"role": "system", "content": system}, *self.turns[start:]], warnings

    def tool_schemas(self) -> list[dict[str, Any]]:
        """The memory tool (Anthropic's native one for the Claude models trained on it, else
        the function schema) and the agent's tools from tools.yaml."""
        return [schema_for(self.spec.model), *(t.schema() for t in self.memory.tools)]

    # -- a turn ----------------------------------------------------------------------------
    def send(self, text: str, on_text: Callable[[str], None] | None = None,
             on_tool: Callable[[str, str], None] | None = None,
             on_retry: Callable[[ModelError, float], None] | None = None) -> TurnResult:
        shown = StreamRedactor()      # on_text gets redacted text; a split secret is held back

        def show_redacted(chunk: str) -> None:
            out = shown.feed(chunk)
            if out and on_text is not None:
                on_text(out)

        stream = show_redacted if on_text is not None else None
        user = self._log({"kind": "user", "content": text})
        user_event = self.user_event = user["id"]
        self.turns.append({"role": "user", "content": text})
        self._untrusted = []
        self._shown, self.last_turn = {}, None
        result = TurnResult(text="")
        try:
            for _ in range(MAX_STEPS):
                messages, warnings = self.messages()
                result.warnings = list(dict.fromkeys(result.warnings + warnings))
                reply = llm.complete(self.spec, messages, tools=self.tool_schemas(),
                                     on_text=stream, temperature=self.memory.persona.settings.get(
                                         "temperature"), on_retry=on_retry)
                self._record_reply(reply, result)
                if on_text is not None:
                    rest = shown.flush()
                    if rest:
                        on_text(rest)
                    shown = StreamRedactor()
                if not reply.tool_calls:
                    if reply.finish_reason == "length":
                        result.warnings.append("the reply was cut off at the model's token limit")
                    return self._finish(text, result)
                for call in reply.tool_calls:
                    result.tool_calls += 1
                    output = self._run_tool(call, user_event, result, on_tool)
                    self.turns.append({"role": "tool", "tool_call_id": call.id,
                                       "content": output})
            result.warnings.append(f"stopped after {MAX_STEPS} model calls in one turn")
            return self._finish(text, result)
        except ModelError as exc:
            self._log({"kind": "turn_failed", "error": exc.message, "error_kind": exc.kind})
            self._drop_unanswered()
            raise
        except KeyboardInterrupt:
            self._log({"kind": "turn_cancelled"})
            self._drop_unanswered()
            raise

    def _finish(self, text: str, result: TurnResult) -> TurnResult:
        """A completed turn: kept as the reply /good and /bad rate."""
        self.last_turn = ratings.Turn(self.last_assistant or "", text, result.text,
                                      dict(self._shown), list(result.memory_versions))
        return result

    def _record_reply(self, reply: llm.Completion, result: TurnResult) -> None:
        """A model reply: logged, added to the session's messages, counted in the turn."""
        result.prompt_tokens += reply.prompt_tokens
        result.completion_tokens += reply.completion_tokens
        result.cost += reply.cost
        self._log({"kind": "assistant", "content": reply.text, "model": reply.model,
                   "usage": reply.usage, "finish_reason": reply.finish_reason,
                   **({"tool_calls": [c.name for c in reply.tool_calls]}
                      if reply.tool_calls else {})})
        assistant: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            assistant["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in reply.tool_calls]
        self.turns.append(assistant)
        result.text += redact(reply.text)

    def _drop_unanswered(self) -> None:
        """Keep the session's messages well-formed after a failed or cancelled turn."""
        while self.turns and self.turns[-1]["role"] != "user":
            self.turns.pop()
        if self.turns:
            self.turns.pop()

    def _run_tool(self, call: llm.ToolRequest, user_event: str, result: TurnResult,
                  on_tool: Callable[[str, str], None] | None) -> str:
        try:
            parsed: Any = json.loads(call.arguments or "{}")
        except ValueError:
            parsed = call.arguments
        self._log({"kind": "tool_call", "name": call.name, "arguments": parsed,
                   "call_id": call.id})
        if call.name == "memory":
            source = ", ".join(self._untrusted) or None
            tool = MemoryTool(self.agent, evidence=lambda: [user_event], after_untrusted=source,
                              confirm=self.confirm_edit)
            outcome = tool.run(call.arguments)
            if outcome.version is not None:
                self.agent_versions.append(outcome.version)
                result.memory_versions.append(outcome.version)
            if outcome.refused is not None:
                result.refused_edits.append(outcome.refused)
            if outcome.command != "view":
                self._log({"kind": "memory_edit", "command": outcome.command,
                           "path": outcome.path, "ok": outcome.ok, "reason": outcome.reason,
                           "version": outcome.version.number if outcome.version else None,
                           # the exact version, for a number two synced machines may share
                           **({"commit": outcome.version.commit} if outcome.version else {}),
                           **({"after_untrusted": True, "untrusted_tools": list(self._untrusted)}
                              if source else {}),
                           **({} if outcome.ok else {"error": outcome.output})})
            output, ok = outcome.output, outcome.ok
        else:
            output, ok, ran = self._run_user_tool(call)
            if ran and call.name not in self._untrusted:
                self._untrusted.append(call.name)
        if on_tool:
            on_tool(call.name, output)
        self._log({"kind": "tool_result", "call_id": call.id, "name": call.name, "ok": ok,
                   "untrusted": call.name != "memory", "content": output})
        if call.name != "memory":
            output = prompts.TOOL_RESULT_NOTE + output
        return output

    def _run_user_tool(self, call: llm.ToolRequest) -> tuple[str, bool, bool]:
        """(output, ok, ran): `ran` when the tool really ran, so its output is untrusted."""
        tool = next((t for t in self.memory.tools if t.name == call.name), None)
        if tool is None:
            return f"error: there is no tool named {call.name!r}", False, False
        try:
            args = toolrun.parse_arguments(call.arguments)
        except ValueError as exc:
            return f"error: {exc}", False, False
        allowed = (self.allow_all_tools or tool.approve == "auto"
                   or tool.name in (self.memory.persona.settings.get("allow_tools") or []))
        if not allowed and not (self.approve and self.approve(tool, args)):
            return "error: the user did not approve running this tool", False, False
        outcome = toolrun.run(tool, args, self.agent.folder)
        return outcome.output, outcome.ok, True

    # -- feedback and undo -----------------------------------------------------------------
    def feedback(self, rating: str | None, text: str = "") -> dict[str, Any]:
        return self._log({"kind": "feedback", "rating": rating, "content": text,
                          "about": self.last_assistant})

    def rate(self, rating: str, text: str = "") -> ratings.Counted | None:
        """/good or /bad: the last reply's rating, counted for the lessons it rests on
        (ratings.count) and logged as a feedback event naming them. None, with nothing logged,
        when no reply of this session can be rated yet."""
        turn = self.last_turn
        if turn is None:
            return None
        counted = ratings.count(self.agent, turn, rating, self.agent_versions)
        self._log({"kind": "feedback", "rating": rating, "content": text, "about": turn.reply,
                   **counted.to_log()})
        return counted

    def undo(self) -> Version | None:
        """Revert the agent's most recent memory edit in this session."""
        if not self.agent_versions:
            return None
        target = self.agent_versions.pop()
        version = self.agent.revert(target.commit)
        self._log({"kind": "memory_edit", "command": "undo", "ok": True,
                   "version": version.number, "commit": version.commit,
                   "reason": f"user undid version {target.number}"})
        return version
