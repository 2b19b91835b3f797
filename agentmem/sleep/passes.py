"""One sleep pass over one agent: plan it, ask the model (propose), write the result (apply).

A pass reads the log events after the cursor (cost proportional to new events, not to the log)
and sends them, in chunks that fit the model's context window, with the current memory. Each
reply's operations are applied in code (ops) and the result checked whole (guards); a reply
that fails is refused with nothing written, the cursor unmoved and the raw output kept under
.agentmem/sleep/. A pass that succeeds is written as ONE version authored `sleep`, and the
cursor moves with it.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentmem import llm, models, prompts
from agentmem.agent import INTENT, Agent
from agentmem.errors import AgentmemError, Conflict, InvalidAgent, Locked, ModelError, Refused
from agentmem.fsutil import atomic_write
from agentmem.guards import Destructive, Rejected
from agentmem.history import CURSOR_TRAILER, Version
from agentmem.journal import Cursor, consumed, event_number, learnable
from agentmem.memory import ARCHIVE, Memory, validate
from agentmem.models import ModelSpec
from agentmem.redact import redact_obj
from agentmem.sleep import context, retire
from agentmem.sleep.guards import DEFAULT_MAX_SHRINK, check_result
from agentmem.sleep.ops import (
    MAX_OUTPUT_CHARS,
    OUTPUT_MODES,
    OUTPUT_TOKENS,
    Operation,
    Texts,
    apply_operations,
    describe,
    parse_output,
    response_format,
)
from agentmem.tokens import estimate

if TYPE_CHECKING:
    from agentmem.sleep.check import CheckReport
    from agentmem.sleep.check import Settings as CheckSettings


def prepare(agent: Agent, model: str | None, fallback: ModelSpec | None = None) -> ModelSpec:
    """The model a pass over `agent` uses: `model` (--model), else $AGENTMEM_SLEEP_MODEL, the
    persona's sleep_model:, ..., else `fallback` (a chat session's model) when given
    (models.resolve); its API key checked, so that a missing key fails before any work, naming
    the variable to set."""
    spec = models.resolve(model, agent.load().persona.settings, sleep=True, fallback=fallback)
    models.check_key(spec)
    return spec


@dataclass
class Proposal:
    """A pass's operations and the memory texts before and after them, not yet written."""

    agent: Agent
    spec: ModelSpec
    operations: list[Operation]
    before: Texts
    after: Texts
    cursor: Cursor
    events: int
    summary: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    calls: int = 0
    repaired: list[str] = field(default_factory=list)   # reasons a repair round fixed
    output_mode: str = "prompt"      # how the answer was asked for: ops.OUTPUT_MODES
    warnings: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    max_shrink: float = DEFAULT_MAX_SHRINK
    check: CheckReport | None = None      # the regression check's score (sleep --check)

    @property
    def usage(self) -> dict[str, Any]:
        return llm.usage(self.prompt_tokens, self.completion_tokens, self.cost)

    def count(self, reply: llm.Completion) -> None:
        """Add one model reply's usage, and keep its raw text (for a refusal)."""
        self.calls += 1
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        self.cost += reply.cost
        self.raw.append(reply.text)

    def diff(self) -> str:
        out: list[str] = []
        for name in ("persona.md", "lessons.md", ARCHIVE):
            a, b = self.before.get(name) or "", self.after.get(name) or ""
            if a != b:
                out += difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True),
                                            f"a/{name}", f"b/{name}")
        return "".join(line if line.endswith("\n") else line + "\n" for line in out)

    def to_json(self) -> dict[str, Any]:
        return {"agent": str(self.agent.folder), "model": self.spec.model, "events": self.events,
                "operations": self.operations, "summary": self.summary,
                "usage": {**self.usage, "calls": self.calls}, "repaired": self.repaired,
                "output_mode": self.output_mode,
                "warnings": self.warnings, "diff": self.diff(),
                **({"check": self.check.to_json()} if self.check is not None else {})}


