"""Run the agentmem CLI in this process with a scripted sleep model installed (for batch_sleep.py).

    BENCH_ANSWER=learn python benchmarks/_sleep_launcher.py sleep DIR --yes --jobs 50

The model answers every call after BENCH_DELAY seconds (default 0.2) with a valid proposal:
BENCH_ANSWER=learn (the default) adds one lesson citing the last event it was shown, so every
pass writes a version (BENCH_SALT, when set, goes into the lesson's text); BENCH_ANSWER=empty
proposes nothing. BENCH_HTTP=1 installs nothing: the sleep model configured (a server over
HTTP) answers. On exit it prints to stderr one line the benchmark reads:

    LAUNCHER main_s=S setup_s=S cpu_main_s=S cpu_workers_s=S

main_s is the time spent in agentmem.cli.main (the whole CLI code path: finding and opening the
agents, every pass, the report); setup_s is the time to import litellm and install the model,
which a real run also pays once, at its first model call; cpu_main_s is this process's CPU time
(the import included), cpu_workers_s that of the worker processes. A second line gives when the
first agent's result came (from the start of run_many) and the steady rate, in agents per
second, between the 10th and 90th percentile of results:

    LAUNCHER first_s=S steady_per_s=R
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any

if __name__ == "__main__":
    t0 = time.perf_counter()
    from _common import sleep_answer  # the script's folder is on sys.path

    from agentmem import llm
    from agentmem.scripted import Reply, Script

    delay = float(os.environ.get("BENCH_DELAY", "0.2"))
    learn = os.environ.get("BENCH_ANSWER", "learn") == "learn"
    salt = os.environ.get("BENCH_SALT", "")

    def respond(messages: list[dict[str, Any]]) -> Reply:
        return Reply(text=sleep_answer(messages, learn, salt), delay=delay)

    if not os.environ.get("BENCH_HTTP"):    # set: the configured model, over HTTP, is used
        llm.install_scripted(Script(responder=respond))
    else:
        llm.litellm()                        # the import, timed apart as with the script
    from agentmem import sleep as core
    from agentmem.cli import main

    # when each agent's result reaches the CLI, from the start of run_many
    stamps: list[float] = []
    run_many = core.run_many

    def timed_run_many(folders: list[str], *, on_result: Any, **options: Any) -> Any:
        start = time.perf_counter()

        def stamped(summary: dict[str, Any]) -> None:
            stamps.append(time.perf_counter() - start)
            on_result(summary)

        return run_many(folders, on_result=stamped, **options)

    core.run_many = timed_run_many

    t1 = time.perf_counter()
    code: object = 0
    try:
        sys.argv = ["agentmem", *sys.argv[1:]]
        main()
    except SystemExit as exc:
        code = exc.code
    t2 = time.perf_counter()
    sys.stdout.flush()
    own, workers = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                        resource.RUSAGE_CHILDREN))
    sys.stderr.write(f"LAUNCHER main_s={t2 - t1:.3f} setup_s={t1 - t0:.3f} "
                     f"cpu_main_s={own.ru_utime + own.ru_stime:.3f} "
                     f"cpu_workers_s={workers.ru_utime + workers.ru_stime:.3f}\n")
    if len(stamps) >= 10:      # the first result, and the rate between 10% and 90% of them
        low, high = stamps[len(stamps) // 10], stamps[len(stamps) * 9 // 10]
        rate = (len(stamps) * 9 // 10 - len(stamps) // 10) / max(high - low, 1e-9)
        sys.stderr.write(f"LAUNCHER first_s={stamps[0]:.3f} steady_per_s={rate:.1f}\n")
    sys.exit(code if isinstance(code, int) else 1)
