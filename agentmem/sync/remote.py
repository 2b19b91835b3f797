"""The remote end of a sync: which refs it has, fetching them, pushing (never forced).

An agent's remote holds two branches: `agentmem/memory` (the versions, as the agent's own
`main`) and `agentmem/log` (commits of log.jsonl). Fetched, they are kept as
`refs/agentmem/remote/memory` and `refs/agentmem/remote/log`; this machine's log commits are
`refs/agentmem/log`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from agentmem.errors import AgentmemError, UsageError
from agentmem.history import History

MEMORY = "refs/heads/agentmem/memory"
LOG = "refs/heads/agentmem/log"
TRACKING = {MEMORY: "refs/agentmem/remote/memory", LOG: "refs/agentmem/remote/log"}
LOCAL_LOG = "refs/agentmem/log"
_SCP = re.compile(r"^[\w.-]+@[\w.-]+:|^[\w.-]+:(?!//)")      # user@host:path, host:path


def resolve(spec: str, base: Path) -> str:
    """A remote as git takes it: a URL or scp-like address as given, a local path made
    absolute (relative to `base`)."""
    spec = spec.strip()
    if not spec or spec.startswith("-") or any(c in spec for c in "\r\n\0"):
        raise UsageError(f"'{spec}' is not a remote", "give a path or URL of a git repository, "
                         "e.g. agentmem sync AGENT ~/agents/reviewer.git")
    if "://" in spec or (_SCP.match(spec) and not Path(spec).expanduser().exists()):
        return spec
    return str((base / Path(spec).expanduser()).resolve())


def display(url: str) -> str:
    """The remote as shown and recorded: a password or token in a URL left out."""
    from agentmem.redact import redact

    return redact(re.sub(r"(://)[^/@]*@", r"\1", url))


def _no_prompt(history: History) -> dict[str, str]:
    """The environment for git talking to a remote: ssh never stops to ask (a host key or a
    passphrase) and fails instead, as https already does (GIT_TERMINAL_PROMPT=0), unless the
    person set their own ssh command (GIT_SSH_COMMAND, GIT_SSH or core.sshCommand)."""
    if os.environ.get("GIT_SSH_COMMAND") or os.environ.get("GIT_SSH"):
        return {}
    if history.git("config", "--get", "core.sshCommand", check=False).stdout.strip():
        return {}
    return {"GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}


def heads(history: History, url: str) -> dict[str, str]:
    """The remote's agentmem branches: ref -> commit (empty for a new, empty remote)."""
    proc = history.git("ls-remote", "--", url, MEMORY, LOG, check=False,
                       env=_no_prompt(history))
    if proc.returncode != 0:
        raise _unreachable(url, proc.stderr)
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref in (MEMORY, LOG):
            found[ref] = sha.strip()
    return found


def fetch(history: History, url: str, refs: dict[str, str]) -> dict[str, str]:
    """Fetch the remote's branches into the tracking refs; ref -> commit fetched."""
    if not refs:
        return {}
    specs = [f"+{ref}:{TRACKING[ref]}" for ref in refs]
    proc = history.git("fetch", "-q", "--no-tags", "--no-write-fetch-head", "--", url, *specs,
                       check=False, env=_no_prompt(history))
    if proc.returncode != 0:
        raise _unreachable(url, proc.stderr)
    return {ref: history.git("rev-parse", "--verify", TRACKING[ref]).stdout.strip()
            for ref in refs}


def push(history: History, url: str, updates: list[tuple[str, str]]) -> bool:
    """Push `updates` (local commit, remote ref) together, never forced. False when the remote
    refused them because it moved meanwhile (fetch and merge, then push again)."""
    specs = [f"{commit}:{ref}" for commit, ref in updates]
    proc = history.git("push", "--atomic", "--porcelain", "-q", "--", url, *specs, check=False,
                       env=_no_prompt(history))
    if proc.returncode == 0:
        return True
    said = proc.stdout + proc.stderr
    if re.search(r"\[rejected\]|non-fast-forward|fetch first|\[remote rejected\].*(lock|"
                 r"incorrect old value|stale)", said):
        return False
    raise _unreachable(url, said, "push to")


def _unreachable(url: str, stderr: str, verb: str = "reach") -> AgentmemError:
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    said = next((x for x in lines if x.startswith(("fatal:", "error:", "!"))),
                lines[0] if lines else "no message")
    said = re.sub(r"^(fatal|error):\s*", "", said)
    return AgentmemError(f"cannot {verb} the remote {display(url)}: {display(said)}",
                         "check the path or URL and your access to it; for a new remote on "
                         "disk, create it with: git init --bare PATH")
