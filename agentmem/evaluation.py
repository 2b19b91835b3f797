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

from agentmem import prompts
from agentmem import sleep as sleep_core
from agentmem.agent import Agent
from agentmem.chat import ChatSession
from agentmem.errors import AgentmemError
from agentmem.models import ModelSpec
from agentmem.scenarios import PROBE_KINDS, Scenario, _check, listed
from agentmem.scripted import PROVIDER, Reply, Script, ToolCall
from agentmem.tokens import estimate

CONDITIONS = ("agentmem", "no_memory", "append_only")
OFFLINE_NOTE = ("offline run on the scripted model: this proves the machinery (events captured, "
                "sleep passes applied, checks evaluated), not a model's intelligence; run with "
                "--model to measure learning")


# -- the scripted stand-in for a model ----------------------------------------------------
class ScenarioModel:
    """Answers from the scenario: queued intents, and probes answered by what reached context."""

    def __init__(self) -> None:
        self.intents: deque[Any] = deque()
        self.check: dict[str, Any] | None = None    # a sleep_check's answers, while it runs

    def queue(self, *intents: Any) -> None:
        self.intents.extend(intents)

    def __call__(self, messages: list[dict[str, Any]]) -> Reply:
        if not self.intents and self.check is not None:
            return self._checked(messages)
        if not self.intents:
            raise AssertionError("scenario model: no scripted answer left for this call")
        intent = self.intents.popleft()
        if isinstance(intent, dict) and "judge" in intent:
            # the scripted judge: YES for the probe's learned answer, NO for anything else
            graded = str(messages[-1].get("content") or "")
            return Reply(text="YES" if f"Answer:\n{intent['judge']}\n" in graded else "NO")
        if isinstance(intent, dict) and "marker" in intent:
            context = "\n".join(str(m.get("content") or "") for m in messages).lower()
            learned = intent["marker"].lower() in context
            return Reply(text=intent["learned"] if learned else intent["unlearned"])
        if isinstance(intent, (Reply, ToolCall)):
            return intent if isinstance(intent, Reply) else Reply(tool_calls=[intent])
        return Reply(text=str(intent))


    def _checked(self, messages: list[dict[str, Any]]) -> Reply:
        """sleep --check's calls: a replayed request is answered as a probe is (the learned
        answer when the marker is in the memory it was given); the judge prefers the learned
        answer, and calls two that are both or neither a tie."""
        assert self.check is not None
        learned = self.check["learned_reply"].strip()
        if messages[0].get("content") == prompts.CHECK_JUDGE_SYSTEM:
            text = str(messages[-1].get("content") or "")
            a = text.split("# Answer A\n\n", 1)[-1].split("\n\n# Answer B", 1)[0].strip()
            b = text.split("# Answer B\n\n", 1)[-1].split("\n\nWhich answer", 1)[0].strip()
            return Reply(text="A" if a == learned != b else "B" if b == learned != a else "TIE")
        system = str(messages[0].get("content") or "").lower()
        return Reply(text=learned if self.check["marker"].lower() in system
                     else self.check["unlearned_reply"])


# -- running -----------------------------------------------------------------------------
@dataclass
class ProbeResult:
    condition: str
    question: str
    answer: str
    ok: bool
    why: str
    kind: str = "correction"        # or "retention": known before the run, must stay known
    judge_skipped: bool = False     # a judge criterion, no judge model: not graded, not counted


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
    kept: str | None = None         # the scenario's folders, kept after an error or refusal
    checks: list[dict[str, Any]] = field(default_factory=list)   # sleep_check: each pass's score
    check_refused: int = 0          # passes the check refused, as the scenario wants (must_refuse)
    repaired: list[str] = field(default_factory=list)   # sleep_repair: what repair rounds fixed

    def passed(self, condition: str, kind: str | None = None) -> tuple[int, int]:
        """(passed, graded): an answer with a judge criterion and no judge model counts in
        neither, whatever its other checks said, so that no condition is counted on only its
        failures."""
        rows = [p for p in self.probes if p.condition == condition and kind in (None, p.kind)
                and not p.judge_skipped]
        return sum(p.ok for p in rows), len(rows)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "error": self.error, "kept": self.kept, "events": self.events,
                "sleeps": self.sleeps, "refused": self.refused, "cost": round(self.cost, 6),
                "memory_tokens": {"before": self.tokens_before, "after": self.tokens_after},
                "probes": {c: dict(zip(("passed", "total"), self.passed(c), strict=True))
                           for c in CONDITIONS},
                "probe_details": [p.__dict__ for p in self.probes],
                "checks": self.checks, "check_refused": self.check_refused,
                "repaired": self.repaired,
                "memory_checks": [{"check": n, "ok": ok, "detail": d} for n, ok, d in self.memory]}


