"""Run the agentmem CLI in this process with a scripted sleep model installed (for batch_sleep.py).

    python benchmarks/_sleep_launcher.py sleep DIR --yes --jobs 50

The model answers every call with a valid, empty proposal after BENCH_DELAY seconds (default
0.2). On exit it prints to stderr one line the benchmark reads:

    LAUNCHER calls=N main_s=S setup_s=S

main_s is the time spent in agentmem.cli.main (the whole CLI code path: finding and opening the
agents, every pass, the report); setup_s is the time to import litellm and install the model,
which a real run also pays once, at its first model call.
"""

from __future__ import annotations

import json
import os
import sys
import time

if __name__ == "__main__":
    t0 = time.perf_counter()
    from agentmem import llm
    from agentmem.scripted import Reply, Script

    delay = float(os.environ.get("BENCH_DELAY", "0.2"))
    answer = json.dumps({"operations": [], "summary": "nothing to learn"})
    script = llm.install_scripted(Script(responder=lambda _messages: Reply(text=answer, delay=delay)))
    from agentmem.cli import main

    t1 = time.perf_counter()
    code: object = 0
    try:
        sys.argv = ["agentmem", *sys.argv[1:]]
        main()
    except SystemExit as exc:
        code = exc.code
    t2 = time.perf_counter()
    sys.stdout.flush()
    sys.stderr.write(f"LAUNCHER calls={len(script.calls)} main_s={t2 - t1:.3f} "
                     f"setup_s={t1 - t0:.3f}\n")
    sys.exit(code if isinstance(code, int) else 1)
