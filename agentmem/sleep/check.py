"""The regression check: is the agent better or worse with a pass's proposed memory?

Before a proposal is applied, recent real tasks are replayed: up to `turns` user messages from
log.jsonl that got a reply (those rated /good or /bad, given /feedback, or followed by a
correction first), plus the checks a person wrote in the agent's optional checks.yaml. Each is
answered once with the current memory and once with the proposed memory (the system prompt a
chat turn would get, no tools, nothing logged), and a judge model compares each pair blind:
the order is random, and a tie is asked again in the other order, whose verdict then stands.
Identical answers are a tie without asking. The pass is refused when its losses exceed its wins
by more than `margin`.

Used by `agentmem sleep --check` (commands/sleep.py), by passes.run_pass (many agents, eval),
and by batch sleep on collect, through one function:

    verify(proposal, settings, *, on_retry=None, max_cost=None, rng=None) -> CheckReport

`settings` comes from `settings(agent, sleep_spec, enabled=..., judge_model=...)`, which is None
when neither --check nor the persona's `sleep: check:` asks for the check (and checks the
models' keys and checks.yaml before any call).
It replays, judges, adds the check's usage to the proposal's, sets `proposal.check`, and raises
Refused (the pass's output, the replies and the verdicts kept by passes.keep_refused) when the
proposed memory loses. Under `max_cost` it refuses before any call when the proposal's cost so
far plus the check's estimate is over; `precheck` does the same before the pass is asked for.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentmem import llm, models, prompts
from agentmem.agent import Agent
from agentmem.errors import AgentmemError, InvalidAgent, ModelError, Problem, Refused
from agentmem.journal import Cursor
from agentmem.memory import Memory, validate
from agentmem.models import ModelSpec
from agentmem.tokens import estimate

if TYPE_CHECKING:
    from agentmem.sleep.passes import Proposal

CHECKS_FILE = "checks.yaml"
DEFAULT_TURNS = 8
DEFAULT_MARGIN = 0
REPLY_TOKENS = 1024        # the most a replayed answer may take
VERDICT_TOKENS = 8         # "A", "B" or "TIE"
TAIL_BYTES = 1 << 20       # turns are picked from the end of the log: at most this much is read
MAX_CHECKS_BYTES = 256 * 1024
ITEM_KEYS = ("question", "must", "must_not")


# -- settings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """How a check runs: which model replays the turns (the agent's chat model), which judges,
    how many log turns, and how many more losses than wins a pass may have."""

    replay: ModelSpec
    judge: ModelSpec
    turns: int = DEFAULT_TURNS
    margin: int = DEFAULT_MARGIN


def setting(persona_settings: dict[str, Any]) -> dict[str, Any] | None:
    """persona.md's `sleep: check:` as a mapping (true: the defaults), or None when off."""
    value = (persona_settings.get("sleep") or {}).get("check")
    if value is True:
        return {}
    if isinstance(value, dict):
        return value
    return None


def settings(agent: Agent, sleep_spec: ModelSpec, *, enabled: bool = False,
             judge_model: str | None = None) -> Settings | None:
    """The check for a pass over `agent`: on with `enabled` (--check) or persona.md's `sleep:
    check:`, else None. The judge is `judge_model` (--judge-model), else the setting's
    `judge:`, else the sleep model; the replies come from the agent's chat model (the sleep
    model when none is set). Each model's API key, and checks.yaml, are checked here, before
    any work."""
    persona = agent.load().persona.settings
    configured = setting(persona)
    if not enabled and configured is None:
        return None
    configured = configured or {}
    sleep_model = ModelSpec(sleep_spec.model, sleep_spec.api_base,
                            f"the sleep model, {sleep_spec.source}", sleep_spec.api_base_source)
    if judge_model:
        judge = models.resolve(judge_model, persona, flag_name="--judge-model")
    elif configured.get("judge"):
        judge = models.resolve(configured["judge"], persona,
                               flag_name="persona.md 'sleep: check: judge:'")
    else:
        judge = sleep_model
    try:
        replay = models.resolve(None, persona)
    except ModelError:          # no chat model configured: the agent is run on the sleep model
        replay = sleep_model
    models.check_key(judge)
    models.check_key(replay)
    load_checks(agent)          # a bad checks.yaml is refused before any call
    return Settings(replay, judge, int(configured.get("turns", DEFAULT_TURNS)),
                    int(configured.get("margin", DEFAULT_MARGIN)))


# -- what is replayed --------------------------------------------------------------------------
@dataclass
class Item:
    """One request to replay: a user turn from the log, or a check from checks.yaml."""

    question: str
    source: str                     # "e12" (the user event) or "checks.yaml #2"
    reply: str = ""                 # the answer the agent gave then (log turns)
    reaction: str = ""              # what the user made of it: a rating, feedback, a correction
    must: list[str] = field(default_factory=list)
    must_not: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.reaction)