class Runner:
    """Runs scenarios. Offline (a scripted `spec`) the scenario answers for the model, and
    judge criteria are graded by a scripted judge (YES for a probe's learned answer); with a
    real model they are graded by `judge`, or skipped (and counted as such) without one."""

    def __init__(self, spec: ModelSpec, judge: ModelSpec | None = None,
                 workdir: Path | None = None) -> None:
        self.spec = spec
        self.offline = spec.model.startswith(PROVIDER + "/")
        self.judge_spec = ModelSpec(f"{PROVIDER}/judge", None, spec.source) if self.offline \
            else judge
        self.model = ScenarioModel()
        self.workdir = workdir
        if self.offline:
            from agentmem import llm

            llm.install_scripted(Script(responder=self.model))

    def grade(self, criterion: str, answer: str, result: ScenarioResult) -> bool:
        """The judge model's YES or NO on one answer; its cost goes to the scenario's."""
        from agentmem import llm

        assert self.judge_spec is not None
        reply = llm.complete(self.judge_spec, prompts.judge_messages(criterion, answer),
                             max_tokens=5, temperature=0)
        result.cost += reply.cost
        return reply.text.strip().upper().startswith("YES")

    def run(self, scenario: Scenario) -> ScenarioResult:
        result = ScenarioResult(scenario.name)
        tmp = Path(tempfile.mkdtemp(prefix="agentmem-eval-", dir=self.workdir))
        try:
            self._run(scenario, tmp, result)
        except AgentmemError as exc:
            result.error = exc.message
        finally:
            self.model.intents.clear()
            if result.error or result.refused:       # kept for inspection (refused outputs...)
                result.kept = str(tmp)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
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
        self.seeded = _memory_texts(start)
        transcript: list[dict[str, Any]] = []
        self.turn_events: dict[str, str] = {}
        self.scenario_check: dict[str, Any] | None = data.get("sleep_check")
        # sleep_repair: the passes get a repair round; offline, the first is answered wrongly
        self.repair = "sleep_repair" in data
        self.first_answer: str | None = (data.get("sleep_repair") or {}).get("first_answer")
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
                if self.first_answer is not None:      # sleep_repair: once, before the fix
                    self.model.queue(Reply(text=re.sub(r"\bs\d+\.t\d+\b",
                                                       lambda m: self._resolve(m.group()),
                                                       self.first_answer)))
                    self.first_answer = None
                self.model.queue(Reply(text=json.dumps(ops)))
                ops = {"operations": [], "summary": ""}
        wanted = self.scenario_check
        check = None
        if wanted is not None:      # the regression check, with this run's models
            from agentmem.sleep.check import DEFAULT_TURNS, Settings

            check = Settings(self.spec, self.judge_spec or self.spec,
                             turns=wanted.get("turns", DEFAULT_TURNS),
                             margin=wanted.get("margin", 0))
            self.model.check = wanted if self.offline else None
        # no repair round, unless the scenario is there to show one (sleep_repair): a scripted
        # sleep answer is given once, as written
        try:
            passed = sleep_core.run_pass(agent, self.spec, apply_it=True, repair=self.repair,
                                         check=check)
        finally:
            self.model.check = None
        result.sleeps += 1
        if passed.proposal is not None:
            result.cost += passed.proposal.cost
            if passed.ok:
                result.repaired += passed.proposal.repaired
        scored = passed.proposal.check if passed.proposal is not None else None
        if check is not None and scored is not None:
            lost = scored.losses - scored.wins > check.margin
            result.checks.append({**scored.to_json(), "refused": not passed.ok and lost})
            if not passed.ok and lost and wanted and wanted.get("must_refuse"):
                result.check_refused += 1       # what the scenario is there to show
                return
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
            self.model.queue({"marker": probe["marker"], "learned": probe["learned_reply"],
                              "unlearned": probe["unlearned_reply"]})
        with ChatSession(agent, self.spec) as chat:
            if condition == "append_only":
                chat.turns = [dict(m) for m in transcript]
            reply = chat.send(probe["user"])
        result.cost += reply.cost
        check = _check(probe["expect"])
        judge = None
        if check.judge and self.judge_spec is not None:
            def judge(criterion: str, answer: str) -> bool:
                if self.offline:      # asked only when the other checks passed
                    self.model.queue({"judge": probe["learned_reply"]})
                return self.grade(criterion, answer, result)

        ok, why = check.evaluate(reply.text, judge)
        return ProbeResult(condition, probe["user"], reply.text, ok, why,
                           kind=probe.get("kind") or "correction",
                           judge_skipped=bool(check.judge) and judge is None)

    def _memory_checks(self, agent: Agent, data: dict[str, Any], result: ScenarioResult) -> None:
        memory = agent.load()
        lessons = memory.texts["lessons.md"]
        persona_body = memory.persona.body
        archive = memory.texts.get("archive.md") or ""
        checks = data.get("memory") or {}
        add = result.memory.append
        for word in listed(checks.get("contains")):
            add((f"lessons.md or persona.md contains {word!r}",
                 word.lower() in (lessons + persona_body).lower(), ""))
        for word in listed(checks.get("not_contains")):
            add((f"memory does not contain {word!r}",
                 word.lower() not in (lessons + persona_body).lower(), ""))
        for word in listed(checks.get("persona_contains")):
            add((f"persona.md contains {word!r}", word.lower() in persona_body.lower(), ""))
        for word in listed(checks.get("archived")):
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
        if checks.get("unchanged"):
            changed = [name for name, text in _memory_texts(agent).items()
                       if text != self.seeded.get(name)]
            add(("memory unchanged (lessons.md, persona.md body)", not changed,
                 ", ".join(changed)))
        wanted = data.get("sleep_check") or {}
        if wanted.get("must_refuse"):
            scores = "; ".join(f"{c['wins']} won, {c['losses']} lost, {c['ties']} tied"
                               for c in result.checks) or "no pass was checked"
            add(("the regression check refused the sleep pass", result.check_refused > 0, scores))
        if (data.get("sleep_repair") or {}).get("must_repair"):
            add(("a repair round saved a sleep pass", bool(result.repaired),
                 "; ".join(result.repaired) or "no pass needed one"))
        cap = checks.get("max_lessons_tokens")
        if cap:
            tokens = estimate(lessons)
            add((f"lessons.md within {cap} tokens", tokens <= int(cap), f"~{tokens} tokens"))


