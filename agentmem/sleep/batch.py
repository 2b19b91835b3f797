"""Sleep many agents through a provider's batch API: submit now, collect the answers later.

`submit` plans each agent's pass as a live pass would (passes.plan), writes one request line per
agent (the same messages, the same settings: passes.request_options) into one JSONL file,
uploads it and creates ONE batch through litellm's files and batches API (llm.batch_submit).
Each agent's state.json then names its batch under `batch`: the batch id, its custom_id, the
log cursor the pass starts from and the one it ends at, and a digest of the memory texts the
request was made from. A record of the batch (its model, agents, status, counts and cost) is
kept in `batches_dir()`, one JSON file per batch, for `agentmem batches`.

A pass whose new events need several chunks cannot be one request line (each chunk is sent
with the memory as the chunk before it left it): its FIRST chunk is submitted, and the pass's
cursor stops after that chunk's last event; the next pass (live or batch) takes the rest.

`collect` retrieves each batch the agents name; once it is completed (or expired or cancelled
with part of its answers) it reads the output and error files and, for each agent whose answer
is there and not yet applied, checks the answer with the same guards as a live pass
(passes.check_answer; there is no repair round in a batch: an answer of the wrong form is
refused, and the next `--batch` or live pass asks again) and applies it with passes.apply, the
agent's `batch` entry marked applied in the same state write as the version and the cursor.
The ratings rule's retirements are added as in a live pass, and the regression check
(agentmem.sleep.check, with --check or persona.md's `sleep: check:`) runs before the apply, with
live calls: batch answers are checked as live ones are.
A collect stopped half-way therefore applies the rest next time, and never one answer twice
(an agent whose cursor already stands at the batch's end cursor has it applied).

An agent whose memory changed after submission (the digest differs) gets the answer's
operations applied to its current texts, only if they still pass every guard and none updates,
merges or retires a lesson whose title or body changed since (the entry keeps a digest of each
lesson); else the answer is refused with the reason, kept under .agentmem/sleep/ like any
refused pass. An agent whose
sleep cursor moved meanwhile (a live pass consumed the events) is refused as stale.

A submission is journalled before anything is sent: `batches_dir()/submitting/TOKEN.json`
lists the agents and their entries, and the batch is created with the token in its metadata.
A submission killed after the provider created its batch and before every agent's state.json
names it is finished by the next `--batch` or `--collect` (recover_submissions): the batch is
found by its token in the provider's list and adopted (its record written, each agent's entry
set), so no agent is submitted, or paid for, twice. When the provider lists no such batch, the
submission never reached it and the journal is dropped. Submissions take turns (a lock in
`batches_dir()`): one started while another sends waits, then finds that one's agents pending.

Costs are at batch prices (llm.batch_price: litellm's batch price for the model, else half the
live price). A batch that failed, expired or was cancelled is reported per agent; those agents
(and refused ones) are submitted again by the next `--batch`, once the answers such a batch
did give are collected.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentmem import llm, recovery
from agentmem.agent import Agent
from agentmem.errors import AgentmemError, InvalidAgent, Locked, ModelError, Refused, UsageError
from agentmem.fsutil import atomic_write, read_json
from agentmem.guards import Rejected
from agentmem.journal import Cursor, event_number, learnable
from agentmem.locks import FileLock, LockTimeout
from agentmem.memory import Memory, validate
from agentmem.models import ModelSpec
from agentmem.sleep import context, retire
from agentmem.sleep.guards import DEFAULT_MAX_SHRINK
from agentmem.sleep.ops import OUTPUT_TOKENS
from agentmem.sleep.passes import (
    FORMAT_REFUSED,
    Proposal,
    apply,
    budget_warnings,
    check_answer,
    format_tokens,
    keep_refused,
    output_mode,
    plan,
    request_options,
)
from agentmem.tokens import estimate

BATCHES_ENV = "AGENTMEM_BATCHES"
PENDING = "submitted"                               # an agent's batch entry awaiting its answer
DONE = ("completed", "failed", "expired", "cancelled")   # a batch's final states
LOST = ("failed", "expired", "cancelled")           # final, and some answers never came
Review = Callable[[Proposal], "list[int] | None"]   # a person's choice: see collect


def batches_dir() -> Path:
    """Where the records of submitted batches live: $AGENTMEM_BATCHES, else
    $XDG_STATE_HOME/agentmem/batches (~/.local/state/agentmem/batches)."""
    if os.environ.get(BATCHES_ENV):
        return Path(os.environ[BATCHES_ENV]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "agentmem" / "batches"


def digest(texts: dict[str, str | None]) -> str:
    """A digest of the memory texts a request was made from."""
    data = json.dumps(sorted(texts.items()), ensure_ascii=False).encode()
    return hashlib.sha256(data).hexdigest()[:32]


def lesson_digests(memory: Memory) -> dict[str, str]:
    """A short digest of each lesson's title and body, by id: which lessons a person edited
    after a request was made from them."""
    return {x.id: hashlib.sha256(x.text.encode()).hexdigest()[:12]
            for x in memory.lessons.lessons if x.id}


def edited_since(entry: dict[str, Any], memory: Memory, operations: list[dict[str, Any]]
                 ) -> None:
    """Rejected when an update, merge or retire in the answer names a lesson whose title or
    body changed after the request was made from it (the answer was written from the old text,
    and would overwrite the person's edit). An entry without the digests is not checked."""
    was = entry.get("lessons")
    if not isinstance(was, dict):
        return
    now = lesson_digests(memory)
    for n, op in enumerate(operations, 1):
        if op.get("op") not in ("update", "merge", "retire"):
            continue
        for lesson_id in op.get("ids") or [op.get("id")]:
            if lesson_id in now and was.get(lesson_id) != now[lesson_id]:
                raise Rejected(f"lesson {lesson_id} was edited after the batch was submitted, "
                               f"and operation {n} ({op['op']}) was written from its old text")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- the fleet-level record ------------------------------------------------------------------
def record_path(batch_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in batch_id)
    return batches_dir() / f"{safe}.json"


def read_record(batch_id: str) -> dict[str, Any]:
    return read_json(record_path(batch_id))


def write_record(record: dict[str, Any]) -> None:
    path = record_path(record["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(record, indent=1) + "\n")


def records() -> list[dict[str, Any]]:
    """Every batch record, newest first."""
    folder = batches_dir()
    found = [read_json(p) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted((r for r in found if r.get("id")), key=lambda r: r.get("created", ""),
                  reverse=True)


# -- submitting ------------------------------------------------------------------------------
@dataclass
class Submitted:
    batch: dict[str, Any] | None          # the record written (None: nothing to submit)
    agents: list[str] = field(default_factory=list)             # folders submitted
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (folder, why)
    estimate: float | None = 0.0          # USD at batch prices, None when no price is known


def submit(agents: Iterable[Agent], spec: ModelSpec, *, max_cost: float | None = None
           ) -> Submitted:
    """Plan every agent's pass and submit one batch of their requests (see the module's doc).
    Agents with nothing new, a pending batch, or a pass over --max-cost (at batch prices) are
    skipped, each with its reason. One submission at a time: another waits for it (see
    _submitting)."""
    llm.batch_model_name(spec)                       # refuses a provider without batches first
    with _submitting():
        return _submit(agents, spec, max_cost=max_cost)


def _submitting(timeout: float = -1) -> FileLock:
    """The lock a submission holds from its plan to its record (in batches_dir(); the OS
    drops it when the process dies). Two at once (a cron run overlapping a slow one) would
    both find the same agents free and submit, and pay for, each twice; and a collect's
    recovery would take a live submission's journal for a dead one's."""
    folder = batches_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / "submit.lock", timeout=timeout)


def _submit(agents: Iterable[Agent], spec: ModelSpec, *, max_cost: float | None) -> Submitted:
    model_name = llm.batch_model_name(spec)
    prices = llm.batch_price(spec.model)
    if max_cost is not None and prices is None:
        raise Refused(f"no price is known for {spec.model}, so --max-cost cannot be checked",
                      "drop --max-cost")
    recover_submissions()        # a submission killed half-way: its agents are not sent again
    statuses: dict[str, str] = {}
    result = Submitted(None, estimate=0.0 if prices else None)
    entries: list[tuple[Agent, dict[str, Any]]] = []
    handle, name = tempfile.mkstemp(prefix="agentmem-batch-", suffix=".jsonl")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            for agent in agents:
                why = _pending(agent, spec, statuses)
                if why:
                    result.skipped.append((str(agent.folder), why))
                    continue
                try:
                    line, entry, cost = _request(agent, spec, model_name, len(entries), prices)
                except AgentmemError as exc:
                    result.skipped.append((str(agent.folder), exc.message))
                    continue
                if line is None:
                    result.skipped.append((str(agent.folder), "nothing new since the last sleep"))
                    continue
                if max_cost is not None and cost is not None and cost > max_cost:
                    result.skipped.append((str(agent.folder), f"this pass would cost up to "
                                           f"~${cost:.4f} at batch prices, over --max-cost "
                                           f"{max_cost}"))
                    continue
                out.write(line)
                entries.append((agent, entry))
                if result.estimate is not None and cost is not None:
                    result.estimate += cost
        if not entries:
            return result
        token = uuid.uuid4().hex
        journal = _journal(token, spec, [(str(a.folder), e) for a, e in entries],
                           result.estimate)
        created = llm.batch_submit(spec, name, metadata={"agentmem": "sleep",
                                                         SUBMISSION_KEY: token})
    finally:
        os.unlink(name)
    result.batch = _adopt(created, journal)
    result.agents = [str(a.folder) for a, _ in entries]
    return result


SUBMISSION_KEY = "agentmem_submission"


def _journal_dir() -> Path:
    return batches_dir() / "submitting"


def _journal(token: str, spec: ModelSpec, entries: list[tuple[str, dict[str, Any]]],
             estimate: float | None) -> dict[str, Any]:
    """Write (atomically) what a submission is about to send, before it is sent."""
    journal = {"token": token, "model": spec.model, "api_base": spec.api_base,
               "created": now(), "estimate": estimate,
               "entries": [[folder, entry] for folder, entry in entries]}
    _journal_dir().mkdir(parents=True, exist_ok=True)
    atomic_write(_journal_dir() / f"{token}.json", json.dumps(journal) + "\n")
    return journal


def _adopt(created: dict[str, Any], journal: dict[str, Any]) -> dict[str, Any]:
    """The batch the provider created for `journal`'s submission, recorded: the fleet record
    first (an agent that names a batch can always find its record), then each agent's entry
    (an agent submitted again meanwhile, in a later batch, keeps that), then the journal
    goes."""
    entries = [(str(f), dict(e)) for f, e in journal["entries"]]
    record = {"id": created["id"], "created": journal["created"], "model": journal["model"],
              "api_base": journal["api_base"], "status": created.get("status") or "validating",
              "request_counts": created.get("request_counts"),
              "input_file_id": created.get("input_file_id"),
              "agents": [f for f, _ in entries], "estimate": journal["estimate"],
              "cost": None, "applied": 0, "refused": 0, "collected": False}
    write_record(record)
    for folder, entry in entries:
        try:
            agent = Agent.open(folder)
        except AgentmemError:
            continue            # gone since: its answer is reported as lost at collect
        held = agent.read_state().get("batch")
        if isinstance(held, dict) and held.get("id") != created["id"] and \
                str(held.get("submitted") or "") > str(journal["created"]):
            continue
        agent.update_state(batch={**entry, "id": created["id"]})
    (_journal_dir() / f"{journal['token']}.json").unlink(missing_ok=True)
    return record


def recover_submissions() -> list[str]:
    """Finish submissions killed between sending and recording (see the module's doc): each
    journalled one whose batch the provider lists is adopted; the others are dropped. The ids
    of the batches adopted."""
    folder = _journal_dir()
    adopted: list[str] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        journal = read_json(path)
        if not journal.get("token") or not journal.get("entries"):
            path.unlink(missing_ok=True)
            continue
        spec = ModelSpec(str(journal["model"]), journal.get("api_base"), "batch")
        found = llm.batch_find(spec, SUBMISSION_KEY, str(journal["token"]))
        if found is None:
            path.unlink(missing_ok=True)      # it never reached the provider
            continue
        adopted.append(_adopt(found, journal)["id"])
    return adopted


def _recover_unless_submitting() -> None:
    """recover_submissions, unless a submission is under way (its journal is live, and the
    submission records its batch itself)."""
    lock = _submitting(timeout=0)
    try:
        lock.acquire()
    except LockTimeout:
        return
    try:
        recover_submissions()
    finally:
        lock.release()


def _pending(agent: Agent, spec: ModelSpec, statuses: dict[str, str]) -> str | None:
    """Why `agent` is not submitted again: its batch is still running, or has answers not yet
    collected (completed, or expired or cancelled after answering some), or its provider could
    not be asked. None when it has no batch, or one whose answers are in (applied or refused),
    or one that failed, expired or was cancelled without answering any. `statuses`: batch id ->
    its status, with "+answers" for a lost one that answered some, or "?" and why."""
    entry = agent.read_state().get("batch")
    if not isinstance(entry, dict) or entry.get("status") != PENDING:
        return None
    batch_id = str(entry.get("id"))
    if batch_id not in statuses:
        record = read_record(batch_id)
        status, counts = record.get("status"), record.get("request_counts")
        if status not in DONE:
            try:
                batch = llm.batch_retrieve(_spec_of(entry, spec), batch_id)
            except AgentmemError as exc:     # not known to be over: never sent twice
                statuses[batch_id] = f"?could not ask for batch {batch_id}: {exc.message}"
                return statuses[batch_id][1:]
            status, counts = batch.get("status"), batch.get("request_counts")
            if record:
                write_record({**record, "status": status, "request_counts": counts})
        answered = isinstance(counts, dict) and bool((counts.get("completed") or 0)
                                                     + (counts.get("failed") or 0))
        statuses[batch_id] = str(status) + ("+answers" if status in LOST and answered else "")
    status = statuses[batch_id]
    if status.startswith("?"):
        return status[1:]
    if status in LOST:
        return None
    if status == "completed":
        return f"batch {batch_id} is completed: collect it first (sleep --collect)"
    if status.endswith("+answers"):
        return (f"batch {batch_id} {status.removesuffix('+answers')} with answers not yet "
                "collected: collect it first (sleep --collect)")
    return f"batch {batch_id} is still {status}"


def _spec_of(entry: dict[str, Any], fallback: ModelSpec) -> ModelSpec:
    return ModelSpec(str(entry.get("model") or fallback.model), entry.get("api_base"), "batch")


def _request(agent: Agent, spec: ModelSpec, model_name: str, index: int,
             prices: tuple[float, float, str] | None
             ) -> tuple[str | None, dict[str, Any], float | None]:
    """One agent's request line (None when there is nothing to sleep on), the entry its state
    keeps, and the request's estimated cost at batch prices."""
    start = agent.sleep_cursor()
    p = plan(agent, spec)
    if not p.chunks:
        return None, {}, 0.0
    chunk = p.chunks[0]
    if len(p.chunks) > 1:              # the first chunk only: the cursor stops at its end
        last = p.events[len(chunk) - 1]
        end = Cursor(event_number(last["id"]) or p.cursor.event, 0)
        events = len(chunk)
    else:
        end, events = p.cursor, len(p.events)
    messages = context.sleep_messages(p.texts, chunk, 1, 1, agent.used_lesson_ids())
    custom_id = f"agent-{index}"
    mode = output_mode(spec, p.memory.persona.settings)
    line = json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": model_name, "messages": messages,
                                **request_options(spec, mode)}}, ensure_ascii=False) + "\n"
    cost = None
    if prices:
        # the schema (or JSON mode) the request carries is input the provider counts too
        tokens = sum(estimate(m["content"]) for m in messages) + format_tokens(mode)
        cost = tokens * prices[0] + OUTPUT_TOKENS * prices[1]
    entry = {"custom_id": custom_id, "status": PENDING, "model": spec.model,
             "api_base": spec.api_base, "submitted": now(), "start": start.to_json(),
             "end": end.to_json(), "events": events, "digest": digest(p.texts),
             "lessons": lesson_digests(p.memory), "output_mode": mode}
    return line, entry, cost


