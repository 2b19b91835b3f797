"""Per-turn overhead of a chat turn, excluding the model, and its independence from log size.

Two code-reviewer agents: one with an empty log.jsonl, one with LARGE events in it (appended
with agent.journal.append in batches of BATCH). ChatSession.send is timed over TURNS turns per
agent (fresh sessions of PER_SESSION turns), alternating, with a zero-latency scripted model;
the first WARMUP turns (litellm import, context-window lookup) are left out. Targets: median
<= 20 ms per turn, and large/empty <= 1.2.

Then, so that a miss can be traced: the parts of a turn timed alone (agent.load, journal.append
of one event, llm.complete through litellm); one long session, to show how a turn's cost grows
with the session; and a bulk journal.append, to show where the time to write the big log goes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SMOKE, isolate, median, ms, result, section  # noqa: E402

LARGE = int(sys.argv[1]) if __name__ == "__main__" and len(sys.argv) > 1 else 200_000
LARGE = 2_000 if SMOKE else LARGE
BATCH = 10_000
TURNS = 10 if SMOKE else 40
PER_SESSION = 10   # a fresh ChatSession every 10 turns: the target is a typical turn
WARMUP = 3
LONG = 150         # one long session, to show how a turn's cost grows with the session
LONG_MARKS = (10, 70, 140)
BULK = 10_000
TARGET_S = 0.020

REPLY = ("[blocking] views.py:42 now raises NotFoundError where it returned []; add a test. "
         "[nit] the loop can be a list comprehension. Verdict: ready after the blocking items.")


def old_events(count: int, start: int) -> list[dict[str, Any]]:
    kinds = ("user", "assistant")
    return [{"session": f"s-20250101-000000-{i // 8:04x}", "kind": kinds[i % 2],
             "content": f"Event {i}: review of app/orders/views_{i % 97}.py, lookup moved into "
                        "the repository layer; the empty-result behaviour changed."}
            for i in range(start, start + count)]


def main() -> None:
    tmp = isolate("chat")
    from agentmem import llm
    from agentmem.agent import Agent
    from agentmem.chat import ChatSession
    from agentmem.models import ModelSpec
    from agentmem.scripted import Script

    llm.install_scripted(Script(responder=lambda _messages: REPLY))
    spec = ModelSpec("scripted/bench", None, "benchmark")

    empty = Agent.create(str(tmp / "empty"), "code-reviewer")
    empty.journal.path.write_text("", encoding="utf-8")     # no events at all
    large = Agent.create(str(tmp / "large"), "code-reviewer")
    t0 = time.perf_counter()
    for start in range(0, LARGE, BATCH):
        large.journal.append(*old_events(BATCH, start))
    append_s = time.perf_counter() - t0
    print(f"wrote {LARGE:,} events with journal.append in {append_s:.1f} s "
          f"({append_s / LARGE * 1e6:.0f} us per event); log.jsonl "
          f"{large.journal.path.stat().st_size / 1e6:.1f} MB", flush=True)

    agents = {"empty log": empty, f"{LARGE:,}-event log": large}
    times: dict[str, list[float]] = {name: [] for name in agents}
    turn = 0
    for block in range(-1, TURNS // PER_SESSION):   # block -1: the warm-up turns, not counted
        sessions = {name: ChatSession(a, spec) for name, a in agents.items()}
        for s in sessions.values():
            s.open()
        try:
            for _ in range(WARMUP if block < 0 else PER_SESSION):
                turn += 1
                for name, s in sessions.items():
                    text = f"Turn {turn}: is the change in app/orders/views.py safe to merge?"
                    t0 = time.perf_counter()
                    s.send(text)
                    if block >= 0:
                        times[name].append(time.perf_counter() - t0)
        finally:
            for s in sessions.values():
                s.close()

    section(f"ChatSession.send, scripted model with zero latency, median of {TURNS} turns "
            f"(sessions of {PER_SESSION} turns, after {WARMUP} warm-up turns)")
    for name, values in times.items():
        print(f"  {name:<20} {ms(median(values)):>9} per turn  (min {ms(min(values))}, "
              f"max {ms(max(values))})")

    section("parts of a turn, timed alone (median of 30)")
    parts = components(large, spec)
    for name, value in parts.items():
        print(f"  {name:<62} {ms(value):>9}")

    section(f"one long session: ms per turn as it grows (empty log, {LONG} turns)")
    long_turns = long_session(empty, spec)
    for start in LONG_MARKS:
        print(f"  turns {start + 1:>3}-{start + 10:<3} {ms(median(long_turns[start:start + 10])):>9} "
              "per turn")

    section("journal.append in bulk: where the time goes")
    bulk = bulk_append(tmp)
    for name, value in bulk.items():
        print(f"  {name:<62} {value * 1e6:>6.0f} us per event")

    section("targets")
    names = list(agents)
    e, big = median(times[names[0]]), median(times[names[1]])
    result("chat: ms per turn (empty log)", ms(e), "<= 20 ms", e <= TARGET_S)
    result(f"chat: ms per turn ({LARGE // 1000}k-event log)", ms(big), "<= 20 ms", big <= TARGET_S)
    result(f"chat: per-turn ratio {LARGE // 1000}k/empty", f"{big / e:.2f}x", "<= 1.2x",
           big <= 1.2 * e)
    late = median(long_turns[LONG_MARKS[-1]:LONG_MARKS[-1] + 10])
    print(f"RESULT\tchat: ms per turn at turn {LONG_MARKS[-1] + 1}-{LONG_MARKS[-1] + 10} of one session "
          f"(info)\t{ms(late)}\t-\tINFO")


def long_session(agent: Any, spec: Any) -> list[float]:
    from agentmem.chat import ChatSession

    times = []
    with ChatSession(agent, spec) as session:
        for turn in range(LONG):
            t0 = time.perf_counter()
            session.send(f"Turn {turn}: is the change in app/orders/views.py safe to merge?")
            times.append(time.perf_counter() - t0)
    return times


def bulk_append(tmp: Path) -> dict[str, float]:
    """journal.append of BULK events, as is and with the environment scanned once (a what-if)."""
    from agentmem import redact
    from agentmem.journal import Journal

    out = {}
    original = redact.env_secrets
    once = original()
    for name, patch in (("as is", None), ("what-if: env_secrets() computed once, not per string",
                                          lambda: once)):
        journal = Journal(tmp / f"bulk-{len(out)}.jsonl", tmp / f"bulk-{len(out)}.lock")
        if patch is not None:
            redact.env_secrets = patch  # type: ignore[assignment]
        try:
            t0 = time.perf_counter()
            journal.append(*old_events(BULK, 0))
            out[f"journal.append of {BULK:,} events, {name}"] = (time.perf_counter() - t0) / BULK
        finally:
            redact.env_secrets = original  # type: ignore[assignment]
    return out


def components(agent: Any, spec: Any) -> dict[str, float]:
    import yaml

    from agentmem import llm, yamlutil
    from agentmem.chat import ChatSession
    from agentmem.redact import env_secrets, redact_obj

    class CLineLoader(yaml.CSafeLoader):   # the suggested fix: libyaml, same line numbers
        pass

    CLineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                yamlutil._construct_mapping)
    tools_text = (agent.folder / "tools.yaml").read_text(encoding="utf-8")

    session = ChatSession(agent, spec)
    session.turns = [{"role": "user", "content": "Is this safe to merge?"}]
    messages, _ = session.messages()
    tools = session.tool_schemas()
    event = {"session": session.session_id, "kind": "assistant", "content": REPLY,
             "usage": {"prompt_tokens": 2400, "completion_tokens": 40, "cost": 0.0}}

    def timeit(fn: Any, n: int = 30) -> float:
        values = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            values.append(time.perf_counter() - t0)
        return median(values)

    return {
        "agent.load() (parse persona, lessons, tools)": timeit(agent.load),
        "  of which yaml.load(tools.yaml), LineLoader (pure Python)": timeit(
            lambda: yaml.load(tools_text, Loader=yamlutil.LineLoader)),  # noqa: S506
        "  same with a CSafeLoader-based LineLoader (libyaml)": timeit(
            lambda: yaml.load(tools_text, Loader=CLineLoader)),  # noqa: S506
        "ChatSession.messages() (load + system prompt + trim)": timeit(session.messages),
        "journal.append(one event) on the large log": timeit(lambda: agent.journal.append(event)),
        "  of which redact_obj(event)": timeit(lambda: redact_obj(event)),
        f"  of which env_secrets() ({len(os.environ)} env vars), once per string": timeit(
            env_secrets),
        "llm.complete() through litellm, zero-latency model": timeit(
            lambda: llm.complete(spec, messages, tools=tools)),
    }


if __name__ == "__main__":
    main()
