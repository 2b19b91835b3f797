"""tools.yaml: the tools an agent may call. Only people edit this file.

    tools:
      - name: grep_repo
        description: Search the repository for a regular expression.
        parameters:                       # JSON schema of the arguments
          type: object
          properties:
            pattern: {type: string, description: The regular expression}
          required: [pattern]
        command: [git, grep, -n, "{pattern}"]   # an argument list, never a shell
        timeout: 20                       # seconds (default 30)
        max_output: 20000                 # characters kept of stdout+stderr (default 20000)
        approve: ask                      # ask (default) or auto
        allow_options: [pattern]          # values that may begin with - or @ (default: none)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agentmem import yamlutil
from agentmem.errors import Problem

FILE = "tools.yaml"
NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_\-]{0,63}$")
PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
TOOL_KEYS = {"name", "description", "parameters", "command", "timeout", "max_output", "approve",
             "cwd", "allow_options"}
RESERVED = {"memory"}
BLANK = "# Tools this agent may call. Only people edit this file; see docs/format.md.\ntools: []\n"


@dataclass
class ToolDef:
    name: str
    description: str
    parameters: dict[str, Any]
    command: list[str]
    timeout: float = 30.0
    max_output: int = 20000
    approve: str = "ask"
    cwd: str | None = None
    # parameters whose value may begin an argument with "-" or "@" (see toolrun.build_argv)
    allow_options: frozenset[str] = frozenset()
    line: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        """The OpenAI-style function definition sent to the model."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": _plain(self.parameters)}}


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def parse(text: str, file: str = FILE) -> tuple[list[ToolDef] | None, list[Problem]]:
    data, problems = yamlutil.load(text, file)
    if problems:
        return None, problems
    if data is None:
        return [], []
    if not isinstance(data, dict) or set(data) - {"tools"}:
        return None, [Problem(file, yamlutil.line_of(data) or 1,
                              "tools.yaml must be a mapping with one key, 'tools', holding a list")]
    items = data.get("tools") or []
    if not isinstance(items, list):
        return None, [Problem(file, yamlutil.line_of(data, "tools"), "'tools' must be a list of tools")]
    tools: list[ToolDef] = []
    seen: set[str] = set()
    for item in items:
        tool, item_problems = _parse_tool(item, file)
        problems += item_problems
        if tool:
            if tool.name in seen:
                problems.append(Problem(file, tool.line, f"duplicate tool name '{tool.name}'"))
            seen.add(tool.name)
            tools.append(tool)
    return (None, problems) if problems else (tools, [])


def _parse_tool(item: Any, file: str) -> tuple[ToolDef | None, list[Problem]]:
    line = yamlutil.line_of(item)
    if not isinstance(item, dict):
        return None, [Problem(file, line, "each tool must be a mapping with name, description, "
                              "parameters and command")]

    def bad(key: str, what: str) -> tuple[None, list[Problem]]:
        return None, [Problem(file, yamlutil.line_of(item, key), what)]

    unknown = set(item) - TOOL_KEYS
    if unknown:
        key = sorted(unknown)[0]
        return bad(key, f"unknown tool key '{key}' (known: {', '.join(sorted(TOOL_KEYS))})")
    name = item.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        return bad("name", "tool name must be letters, digits, _ or -, starting with a letter")
    if name in RESERVED:
        return bad("name", f"tool name '{name}' is reserved for agentmem's own memory tool")
    if not isinstance(item.get("description"), str) or not item["description"].strip():
        return bad("description", f"tool '{name}' needs a description (the model reads it)")
    params = item.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict) or params.get("type", "object") != "object":
        return bad("parameters", f"tool '{name}': parameters must be a JSON schema of type object")
    props = params.get("properties") or {}
    if not isinstance(props, dict):
        return bad("parameters", f"tool '{name}': parameters.properties must be a mapping")
    command = item.get("command")
    if (not isinstance(command, list) or not command
            or not all(isinstance(c, (str, int, float)) for c in command)):
        return bad("command", f"tool '{name}': command must be a non-empty list of arguments "
                   "(it never runs through a shell)")
    for arg in command:
        for ref in PLACEHOLDER.findall(str(arg)):
            if ref not in props:
                return bad("command", f"tool '{name}': command uses {{{ref}}} but parameters "
                           f"has no property '{ref}'")
    timeout = item.get("timeout", 30)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        return bad("timeout", f"tool '{name}': timeout must be a positive number of seconds")
    max_output = item.get("max_output", 20000)
    if not isinstance(max_output, int) or isinstance(max_output, bool) or max_output <= 0:
        return bad("max_output", f"tool '{name}': max_output must be a positive whole number")
    approve = item.get("approve", "ask")
    if approve not in ("ask", "auto"):
        return bad("approve", f"tool '{name}': approve must be 'ask' or 'auto'")
    cwd = item.get("cwd")
    if cwd is not None and not isinstance(cwd, str):
        return bad("cwd", f"tool '{name}': cwd must be a path")
    allow_options = item.get("allow_options", [])
    if not isinstance(allow_options, list) or not all(isinstance(a, str) for a in allow_options):
        return bad("allow_options", f"tool '{name}': allow_options must be a list of parameter "
                   "names")
    for opt in allow_options:
        if opt not in props:
            known = ", ".join(sorted(props)) or "none"
            return bad("allow_options", f"tool '{name}': allow_options names '{opt}', which is "
                       f"not one of its parameters (known: {known})")
    return ToolDef(name=name, description=item["description"].strip(), parameters=params,
                   command=[str(c) for c in command], timeout=float(timeout),
                   max_output=max_output, approve=approve, cwd=cwd,
                   allow_options=frozenset(allow_options), line=line or 0), []
