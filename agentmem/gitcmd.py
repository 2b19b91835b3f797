"""Running real git on an agent's history: a clean environment, no hooks, one-line failures."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from agentmem import baton
from agentmem.errors import AgentmemError


def run(git_dir: Path, folder: Path, args: tuple[str, ...], env: dict[str, str] | None,
        **options: Any) -> subprocess.CompletedProcess[Any]:
    """git ARGS on the repository at `git_dir` whose work tree is `folder`: no user hooks,
    signing, line-ending conversion or system config, and no variable of an outer git command
    leaking in. `options` go to subprocess.run."""
    full_env = {**os.environ, "GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(folder),
                "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C",
                **(env or {})}
    for leak in ("GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR"):
        full_env.pop(leak, None)
    cmd = ["git", "-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false",
           "-c", "core.autocrlf=false", "-c", "core.quotepath=false", *args]
    try:
        with baton.waiting():         # in a batch, another pass computes meanwhile
            return subprocess.run(cmd, cwd=folder, env=full_env, capture_output=True, **options)
    except FileNotFoundError as exc:
        raise AgentmemError("git is not installed", "install git and try again") from exc


def failure(args: tuple[str, ...], stderr: str, git_dir: Path) -> AgentmemError:
    """git's complaint as one line, with what to do about it."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    main = next((line for line in lines if line.startswith(("fatal:", "error:"))),
                lines[0] if lines else "no message")
    main = re.sub(r"^(fatal|error):\s*", "", main)
    held = re.search(r"Unable to create '([^']+\.lock)'", stderr)
    if held:
        return AgentmemError(f"the history is locked by {held.group(1)}",
                             "another git command is using it; if none is running, remove "
                             "that file and try again")
    return AgentmemError(f"git {args[0] if args else ''} failed: {main}",
                         f"the history in {git_dir} may be damaged; check it with: "
                         f"git --git-dir={git_dir} fsck")