def select(agent: Agent, limit: int) -> list[Item]:
    """Up to `limit` recent user turns that got a reply, newest first, those the user rated,
    gave feedback on or corrected before the rest. A turn counts as corrected when the user's
    next message in the same session made the agent edit its memory (the memory tool is for
    corrections and stable preferences)."""
    turns: list[_Turn] = []
    latest: dict[str, _Turn] = {}              # session -> its latest turn
    for event in _tail(agent):
        kind, session = event.get("kind"), str(event.get("session") or "")
        if kind == "user":
            turn = _Turn(event)
            if session in latest:
                latest[session].next = turn
            latest[session] = turn
            turns.append(turn)
        elif session in latest:
            turn = latest[session]
            if kind == "assistant":
                turn.assistants.add(str(event.get("id")))
                if event.get("content") and not event.get("tool_calls"):
                    turn.reply = str(event["content"])
            elif kind == "memory_edit" and event.get("ok") and event.get("command") != "undo":
                turn.edited = True
        if kind == "feedback":
            about = event.get("about")
            rated = next((t for t in reversed(turns) if about in t.assistants), None) \
                if about else latest.get(session)
            if rated is not None:
                rated.rating = event.get("rating") or rated.rating
                rated.feedback = str(event.get("content") or "") or rated.feedback
    items = []
    for turn in reversed(turns):
        question = str(turn.user.get("content") or "").strip()
        if not question or not turn.reply:
            continue
        reaction = []
        if turn.rating in ("good", "bad"):
            reaction.append(prompts.CHECK_RATED.format(rating=turn.rating))
        if turn.feedback:
            reaction.append(prompts.CHECK_FEEDBACK.format(text=turn.feedback))
        if turn.next is not None and turn.next.edited:
            reaction.append(prompts.CHECK_CORRECTION.format(
                text=str(turn.next.user.get("content") or "")))
        items.append(Item(question, str(turn.user.get("id")), turn.reply, "\n".join(reaction)))
    flagged = [i for i in items if i.flagged]
    return (flagged + [i for i in items if not i.flagged])[:limit]


@dataclass
class _Turn:
    """A user message, the agent's final reply to it, and what the user made of the reply."""

    user: dict[str, Any]
    reply: str = ""
    assistants: set[str] = field(default_factory=set)      # ids of its assistant events
    rating: str | None = None
    feedback: str = ""
    edited: bool = False           # the agent edited its memory in this turn
    next: _Turn | None = None      # the same session's next turn


def _tail(agent: Agent) -> list[dict[str, Any]]:
    """The events in the last TAIL_BYTES of the log (from a line start): the cost of picking
    turns does not grow with the log."""
    path = agent.journal.path
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return []
    offset = 0
    if size > TAIL_BYTES:
        with open(path, "rb") as fh:
            fh.seek(size - TAIL_BYTES)
            fh.readline()                   # the rest of a line cut in the middle
            offset = fh.tell()
    return agent.journal.read(Cursor(0, offset)).events