# -- collecting ------------------------------------------------------------------------------
@dataclass
class Outcome:
    """One agent's result in a collect."""

    agent: str
    status: str             # applied, refused, failed, pending, lost, already
    message: str
    batch: str
    version: int | None = None
    usage: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("applied", "already", "pending", "discarded")

    def to_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "ok": self.ok, "status": self.status,
                "message": self.message, "batch": self.batch, "version": self.version,
                "usage": self.usage, "warnings": self.warnings}


@dataclass
class Batch:
    """A batch the agents name, as the provider reports it now."""

    id: str
    spec: ModelSpec
    status: str
    counts: dict[str, Any] | None
    output_file_id: str | None
    error_file_id: str | None
    agents: dict[str, Agent]            # custom_id -> agent, among those asked about
    problem: str = ""                   # why the provider could not be asked (then status "?")

    @property
    def answered(self) -> bool:
        return self.status in DONE and bool(self.output_file_id or self.error_file_id)


def survey(agents: Iterable[Agent]) -> list[Batch]:
    """The batches the agents' pending entries name, each retrieved once (nothing written but
    the fleet record's status)."""
    _recover_unless_submitting()     # a submission killed half-way names its batch first
    found: dict[str, Batch] = {}
    for agent in agents:
        entry = agent.read_state().get("batch")
        if not isinstance(entry, dict) or entry.get("status") != PENDING:
            continue
        batch_id = str(entry.get("id"))
        if batch_id not in found:
            spec = _spec_of(entry, ModelSpec(str(entry.get("model")), None, "batch"))
            try:
                data = llm.batch_retrieve(spec, batch_id)
            except AgentmemError as exc:    # one provider gone or keyless: the others go on
                found[batch_id] = Batch(batch_id, spec, "?", None, None, None, {}, exc.message)
                found[batch_id].agents[str(entry.get("custom_id"))] = agent
                continue
            found[batch_id] = Batch(batch_id, spec, str(data.get("status")),
                                    data.get("request_counts"), data.get("output_file_id"),
                                    data.get("error_file_id"), {})
            record = read_record(batch_id)
            if record:
                write_record({**record, "status": data.get("status"),
                              "request_counts": data.get("request_counts")})
        found[batch_id].agents[str(entry.get("custom_id"))] = agent
    return list(found.values())