# -- planning and proposing ------------------------------------------------------------------
@dataclass
class Plan:
    """What a pass would send, before sending it: for estimates and caps."""

    chunks: list[list[str]]
    events: list[dict[str, Any]]
    cursor: Cursor
    prompt_tokens: int
    over_budget: bool
    warnings: list[str]
    texts: Texts                 # the memory files the plan was made from
    memory: Memory

    @property
    def output_tokens(self) -> int:
        return OUTPUT_TOKENS * len(self.chunks)


def plan(agent: Agent, spec: ModelSpec) -> Plan:
    if (agent.state_dir / INTENT).exists():
        agent.record_hand_edits()       # settle an interrupted write first: the pass builds on
    texts = agent.read_texts()          # what it leaves (a half-done one is put back)
    memory, problems = validate(texts)
    if memory is None:
        raise InvalidAgent(problems)
    read = agent.journal.read(agent.sleep_cursor())
    # bookkeeping, and events another machine's pass learnt from (arrived by sync), are
    # skipped; the cursor still moves past them (read.end)
    events = learnable(read.events)
    lines = [context.render_event(e) for e in events]
    budgets = memory.persona.budgets
    lessons_tokens = estimate(memory.texts["lessons.md"])
    over = lessons_tokens > budgets["lessons"]
    fixed = estimate(prompts.SLEEP_SYSTEM) + estimate(memory.persona.body) + lessons_tokens + 200
    # the schema a request carries (output_mode) is sent, and paid for, with every chunk
    fixed += format_tokens(output_mode(spec, memory.persona.settings))
    window = memory.persona.settings.get("context_window") or llm.context_window(spec.model)
    limit = max(1000, window - fixed - OUTPUT_TOKENS)
    chunks = context.chunk_events(lines, limit) if lines else ([[]] if over else [])
    prompt_tokens = sum(fixed + sum(estimate(x) + 1 for x in chunk) for chunk in chunks)
    return Plan(chunks, events, read.end, prompt_tokens, over, list(read.warnings), texts, memory)


def estimate_cost(spec: ModelSpec, p: Plan) -> float | None:
    prices = llm.price(spec.model)
    if prices is None:
        return None
    return p.prompt_tokens * prices[0] + p.output_tokens * prices[1]


def _check_caps(spec: ModelSpec, p: Plan, max_cost: float | None, max_tokens: int | None) -> None:
    """Refused before any call when the plan could pass --max-tokens or --max-cost."""
    if max_tokens is not None and p.prompt_tokens + p.output_tokens > max_tokens:
        raise Refused(f"this pass would use up to ~{p.prompt_tokens + p.output_tokens} tokens "
                      f"({len(p.events)} new events), over --max-tokens {max_tokens}",
                      "raise the cap, or sleep more often")
    if max_cost is not None:
        cost = estimate_cost(spec, p)
        if cost is None:
            raise Refused(f"no price is known for {spec.model}, so --max-cost cannot be checked",
                          "drop --max-cost, or use --max-tokens")
        if cost > max_cost:
            raise Refused(f"this pass would cost up to ~${cost:.4f}, over --max-cost {max_cost}",
                          "raise the cap, or use a cheaper sleep model (--model)")


