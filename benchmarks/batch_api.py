"""`agentmem sleep DIR --batch`, then `--collect --yes`, over 10,000 agents vs 1,000, against
the loopback OpenAI Files and Batches stand-in (tests/wire/openai_batch.py) served over real
HTTP from its own process.

One code-reviewer agent with NEW_EVENTS new events is copied N times (git objects hard-linked,
everything agentmem writes in place copied). The stand-in answers every request line with one
new lesson citing the newest event it was shown (`_common.sleep_answer`), so every collected
answer runs every guard and writes a version. Each CLI command runs in its own process
(`python -m agentmem`), timed wall-clock, its peak RSS read from os.wait4; a command's time
includes its interpreter start and litellm import (a few seconds, the same at every size), so a
1-agent run is shown too, and the ratio without it.

Targets: 10,000 agents' submit + collect <= 11x 1,000 agents' (linear), and peak RSS of either
command at 10,000 agents < 500 MB.

    python benchmarks/batch_api.py            # 10,000 vs 1,000 (about 10 minutes on 2 cores)
    python benchmarks/batch_api.py 2000       # 2,000 vs 200, for a quick look
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, SMOKE, isolate, result, section  # noqa: E402

AGENTS = int(sys.argv[1]) if __name__ == "__main__" and len(sys.argv) > 1 else 10_000
AGENTS = 20 if SMOKE else AGENTS
SMALL = max(1, AGENTS // 10)
NEW_EVENTS = 12
MODEL = "openai/gpt-4o-mini"
RATIO_TARGET = 11.0
JOBS = 8                 # collect: agents applied at once (an apply mostly waits on fsync)
RSS_TARGET_MB = 500.0
STAND_IN = """
import sys
sys.path[:0] = [{tests!r}, {benchmarks!r}]
from wire.openai_batch import BatchStandIn
from _common import sleep_answer
server = BatchStandIn(lambda line: sleep_answer(line["body"]["messages"], True, "batch"))
server.statuses = ["completed"]
print(server.url, flush=True)
sys.stdin.read()
"""


def new_events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(NEW_EVENTS // 3):
        session = f"s-20250101-000000-{i:04x}"
        out += [{"session": session, "kind": "user",
                 "content": f"Please review app/orders/views_{i}.py: the lookup moved to repos/."},
                {"session": session, "kind": "assistant",
                 "content": "[blocking] the empty result now raises; add a test."},
                {"session": session, "kind": "user",
                 "content": "No, that is not how we do it here: empty results return []."}]
    return out


def make_template(folder: Path) -> Path:
    from agentmem.agent import Agent

    template = Agent.create(str(folder), "code-reviewer")
    template.update_state(sleep_cursor=template.journal.end_cursor().to_json())
    template.journal.append(*new_events())
    return template.folder


def _copy(src: str, dst: str) -> None:
    """git objects are never written in place: hard-link them; copy the rest."""
    if f"{os.sep}objects{os.sep}" in src:
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def make_fleet(template: Path, root: Path, count: int) -> Path:
    root.mkdir(parents=True)
    for n in range(count):
        shutil.copytree(template, root / f"agent-{n:05d}", copy_function=_copy)
    return root


def run(*args: str) -> tuple[float, float, str]:
    """One agentmem command in its own process: wall seconds, peak RSS in MB, its stdout."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "agentmem", *args], cwd=REPO,
                                stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)      # its own peak RSS, not the children's max
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"agentmem {' '.join(args)} failed ({proc.returncode}): "
                             f"{err.read()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def measure(root: Path, count: int) -> dict[str, float]:
    """submit + collect over a fresh fleet of `count` agents."""
    fleet = make_fleet(TEMPLATE, root / f"fleet-{count}", count)
    submit_s, submit_mb, _ = run("sleep", str(fleet), "--batch", "--model", MODEL)
    collect_s, collect_mb, out = run("sleep", str(fleet), "--collect", "--yes", "--json",
                                     "--jobs", str(JOBS))
    results = json.loads(out)
    applied = sum(r["status"] == "applied" and r["version"] is not None for r in results)
    assert applied == count, f"{applied} of {count} agents applied"
    print(f"  {count:>6} agents: submit {submit_s:7.2f} s ({submit_mb:5.0f} MB peak), collect "
          f"{collect_s:7.2f} s ({collect_mb:5.0f} MB peak), total {submit_s + collect_s:7.2f} s, "
          f"{(submit_s + collect_s) / count * 1000:.2f} ms/agent", flush=True)
    shutil.rmtree(fleet)
    return {"total": submit_s + collect_s, "submit_mb": submit_mb, "collect_mb": collect_mb}


def main() -> None:
    global TEMPLATE
    tmp = isolate("batch-api")
    os.environ["AGENTMEM_BATCHES"] = str(tmp / "batches")
    server = subprocess.Popen([sys.executable, "-c", STAND_IN.format(
        tests=str(REPO / "tests"), benchmarks=str(REPO / "benchmarks"))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        (tmp / "config.yaml").write_text(f"api_base: {url}/v1\n", encoding="utf-8")
        TEMPLATE = make_template(tmp / "template")
        section(f"batch submit + collect through the Files and Batches stand-in ({url}), "
                f"{NEW_EVENTS} new events per agent, every answer a new lesson")
        one = measure(tmp, 1)
        small = measure(tmp, SMALL)
        large = measure(tmp, AGENTS)
    finally:
        server.communicate("")       # end of stdin: the stand-in exits
    ratio = large["total"] / small["total"]
    fixed = one["total"]
    net = (large["total"] - fixed) / max(1e-9, small["total"] - fixed)
    peak = max(large["submit_mb"], large["collect_mb"])
    print(f"  without the 1-agent run's fixed cost ({fixed:.2f} s: two interpreter starts and "
          f"litellm imports): {net:.2f}x")
    result(f"batch api: {AGENTS} agents / {SMALL} agents (submit + collect)", f"{ratio:.2f}x",
           f"<= {RATIO_TARGET:g}x", ratio <= RATIO_TARGET)
    result(f"batch api: peak RSS at {AGENTS} agents", f"{peak:.0f} MB",
           f"< {RSS_TARGET_MB:g} MB", peak < RSS_TARGET_MB)


TEMPLATE = Path()

if __name__ == "__main__":
    main()
