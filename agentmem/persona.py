"""persona.md: YAML front matter (settings) and a Markdown body (identity, instructions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentmem import yamlutil
from agentmem.errors import Problem

FILE = "persona.md"

DEFAULT_BUDGETS = {"persona": 2000, "lessons": 4000}

# setting -> (type, description). Unknown settings are errors: typos must not pass silently.
SETTINGS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "name": (str, "display name"),
    "description": (str, "one line about the agent"),
    "model": (str, "chat model (a litellm model string or an alias)"),
    "sleep_model": (str, "model for sleep passes (defaults to model)"),
    "api_base": (str, "base URL of an OpenAI-compatible server"),
    "temperature": ((int, float), "sampling temperature"),
    "context_window": (int, "the model's context window in tokens (when litellm does not know it)"),
    "budgets": (dict, "token budgets: persona, lessons"),
    "sleep": (dict, "sleep settings: idle_minutes, min_events, max_shrink, output, check, "
                       "retire_margin"),
    "allow_tools": (list, "tools that run without asking"),
    "tags": (list, "free-form tags"),
    "remote": (str, "git remote agentmem sync pushes to and pulls from (a path or URL)"),
}
BUDGET_KEYS = ("persona", "lessons")
SLEEP_KEYS: dict[str, type | tuple[type, ...]] = {
    "idle_minutes": (int, float), "min_events": int, "max_shrink": (int, float),
    "retire_margin": int}    # harmful - helpful at which sleep retires a lesson (sleep/retire)
# sleep settings that name one of a few choices; output: how a pass asks for its JSON answer
SLEEP_CHOICES: dict[str, tuple[str, ...]] = {"output": ("auto", "schema", "json", "prompt")}


@dataclass
class Persona:
    settings: dict[str, Any]
    body: str
    front_matter: str          # raw text between the --- fences, kept byte for byte
    body_line: int             # 1-based line where the body starts
    text: str = field(repr=False, default="")

    @property
    def budgets(self) -> dict[str, int]:
        return {**DEFAULT_BUDGETS, **(self.settings.get("budgets") or {})}

    def with_body(self, body: str) -> str:
        """The file's text with a new body and the front matter untouched."""
        return f"---\n{self.front_matter}---\n{body}"


def split(text: str) -> tuple[str, str, int] | None:
    """Split into (front matter, body, body start line) or None when there is no front matter."""
    if not text.startswith("---\n") and not text.startswith("---\r\n"):
        return None
    lines = text.splitlines(keepends=True)
    for i in range(1, len(lines)):
        if lines[i].rstrip("\r\n") == "---":
            return "".join(lines[1:i]), "".join(lines[i + 1:]), i + 2
    return None


def parse(text: str, file: str = FILE) -> tuple[Persona | None, list[Problem]]:
    parts = split(text)
    if parts is None:
        return None, [Problem(file, 1, "missing YAML front matter: the file must start with a "
                                       "'---' line and the settings must end with another '---'")]
    front, body, body_line = parts
    data, problems = yamlutil.load(front, file, line_offset=1)
    if problems:
        return None, problems
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [Problem(file, 2, "front matter must be a mapping of settings (key: value)")]
    problems = validate_settings(data, file)
    if problems:
        return None, problems
    return Persona(dict(data), body, front, body_line, text), []


def validate_settings(data: dict[str, Any], file: str = FILE) -> list[Problem]:
    problems: list[Problem] = []

    def at(obj: Any, key: str) -> int | None:
        return yamlutil.line_of(obj, key, offset=1)

    for key, value in data.items():
        if key not in SETTINGS:
            known = ", ".join(SETTINGS)
            problems.append(Problem(file, at(data, key), f"unknown setting '{key}' (known: {known})"))
            continue
        kind, _ = SETTINGS[key]
        if value is not None and not isinstance(value, kind):
            problems.append(Problem(file, at(data, key), f"'{key}' has the wrong type "
                                    f"({type(value).__name__}); expected {_kind_name(kind)}"))
            continue
    budgets = data.get("budgets")
    if isinstance(budgets, dict):
        for key, value in budgets.items():
            if key not in BUDGET_KEYS:
                problems.append(Problem(file, at(budgets, key),
                                        f"unknown budget '{key}' (known: {', '.join(BUDGET_KEYS)})"))
            elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(Problem(file, at(budgets, key),
                                        f"budget '{key}' must be a positive number of tokens"))
    sleep = data.get("sleep")
    if isinstance(sleep, dict):
        for key, value in sleep.items():
            if key == "check":          # the regression check: true, false or a mapping
                problems += [Problem(file, at(sleep, key), what) for what in check_problems(value)]
            elif key in SLEEP_CHOICES:
                if value not in SLEEP_CHOICES[key]:
                    problems.append(Problem(file, at(sleep, key), f"sleep setting '{key}' must "
                                            f"be one of: {', '.join(SLEEP_CHOICES[key])}"))
            elif key not in SLEEP_KEYS:
                problems.append(Problem(file, at(sleep, key), f"unknown sleep setting '{key}' "
                                        f"(known: {', '.join([*SLEEP_KEYS, *SLEEP_CHOICES, 'check'])})"))
            elif not isinstance(value, SLEEP_KEYS[key]) or isinstance(value, bool) or value < 0:  # type: ignore[operator]
                problems.append(Problem(file, at(sleep, key),
                                        f"sleep setting '{key}' must be a non-negative number"))
        if sleep.get("retire_margin") == 0 and not isinstance(sleep["retire_margin"], bool):
            problems.append(Problem(file, at(sleep, "retire_margin"), "sleep setting "
                                    "'retire_margin' must be at least 1 (0 would retire a lesson "
                                    "rated harmful as often as helpful)"))
    window = data.get("context_window")
    if isinstance(window, int) and (isinstance(window, bool) or window < 1024):
        problems.append(Problem(file, at(data, "context_window"),
                                "context_window must be a number of tokens, at least 1024"))
    remote = data.get("remote")
    if isinstance(remote, str) and (not remote.strip() or remote.startswith("-")
                                    or any(c in remote for c in "\r\n\0")):
        problems.append(Problem(file, at(data, "remote"), "remote must be a path or URL of a git "
                                "repository (one line, not starting with '-')"))
    tools = data.get("allow_tools")
    if isinstance(tools, list) and not all(isinstance(t, str) for t in tools):
        problems.append(Problem(file, at(data, "allow_tools"), "allow_tools must list tool names"))
    return problems


CHECK_KEYS = ("turns", "margin", "judge")    # sleep: check: (agentmem.sleep.check)


def check_problems(value: Any) -> list[str]:
    """What is wrong with `check:` under `sleep:`: true, false, or a mapping of turns (at
    least 1), margin (at least 0) and judge (a model)."""
    if isinstance(value, bool):
        return []
    if not isinstance(value, dict):
        return ["sleep setting 'check' must be true, false, or a mapping (turns, margin, judge)"]
    problems = []
    for key, item in value.items():
        least = 1 if key == "turns" else 0
        if key not in CHECK_KEYS:
            problems.append(f"unknown check setting '{key}' (known: {', '.join(CHECK_KEYS)})")
        elif key == "judge":
            if not isinstance(item, str) or not item.strip():
                problems.append("check setting 'judge' must be a model name")
        elif not isinstance(item, int) or isinstance(item, bool) or item < least:
            problems.append(f"check setting '{key}' must be a whole number, at least {least}")
    return problems


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "text", dict: "a mapping", list: "a list", int: "a number", float: "a number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def render(settings: dict[str, Any], body: str) -> str:
    return f"---\n{yamlutil.dump(settings)}---\n{body}"