def _fresh(pristine: Path, tmp: Path, condition: str) -> Agent:
    folder = tmp / condition
    if not folder.exists():
        shutil.copytree(pristine, folder)
    return Agent.open(str(folder))


def _memory_tokens(agent: Agent) -> int:
    return sum(estimate(text) for text in _memory_texts(agent).values())


def _memory_texts(agent: Agent) -> dict[str, str]:
    """What a chat turn sends of memory: persona.md's body and lessons.md."""
    memory = agent.load()
    return {"persona.md": memory.persona.body, "lessons.md": memory.texts["lessons.md"] or ""}


def totals(results: list[ScenarioResult]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for condition in CONDITIONS:
        counts = {kind: [r.passed(condition, kind) for r in results]
                  for kind in (None, *PROBE_KINDS)}
        out[condition] = {"passed": sum(p for p, _ in counts[None]),
                          "total": sum(t for _, t in counts[None]),
                          **{kind: {"passed": sum(p for p, _ in counts[kind]),
                                    "total": sum(t for _, t in counts[kind])}
                             for kind in PROBE_KINDS}}
    out["judge_skipped"] = sum(p.judge_skipped for r in results for p in r.probes)
    canaries = [ok for r in results for name, ok, _ in r.memory if name == "canary lesson survived"]
    out["canary_retention"] = {"kept": sum(canaries), "total": len(canaries)}
    out["memory_checks"] = {"passed": sum(ok for r in results for _, ok, _ in r.memory),
                            "total": sum(len(r.memory) for r in results)}
    ran = [r for r in results if not r.error]      # an errored scenario has no "after"
    out["memory_tokens"] = {"before": sum(r.tokens_before for r in ran),
                            "after": sum(r.tokens_after for r in ran)}
    out["cost"] = round(sum(r.cost for r in results), 6)
    out["refused_passes"] = sum(len(r.refused) for r in results)
    out["check_refused"] = sum(r.check_refused for r in results)
    out["repaired_passes"] = sum(len(r.repaired) for r in results)
    out["sleeps"] = sum(r.sleeps for r in results)
    out["errors"] = sum(1 for r in results if r.error)
    return out