@dataclass
class Verify:
    """The regression check a collect runs on each agent's proposal, when it is on for it."""

    enabled: bool
    judge_model: str | None
    on_retry: Callable[[ModelError, float], None] | None
    review: Review | None = None
    max_cost: float | None = None       # the answer's cost and the check's, together

    def __call__(self, proposal: Proposal) -> None:
        from agentmem.sleep import check

        settings = check.settings(proposal.agent, proposal.spec, enabled=self.enabled,
                                  judge_model=self.judge_model)
        if settings is not None:
            check.verify(proposal, settings, on_retry=self.on_retry, max_cost=self.max_cost)


def collect(batches: list[Batch], *, jobs: int = 1, check: bool = False,
            judge_model: str | None = None,
            on_retry: Callable[[ModelError, float], None] | None = None,
            on_result: Callable[[Outcome], None] | None = None,
            review: Review | None = None, max_cost: float | None = None) -> list[Outcome]:
    """Apply the answers of `batches` (from survey) agent by agent, `jobs` agents at once (on
    threads: an apply mostly waits on the disk); see the module's doc. The regression check
    (agentmem.sleep.check), on with `check` (--check) or the agent's persona.md `sleep: check:`,
    scores each proposal before it is applied, with live calls, and refuses one that makes
    answers worse, as for a live pass. `review(proposal)`, when given, decides what is applied:
    the indexes of the operations chosen, None for all, [] to discard (the agent's entry is
    closed as `discarded`, nothing written, and the next --batch asks again). `max_cost`
    refuses an agent whose answer's cost and its check's estimate together are over it."""
    verify = Verify(check, judge_model, on_retry, review, max_cost)
    results: list[Outcome] = []

    def done(outcome: Outcome) -> None:
        results.append(outcome)
        if on_result:
            on_result(outcome)

    for batch in batches:
        if batch.problem:           # still awaited: nothing is marked, and --batch leaves it
            for agent in batch.agents.values():
                done(Outcome(str(agent.folder), "failed", f"could not ask for batch {batch.id}: "
                             f"{batch.problem}; collect again later", batch.id))
            continue
        if not batch.answered:
            status = "lost" if batch.status in LOST else "pending"
            why = (f"batch {batch.id} {batch.status}: resubmit with sleep --batch"
                   if status == "lost" else f"batch {batch.id} is {batch.status}")
            for agent in batch.agents.values():
                if status == "lost":
                    _mark(agent, batch.id, batch.status, why)
                done(Outcome(str(agent.folder), status, why, batch.id))
            continue
        _answered(batch, jobs, verify, done)
    return results


