"""A sleep pass grows with the number of lessons, not with its square.

Two code-reviewer agents alike but for lessons.md: SMALL and LARGE lessons (each a short
numbered lesson with its metadata comment), the lessons budget and the context window raised
in persona.md so that both take the same path (within budget, one model call, no chunking),
and the same 40 new events after the cursor. Each agent, alternating, RUNS times: a whole pass
(sleep.run_pass) with a zero-latency scripted model that adds one lesson citing an event it
read and updates the counters of one existing lesson, so every guard runs and a version is
written; the cursor and the log are put back after each run. Target: LARGE/SMALL <= 2.2x
(linear would be 2x).
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

SMALL = 20 if SMOKE else 2_000
LARGE = 2 * SMALL
NEW = 40
RUNS = 1 if SMOKE else 7
TARGET = 2.2


def lessons_text(count: int) -> str:
    out = ["# Lessons\n\nWhat I have learned. Each lesson is a `##` section; edit freely.\n\n"]
    for i in range(1, count + 1):
        out.append(f"## Rule {i}: check module_{i % 211}.py for empty lookups\n"
                   f"<!-- id: L{i}; evidence: e1; helpful: {i % 5}; harmful: 0 -->\n"
                   f"In module_{i % 211}.py an empty lookup returns [] instead of raising; "
                   f"say so when a change touches it (case {i}).\n\n")
    return "".join(out)


def make_agent(root: Path, count: int) -> Any:
    from agentmem.agent import Agent

    agent = Agent.create(str(root / f"lessons-{count}"), "code-reviewer")
    persona = agent.read_texts()["persona.md"]
    persona = persona.replace("  lessons: 4000\n", "  lessons: 10000000\ncontext_window: 10000000\n")
    agent.write({"persona.md": persona, "lessons.md": lessons_text(count)}, "human",
                "many lessons")
    agent.update_state(sleep_cursor=agent.journal.end_cursor().to_json())
    agent.journal.append(*[{"session": f"s{i // 4}", "kind": "user" if i % 2 == 0 else "assistant",
                            "content": f"Review #{i}: views_{i}.py returns [] on an empty lookup."}
                           for i in range(NEW)])
    return agent


def main() -> None:
    tmp = isolate("sleepscale")
    from agentmem import llm
    from agentmem.models import ModelSpec
    from agentmem.scripted import Script

    def respond(messages: list[dict[str, Any]]) -> str:
        newest = re.findall(r"^(e\d+) ", "\n".join(str(m["content"]) for m in messages),
                            re.M)[-1]
        operations = [
            {"op": "add", "title": f"Lesson from {newest} ({time.time_ns()})",
             "body": "Empty lookups return [] here.", "rationale": "seen", "evidence": [newest]},
            {"op": "counter", "id": "L7", "helpful": 1, "rationale": "it helped",
             "evidence": [newest]}]
        return json.dumps({"operations": operations, "summary": "pass"})

    llm.install_scripted(Script(responder=respond))
    spec = ModelSpec("scripted/bench", None, "benchmark")
    agents = {}
    for count in (SMALL, LARGE):
        start = time.perf_counter()
        agents[count] = make_agent(tmp, count)
        print(f"agent with {count:,} lessons made in {time.perf_counter() - start:.1f} s",
              flush=True)
    for agent in agents.values():          # warm-up: litellm import and first call
        whole_pass(agent, spec)
    times: dict[int, list[float]] = {count: [] for count in agents}
    for _ in range(RUNS):
        for count, agent in agents.items():
            times[count].append(whole_pass(agent, spec))
    section(f"a whole sleep pass, median of {RUNS} interleaved runs")
    for count in agents:
        print(f"  {count:>6,} lessons: {ms(median(times[count]))}")
    ratio = median(times[LARGE]) / median(times[SMALL])
    result(f"sleep scale: a pass at {LARGE:,}/{SMALL:,} lessons",
           f"{ratio:.2f}x ({ms(median(times[LARGE]))} vs {ms(median(times[SMALL]))})",
           f"<= {TARGET}x", ratio <= TARGET)


def whole_pass(agent: Any, spec: Any) -> float:
    """The wall time of one sleep.run_pass that writes a version (the cursor and the log put
    back after it: _common.timed_pass)."""
    took, done = timed_pass(agent, spec)
    if not done.ok or done.version is None:
        print(f"  run failed: {done.message}")
    return took


if __name__ == "__main__":
    main()
