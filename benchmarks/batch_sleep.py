"""`agentmem sleep DIR --yes --jobs 50` over 1,000 agents with a 200 ms model.

One code-reviewer agent is made with Agent.create and has slept once over new events (as an
agent in use has: its history and state are those of an agent that learned before), then
NEW_EVENTS new events are appended; the folder (with .agentmem/git) is then copied AGENTS
times. The CLI runs in a subprocess (benchmarks/_sleep_launcher.py installs a
scripted sleep model that answers after DELAY s, then calls agentmem.cli.main).

The model LEARNS in the timed runs: it proposes one new lesson citing an event it was shown, so
every pass goes through every guard and writes a version (files, history, state, log), which is
what a pass costs when it does its job. The lesson's text names the run, so every run writes
new objects, as the first does. A run where the model proposes nothing is shown too, and one
over real HTTP (info): the sleep model is then `openai/x` at the tests' loopback stand-in for
OpenAI's chat completions (tests/wire/openai.py), served from this process, which answers each
request after DELAY s with what the scripted model would say.

Ideal wall time = AGENTS * DELAY / JOBS = 4 s; target <= 1.5x ideal, timed over the CLI code
path (agentmem.cli.main), the litellm import before it reported apart. Median of RUNS runs, or
one run when it takes over CLEAR_MISS x the ideal. Between runs every agent is put back as it
was (files, history refs, state, log), so each run finds the same new events.

    python benchmarks/batch_sleep.py            # 1,000 agents
    python benchmarks/batch_sleep.py 200        # fewer, for a quick look
"""

from __future__ import annotations

import os
import re
import shutil
import socketserver
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SMOKE, isolate, median, ms, result, section, sleep_answer  # noqa: E402

AGENTS = int(sys.argv[1]) if __name__ == "__main__" and len(sys.argv) > 1 else 1000
AGENTS = 20 if SMOKE else AGENTS
JOBS = 50
DELAY = 0.2
NEW_EVENTS = 12
RUNS = 1 if SMOKE else 3  # runs of the timed case (learning model, 200 ms) ...
CLEAR_MISS = 3.0  # ... but one is enough when it takes over 3x the ideal: the verdict cannot change
IDEAL_S = AGENTS * DELAY / JOBS
LAUNCHER = Path(__file__).resolve().parent / "_sleep_launcher.py"
# what a pass changes in an agent folder, put back from the template between runs
RESTORED = ["lessons.md", "persona.md", "archive.md", "log.jsonl", ".agentmem/state.json",
            ".agentmem/git/refs/heads/main", ".agentmem/git/index",
            ".agentmem/git/agentmem-versions", ".agentmem/git/logs/HEAD",
            ".agentmem/git/logs/refs/heads/main"]


def new_events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(NEW_EVENTS // 3):
        out += [{"session": f"s-20250101-000000-{i:04x}", "kind": "user",
                 "content": f"Please review app/orders/views_{i}.py: the lookup moved to repos/."},
                {"session": f"s-20250101-000000-{i:04x}", "kind": "assistant",
                 "content": "[blocking] the empty result now raises; add a test. Verdict: ready "
                            "after the blocking items."},
                {"session": f"s-20250101-000000-{i:04x}", "kind": "user",
                 "content": "No, that is not how we do it here: empty results return []."}]
    return out


def make_template(folder: Path) -> Path:
    """An agent that has slept before, with NEW_EVENTS events since (needs a scripted model
    installed that answers with sleep_answer)."""
    from agentmem import sleep as core
    from agentmem.agent import Agent
    from agentmem.models import ModelSpec

    template = Agent.create(str(folder), "code-reviewer")
    template.update_state(sleep_cursor=template.journal.end_cursor().to_json())
    template.journal.append(*new_events())
    done = core.run_pass(template, ModelSpec("scripted/bench", None, "benchmark"))
    assert done.ok, done.message
    template.journal.append(*new_events())
    return template.folder


def install_model(answer: str, salt: str) -> None:
    from agentmem import llm
    from agentmem.scripted import Script

    llm.install_scripted(Script(responder=lambda m: sleep_answer(m, answer == "learn", salt)))


def make_agents(tmp: Path) -> tuple[Path, Path]:
    install_model("learn", "(learned before)")
    template = make_template(tmp / "template")
    root = tmp / "agents"
    root.mkdir()
    t0 = time.perf_counter()
    for i in range(AGENTS):
        shutil.copytree(template, root / f"agent-{i:04d}", symlinks=True)
    print(f"copied {AGENTS} agents in {time.perf_counter() - t0:.1f} s", flush=True)
    return template, root


def reset(template: Path, root: Path) -> None:
    """Put every agent back as the template is (new objects a run wrote stay, unreferenced)."""
    saved = {name: (template / name).read_bytes() if (template / name).exists() else None
             for name in RESTORED}
    for folder in root.iterdir():
        for name, data in saved.items():
            if data is None:
                (folder / name).unlink(missing_ok=True)
            else:
                (folder / name).write_bytes(data)


def serve_http(delay: float, salt: str) -> Any:
    """The OpenAI stand-in on loopback, answering every request as the scripted model would,
    after `delay` s; the user config points the sleep model at it."""
    import dataclasses

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import wire
    from wire import openai

    # the stand-in writes a response's headers and body apart: with Nagle's algorithm on, the
    # body waits for the client's delayed ACK (~40 ms a request here); servers in front of
    # real providers send with TCP_NODELAY, and so does this one
    socketserver.StreamRequestHandler.disable_nagle_algorithm = True
    stand_in = wire.StandIn()

    def answer(request: Any) -> Any:
        text = sleep_answer(request.body["messages"], True, salt)
        return dataclasses.replace(openai.reply(text), delay=delay)

    stand_in.push(*[answer] * AGENTS)
    Path(os.environ["AGENTMEM_CONFIG"]).write_text(f"api_base: {stand_in.url}/v1\n",
                                                  encoding="utf-8")
    return stand_in


def run_cli(root: Path, delay: float, answer: str, salt: str) -> dict[str, float]:
    env = {**os.environ, "BENCH_DELAY": str(delay), "BENCH_ANSWER": answer,
           "BENCH_SALT": salt, "AGENTMEM_SLEEP_MODEL": "scripted/bench"}
    stand_in = None
    if answer == "http":
        stand_in = serve_http(delay, salt)
        env.update(BENCH_HTTP="1", BENCH_ANSWER="learn", AGENTMEM_SLEEP_MODEL="openai/x",
                   OPENAI_API_KEY="sk-bench")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(LAUNCHER), "sleep", str(root), "--yes", "--jobs",
                           str(JOBS)], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if stand_in is not None:
        stand_in.close()
        Path(os.environ["AGENTMEM_CONFIG"]).unlink(missing_ok=True)
    found = re.search(r"LAUNCHER main_s=([\d.]+) setup_s=([\d.]+) cpu_main_s=([\d.]+) "
                      r"cpu_workers_s=([\d.]+)", proc.stderr)
    ok = len(re.findall(r"^ok ", proc.stdout, re.M))
    versions = len(re.findall(r"^ok .*, version \d+,", proc.stdout, re.M))
    expected = AGENTS if answer in ("learn", "http") else 0
    failed = proc.returncode != 0 or not found or ok != AGENTS or versions != expected
    if failed:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-8:])
        print(f"  run failed (exit {proc.returncode}, {ok} of {AGENTS} agents ok, {versions} "
              f"versions written):\n{tail}")
    numbers = [float(x) for x in found.groups()] if found else [wall, 0.0, 0.0, 0.0]
    flow = re.search(r"LAUNCHER first_s=([\d.]+) steady_per_s=([\d.]+)", proc.stderr)
    first, rate = (float(x) for x in flow.groups()) if flow else (0.0, 0.0)
    return {"failed": failed, "wall": wall, "main": numbers[0], "setup": numbers[1], "cpu_main": numbers[2],
            "cpu_workers": numbers[3], "ok": ok, "versions": versions, "first": first,
            "rate": rate}


def pass_cpu(template: Path, tmp: Path, answer: str, count: int = 3 if SMOKE else 30) -> float:
    """CPU time of one pass (open, load, run_pass) in this process, zero-latency model."""

    from agentmem import sleep as core
    from agentmem.agent import Agent
    from agentmem.models import ModelSpec

    install_model(answer, "(one thread)")
    spec = ModelSpec("scripted/bench", None, "benchmark")
    folders = []
    for i in range(count + 1):
        folder = tmp / "cpu" / f"{answer}-{i}"
        shutil.copytree(template, folder, symlinks=True)
        folders.append(folder)

    def one(folder: Path) -> None:
        agent = Agent.open(str(folder))
        agent.load()                                   # sleep_one resolves the model from it
        outcome = core.run_pass(agent, spec)
        assert outcome.ok, outcome.message

    one(folders[0])                                    # warm-up
    t0 = time.process_time()
    for folder in folders[1:]:
        one(folder)
    return (time.process_time() - t0) / count