def _answered(batch: Batch, jobs: int, verify: Verify, done: Callable[[Outcome], None]) -> None:
    """A finished batch's answers applied, its agents without one reported lost."""
    prices = llm.batch_price(batch.spec.model)
    answers: dict[str, tuple[Agent, dict[str, Any]]] = {}
    for line in _lines(batch):
        custom_id = str(line.get("custom_id"))
        answered = batch.agents.get(custom_id)
        if answered is not None and custom_id not in answers:
            answers[custom_id] = (answered, line)
    totals = {"cost": 0.0, "applied": 0, "refused": 0}

    def counted(outcome: Outcome) -> None:
        totals["cost"] += (outcome.usage or {}).get("cost") or 0.0
        totals["applied"] += outcome.status == "applied"
        totals["refused"] += outcome.status in ("refused", "failed")
        done(outcome)

    try:
        _each(list(answers.values()), jobs,
              lambda pair: _one(pair[0], batch, pair[1], prices, verify), counted)
    finally:               # what was applied is counted, even when a collect stops half-way
        _account(batch, totals["cost"], int(totals["applied"]), int(totals["refused"]),
                 finished=False)
    for custom_id, agent in batch.agents.items():
        if custom_id not in answers:    # no answer: the batch expired or was cancelled first
            why = f"batch {batch.id} {batch.status} without an answer for this agent: " \
                  "resubmit with sleep --batch"
            _mark(agent, batch.id, batch.status, why)
            done(Outcome(str(agent.folder), "lost", why, batch.id))
    _account(batch, 0.0, 0, 0, finished=True)


