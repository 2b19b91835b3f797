"""A sleep pass costs what the new events cost, not what the whole log costs.

Two code-reviewer agents, each with NEW events after its sleep cursor and OLD_SMALL or OLD_LARGE
old events before it (appended with agent.journal.append in batches; the cursor is set to the
end of the old events, as a past pass would leave it). Each agent, alternating, RUNS times:
sleep.propose with a zero-latency scripted sleep model that answers a valid empty proposal
(prompt tokens sent, wall time), then a whole pass (sleep.run_pass: propose and apply) whose
model adds one lesson (in its first call) citing an event it read, so that the pass writes a
version, moves the cursor and logs itself; after it the cursor and the log are put back (the
lesson stays: both agents grow alike), so every run reads the same NEW events. Targets:
large/small <= 1.1 for the tokens and for the whole pass's wall time.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SMOKE, isolate, median, ms, result, section, timed_pass  # noqa: E402

OLD_SMALL = 1_000
OLD_LARGE = 2_000 if SMOKE else 100_000
NEW = 20 if SMOKE else 200
BATCH = 10_000
RUNS = 1 if SMOKE else 7


def events(count: int, start: int) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + count):
        session = f"s-20250101-000000-{i // 8:04x}"
        if i % 2 == 0:
            text = (f"Review #{i}: the change in app/orders/views_{i % 97}.py moves the lookup into "
                    "the repository layer; is the empty-result behaviour still the same?")
            out.append({"session": session, "kind": "user", "content": text})
        else:
            text = (f"[blocking] views_{i % 97}.py:{i % 300} now raises NotFoundError where it "
                    "returned []; that is a behaviour change, so add a test and say so in the PR "
                    "description. [nit] the loop can be a list comprehension. Verdict: ready after "
                    "the blocking items.")
            out.append({"session": session, "kind": "assistant", "content": text})
    return out


def make_agent(root: Path, old: int) -> Any:
    from agentmem.agent import Agent

    agent = Agent.create(str(root / f"old-{old}"), "code-reviewer")
    for start in range(0, old, BATCH):
        agent.journal.append(*events(min(BATCH, old - start), start))
    agent.update_state(sleep_cursor=agent.journal.end_cursor().to_json())
    agent.journal.append(*events(NEW, old))
    return agent


def main() -> None:
    tmp = isolate("sleepcost")
    from agentmem import llm
    from agentmem import sleep as core
    from agentmem.models import ModelSpec
    from agentmem.scripted import Script

    learn = [False]

    def respond(messages: list[dict[str, Any]]) -> str:
        operations = []
        if learn[0]:                 # one lesson per pass, in its first call
            learn[0] = False
            newest = re.findall(r"^(e\d+) ", messages[-1]["content"], re.M)[-1]
            operations.append({"op": "add", "title": f"Lesson from {newest} ({time.time_ns()})",
                               "body": "Empty lookups return [] here.", "rationale": "seen",
                               "evidence": [newest]})
        return json.dumps({"operations": operations, "summary": "pass"})

    script = llm.install_scripted(Script(responder=respond))
    spec = ModelSpec("scripted/bench", None, "benchmark")
    agents = {}
    for old in (OLD_SMALL, OLD_LARGE):
        t0 = time.perf_counter()
        agents[old] = make_agent(tmp, old)
        size = agents[old].journal.path.stat().st_size
        print(f"agent with {old:,} old + {NEW} new events: log.jsonl {size / 1e6:.1f} MB, "
              f"written in {time.perf_counter() - t0:.1f} s", flush=True)

    tokens: dict[int, list[int]] = {old: [] for old in agents}
    calls: dict[int, list[int]] = {old: [] for old in agents}
    seen: dict[int, list[int]] = {old: [] for old in agents}
    wall: dict[int, list[float]] = {old: [] for old in agents}
    whole: dict[int, list[float]] = {old: [] for old in agents}
    for agent in agents.values():          # warm-up: litellm import and first call
        core.propose(agent, spec)
    for _ in range(RUNS):
        for old, agent in agents.items():
            before = len(script.calls)
            t0 = time.perf_counter()
            proposal = core.propose(agent, spec)
            wall[old].append(time.perf_counter() - t0)
            assert proposal is not None
            tokens[old].append(proposal.prompt_tokens)
            calls[old].append(len(script.calls) - before)
            seen[old].append(proposal.events)
            whole[old].append(whole_pass(agent, spec, learn))

    section(f"sleep.propose over {NEW} new events, median of {RUNS} runs")
    for old in agents:
        print(f"  {old:>7,} old events: {median(tokens[old]):>7,.0f} prompt tokens in "
              f"{median(calls[old]):.0f} call(s), {median(seen[old]):.0f} events read, "
              f"{ms(median(wall[old]))} to propose, {ms(median(whole[old]))} for a whole pass "
              "that writes a version")

    section("targets")
    tr = median(tokens[OLD_LARGE]) / median(tokens[OLD_SMALL])
    pr = median(wall[OLD_LARGE]) / median(wall[OLD_SMALL])
    wr = median(whole[OLD_LARGE]) / median(whole[OLD_SMALL])
    result("sleep cost: tokens 100k/1k", f"{tr:.2f}x", "<= 1.1x", tr <= 1.1)
    result("sleep cost: wall time of a whole pass 100k/1k", f"{wr:.2f}x ({ms(median(whole[OLD_LARGE]))}"
           f" vs {ms(median(whole[OLD_SMALL]))})", "<= 1.1x", wr <= 1.1)
    print(f"RESULT\tsleep cost: wall time to propose 100k/1k (info)\t{pr:.2f}x "
          f"({ms(median(wall[OLD_LARGE]))} vs {ms(median(wall[OLD_SMALL]))})\t-\tINFO")


def whole_pass(agent: Any, spec: Any, learn: list[bool]) -> float:
    """The wall time of sleep.run_pass with a model that adds a lesson (the cursor and the log
    put back after it: _common.timed_pass)."""
    learn[0] = True
    try:
        took, done = timed_pass(agent, spec)
    finally:
        learn[0] = False
    assert done.ok and done.version is not None, done.message
    return took


if __name__ == "__main__":
    main()