def propose(agent: Agent, spec: ModelSpec, *, max_cost: float | None = None,
            max_tokens: int | None = None, on_retry: Callable[[ModelError, float], None] | None = None,
            repair: bool = True) -> Proposal | None:
    """Ask the sleep model for operations, one call per chunk of new events, each chunk seeing
    the memory as the chunks before it left it. None when there is nothing to do. An answer
    refused for its form (not JSON, a wrong field, an unknown lesson or event id) is sent back
    with the reasons once per chunk (`repair`); a destructive result never is."""
    p = plan(agent, spec)
    if not p.chunks:
        return None
    _check_caps(spec, p, max_cost, max_tokens)
    memory = p.memory                   # the files as planned: a later change is caught at apply
    before: Texts = dict(p.texts)
    current = before
    known = {str(e["id"]) for e in p.events}
    for lesson in memory.lessons.lessons:
        known.update(lesson.evidence)
    max_shrink = float((memory.persona.settings.get("sleep") or {}).get("max_shrink",
                                                                        DEFAULT_MAX_SHRINK))
    proposal = Proposal(agent, spec, [], before, before, p.cursor, len(p.events),
                        warnings=p.warnings, max_shrink=max_shrink,
                        output_mode=output_mode(spec, memory.persona.settings))
    summaries = []
    used_ids = agent.used_lesson_ids()
    counted = retire.counted_ratings(p.events)
    for n, chunk in enumerate(p.chunks, 1):
        messages = context.sleep_messages(current, chunk, n, len(p.chunks), used_ids)
        reply = _ask(spec, messages, proposal, on_retry)
        try:
            try:
                operations, summary, current = _read_reply(reply, before, current, known,
                                                           max_shrink, used_ids, counted)
            except _Repairable as first:
                if not repair:
                    raise first.error from None
                _check_repair_cost(spec, messages, reply, proposal, max_cost, first.error)
                messages = [*messages, {"role": "assistant", "content": reply.text},
                            {"role": "user", "content": prompts.SLEEP_REPAIR.format(
                                reasons=first.error)}]
                reply = _ask(spec, messages, proposal, on_retry)
                try:
                    operations, summary, current = _read_reply(reply, before, current, known,
                                                               max_shrink, used_ids, counted)
                except _Repairable as second:
                    raise Rejected(f"{second.error} (and before one repair round: "
                                   f"{first.error})") from None
                proposal.repaired.append(str(first.error))
        except (Rejected, InvalidAgent) as exc:
            path = keep_refused(agent, proposal, str(exc))
            raise Refused(f"sleep pass refused, nothing was changed: {exc}",
                          f"the model's raw output is in {path}") from None
        proposal.operations += operations
        if summary:
            summaries.append(summary)
    try:        # the ratings rule's retirements (sleep/retire.py), guarded like the model's
        ruled, warned, current = retire.add_retirements(current, before, p.events, known,
                                                         max_shrink, used_ids)
    except (Rejected, InvalidAgent) as exc:
        raise Refused(f"sleep pass refused, nothing was changed: {exc}", "the model's raw "
                      f"output is in {keep_refused(agent, proposal, str(exc))}") from None
    proposal.operations += ruled
    proposal.warnings += warned
    proposal.after = current
    proposal.summary = (summaries[0] if len(summaries) == 1 else   # one per chunk
                        "; ".join(s.rstrip(" .;") for s in summaries))
    proposal.warnings += budget_warnings(current)
    return proposal


class _Repairable(Exception):
    """A reply refused for its form or its references, which the model may fix if told why
    (a destructive result is Rejected outright and never sent back)."""

    def __init__(self, error: Rejected | InvalidAgent) -> None:
        super().__init__(str(error))
        self.error = error


def request_options(spec: ModelSpec, mode: str = "prompt") -> dict[str, Any]:
    """The request settings of a sleep call beside its messages, shared by a live pass (_ask)
    and a batch request line (agentmem.sleep.batch), so both ask the same thing; `mode` is how
    the answer is asked for (output_mode)."""
    options: dict[str, Any] = {"max_tokens": OUTPUT_TOKENS, "temperature": 0}
    wanted = response_format(mode)
    if wanted is not None:
        options["response_format"] = wanted
    return options


@functools.cache
def format_tokens(mode: str) -> int:
    """The estimated tokens of what a request in `mode` asks of the answer's form (the JSON
    schema; nothing for the prompt alone), which the provider counts as input."""
    wanted = response_format(mode)
    return estimate(json.dumps(wanted)) if wanted else 0


def output_mode(spec: ModelSpec, settings: dict[str, Any]) -> str:
    """How a pass asks for its answer: persona.md's `sleep: {output: ...}` when it names a mode,
    else (auto) the best litellm says the model takes: a JSON schema, JSON mode, or the prompt
    alone."""
    wanted = str((settings.get("sleep") or {}).get("output", "auto"))
    return wanted if wanted in OUTPUT_MODES else llm.structured_output(spec.model)


