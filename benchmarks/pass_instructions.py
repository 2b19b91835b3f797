"""Instructions (user space) of one sleep pass, counted by valgrind: a figure the host's noise
cannot move, for comparing versions of agentmem. Not one of run.py's five; needs valgrind.

    python benchmarks/pass_instructions.py            # both models, writing and no-op passes

It counts a whole Python run of PASSES passes and of 0 passes under `valgrind --tool=callgrind`
and divides the difference by PASSES, so start-up and the setup cancel out. Each pass is the
batch's (`benchmarks/batch_sleep.py`): the code-reviewer agent with 12 new events; the model adds
one lesson (a version is written) or proposes nothing. "agentmem only" replaces the model call
(`llm._call`) by a direct reply; "through litellm" serves the same reply from agentmem's
scripted model through litellm's real `completion`, so the difference is litellm's share.
Kernel time is not counted: `strace -c -f` on the same runs gives the system calls.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import isolate, section, sleep_answer  # noqa: E402

PASSES = 20


def child(passes: int, learn: bool, litellm: bool) -> None:
    """The counted run: make the agents, then run `passes` passes (0: setup only)."""
    import batch_sleep

    from agentmem import llm
    from agentmem import sleep as core
    from agentmem.agent import Agent
    from agentmem.models import ModelSpec

    tmp = isolate("instructions")
    if litellm:
        from agentmem.scripted import Script

        llm.install_scripted(Script(responder=lambda m: sleep_answer(m, learn)))
    else:
        def direct(spec: ModelSpec, messages: list[dict[str, Any]], *_: Any) -> llm.Completion:
            return llm.Completion(text=sleep_answer(messages, learn), tool_calls=[],
                                  finish_reason="stop", prompt_tokens=100, completion_tokens=10,
                                  cost=0.0, model=spec.model)

        llm._call = direct                           # type: ignore[assignment]
        llm.context_window = lambda model, default=8192: 128000   # type: ignore[assignment]
    template = batch_sleep.make_template(tmp / "template")
    folders = [tmp / f"a{i}" for i in range(PASSES + 1)]
    for folder in folders:
        shutil.copytree(template, folder, symlinks=True)
    spec = ModelSpec("scripted/bench", None, "benchmark")
    for folder in folders[:passes + 1]:              # the first pass warms caches up: counted
        agent = Agent.open(str(folder))              # in both runs, it cancels out
        agent.load()
        outcome = core.run_pass(agent, spec)
        assert outcome.ok, outcome.message


def count(passes: int, learn: bool, litellm: bool) -> int:
    env = {**os.environ, "PASS_INSTRUCTIONS_CHILD": f"{passes} {int(learn)} {int(litellm)}"}
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           sys.executable, __file__], capture_output=True, text=True, env=env)
    found = re.search(r"refs:\s+([\d,]+)", proc.stderr)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"valgrind run failed:\n{proc.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind); nothing measured")
        return
    section(f"user-space instructions per sleep pass (valgrind, {PASSES} passes minus 0)")
    figures = {}
    for litellm in (False, True):
        for learn in (True, False):
            per_pass = (count(PASSES, learn, litellm) - count(0, learn, litellm)) / PASSES
            name = (f"{'through litellm' if litellm else 'agentmem only'}, "
                    f"{'writes a version' if learn else 'nothing to learn'}")
            figures[name] = per_pass
            print(f"  {name:<40} {per_pass / 1e6:6.2f} M instructions", flush=True)
    share = 1 - figures["agentmem only, writes a version"] / figures[
        "through litellm, writes a version"]
    print(f"  litellm's share of a writing pass: {share:.0%}")
    print(f"RESULT\tinstructions per writing pass, agentmem only (info)\t"
          f"{figures['agentmem only, writes a version'] / 1e6:.1f} M\t-\tINFO")


if __name__ == "__main__":
    if os.environ.get("PASS_INSTRUCTIONS_CHILD"):
        n, learn_flag, litellm_flag = os.environ["PASS_INSTRUCTIONS_CHILD"].split()
        child(int(n), learn_flag == "1", litellm_flag == "1")
    else:
        main()
