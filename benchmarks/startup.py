"""Start-up cost of the CLI commands that need no model, and proof that they never import litellm.

Wall time of `agentmem --help`, `agentmem history AGENT` and `agentmem diff AGENT` on a fresh
code-reviewer agent, next to `python -c pass` and `git log -1` on the agent's own git dir, run
round-robin from the same folder; median of RUNS runs each. Target: <= 150 ms per agentmem
command. Then each command runs once more in-process (agentmem.cli.main with sys.argv set, in a
fresh interpreter) and reports whether 'litellm' ended up in sys.modules: it must not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SMOKE, isolate, median, ms, result, section  # noqa: E402

RUNS = 2 if SMOKE else 15
TARGET_S = 0.150

CHECK = """\
import sys
sys.argv = ["agentmem", *{args!r}]
from agentmem.cli import main
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
sys.stderr.write("LITELLM_LOADED=%s\\n" % ("litellm" in sys.modules))
"""

PHASES = """\
import sys, time
t0 = time.perf_counter()
import agentmem.cli
t1 = time.perf_counter()
import agentmem.console, rich.console
t2 = time.perf_counter()
import agentmem.agent, agentmem.report
t3 = time.perf_counter()
import subprocess
_run, git = subprocess.run, []
def run(*a, **k):
    s = time.perf_counter()
    try:
        return _run(*a, **k)
    finally:
        git.append(time.perf_counter() - s)
subprocess.run = run
sys.argv = ["agentmem", *{args!r}]
import io, contextlib
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        agentmem.cli.main()
    except SystemExit:
        pass
t4 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3, sum(git), len(git))
"""


def phases(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Where an in-process run's time goes, medians over RUNS fresh interpreters."""
    rows: list[list[float]] = []
    calls = 0
    for _ in range(RUNS):
        proc = subprocess.run([sys.executable, "-c", PHASES.format(args=args)], cwd=cwd,
                              capture_output=True, text=True, check=True, env=env)
        *values, count = proc.stdout.split()[-6:]
        rows.append([float(v) for v in values])
        calls = int(count)
    cli, rich, agent, command, git = (ms(median([r[i] for r in rows])) for i in range(5))
    print(f"  agentmem {args[0]:<8} import agentmem.cli (typer) {cli}, + agentmem.console (rich) "
          f"{rich}, + agentmem.agent/report {agent}, then the command {command} "
          f"(of which {calls} git subprocesses {git})")


def cached_env(tmp: Path) -> dict[str, str]:
    """Bytecode cached, as for an installed user. This sandbox sets PYTHONDONTWRITEBYTECODE=1, which
    would make every start recompile agentmem's modules from source; the .pyc files go to a temp
    PYTHONPYCACHEPREFIX so nothing is written into the repository."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    return env


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return elapsed


def main() -> None:
    tmp = isolate("startup")
    py = sys.executable
    agentmem = str(Path(sys.executable).parent / "agentmem")
    agent = tmp / "x"
    subprocess.run([agentmem, "new", str(agent), "--from", "code-reviewer"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    git_dir = agent / ".agentmem" / "git"
    commands: dict[str, list[str]] = {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import agentmem.cli'": [py, "-c", "import agentmem.cli"],
        "git log -1": ["git", f"--git-dir={git_dir}", "log", "-1"],
        "agentmem --help": [agentmem, "--help"],
        "agentmem history AGENT": [agentmem, "history", str(agent)],
        "agentmem diff AGENT": [agentmem, "diff", str(agent)],
    }
    env = cached_env(tmp)
    for cmd in commands.values():   # warm the page cache and write the .pyc files
        timed(cmd, tmp, env)
    uncached = {f"{name} [no .pyc]": cmd for name, cmd in commands.items()
                if name.startswith("agentmem")}
    times: dict[str, list[float]] = {name: [] for name in [*commands, *uncached]}
    for _ in range(RUNS):   # round-robin, so noise hits every command alike
        for name, cmd in commands.items():
            times[name].append(timed(cmd, tmp, env))
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            for name, cmd in uncached.items():
                times[name].append(timed(cmd, tmp))

    section(f"start-up wall time, median of {RUNS} runs (cwd {tmp})")
    print("  (bytecode cached; '[no .pyc]' rows run as this sandbox is configured, "
          "PYTHONDONTWRITEBYTECODE=1)")
    for name, values in times.items():
        if not values:
            continue
        print(f"  {name:<34} {ms(median(values)):>10}   (min {ms(min(values))}, "
              f"max {ms(max(values))})")

    section(f"where the time goes inside the process (median of {RUNS} fresh interpreters; "
            "the imports are forced, --help alone needs only the first)")
    for args in (["--help"], ["history", str(agent)], ["diff", str(agent)]):
        phases(args, tmp, env)

    section("litellm imported by an in-process run of each command?")
    loaded: dict[str, bool] = {}
    for name, args in (("--help", ["--help"]), ("history", ["history", str(agent)]),
                       ("diff", ["diff", str(agent)])):
        proc = subprocess.run([py, "-c", CHECK.format(args=args)], cwd=tmp, capture_output=True,
                              text=True, env=env)
        flag = [line for line in proc.stderr.splitlines() if line.startswith("LITELLM_LOADED=")]
        loaded[name] = not flag or flag[-1] != "LITELLM_LOADED=False"
        print(f"  agentmem {name:<10} litellm in sys.modules: "
              f"{flag[-1].split('=')[1] if flag else 'unknown (no report)'}")

    section("targets")
    for name in ("agentmem --help", "agentmem history AGENT", "agentmem diff AGENT"):
        figure = median(times[name])
        result(f"startup: {name}", ms(figure), "<= 150 ms", figure <= TARGET_S)
    result("startup: no litellm import", "imported by: " + (", ".join(k for k, v in loaded.items()
                                                                     if v) or "none"),
           "none", not any(loaded.values()))


if __name__ == "__main__":
    main()