# a provider's 400 that blames what was asked of the answer's form (response_format, the
# schema, JSON mode), not the messages
FORMAT_REFUSED = re.compile(r"response_format|json_schema|json_object|\bschema\b|json mode|"
                             r"output[_ ]format|structured output|\bformat\b[^.\n]*\bjson\b|"
                             r"\bjson\b[^.\n]*\bformat\b", re.I)


def _ask(spec: ModelSpec, messages: list[dict[str, Any]], proposal: Proposal,
         on_retry: Callable[[ModelError, float], None] | None) -> llm.Completion:
    """One sleep call. A provider that refuses the schema or JSON mode (a 400 naming it) is
    asked once more with the prompt alone, and so is the rest of the pass; the fallback is
    named among the proposal's warnings."""
    try:
        try:
            reply = llm.complete(spec, messages, on_retry=on_retry,
                                 **request_options(spec, proposal.output_mode))
        except ModelError as exc:
            if (proposal.output_mode == "prompt" or exc.kind != "bad_request"
                    or not FORMAT_REFUSED.search(exc.message)):
                raise
            proposal.warnings.append(f"{spec.model} refused the answer's {proposal.output_mode} "
                                     f"form ({exc.message}); asked again with the prompt alone")
            proposal.output_mode = "prompt"
            reply = llm.complete(spec, messages, on_retry=on_retry,
                                 **request_options(spec, proposal.output_mode))
    except ModelError as exc:
        raise ModelError(f"sleep pass stopped, nothing was changed: {exc.message}", exc.hint,
                         retryable=exc.retryable, kind=exc.kind) from None
    proposal.count(reply)
    return reply


def _check_repair_cost(spec: ModelSpec, messages: list[dict[str, Any]], reply: llm.Completion,
                       proposal: Proposal, max_cost: float | None,
                       error: Rejected | InvalidAgent) -> None:
    """Under --max-cost a repair round is made only if what it may cost still fits beside
    what the pass has spent."""
    if max_cost is None:
        return
    price = llm.price(spec.model)
    tokens = sum(estimate(str(m.get("content") or "")) for m in messages) + estimate(reply.text)
    cost = None if price is None else proposal.cost + tokens * price[0] + OUTPUT_TOKENS * price[1]
    if cost is None or cost > max_cost:
        raise Rejected(f"{error} (no repair round: it could take the pass over --max-cost "
                       f"{max_cost})")


def check_answer(reply: llm.Completion, texts: Texts, known: set[str], max_shrink: float,
                 used_ids: set[str], counted: dict[str, set[str]] | None = None
                 ) -> tuple[list[Operation], str, Texts]:
    """One whole answer (a batch line: no repair round) read through every guard a live pass's
    answer goes through: its operations, summary and the texts after them; Rejected or
    InvalidAgent with the reason when it is refused."""
    try:
        return _read_reply(reply, texts, texts, known, max_shrink, used_ids, counted)
    except _Repairable as exc:
        raise exc.error from None


def _read_reply(reply: llm.Completion, before: Texts, current: Texts, known: set[str],
                max_shrink: float, used_ids: set[str], counted: dict[str, set[str]] | None = None
                ) -> tuple[list[Operation], str, Texts]:
    """One reply's operations and summary, and the texts after its operations: checked on
    their own, and for a later chunk the whole pass so far too. _Repairable when its form or
    references are wrong; Rejected when the result fails a whole-result guard."""
    try:
        if reply.finish_reason == "length":
            raise Rejected("the model's output was cut off at its token limit (truncated)")
        if reply.tool_calls:
            raise Rejected("the model called a tool instead of answering with operations")
        operations, summary = parse_output(reply.text)
        if not operations:          # nothing proposed: nothing to apply or to check
            return operations, summary, current
        retire.check_recount(operations, counted or {})
        result = apply_operations(current, operations, known, used_ids=used_ids)
    except Destructive:
        raise
    except (Rejected, InvalidAgent) as exc:
        raise _Repairable(exc) from None
    check_result(current, result, max_shrink, operations, used_ids)
    if current is not before:         # a later chunk: guard the whole pass too
        check_result(before, result, max_shrink, used_ids=used_ids)
    return operations, summary, result


