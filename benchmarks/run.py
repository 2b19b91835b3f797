"""Run every benchmark and print one table: name, figure, target, PASS/FAIL.

    python benchmarks/run.py              # all of them (about 7 minutes on 2 cores)
    python benchmarks/run.py startup      # only some, by script name

Each script's own output is shown as it runs. Benchmarks are not tests: a missed target prints
FAIL, and this exits 0 all the same.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["startup", "bounded_context", "sleep_cost", "chat_overhead", "batch_sleep",
           "batch_api", "chat_oneshot", "history_scale", "sleep_scale"]


def run(name: str) -> tuple[list[list[str]], float, int]:
    print(f"\n######## {name}.py", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(HERE / f"{name}.py")], cwd=HERE.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rows = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("RESULT\t"):
            rows.append(line.rstrip("\n").split("\t")[1:])
        else:
            print(line, end="", flush=True)
    code = proc.wait()
    return rows, time.perf_counter() - t0, code


def main() -> None:
    wanted = [a.removesuffix(".py") for a in sys.argv[1:]] or SCRIPTS
    unknown = [w for w in wanted if w not in SCRIPTS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(SCRIPTS)})")
        return
    table: list[list[str]] = []
    timings = []
    start = time.perf_counter()
    for name in wanted:
        rows, seconds, code = run(name)
        timings.append(f"{name} {seconds:.0f} s")
        if code != 0 or not rows:
            rows.append([f"{name}: script error", f"exit {code}", "-", "FAIL"])
        table += rows
    widths = [max(len(r[i]) for r in [["benchmark", "figure", "target", "result"], *table])
              for i in range(4)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print("\n" + line.format("benchmark", "figure", "target", "result"))
    print(line.format(*("-" * w for w in widths)))
    for row in table:
        print(line.format(*row))
    passed = sum(r[3] == "PASS" for r in table)
    failed = sum(r[3] == "FAIL" for r in table)
    print(f"\n{passed} passed, {failed} failed; took {time.perf_counter() - start:.0f} s "
          f"({', '.join(timings)})")


if __name__ == "__main__":
    main()
