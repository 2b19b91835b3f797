"""Shared helpers for the benchmarks: an isolated environment, medians and result lines.

Every benchmark prints its figures for people, plus one machine-readable line per target:

    RESULT<TAB>name<TAB>figure<TAB>target<TAB>PASS|FAIL

which `benchmarks/run.py` collects into one table. Benchmarks always exit 0.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# BENCH_SMOKE=1: every script at a tiny size and one repetition, only to prove that it runs
# (tests/test_benchmarks.py); its figures mean nothing
SMOKE = bool(os.environ.get("BENCH_SMOKE"))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def isolate(prefix: str) -> Path:
    """A temp dir for this run, and an environment that never reaches a real model or network."""
    tmp = Path(tempfile.mkdtemp(prefix=f"agentmem-bench-{prefix}-"))
    if not os.environ.get("BENCH_KEEP"):      # BENCH_KEEP=1 keeps the agents for a look
        atexit.register(shutil.rmtree, tmp, True)
    os.environ["AGENTMEM_HOME"] = str(tmp / "home")
    os.environ["AGENTMEM_CONFIG"] = str(tmp / "config.yaml")
    os.environ["AGENTMEM_RETRY_DELAY"] = "0"
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ["LITELLM_MODE"] = "PRODUCTION"
    os.environ["NO_COLOR"] = "1"
    for var in ("AGENTMEM_MODEL", "AGENTMEM_SLEEP_MODEL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
                "AGENTMEM_API_BASE"):
        os.environ.pop(var, None)
    return tmp


def median(values: list[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def result(name: str, figure: str, target: str, ok: bool) -> bool:
    """Print one target's outcome: a readable line and the RESULT line run.py reads."""
    verdict = "PASS" if ok else "FAIL"
    print(f"  -> {name}: {figure} (target {target}) {verdict}")
    print(f"RESULT\t{name}\t{figure}\t{target}\t{verdict}", flush=True)
    return ok


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def sleep_answer(messages: list[dict[str, Any]], learn: bool, salt: str = "") -> str:
    """The batch benchmarks' sleep model: with learn, one new lesson citing the newest event it
    was shown (so the pass writes a version; `salt` makes its text differ between runs, so that
    every run writes new objects); otherwise no operation."""
    operations = []
    if learn:
        ids = re.findall(r"^(e\d+) ", messages[-1]["content"], re.M)
        operations.append({
            "op": "add", "title": f"Empty results return [] {salt}".strip(),
            "body": "In this codebase an empty lookup returns [] instead of raising; the user "
                    f"corrected this. {salt}".strip(),
            "rationale": "the user corrected the review", "evidence": ids[-1:]})
    summary = "learned one rule" if learn else "nothing to learn"
    return json.dumps({"operations": operations, "summary": summary})


def timed_pass(agent: Any, spec: Any) -> tuple[float, Any]:
    """The wall time of one sleep.run_pass, and its result; then the sleep cursor and the log
    are put back as they were (the pass's own "sleep" event goes), so that the next run reads
    the same new events."""
    import time

    from agentmem import sleep as core

    cursor = agent.read_state().get("sleep_cursor")
    size = agent.journal.path.stat().st_size
    try:
        start = time.perf_counter()
        done = core.run_pass(agent, spec)
        return time.perf_counter() - start, done
    finally:
        with open(agent.journal.path, "r+b") as log:
            log.truncate(size)
        agent.update_state(sleep_cursor=cursor)