def budget_warnings(texts: Texts) -> list[str]:
    """What is still over its token budget after a pass (never cut silently: people decide)."""
    memory, _ = validate(texts)          # memoised, and checked by the pass already
    if memory is None:
        return []
    budgets, out = memory.persona.budgets, []
    if estimate(memory.texts["lessons.md"]) > budgets["lessons"]:
        out.append(f"lessons.md is still over its {budgets['lessons']}-token budget after this "
                   "pass; merge or retire lessons by hand, or raise the budget in persona.md")
    if estimate(memory.persona.body) > budgets["persona"]:
        out.append(f"persona.md is over its {budgets['persona']}-token budget (a sleep pass only "
                   "adds warnings to it); shorten it by hand, or raise the budget")
    return out


def keep_refused(agent: Agent, proposal: Proposal, reason: str,
                 check: dict[str, Any] | None = None) -> str:
    """Keep a refused pass's raw output for inspection, its secrets redacted: a pass is refused
    for putting a key in memory, and the key must not stay on disk here either."""
    folder = agent.state_dir / "sleep"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"refused-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}.json"
    outputs = [raw if len(raw) <= MAX_OUTPUT_CHARS else
               raw[:MAX_OUTPUT_CHARS] + f"\n[... {len(raw) - MAX_OUTPUT_CHARS} more characters not kept]"
               for raw in proposal.raw]      # what is kept of a runaway reply is bounded too
    kept = redact_obj({"reason": reason, "model": proposal.spec.model, "outputs": outputs,
                       **({"check": check} if check is not None else {})})
    atomic_write(path, json.dumps(kept, indent=2) + "\n")
    return str(path)


# -- writing ---------------------------------------------------------------------------------
def apply(proposal: Proposal, selected: list[int] | None = None, *,
          state: dict[str, Any] | None = None) -> Version | None:
    """Write the proposal (or the selected operations) as ONE `sleep` version, then move the
    cursor. Refused when memory changed since the proposal was made. `state`: more values for
    state.json, written in the same write as the version and the cursor (a batch marks its
    answer applied there)."""
    agent = proposal.agent
    operations = proposal.operations if selected is None else [
        proposal.operations[i] for i in selected]
    after = proposal.after if selected is None else _chosen(proposal, operations)
    changes = {k: v for k, v in after.items() if proposal.before.get(k) != v}

    def compute(texts: Texts) -> Texts:
        if {k: texts.get(k) for k in proposal.before} != proposal.before:
            raise Conflict("memory changed while the sleep proposal was being reviewed; nothing "
                           "was written", "run agentmem sleep again")
        return changes

    lines = _message(proposal, operations)

    def done(version: Version | None) -> dict[str, Any]:
        return {"sleep_cursor": proposal.cursor.to_json(), "pending_sleep_cursor": None,
                "last_sleep": {"time": datetime.now(UTC).isoformat(timespec="seconds"),
                               "version": version.number if version else None,
                               "operations": len(operations),
                               # memory as this pass left it: where --since-sleep starts
                               "at_version": (version.number if version
                                              else agent.history.latest_number())},
                **(state or {})}

    # the events the cursor moves past, by machine: another machine's pass skips them
    # after a sync (journal.learnable)
    moved = consumed([e for e in agent.journal.read(agent.sleep_cursor()).events
                      if (event_number(e.get("id")) or 0) <= proposal.cursor.event])
    with agent.locked():    # one lock for the pass's writes (each takes it again, cheaply)
        version = None
        if changes:
            cursor = proposal.cursor
            lines += ["", f"{CURSOR_TRAILER}: {cursor.event} {cursor.offset}"]
            # the cursor moves with the version: named in the write's intent, and written to
            # state.json in the one write that follows the version (see Agent.update)
            version = agent.update(compute, "sleep", "\n".join(lines), state=done)
        else:
            agent.update_state(**done(None))
        agent.journal.append({"kind": "sleep", "version": version.number if version else None,
                              "operations": [describe(op) for op in operations],
                              "events": proposal.events, "consumed": moved,
                              "model": proposal.spec.model,
                              "usage": proposal.usage,
                              **({"check": proposal.check.to_json()}
                                 if proposal.check is not None else {})})
    return version