def load_checks(agent: Agent) -> list[Item]:
    """The checks a person wrote in checks.yaml (none when there is no file), checked whole:
    a list of {question, must, must_not}; a problem is one InvalidAgent line naming the file
    and line."""
    path = agent.folder / CHECKS_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AgentmemError(f"cannot read {path}: {exc.strerror or exc}") from None

    def bad(line: int | None, what: str) -> InvalidAgent:
        return InvalidAgent([Problem(CHECKS_FILE, line, what)],
                            "fix checks.yaml (see docs/format.md) or remove it; nothing was changed")

    if len(raw) > MAX_CHECKS_BYTES:
        raise bad(None, f"is over {MAX_CHECKS_BYTES // 1024} KB; keep a few checks that matter")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad(None, "is not valid UTF-8 text") from None
    from agentmem import yamlutil

    data, problems = yamlutil.load(text, CHECKS_FILE)
    if problems:
        raise InvalidAgent(problems, "fix checks.yaml; nothing was changed")
    if data is None:
        return []
    if not isinstance(data, list):
        raise bad(1, "must be a list of checks, each with question (and must, must_not)")
    items = []
    for n, entry in enumerate(data, 1):
        line = yamlutil.line_of(entry)
        if not isinstance(entry, dict):
            raise bad(line, f"check {n} must be a mapping (question, must, must_not)")
        unknown = [str(k) for k in entry if k not in ITEM_KEYS]
        if unknown:
            raise bad(yamlutil.line_of(entry, unknown[0]), f"check {n}: unknown key "
                      f"'{unknown[0]}' (known: {', '.join(ITEM_KEYS)})")
        question = entry.get("question")
        if not isinstance(question, str) or not question.strip():
            raise bad(line, f"check {n} needs a question (text)")
        lists = {}
        for key in ("must", "must_not"):
            value = entry.get(key)
            values = [] if value is None else [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) and v.strip()
                                                       for v in values):
                raise bad(yamlutil.line_of(entry, key), f"check {n}: {key} must be text or a "
                          "list of texts")
            lists[key] = [v.strip() for v in values]
        items.append(Item(question.strip(), f"{CHECKS_FILE} #{n}", must=lists["must"],
                          must_not=lists["must_not"]))
    return items


# -- the report ----------------------------------------------------------------------------------
@dataclass
class Compared:
    """One replayed request: both answers, the judge's verdicts, and the outcome for the
    proposed memory: win, loss or tie."""

    source: str
    question: str
    before: str
    after: str
    verdicts: list[str]
    outcome: str


@dataclass
class CheckReport:
    replay: str
    judge: str
    wins: int = 0
    losses: int = 0
    ties: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    calls: int = 0
    compared: list[Compared] = field(default_factory=list)
    skipped: str = ""               # why nothing was compared, when nothing was

    @property
    def turns(self) -> int:
        return len(self.compared)

    def count(self, reply: llm.Completion) -> None:
        self.calls += 1
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        self.cost += reply.cost

    def to_json(self, details: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"wins": self.wins, "losses": self.losses, "ties": self.ties,
                               "cost": round(self.cost, 6), "turns": self.turns,
                               "calls": self.calls, "judge": self.judge, "replay": self.replay}
        if details:
            out["compared"] = [c.__dict__ for c in self.compared]
        return out

    def line(self) -> str:
        """The score as a line of the version's message."""
        if not self.compared:
            return f"Check: nothing compared ({self.skipped or 'nothing to replay'})"
        return (f"Check: {self.wins} win(s), {self.losses} loss(es), {self.ties} tie(s) over "
                f"{self.turns} replayed request(s) (judge {self.judge})")


# -- costs -------------------------------------------------------------------------------------
@dataclass
class Estimate:
    calls: int
    tokens: int
    cost: float | None          # None: a model without a known price