def _each(items: list[tuple[Agent, dict[str, Any]]], jobs: int,
          work: Callable[[tuple[Agent, dict[str, Any]]], Outcome],
          done: Callable[[Outcome], None]) -> None:
    """work(item) for each item, `jobs` at once; done(outcome) in this thread, as each ends.
    An error (or Ctrl-C) stops the ones not started; those under way finish."""
    if jobs <= 1 or len(items) <= 1:
        for item in items:
            done(work(item))
        return
    from concurrent.futures import ThreadPoolExecutor, as_completed

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        for future in as_completed([pool.submit(work, item) for item in items]):
            done(future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _lines(batch: Batch) -> Iterator[dict[str, Any]]:
    """The output file's lines, then the error file's: one JSON object per request."""
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        data = llm.batch_file(batch.spec, file_id)
        for raw in data.splitlines():
            if raw.strip():
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(line, dict):
                    yield line


def _account(batch: Batch, cost: float, applied: int, refused: int, *, finished: bool) -> None:
    """Add a collect's cost and counts to the batch's record (kept when a collect stops half-way:
    the next one adds the rest)."""
    record = read_record(batch.id)
    if not record:
        return
    record["cost"] = round((record.get("cost") or 0.0) + cost, 8)
    record["applied"] = int(record.get("applied") or 0) + applied
    record["refused"] = int(record.get("refused") or 0) + refused
    record["collected"] = record.get("collected") or finished
    write_record(record)


def _mark(agent: Agent, batch_id: str, status: str, why: str) -> None:
    """The agent's batch entry, closed: it is no longer pending, and --batch submits it again."""
    with agent.locked():
        entry = agent.read_state().get("batch")
        if isinstance(entry, dict) and entry.get("id") == batch_id:
            agent.update_state(batch={**entry, "status": status, "result": why})


def _one(agent: Agent, batch: Batch, line: dict[str, Any],
         prices: tuple[float, float, str] | None, verify: Verify) -> Outcome:
    folder = str(agent.folder)
    lock = agent.sleep_lock()
    try:
        lock.acquire()
    except Locked as exc:
        return Outcome(folder, "pending", f"{exc.message}: collect again later", batch.id)
    try:
        return _settle(agent, batch, line, prices, verify)
    except AgentmemError as exc:
        return Outcome(folder, "failed", exc.message + (f" ({exc.hint})" if exc.hint else ""),
                       batch.id)
    finally:
        lock.release()


def _settle(agent: Agent, batch: Batch, line: dict[str, Any],
            prices: tuple[float, float, str] | None, verify: Verify) -> Outcome:
    folder = str(agent.folder)
    state = agent.read_state()
    entry = state.get("batch")
    if not isinstance(entry, dict) or entry.get("id") != batch.id or entry.get("status") != PENDING:
        return Outcome(folder, "already", "answer already collected", batch.id)
    landed = (recovery.landed_intent(agent, state) or {}).get("batch")
    if isinstance(landed, dict) and landed.get("id") == batch.id:
        # its version was recorded, and the state write after it was not (a collect killed
        # in between): the version is the proof, so it is never applied again
        agent.update_state(batch=landed)
        return Outcome(folder, "already", "answer already applied", batch.id)
    start, end = Cursor.from_json(entry.get("start")), Cursor.from_json(entry.get("end"))
    cursor = agent.sleep_cursor()
    response = line.get("response") or {}
    body = response.get("body") if isinstance(response, dict) else None
    if line.get("error") or not isinstance(body, dict) or response.get("status_code") != 200:
        why = _line_error(line)
        _mark(agent, batch.id, "failed", why)
        # a provider that cannot take the answer's form refuses every resubmission alike
        form = (" (with `sleep: {output: prompt}` in persona.md)"
                if entry.get("output_mode") not in (None, "prompt") and FORMAT_REFUSED.search(why)
                else "")
        return Outcome(folder, "failed", f"the provider answered this request with an error: "
                       f"{why}; resubmit with sleep --batch{form}", batch.id)
    reply = llm.batch_completion(batch.spec.model, body, prices)
    proposal = Proposal(agent, batch.spec, [], {}, {}, end, int(entry.get("events") or 0),
                        max_shrink=DEFAULT_MAX_SHRINK,
                        output_mode=str(entry.get("output_mode") or "prompt"))
    proposal.count(reply)
    if cursor.event != start.event:
        return _refuse(agent, batch, entry, proposal, "the events it answers were slept on since "
                       "it was submitted (the sleep cursor moved)")
    texts = agent.read_texts()
    changed = digest(texts) != entry.get("digest")
    try:
        if reply.finish_reason == "content_filter":
            raise Rejected("the provider's content filter stopped the reply")
        memory, problems = validate(texts)
        if memory is None:
            raise InvalidAgent(problems)
        proposal.max_shrink = float((memory.persona.settings.get("sleep") or {}).get(
            "max_shrink", DEFAULT_MAX_SHRINK))
        events, known = _shown(agent, start, end, memory)
        used_ids = agent.used_lesson_ids()
        operations, summary, after = check_answer(reply, texts, known, proposal.max_shrink,
                                                  used_ids, retire.counted_ratings(events))
        if changed:
            edited_since(entry, memory, operations)
        # the ratings rule's retirements, on top of the model's, as a live pass adds them
        ruled, warned, after = retire.add_retirements(after, texts, events, known,
                                                      proposal.max_shrink, used_ids)
        operations += ruled
        proposal.warnings += warned
    except (Rejected, InvalidAgent) as exc:
        reason = (f"memory changed after the batch was submitted, and the answer no longer "
                  f"applies cleanly: {exc}" if changed else str(exc))
        return _refuse(agent, batch, entry, proposal, reason)
    proposal.operations, proposal.summary = operations, summary
    proposal.before, proposal.after = texts, after
    proposal.warnings += budget_warnings(after)
    if changed:
        proposal.warnings.append("memory changed after the batch was submitted; its operations "
                                 "still applied cleanly to the current files")
    try:
        verify(proposal)
    except Refused as exc:          # the check kept the refused pass itself
        agent.update_state(batch={**entry, "status": "refused", "result": exc.message})
        return Outcome(folder, "refused", exc.message + (f" ({exc.hint})" if exc.hint else ""),
                       batch.id, usage=proposal.usage)
    selected = verify.review(proposal) if verify.review else None
    if selected == []:
        agent.update_state(batch={**entry, "status": "discarded", "result": "discarded in review"})
        return Outcome(folder, "discarded", "discarded in review: nothing was written; these "
                       "events will be offered again", batch.id, usage=proposal.usage)
    version = apply(proposal, selected, state={"batch": {**entry, "status": "applied",
                                                         "applied": now()}})
    what = f"version {version.number}" if version else "no change"
    return Outcome(folder, "applied", f"{len(operations)} operation(s), {what}, "
                   f"{proposal.prompt_tokens}+{proposal.completion_tokens} tokens, "
                   f"${proposal.cost:.4f}", batch.id,
                   version=version.number if version else None,
                   usage=proposal.usage, warnings=list(proposal.warnings))


def _shown(agent: Agent, start: Cursor, end: Cursor, memory: Memory
           ) -> tuple[list[dict[str, Any]], set[str]]:
    """The events the request showed, and the ids an answer may cite: theirs and the lessons'
    evidence."""
    read = agent.journal.read(start)
    events = [e for e in learnable(read.events) if (event_number(e.get("id")) or 0) <= end.event]
    known = {str(e["id"]) for e in events}
    for lesson in memory.lessons.lessons:
        known.update(lesson.evidence)
    return events, known


def _line_error(line: dict[str, Any]) -> str:
    error = line.get("error")
    if isinstance(error, dict):
        return f"{error.get('code') or 'error'}: {error.get('message') or ''}".strip()
    response = line.get("response") or {}
    body = response.get("body") if isinstance(response, dict) else None
    inner = body.get("error") if isinstance(body, dict) else None
    if isinstance(inner, dict):
        return f"HTTP {response.get('status_code')}: {inner.get('message') or inner}"
    return f"HTTP {response.get('status_code') if isinstance(response, dict) else '?'}"


def _refuse(agent: Agent, batch: Batch, entry: dict[str, Any], proposal: Proposal,
            reason: str) -> Outcome:
    path = keep_refused(agent, proposal, reason)
    agent.update_state(batch={**entry, "status": "refused", "result": reason})
    return Outcome(str(agent.folder), "refused", f"sleep pass refused, nothing was changed: "
                   f"{reason} (the model's raw output is in {path})", batch.id,
                   usage=proposal.usage)


def ready(batches: list[Batch]) -> int:
    """How many agents have an answer (or a lost batch) waiting to be collected."""
    return sum(len(b.agents) for b in batches if b.status in DONE)


def check_usable(spec: ModelSpec) -> None:
    """A UsageError before any work when the model's provider has no batch API."""
    try:
        llm.batch_provider(spec)
    except AgentmemError as exc:
        raise UsageError(exc.message, exc.hint) from None


# -- listing ---------------------------------------------------------------------------------
def listing(under: Path | None = None) -> list[dict[str, Any]]:
    """The batch records (newest first), those with an agent under `under` when given; a batch
    not yet in a final state is asked for its status first, and its record updated. One whose
    provider cannot be asked (unreachable, no key) is listed as last seen, with `unreachable`:
    why."""
    root = under.resolve() if under else None
    out = []
    for record in records():
        folders = [Path(a) for a in record.get("agents") or []]
        if root is not None and not any(f == root or root in f.parents for f in folders):
            continue
        if record.get("status") not in DONE:
            spec = ModelSpec(str(record.get("model")), record.get("api_base"), "batch")
            try:
                data = llm.batch_retrieve(spec, str(record["id"]))
            except AgentmemError as exc:
                out.append({k: v for k, v in record.items() if k != "agents"}
                           | {"agents": len(folders), "unreachable": exc.message})
                continue
            record = {**record, "status": data.get("status"),
                      "request_counts": data.get("request_counts")}
            write_record(record)
        out.append({k: v for k, v in record.items() if k != "agents"} | {"agents": len(folders)})
    return out