def _chosen(proposal: Proposal, operations: list[Operation]) -> Texts:
    """The texts after a subset of the operations chosen in review, which passes every guard a
    whole pass does."""
    known = {str(e) for op in proposal.operations for e in op["evidence"]}
    try:
        used_ids = proposal.agent.used_lesson_ids()
        after = apply_operations(proposal.before, operations, known, used_ids=used_ids)
        check_result(proposal.before, after, proposal.max_shrink, operations, used_ids)
    except (Rejected, InvalidAgent) as exc:
        raise Refused(f"the chosen operations cannot be applied on their own: {exc}",
                      "choose again, or apply all") from None
    return after


def _message(proposal: Proposal, operations: list[Operation]) -> list[str]:
    """The lines of the version's message: a subject, then one line per operation written."""
    declined = len(proposal.operations) - len(operations)
    if declined:       # the model's summary may describe what was declined: not the subject
        subject = (f"Sleep: {len(operations)} of {len(proposal.operations)} proposed "
                   f"operation(s), chosen in review, from {proposal.events} new events")
    else:
        subject = proposal.summary or (f"Sleep: {len(operations)} operation(s) from "
                                       f"{proposal.events} new events")
    lines = [subject, "", *(f"- {describe(op)}" for op in operations)]
    if declined:
        lines.append(f"({declined} proposed operation(s) were declined in review; the model "
                     f"said: {proposal.summary})" if proposal.summary else
                     f"({declined} proposed operation(s) were declined in review)")
    if proposal.check is not None:
        lines += ["", proposal.check.line()]
    return lines


@dataclass
class PassResult:
    agent: Agent
    ok: bool
    message: str
    version: Version | None = None
    proposal: Proposal | None = None


def run_pass(agent: Agent, spec: ModelSpec, *, apply_it: bool = True, max_cost: float | None = None,
             max_tokens: int | None = None,
             on_retry: Callable[[ModelError, float], None] | None = None,
             repair: bool = True, check: CheckSettings | None = None) -> PassResult:
    """Propose and (unless apply_it is False) apply one pass, holding the agent's sleep lock;
    errors become a failed result whose message is one line. With `check`, the regression
    check (agentmem.sleep.check) scores the proposal before it is applied; a pass it refuses
    is a failed result that keeps its proposal (and the score)."""
    lock = agent.sleep_lock()
    try:
        lock.acquire()
    except Locked as exc:
        return PassResult(agent, False, exc.message)    # its hint ("wait") is for a person
    proposal = None
    try:
        if check is not None:
            from agentmem.sleep import check as checking

            checking.precheck(agent, spec, check, max_cost)
        proposal = propose(agent, spec, max_cost=max_cost, max_tokens=max_tokens,
                           on_retry=on_retry, repair=repair)
        if proposal is None:
            return PassResult(agent, True, "nothing new since the last sleep")
        if check is not None:
            checking.verify(proposal, check, on_retry=on_retry, max_cost=max_cost)
        if not apply_it:
            return PassResult(agent, True, f"{len(proposal.operations)} operation(s) proposed",
                              proposal=proposal)
        version = apply(proposal)
        what = f"version {version.number}" if version else "no change"
        scored = proposal.check
        score = (f", check {scored.wins} won {scored.losses} lost {scored.ties} tied"
                 if scored is not None and scored.turns else "")
        return PassResult(agent, True, f"{len(proposal.operations)} operation(s), {what}, "
                          f"{proposal.prompt_tokens}+{proposal.completion_tokens} tokens, "
                          f"${proposal.cost:.4f}{score}", version=version, proposal=proposal)
    except AgentmemError as exc:
        return PassResult(agent, False, exc.message + (f" ({exc.hint})" if exc.hint else ""),
                          proposal=proposal)
    finally:
        lock.release()
