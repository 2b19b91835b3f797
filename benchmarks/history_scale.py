"""History reads at 10,000 versions vs 10: `history -n 10`, `diff`, `show`, `revert HEAD`.

Two code-reviewer agents are built alike, one with 10 versions and one with 10,000: after
`agentmem new`, the other versions are written in one `git fast-import` stream as agentmem
writes them (author `agentmem (sleep) <sleep@agentmem>`, the Agentmem-Author and Agentmem-Log
trailers, every 7th an agent edit after untrusted tool output, every 50th a hand edit), each
version changing one lesson's counters so that the files are the same size at both lengths;
then the pack is unpacked into loose objects (agentmem writes loose objects and never packs),
and the version-count cache and git's index are written as agentmem leaves them.

Each command runs as a subprocess (the console script next to sys.executable), round-robin over
the two agents, median of RUNS. `revert HEAD` writes a version, so each run is followed by
putting the branch, the files and the count cache back (not timed). Target: <= 1.2x each.
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

RUNS = 1 if SMOKE else 11
BIG = 200 if SMOKE else 10_000
SMALL = 10
TARGET = 1.2
BASE_TIME = 1_700_000_000
EXTRA = """
## Check the counters
<!-- id: L90; evidence: e1; helpful: {n}; harmful: 0 -->
A lesson whose counters every version moves, so that each version changes one line.
"""


def agentmem_cmd() -> str:
    return str(Path(sys.executable).with_name("agentmem"))


def git(agent: Path, *args: str, **run: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "--git-dir", str(agent / ".agentmem" / "git"), *args],
                          check=True, capture_output=True, **run)  # type: ignore[call-overload]


def build(agent: Path, versions: int) -> None:
    """An agent with `versions` versions, the last its files on disk."""
    subprocess.run([agentmem_cmd(), "new", str(agent), "--from", "code-reviewer"], check=True,
                   capture_output=True)
    base = (agent / "lessons.md").read_text(encoding="utf-8").rstrip("\n") + "\n"
    head = git(agent, "rev-parse", "HEAD").stdout.decode().strip()
    stream: list[bytes] = []
    text = base
    for n in range(2, versions + 1):
        text = base + EXTRA.format(n=n)
        if n % 50 == 0:
            author, subject = "human", "Hand edit of lessons.md"
        elif n % 7 == 0:
            author, subject = "agent", "Update lesson L90: counters"
        else:
            author, subject = "sleep", f"Sleep: 1 operation (version {n})"
        message = f"{subject}\n\n"
        if author == "agent":
            message += "Agentmem-Untrusted: after tool output from fetch_url\n\n"
        message += f"Agentmem-Author: {author}\nAgentmem-Log: {n}\n"
        who = f"agentmem ({author}) <{author}@agentmem> {BASE_TIME + n} +0000"
        data, body = text.encode(), message.encode()
        stream.append(b"commit refs/heads/main\n" + f"author {who}\ncommitter {who}\n".encode()
                      + f"data {len(body)}\n".encode() + body
                      + (f"from {head}\n".encode() if n == 2 else b"")
                      + f"M 100644 inline lessons.md\ndata {len(data)}\n".encode() + data + b"\n")
    if stream:
        git(agent, "fast-import", "--quiet", "--force", input=b"".join(stream))
        packs = agent / ".agentmem" / "git" / "objects" / "pack"
        for pack in packs.glob("*.pack"):
            data = pack.read_bytes()
            for part in packs.glob(pack.stem + ".*"):
                part.unlink()
            git(agent, "unpack-objects", "-q", input=data)
    head = git(agent, "rev-parse", "HEAD").stdout.decode().strip()
    (agent / "lessons.md").write_text(text, encoding="utf-8")
    flagged = ",".join(str(n) for n in range(2, versions + 1) if n % 7 == 0 and n % 50)
    (agent / ".agentmem" / "git" / "agentmem-versions").write_text(
        f"{head} {versions} end untrusted={flagged}\n")
    git(agent, "read-tree", "HEAD")
    slept = max((n for n in range(2, versions + 1) if n % 7 and n % 50), default=None)
    if slept is not None:             # what the last of those sleep passes left in state.json
        from agentmem.agent import Agent

        Agent.open(str(agent)).update_state(last_sleep={
            "time": "2026-12-05T12:00:00+00:00", "version": slept, "operations": 1,
            "at_version": slept})


def saved(agent: Path) -> dict[Path, bytes]:
    """What a `revert HEAD` changes, to put back: files, the branch ref and the count cache."""
    git_dir = agent / ".agentmem" / "git"
    paths = [agent / "lessons.md", agent / "persona.md", agent / "tools.yaml",
             git_dir / "refs" / "heads" / "main", git_dir / "agentmem-versions", git_dir / "index"]
    return {p: p.read_bytes() for p in paths if p.exists()}


def put_back(agent: Path, files: dict[Path, bytes]) -> None:
    for path, data in files.items():
        path.write_bytes(data)
    for extra in ("archive.md",):
        if (agent / extra).exists() and (agent / extra) not in files:
            (agent / extra).unlink()


COMMANDS = {
    "history -n 10": ["history", "{agent}", "-n", "10"],
    "diff": ["diff", "{agent}"],
    "show": ["show", "{agent}"],
    "revert HEAD": ["revert", "{agent}", "HEAD"],
}


def main() -> None:
    tmp = isolate("history")
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp / "pycache")}
    agents: dict[int, Path] = {}
    for n in (SMALL, BIG):
        start = time.perf_counter()
        agents[n] = tmp / f"agent{n}"
        build(agents[n], n)
        print(f"  built an agent with {n:,} versions in {time.perf_counter() - start:.1f} s",
              flush=True)
    backups = {n: saved(a) for n, a in agents.items()}
    times: dict[tuple[str, int], list[float]] = {}
    for args in COMMANDS.values():            # one warm run each, to cache bytecode and files
        for n, agent in agents.items():
            subprocess.run([agentmem_cmd(), *(a.format(agent=agent) for a in args)], env=env,
                           capture_output=True)
            put_back(agent, backups[n])
    section(f"wall time, median of {RUNS} round-robin runs")
    for _ in range(RUNS):
        for name, args in COMMANDS.items():
            for n, agent in agents.items():
                argv = [agentmem_cmd(), *(a.format(agent=agent) for a in args)]
                start = time.perf_counter()
                proc = subprocess.run(argv, env=env, capture_output=True, text=True)
                times.setdefault((name, n), []).append(time.perf_counter() - start)
                if proc.returncode != 0:
                    print(f"  run failed: {' '.join(argv)}: {proc.stderr.strip()}")
                put_back(agent, backups[n])
    for name in COMMANDS:
        small, big = median(times[(name, SMALL)]), median(times[(name, BIG)])
        print(f"  {name:<14} {SMALL} versions {ms(small)}, {BIG:,} versions {ms(big)}")
        result(f"history scale: {name} {BIG:,}/{SMALL} versions", f"{big / small:.2f}x",
               f"<= {TARGET}x", big / small <= TARGET)


if __name__ == "__main__":
    main()
