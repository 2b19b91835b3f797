"""The benchmark scripts run (tiny sizes, BENCH_SMOKE=1): a script that broke would otherwise
go unnoticed until someone times it. Their figures are not checked here: see benchmarks/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = ["startup", "bounded_context", "sleep_cost", "chat_overhead", "batch_sleep",
           "chat_oneshot", "history_scale", "sleep_scale"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_benchmark_runs_and_reports_its_targets(name: str, tmp_path: Path):
    env = {**os.environ, "BENCH_SMOKE": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py")], cwd=BENCHMARKS.parent,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("RESULT\t")]
    assert rows, proc.stdout[-2000:]
    assert all(len(row) == 5 and row[4] in ("PASS", "FAIL", "INFO") for row in rows), rows
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not any("run failed" in line for line in proc.stdout.splitlines()), proc.stdout[-3000:]
