"""`agentmem eval`: does an agent that rewrites its own context get better?

A scenario (YAML under evals/) has a persona, sessions in which a simulated user makes requests
and corrects or confirms the answers, sleep passes, then fresh sessions with probe requests and
checks on the answers and on memory. Every scenario runs three ways in the same run:

- agentmem: the real loop (chat, self-edits, log, guarded sleep);
- no memory: a fresh copy of the starting agent answers the probes;
- append-only: the starting agent answers with every earlier message kept in context.

With a real model the figures measure learning. Offline (tests, CI) the scripted model answers
from the scenario: a probe's "learned" answer is given only when the scenario's marker text
reached the model's context. That proves the machinery (events captured, passes applied, checks
evaluated), not a model's intelligence, and the report says so.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agentmem import sleep as sleep_core
from agentmem.agent import Agent
from agentmem.chat import ChatSession
from agentmem.errors import AgentmemError, UsageError
from agentmem.models import ModelSpec
from agentmem.scripted import PROVIDER, Reply, Script, ToolCall
from agentmem.tokens import estimate

CONDITIONS = ("agentmem", "no_memory", "append_only")
OFFLINE_NOTE = ("offline run on the scripted model: this proves the machinery (events captured, "
                "sleep passes applied, checks evaluated), not a model's intelligence; run with "
                "--model to measure learning")


# -- scenarios ---------------------------------------------------------------------------
@dataclass
class Check:
    contains: list[str] = field(default_factory=list)
    not_contains: list[str] = field(default_factory=list)
    regex: str | None = None
    judge: str | None = None

    def evaluate(self, text: str, judge: Any = None) -> tuple[bool, str]:
        low = text.lower()
        for word in self.contains:
            if word.lower() not in low:
                return False, f"missing {word!r}"
        for word in self.not_contains:
            if word.lower() in low:
                return False, f"contains {word!r}"
        if self.regex and not re.search(self.regex, text, re.I | re.M):
            return False, f"does not match /{self.regex}/"
        if self.judge and judge is not None:
            ok = judge(self.judge, text)
            if not ok:
                return False, f"judge: not '{self.judge}'"
        return True, "ok"


@dataclass
class Scenario:
    name: str
    description: str
    path: Path
    data: dict[str, Any]

    @property
    def sessions(self) -> list[dict[str, Any]]:
        return list(self.data.get("sessions") or [])

    @property
    def probes(self) -> list[dict[str, Any]]:
        return list(self.data.get("probes") or [])


SCENARIO_KEYS = {"name", "description", "persona", "lessons", "budgets", "canary", "sessions",
                 "sleep_every", "probes", "memory", "scripted_sleeps"}
TURN_KEYS = {"user", "reply", "feedback", "rating", "agent_edit"}
PROBE_KEYS = {"user", "expect", "learned_reply", "unlearned_reply", "marker"}
MEMORY_KEYS = {"contains", "not_contains", "persona_contains", "canary_survives",
               "no_duplicates", "max_lessons_tokens", "archived"}


def load_suite(path: Path) -> list[Scenario]:
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"no scenarios (*.yaml) in {path}")
    return [load_scenario(f) for f in files]


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no such scenario: {path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UsageError(f"{where}: invalid YAML") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a scenario is a mapping (name, persona, sessions, probes, ...)")

    def bad(what: str) -> UsageError:
        return UsageError(f"{path}: {what}", "see evals/README.md for the scenario format")

    unknown = set(data) - SCENARIO_KEYS
    if unknown:
        raise bad(f"unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("name", "persona"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise bad(f"'{key}' is required text")
    if not isinstance(data.get("probes"), list) or not data["probes"]:
        raise bad("'probes' must list at least one probe")
    for n, session in enumerate(data.get("sessions") or [], 1):
        turns = session.get("turns") if isinstance(session, dict) else None
        if not isinstance(turns, list) or not turns:
            raise bad(f"session {n} needs a non-empty 'turns' list")
        for turn in turns:
            if not isinstance(turn, dict) or set(turn) - TURN_KEYS or not (
                    "user" in turn or "feedback" in turn or "rating" in turn):
                raise bad(f"session {n}: a turn has user (and reply), or feedback/rating; "
                          f"allowed keys: {', '.join(sorted(TURN_KEYS))}")
    for n, probe in enumerate(data["probes"], 1):
        if not isinstance(probe, dict) or set(probe) - PROBE_KEYS or "user" not in probe \
                or not isinstance(probe.get("expect"), dict):
            raise bad(f"probe {n} needs 'user' and 'expect' (contains, not_contains, regex, judge)")
        if set(probe["expect"]) - {"contains", "not_contains", "regex", "judge"}:
            raise bad(f"probe {n}: expect takes contains, not_contains, regex, judge")
    if set(data.get("memory") or {}) - MEMORY_KEYS:
        raise bad(f"memory checks are {', '.join(sorted(MEMORY_KEYS))}")
    return Scenario(data["name"], data.get("description", ""), path, data)


def _check(expect: dict[str, Any]) -> Check:
    return Check(_listed(expect.get("contains") or None), _listed(expect.get("not_contains") or None),
                 expect.get("regex"), expect.get("judge"))


# -- the scripted stand-in for a model ----------------------------------------------------
class ScenarioModel:
    """Answers from the scenario: queued intents, and probes answered by what reached context."""

    def __init__(self) -> None:
        self.intents: deque[Any] = deque()

    def queue(self, *intents: Any) -> None:
        self.intents.extend(intents)

    def __call__(self, messages: list[dict[str, Any]]) -> Reply:
        if not self.intents:
            raise AssertionError("scenario model: no scripted answer left for this call")
        intent = self.intents.popleft()
        if isinstance(intent, dict) and "marker" in intent:
            context = "\n".join(str(m.get("content") or "") for m in messages).lower()
            learned = intent["marker"].lower() in context
            return Reply(text=intent["learned"] if learned else intent["unlearned"])
        if isinstance(intent, (Reply, ToolCall)):
            return intent if isinstance(intent, Reply) else Reply(tool_calls=[intent])
        return Reply(text=str(intent))


# -- running -----------------------------------------------------------------------------
@dataclass
class ProbeResult:
    condition: str
    question: str
    answer: str
    ok: bool
    why: str


@dataclass
class ScenarioResult:
    name: str
    probes: list[ProbeResult] = field(default_factory=list)
    memory: list[tuple[str, bool, str]] = field(default_factory=list)
    tokens_before: int = 0
    tokens_after: int = 0
    cost: float = 0.0
    sleeps: int = 0
    refused: list[str] = field(default_factory=list)
    events: int = 0
    error: str | None = None

    def passed(self, condition: str) -> tuple[int, int]:
        rows = [p for p in self.probes if p.condition == condition]
        return sum(p.ok for p in rows), len(rows)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "error": self.error, "events": self.events,
                "sleeps": self.sleeps, "refused": self.refused, "cost": round(self.cost, 6),
                "memory_tokens": {"before": self.tokens_before, "after": self.tokens_after},
                "probes": {c: dict(zip(("passed", "total"), self.passed(c), strict=True))
                           for c in CONDITIONS},
                "probe_details": [p.__dict__ for p in self.probes],
                "memory_checks": [{"check": n, "ok": ok, "detail": d} for n, ok, d in self.memory]}


class Runner:
    def __init__(self, spec: ModelSpec, judge: ModelSpec | None = None,
                 workdir: Path | None = None) -> None:
        self.spec = spec
        self.judge_spec = judge
        self.offline = spec.model.startswith(PROVIDER + "/")
        self.model = ScenarioModel()
        self.workdir = workdir
        if self.offline:
            from agentmem import llm

            llm.install_scripted(Script(responder=self.model))

    def judge(self, criterion: str, answer: str) -> bool:
        if self.judge_spec is None:
            return True
        from agentmem import llm

        reply = llm.complete(self.judge_spec, [
            {"role": "system", "content": "You grade answers. Reply with YES or NO only."},
            {"role": "user", "content": f"Criterion: {criterion}\n\nAnswer:\n{answer}\n\n"
                                        "Does the answer meet the criterion?"}], max_tokens=5)
        return reply.text.strip().upper().startswith("YES")

    def run(self, scenario: Scenario) -> ScenarioResult:
        result = ScenarioResult(scenario.name)
        tmp = Path(tempfile.mkdtemp(prefix="agentmem-eval-", dir=self.workdir))
        try:
            self._run(scenario, tmp, result)
        except AgentmemError as exc:
            result.error = exc.message
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            self.model.intents.clear()
        return result

    def _seed(self, scenario: Scenario, folder: Path) -> Agent:
        data = scenario.data
        agent = Agent.create(str(folder))
        settings: dict[str, Any] = {"name": scenario.name, "description": scenario.description
                                    or scenario.name}
        if data.get("budgets"):
            settings["budgets"] = data["budgets"]
        from agentmem import persona as persona_fmt

        texts: dict[str, str | None] = {
            "persona.md": persona_fmt.render(settings, data["persona"].strip() + "\n")}
        lessons = "# Lessons\n\n" + (data.get("lessons") or "").strip() + "\n"
        canary = data.get("canary")
        if canary:
            lessons += f"\n## {canary['title']}\n{canary['body'].strip()}\n"
        texts["lessons.md"] = lessons
        agent.write(texts, "import", f"Seed eval scenario {scenario.name}")
        return agent

    def _run(self, scenario: Scenario, tmp: Path, result: ScenarioResult) -> None:
        data = scenario.data
        start = self._seed(scenario, tmp / "agentmem")
        pristine = tmp / "pristine"
        shutil.copytree(start.folder, pristine)
        result.tokens_before = _memory_tokens(start)
        transcript: list[dict[str, Any]] = []
        self.turn_events: dict[str, str] = {}
        every = int(data.get("sleep_every") or 0)
        sleeps = deque(data.get("scripted_sleeps") or [])
        for n, session in enumerate(scenario.sessions, 1):
            with ChatSession(start, self.spec, allow_all_tools=False) as chat:
                for m, turn in enumerate(session["turns"], 1):
                    self._turn(chat, turn, transcript, result)
                    if "user" in turn:    # scripted sleeps may cite it as s<session>.t<turn>
                        self.turn_events[f"s{n}.t{m}"] = chat.user_event or ""
            if every and n % every == 0 and n < len(scenario.sessions):
                self._sleep(start, sleeps, result)
        self._sleep(start, sleeps, result)
        result.tokens_after = _memory_tokens(start)
        result.events = start.journal.last_event_number()
        for condition in CONDITIONS:
            for probe in scenario.probes:
                agent = start if condition == "agentmem" else _fresh(pristine, tmp, condition)
                result.probes.append(self._probe(agent, probe, condition, transcript, result))
        self._memory_checks(start, data, result)

    def _turn(self, chat: ChatSession, turn: dict[str, Any], transcript: list[dict[str, Any]],
              result: ScenarioResult) -> None:
        if "user" in turn:
            if self.offline:
                edit = turn.get("agent_edit")
                if edit:
                    text = (chat.agent.folder / "lessons.md").read_text(encoding="utf-8")
                    self.model.queue(ToolCall("memory", {
                        "command": "insert", "path": "/memories/lessons.md",
                        "insert_line": len(text.splitlines()),
                        "insert_text": f"\n## {edit['title']}\n{edit['body'].strip()}\n",
                        "reason": edit.get("reason", "the user corrected me")}))
                self.model.queue(turn.get("reply", "OK."))
            reply = chat.send(turn["user"])
            result.cost += reply.cost
            transcript += [{"role": "user", "content": turn["user"]},
                           {"role": "assistant", "content": reply.text}]
        if "feedback" in turn or "rating" in turn:
            chat.feedback(turn.get("rating"), turn.get("feedback", ""))

    def _sleep(self, agent: Agent, scripted: deque[Any], result: ScenarioResult) -> None:
        if self.offline:
            ops = self._resolve(scripted.popleft()) if scripted else {"operations": [],
                                                                       "summary": ""}
            planned = sleep_core.plan(agent, self.spec)
            for _ in planned.chunks:
                self.model.queue(Reply(text=json.dumps(ops)))
                ops = {"operations": [], "summary": ""}
        passed = sleep_core.run_pass(agent, self.spec, apply_it=True)
        result.sleeps += 1
        if passed.proposal is not None:
            result.cost += passed.proposal.cost
        if not passed.ok:
            result.refused.append(passed.message)

    def _resolve(self, ops: Any) -> Any:
        """Replace evidence like "s1.t2" (session 1, turn 2) with that turn's log event id."""
        if isinstance(ops, dict):
            return {k: self._resolve(v) for k, v in ops.items()}
        if isinstance(ops, list):
            return [self._resolve(v) for v in ops]
        if isinstance(ops, str) and re.fullmatch(r"s\d+\.t\d+", ops):
            return self.turn_events.get(ops, ops)
        return ops

    def _probe(self, agent: Agent, probe: dict[str, Any], condition: str,
               transcript: list[dict[str, Any]], result: ScenarioResult) -> ProbeResult:
        if self.offline:
            self.model.queue({"marker": probe.get("marker", ""),
                              "learned": probe.get("learned_reply", ""),
                              "unlearned": probe.get("unlearned_reply", "")})
        with ChatSession(agent, self.spec) as chat:
            if condition == "append_only":
                chat.turns = [dict(m) for m in transcript]
            reply = chat.send(probe["user"])
        result.cost += reply.cost
        ok, why = _check(probe["expect"]).evaluate(reply.text, self.judge)
        return ProbeResult(condition, probe["user"], reply.text, ok, why)

    def _memory_checks(self, agent: Agent, data: dict[str, Any], result: ScenarioResult) -> None:
        memory = agent.load()
        lessons = memory.texts["lessons.md"]
        persona_body = memory.persona.body
        archive = memory.texts.get("archive.md") or ""
        checks = data.get("memory") or {}
        add = result.memory.append
        for word in _listed(checks.get("contains")):
            add((f"lessons.md or persona.md contains {word!r}",
                 word.lower() in (lessons + persona_body).lower(), ""))
        for word in _listed(checks.get("not_contains")):
            add((f"memory does not contain {word!r}",
                 word.lower() not in (lessons + persona_body).lower(), ""))
        for word in _listed(checks.get("persona_contains")):
            add((f"persona.md contains {word!r}", word.lower() in persona_body.lower(), ""))
        for word in _listed(checks.get("archived")):
            add((f"archive.md contains {word!r}", word.lower() in archive.lower(), ""))
        canary = data.get("canary")
        if canary and checks.get("canary_survives", True):
            alive = any(x.title == canary["title"] and x.body.strip() == canary["body"].strip()
                        for x in memory.lessons.lessons)
            add(("canary lesson survived", alive, canary["title"]))
        if checks.get("no_duplicates", True):
            titles = [x.title.strip().lower() for x in memory.lessons.lessons]
            bodies = [x.body.strip().lower() for x in memory.lessons.lessons]
            dup = len(set(titles)) != len(titles) or len(set(bodies)) != len(bodies)
            add(("no duplicate lessons", not dup, ""))
        cap = checks.get("max_lessons_tokens")
        if cap:
            tokens = estimate(lessons)
            add((f"lessons.md within {cap} tokens", tokens <= int(cap), f"~{tokens} tokens"))


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _fresh(pristine: Path, tmp: Path, condition: str) -> Agent:
    folder = tmp / condition
    if not folder.exists():
        shutil.copytree(pristine, folder)
    return Agent.open(str(folder))


def _memory_tokens(agent: Agent) -> int:
    memory = agent.load()
    return estimate(memory.persona.body) + estimate(memory.texts["lessons.md"])


def totals(results: list[ScenarioResult]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for condition in CONDITIONS:
        passed = sum(r.passed(condition)[0] for r in results)
        total = sum(r.passed(condition)[1] for r in results)
        out[condition] = {"passed": passed, "total": total}
    canaries = [ok for r in results for name, ok, _ in r.memory if name == "canary lesson survived"]
    out["canary_retention"] = {"kept": sum(canaries), "total": len(canaries)}
    out["memory_checks"] = {"passed": sum(ok for r in results for _, ok, _ in r.memory),
                            "total": sum(len(r.memory) for r in results)}
    out["memory_tokens"] = {"before": sum(r.tokens_before for r in results),
                            "after": sum(r.tokens_after for r in results)}
    out["cost"] = round(sum(r.cost for r in results), 6)
    out["refused_passes"] = sum(len(r.refused) for r in results)
    out["sleeps"] = sum(r.sleeps for r in results)
    out["errors"] = sum(1 for r in results if r.error)
    return out