def estimate_check(items: list[Item], system_tokens: int, s: Settings) -> Estimate:
    """The most the check may take: per request two replays and up to two verdicts."""
    replay_in = sum(2 * (system_tokens + estimate(i.question) + 8) for i in items)
    replay_out = 2 * REPLY_TOKENS * len(items)
    judge_in = sum(2 * (estimate(prompts.CHECK_JUDGE_SYSTEM) + estimate(i.question)
                        + estimate(i.reply) + estimate(i.reaction)
                        + sum(estimate(x) for x in i.must + i.must_not) + 2 * REPLY_TOKENS + 60)
                   for i in items)
    judge_out = 2 * VERDICT_TOKENS * len(items)
    replay_price, judge_price = llm.price(s.replay.model), llm.price(s.judge.model)
    cost = None
    if replay_price is not None and judge_price is not None:
        cost = (replay_in * replay_price[0] + replay_out * replay_price[1]
                + judge_in * judge_price[0] + judge_out * judge_price[1])
    return Estimate(4 * len(items), replay_in + replay_out + judge_in + judge_out, cost)


def _over(cost: float | None, max_cost: float, what: str, hint: str) -> Refused | None:
    if cost is None:
        return Refused(f"no price is known for the check's models, so --max-cost cannot be "
                       f"checked ({what})", "drop --max-cost, or choose priced models")
    if cost > max_cost:
        return Refused(f"{what} would cost up to ~${cost:.4f}, over --max-cost {max_cost}", hint)
    return None


def precheck(agent: Agent, spec: ModelSpec, s: Settings, max_cost: float | None) -> None:
    """Before the pass is asked for: refused when the pass's estimate and the check's
    together could pass --max-cost (the proposed memory is taken as the current memory plus
    what one reply can add)."""
    if max_cost is None:
        return
    from agentmem.sleep.ops import OUTPUT_TOKENS
    from agentmem.sleep.passes import estimate_cost, plan

    p = plan(agent, spec)
    if not p.chunks:
        return
    items = select(agent, s.turns) + load_checks(agent)
    system = _system(p.memory)[0]
    check = estimate_check(items, estimate(system) + OUTPUT_TOKENS * len(p.chunks), s)
    pass_cost = estimate_cost(spec, p)
    total = None if pass_cost is None or check.cost is None else pass_cost + check.cost
    problem = _over(total, max_cost, f"this pass and its regression check ({check.calls} calls "
                    f"at most for {len(items)} replayed request(s))",
                    "raise the cap, lower the check's turns, or use cheaper models")
    if problem:
        raise problem


# -- verifying -------------------------------------------------------------------------------
def verify(proposal: Proposal, s: Settings, *, on_retry: Callable[[ModelError, float], None]
           | None = None, max_cost: float | None = None,
           rng: random.Random | None = None) -> CheckReport:
    """Replay, judge and score `proposal` (see the module's docstring); Refused when the
    proposed memory loses more than it wins beyond the margin."""
    from agentmem.sleep.passes import keep_refused

    agent = proposal.agent
    report = CheckReport(s.replay.model, s.judge.model)
    proposal.check = report
    if proposal.after == proposal.before:
        report.skipped = "the proposal changes no memory"
        return report
    before, after = _memory(proposal.before), _memory(proposal.after)
    items = select(agent, s.turns) + load_checks(agent)
    if not items:
        report.skipped = "no answered request in the log, and no checks.yaml"
        return report
    (system_before, temperature), (system_after, _) = _system(before), _system(after)
    if max_cost is not None:
        guess = estimate_check(items, max(estimate(system_before), estimate(system_after)), s)
        problem = _over(None if guess.cost is None else proposal.cost + guess.cost, max_cost,
                        f"this pass (${proposal.cost:.4f} so far) and its regression check "
                        f"({guess.calls} calls at most)",
                        "raise the cap, lower the check's turns, or use cheaper models")
        if problem:
            path = keep_refused(agent, proposal, problem.message)
            raise Refused(f"sleep pass refused, nothing was changed: {problem.message}",
                          f"{problem.hint}; the model's raw output is in {path}")
    rng = rng or random.Random(int.from_bytes(os.urandom(8), "big"))
    try:
        for item in items:
            old = _replay(s.replay, system_before, item, temperature, report, on_retry)
            new = _replay(s.replay, system_after, item, temperature, report, on_retry)
            report.compared.append(_judge(s.judge, item, old, new, report, rng, on_retry))
    except _Unreadable as exc:
        _add_usage(proposal, report)
        reason = f"the regression check's judge gave no verdict: {exc}"
        path = keep_refused(agent, proposal, reason, check=report.to_json(details=True))
        raise Refused(f"sleep pass refused, nothing was changed: {reason}",
                      f"the judge's answer and the replies are in {path}") from None
    except ModelError:
        _add_usage(proposal, report)
        raise
    _add_usage(proposal, report)
    outcomes = [c.outcome for c in report.compared]
    report.wins, report.losses = outcomes.count("win"), outcomes.count("loss")
    report.ties = outcomes.count("tie")
    if report.losses - report.wins > s.margin:
        reason = (f"the regression check found the proposed memory worse: {report.losses} "
                  f"loss(es), {report.wins} win(s), {report.ties} tie(s) over {report.turns} "
                  f"replayed request(s), more losses than wins beyond the margin {s.margin}")
        path = keep_refused(agent, proposal, reason, check=report.to_json(details=True))
        raise Refused(f"sleep pass refused, nothing was changed: {reason}",
                      f"the replies and the judge's verdicts are in {path}")
    return report


