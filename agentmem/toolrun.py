"""Run a tool from tools.yaml: an argument list (never a shell), a timeout and an output cap."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentmem.tooldefs import PLACEHOLDER, ToolDef


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

    def fill(match: Any) -> str:
        value = args.get(match.group(1), "")
        return json.dumps(value) if isinstance(value, bool) else str(value)

    argv = []
    for part in tool.command:
        names = PLACEHOLDER.findall(part)
        if names and PLACEHOLDER.fullmatch(part) and names[0] not in args:
            continue   # an optional argument that was not given: leave the slot out
        argv.append(PLACEHOLDER.sub(fill, part))
    return argv


def run(tool: ToolDef, args: dict[str, Any], folder: Path) -> ToolResult:
    try:
        argv = build_argv(tool, args)
    except ValueError as exc:
        return ToolResult(False, f"error: {exc}")
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