def main() -> None:
    tmp = isolate("batch")
    template, root = make_agents(tmp)
    runs: dict[str, list[dict[str, float]]] = {}
    plan = [("learns, 200 ms", DELAY, "learn")] * RUNS + [("learns, 0 ms", 0.0, "learn"),
                                                          ("nothing to learn, 200 ms", DELAY, "empty"),
                                                          ("learns, 200 ms, over HTTP", DELAY, "http")]
    for name, delay, answer in plan:
        done = runs.get("learns, 200 ms", [])
        if name == "learns, 200 ms" and done and done[0]["main"] > CLEAR_MISS * IDEAL_S:
            continue   # a clear miss: more runs of a minute each would not change the verdict
        reset(template, root)
        r = run_cli(root, delay, answer, f"(run {sum(map(len, runs.values())) + 1})")
        runs.setdefault(name, []).append(r)
        print(f"  model {name}: CLI {r['main']:.2f} s, process {r['wall']:.2f} s (litellm import "
              f"and model setup {r['setup']:.2f} s), {r['ok']:.0f} ok, {r['versions']:.0f} "
              f"versions written; CPU: workers {r['cpu_workers']:.1f} s, main process "
              f"{r['cpu_main']:.1f} s; first result after {r['first']:.2f} s, then "
              f"{r['rate']:.0f} agents/s", flush=True)

    broken = sorted({name for name, done in runs.items() for r in done if r["failed"]})
    timed = [r for r in runs["learns, 200 ms"] if not r["failed"]] or runs["learns, 200 ms"]
    section(f"agentmem sleep DIR --yes --jobs {JOBS}: {AGENTS} agents on {os.cpu_count()} cores "
            f"(model learns, 200 ms: " + (f"median of {len(timed)} runs)" if len(timed) > 1 else
                                          f"1 run, as it took over {CLEAR_MISS:g}x the ideal)"))
    slow = median([r["main"] for r in timed])
    whole = median([r["wall"] for r in timed])
    fast = runs["learns, 0 ms"][0]["main"]
    empty = runs["nothing to learn, 200 ms"][0]["main"]
    print(f"  model learns, 200 ms:           {slow:.2f} s in the CLI (ideal {IDEAL_S:.1f} s = "
          f"{AGENTS} x {DELAY} s / {JOBS} jobs) = {slow / IDEAL_S:.2f}x")
    print(f"  the whole command, as a user times it: {whole:.2f} s, litellm's import and the "
          f"interpreter's start included")
    print(f"  model learns, 0 ms:             {fast:.2f} s = {ms(fast / AGENTS)} of non-model "
          f"work per agent, wall, all cores")
    print(f"  model has nothing to learn:     {empty:.2f} s = {empty / IDEAL_S:.2f}x (no version "
          "written)")
    mid = sorted(timed, key=lambda r: r["main"])[len(timed) // 2]
    print(f"  where the time goes (median run): first result after {mid['first']:.2f} s (ideal "
          f"{DELAY:.1f} s plus one pass); then {mid['rate']:.0f} agents/s, where the model slots "
          f"allow {JOBS / DELAY:.0f}/s; {1000 * (os.cpu_count() or 1) / max(mid['rate'], 1e-9):.1f} ms "
          f"of core time per agent on {os.cpu_count()} cores, {mid['cpu_workers'] * 1000 / AGENTS:.1f}"
          f" ms of it CPU in the workers")

    section("CPU time of one pass, one thread, zero-latency model (mean of 30 passes)")
    learn_cpu = pass_cpu(template, tmp, "learn")
    empty_cpu = pass_cpu(template, tmp, "empty")
    print(f"  writes a version (add one lesson): {ms(learn_cpu)}")
    print(f"  nothing to learn:                  {ms(empty_cpu)}")
    print(f"  {AGENTS} learning passes need ~{learn_cpu * AGENTS:.1f} s of CPU: "
          f"{learn_cpu * AGENTS / (os.cpu_count() or 1):.1f} s on {os.cpu_count()} cores, "
          f"before litellm's share of the model wait")

    section("targets")
    # a run where an agent failed or wrote no version is no figure: it fails the target
    result(f"batch sleep: {AGENTS} agents, 200 ms model, --jobs {JOBS}, every pass writes",
           f"{slow:.2f} s = {slow / IDEAL_S:.2f}x ideal" + (
               f"; runs FAILED: {', '.join(broken)}" if broken else ""),
           f"<= 1.5x ({IDEAL_S * 1.5:.0f} s)", slow <= 1.5 * IDEAL_S and not broken)
    print(f"RESULT\tbatch sleep: whole command, litellm's import included (info)\t{whole:.2f} s = "
          f"{whole / IDEAL_S:.2f}x ideal\t-\tINFO")
    print(f"RESULT\tbatch sleep: same, model proposes nothing (info)\t{empty:.2f} s = "
          f"{empty / IDEAL_S:.2f}x ideal\t-\tINFO")
    http = runs["learns, 200 ms, over HTTP"][0]
    print(f"  over HTTP (OpenAI stand-in):    {http['main']:.2f} s = {http['main'] / IDEAL_S:.2f}x"
          f" ideal, {http['main'] / slow:.2f}x the scripted model's run; CPU: workers "
          f"{http['cpu_workers']:.1f} s, main process {http['cpu_main']:.1f} s")
    print(f"RESULT\tbatch sleep: same over HTTP, OpenAI stand-in (info)\t{http['main']:.2f} s = "
          f"{http['main'] / IDEAL_S:.2f}x ideal, {http['main'] / slow:.2f}x scripted"
          + (" (run FAILED)" if http["failed"] else "") + "\t-\tINFO")
    print(f"RESULT\tbatch sleep: CPU per writing pass, one thread (info)\t{ms(learn_cpu)}\t-\tINFO")
    # the wall time over what the cores need for these passes at this run's one-thread CPU
    # time: the batch's own overhead, with the host's speed of the moment mostly divided out
    bound = learn_cpu * AGENTS / (os.cpu_count() or 1)
    print(f"RESULT\tbatch sleep: wall over its CPU bound, {ms(learn_cpu)} x {AGENTS} / "
          f"{os.cpu_count()} cores (info)\t{slow / bound:.2f}x\t-\tINFO")


if __name__ == "__main__":
    main()
