"""Run a tool from tools.yaml: an argument list (never a shell), a timeout and an output cap.

The model fills the placeholders, so a value is data, never an option: one that would begin an
argument with "-" (an option: `--junitxml=tools.yaml`, `--output=../x`) or "@" (an argument file
that pytest, gcc or javac read as more options) is refused unless the tool lists the parameter
in `allow_options`. And a tool never changes the agent's memory: files it wrote there are put
back (see run).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentmem.agent import STATE_DIR
from agentmem.fsutil import atomic_write, read_bytes
from agentmem.history import TRACKED
from agentmem.locks import FileLock, LockTimeout
from agentmem.tooldefs import PLACEHOLDER, ToolDef

OPTION_START = ("-", "@")    # what begins an option, or an argument file
KEPT_DIR = "tool-writes"     # in STATE_DIR: what a tool wrote to the memory files
LOCK_TIMEOUT = 30.0          # seconds, as Agent's write lock


@dataclass
class ToolResult:
    ok: bool
    output: str


def parse_arguments(raw: str) -> dict[str, Any]:
    try:
        args = json.loads(raw or "{}")
    except ValueError as exc:
        raise ValueError(f"arguments are not valid JSON: {exc}") from None
    if not isinstance(args, dict):
        raise ValueError("arguments must be a JSON object")
    return args


def build_argv(tool: ToolDef, args: dict[str, Any]) -> list[str]:
    props = (tool.parameters.get("properties") or {})
    required = tool.parameters.get("required") or []
    missing = [r for r in required if r not in args]
    if missing:
        raise ValueError(f"missing required argument(s): {', '.join(missing)}")
    unknown = [k for k in args if k not in props]
    if unknown:
        raise ValueError(f"unknown argument(s): {', '.join(unknown)}")
    for key, value in args.items():
        if isinstance(value, (dict, list)) or value is None:
            raise ValueError(f"argument '{key}' must be a string, number or boolean")
        if isinstance(value, str) and "\0" in value:
            raise ValueError(f"argument '{key}' contains a NUL character")

    def fill(name: str) -> str:
        value = args.get(name, "")
        return json.dumps(value) if isinstance(value, bool) else str(value)

    argv = []
    for part in tool.command:
        names = PLACEHOLDER.findall(part)
        if names and PLACEHOLDER.fullmatch(part) and names[0] not in args:
            continue   # an optional argument that was not given: leave the slot out
        element = PLACEHOLDER.sub(lambda m: fill(m.group(1)), part)
        leader = _leading_placeholder(part, fill)
        if leader and element.startswith(OPTION_START) and leader not in tool.allow_options:
            raise ValueError(f"argument '{leader}' may not begin with '{element[0]}' (it would "
                             "be read as an option, not as a value); nothing was run")
        argv.append(element)
    return argv


def _leading_placeholder(part: str, fill: Callable[[str], str]) -> str | None:
    """The parameter whose value begins the argument `part` makes, if a value does (None when
    the command's own text comes first)."""
    pos = 0
    for match in PLACEHOLDER.finditer(part):
        if match.start() != pos:
            return None
        if fill(match.group(1)):
            return match.group(1)
        pos = match.end()
    return None


def run(tool: ToolDef, args: dict[str, Any], folder: Path) -> ToolResult:
    """Run `tool` in the agent folder `folder` (or its `cwd`) and return what it printed.

    The agent's memory files (persona.md, lessons.md, tools.yaml, archive.md) are not the
    tool's to change: under the agent's write lock, so that no agentmem write comes between,
    their bytes are read before the tool runs and compared after it ends (also after a timeout
    or a failure to start). Any that changed, appeared or went are put back as they were, the
    tool's version kept under .agentmem/tool-writes/, and the result is a failure that says so;
    a tool's write is thus never taken for a person's edit. log.jsonl, append-only, is left
    alone. A person's save to a memory file while a tool runs cannot be told from the tool's:
    it is put back too, and kept in the same place, so nothing is lost. Another process's
    agentmem write makes the tool wait for it (30 s at most); do not call this while this
    process holds the agent's write lock (Agent.locked), as it would wait on itself."""
    try:
        argv = build_argv(tool, args)
    except ValueError as exc:
        return ToolResult(False, f"error: {exc}")
    state_dir = folder / STATE_DIR
    try:
        state_dir.mkdir(exist_ok=True)
        lock = FileLock(state_dir / "write.lock", timeout=LOCK_TIMEOUT).acquire()
    except LockTimeout:
        return ToolResult(False, f"error: {folder} is busy (another agentmem process is writing "
                          "it); nothing was run, try again in a moment")
    except OSError as exc:
        return ToolResult(False, f"error: could not lock {state_dir}: {exc}; nothing was run")
    try:
        before = {name: _snapshot(folder / name) for name in TRACKED}
        try:
            result = _run(tool, argv, folder)
        finally:               # also when interrupted (Ctrl-C)
            changed = _put_back(tool, folder, before)
    finally:
        lock.release()
    if changed:
        result = ToolResult(False, changed + "\n" + result.output)
    return result


def _run(tool: ToolDef, argv: list[str], folder: Path) -> ToolResult:
    cwd = (folder / tool.cwd) if tool.cwd else folder
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, errors="replace",
                              timeout=tool.timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return ToolResult(False, f"error: command not found: {argv[0]}")
    except subprocess.TimeoutExpired:
        return ToolResult(False, f"error: {tool.name} timed out after {tool.timeout:g} s")
    except OSError as exc:
        return ToolResult(False, f"error: could not run {argv[0]}: {exc}")
    output = proc.stdout + (("\n[stderr]\n" + proc.stderr) if proc.stderr.strip() else "")
    if len(output) > tool.max_output:
        cut = len(output) - tool.max_output
        output = output[: tool.max_output] + f"\n[... {cut} more characters cut]"
    if proc.returncode != 0:
        return ToolResult(False, f"exit status {proc.returncode}\n{output}")
    return ToolResult(True, output)


# A memory file as found: None when absent; (bytes, permission bits) for a plain file; for
# anything else (a link, a folder) its stat identity, compared but not restorable as bytes.
Snapshot = tuple[bytes, int] | tuple[None, tuple[int, ...]] | None


def _snapshot(path: Path) -> Snapshot:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(st.st_mode):
        try:
            data, st = read_bytes(path, regular=True)
            return data, stat.S_IMODE(st.st_mode)
        except OSError:
            pass      # replaced between the lstat and the read: compared by identity
    return None, (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns)


def _put_back(tool: ToolDef, folder: Path, before: dict[str, Snapshot]) -> str:
    """Restore the memory files the tool changed to `before`; the message for the model, or
    "" when it changed none."""
    kept_dir = folder / STATE_DIR / KEPT_DIR
    stamp = time.strftime("%Y%m%dT%H%M%S")
    changed: list[str] = []
    restored: list[str] = []
    kept: list[str] = []
    failed: list[str] = []
    for name, old in before.items():
        path = folder / name
        new = _snapshot(path)
        if new == old:
            continue
        changed.append(name)
        if old is not None and old[0] is None:
            failed.append(f"{name} (it was not a plain file)")
            continue
        try:
            if new is not None:       # keep the tool's version: moved (a new file, a link, a
                kept_dir.mkdir(exist_ok=True)      # folder) or copied, then replaced
                aside = _free_name(kept_dir / f"{stamp}-{tool.name}-{name}")
                if old is None or new[0] is None:
                    os.replace(path, aside)
                else:
                    atomic_write(aside, new[0])
                kept.append(f"{STATE_DIR}/{KEPT_DIR}/{aside.name}")
            if old is not None and old[0] is not None:
                atomic_write(path, old[0])
                os.chmod(path, old[1])
            restored.append(name)
        except OSError as exc:
            failed.append(f"{name} ({exc.strerror or exc})")
    if not changed:
        return ""
    text = (f"error: {tool.name} changed the agent's memory ({', '.join(changed)}); a tool may "
            "not write those files")
    if restored:
        text += f"; put back as they were: {', '.join(restored)}"
    if failed:
        text += f"; could not put back: {', '.join(failed)}"
    if kept:
        text += f". The tool's version is kept in {', '.join(kept)}"
    return text + "."


def _free_name(path: Path) -> Path:
    n = 1
    candidate = path
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate
