"""One-shot `agentmem chat A -m hi` against a local OpenAI-compatible server, next to a floor.

The server is the tests' loopback stand-in for OpenAI's chat completions (tests/wire/openai.py),
answering every request with the same two-chunk stream. The floor is the least a program can
do for the same answer: a script that imports litellm and makes one streamed
`litellm.completion` call to the same server, prints the text and exits as scripts do. Both
run as fresh processes (agentmem as the console script next to sys.executable, on a
code-reviewer agent), interleaved, alternating which goes first; wall time and peak RSS (from
os.wait4, per process) are medians of RUNS. `llm -m ... hi` (simonw/llm) is timed too when it is
installed (info only; it is not a dependency). Targets: wall <= 1.15x the floor, peak RSS <=
1.1x the floor.
"""

from __future__ import annotations

import os
import shutil
import socketserver
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, SMOKE, isolate, median, ms, result, section  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
import wire  # noqa: E402
from wire import openai  # noqa: E402

RUNS = 1 if SMOKE else 9
WALL_TARGET = 1.15
RSS_TARGET = 1.1

FLOOR = """\
import sys
import litellm
reply = litellm.completion(model="openai/x", api_base=sys.argv[1], api_key="sk-bench",
                           messages=[{"role": "user", "content": "hi"}], stream=True)
print("".join(chunk.choices[0].delta.content or "" for chunk in reply))
"""


def run_reaped(argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KB (os.wait4: this child's own) and stdout of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        print(f"  run failed: {' '.join(argv[:3])}: {err.decode(errors='replace')[-500:]}")
    return wall, usage.ru_maxrss, out.decode(errors="replace")


def main() -> None:
    tmp = isolate("oneshot")
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp / "pycache"),
           "OPENAI_API_KEY": "sk-bench", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    # the stand-in writes a response's headers and body apart: with Nagle's algorithm on, the
    # body waits for the client's delayed ACK (~40 ms a request here); servers in front of
    # real providers send with TCP_NODELAY, and so does this one
    socketserver.StreamRequestHandler.disable_nagle_algorithm = True
    stand_in = wire.StandIn()
    api_base = stand_in.url + "/v1"
    Path(env["AGENTMEM_CONFIG"]).write_text(f"api_base: {api_base}\n", encoding="utf-8")
    agentmem = str(Path(sys.executable).with_name("agentmem"))
    agent = tmp / "reviewer"
    subprocess.run([agentmem, "new", str(agent), "--from", "code-reviewer"], check=True,
                   capture_output=True, env=env)
    floor = tmp / "floor.py"
    floor.write_text(FLOOR, encoding="utf-8")
    llm_cli = shutil.which("llm")
    commands = {"floor": [sys.executable, str(floor), api_base],
                "agentmem": [agentmem, "chat", str(agent), "-m", "hi", "--model", "openai/x"]}
    if llm_cli:
        env["OPENAI_BASE_URL"] = api_base
        commands["llm"] = [llm_cli, "-m", "gpt-4o-mini", "--no-log", "hi"]
    stand_in.push(*[openai.stream(["Hello ", "there."]) for _ in range((RUNS + 1) * 3)])
    for argv in commands.values():       # warm-up: bytecode, page cache
        run_reaped(argv, env)
    walls: dict[str, list[float]] = {name: [] for name in commands}
    peaks: dict[str, list[int]] = {name: [] for name in commands}
    section(f"one-shot chat vs the floor, median of {RUNS} interleaved runs")
    for i in range(RUNS):
        order = list(commands) if i % 2 == 0 else list(reversed(commands))
        for name in order:
            wall, peak, out = run_reaped(commands[name], env)
            if "Hello there." not in out:
                print(f"  run failed: {name} printed {out[:200]!r}")
            walls[name].append(wall)
            peaks[name].append(peak)
    stand_in.close()
    for name in commands:
        print(f"  {name:<9} wall {ms(median(walls[name]))}, peak RSS "
              f"{median(peaks[name]) / 1024:.0f} MB")
    wall = median(walls["agentmem"]) / median(walls["floor"])
    rss = median(peaks["agentmem"]) / median(peaks["floor"])
    result("one-shot chat: wall agentmem / floor", f"{wall:.2f}x", f"<= {WALL_TARGET}x",
           wall <= WALL_TARGET)
    result("one-shot chat: peak RSS agentmem / floor", f"{rss:.2f}x", f"<= {RSS_TARGET}x",
           rss <= RSS_TARGET)
    if llm_cli:
        print(f"RESULT\tone-shot chat: llm (simonw) / floor\t"
              f"{median(walls['llm']) / median(walls['floor']):.2f}x\t-\tINFO", flush=True)


if __name__ == "__main__":
    main()