def _add_usage(proposal: Proposal, report: CheckReport) -> None:
    proposal.prompt_tokens += report.prompt_tokens
    proposal.completion_tokens += report.completion_tokens
    proposal.cost += report.cost
    proposal.calls += report.calls


def _memory(texts: dict[str, str | None]) -> Memory:
    memory, problems = validate(texts)
    if memory is None:
        raise InvalidAgent(problems)
    return memory


def _system(memory: Memory) -> tuple[str, float | None]:
    """The system prompt a chat turn sends with this memory, and the persona's temperature."""
    from agentmem.chat import build_system

    return build_system(memory)[0], memory.persona.settings.get("temperature")


def _replay(spec: ModelSpec, system: str, item: Item, temperature: float | None,
            report: CheckReport, on_retry: Callable[[ModelError, float], None] | None) -> str:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": item.question}]
    reply = _call(spec, messages, REPLY_TOKENS, temperature, on_retry)
    report.count(reply)
    return reply.text.strip()


def _judge(spec: ModelSpec, item: Item, before: str, after: str, report: CheckReport,
           rng: random.Random, on_retry: Callable[[ModelError, float], None] | None) -> Compared:
    """One blind comparison: the proposed memory's answer is A or B at random; a tie is asked
    again in the other order, and that second verdict stands. Identical answers tie unasked."""
    if before == after:
        return Compared(item.source, item.question, before, after, [], "tie")
    after_first = rng.random() < 0.5
    verdicts: list[str] = []
    for order in (after_first, not after_first):
        a, b = (after, before) if order else (before, after)
        reply = _call(spec, prompts.check_judge_messages(
            item.question, a, b, earlier=item.reply, reaction=item.reaction, must=item.must,
            must_not=item.must_not), VERDICT_TOKENS, 0, on_retry)
        report.count(reply)
        verdict = _verdict(reply.text)
        verdicts.append(verdict)
        if verdict != "TIE":
            won = (verdict == "A") == order
            return Compared(item.source, item.question, before, after, verdicts,
                            "win" if won else "loss")
    return Compared(item.source, item.question, before, after, verdicts, "tie")


class _Unreadable(Exception):
    pass


def _verdict(text: str) -> str:
    match = re.match(r"\W*(TIE|A|B)\b", text.strip().upper())
    if match is None:
        raise _Unreadable(f"expected A, B or TIE, got {text.strip()[:80]!r}")
    return match.group(1)


def _call(spec: ModelSpec, messages: list[dict[str, Any]], max_tokens: int,
          temperature: float | None,
          on_retry: Callable[[ModelError, float], None] | None) -> llm.Completion:
    try:
        return llm.complete(spec, messages, max_tokens=max_tokens, temperature=temperature,
                            on_retry=on_retry)
    except ModelError as exc:
        raise ModelError(f"sleep pass stopped in its regression check, nothing was changed: "
                         f"{exc.message}", exc.hint, retryable=exc.retryable,
                         kind=exc.kind) from None
