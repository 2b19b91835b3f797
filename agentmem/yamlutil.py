"""YAML parsing that keeps line numbers, so problems are reported as `file:line`."""

from __future__ import annotations

from typing import Any

import yaml

from agentmem.errors import Problem


class LineLoader(yaml.SafeLoader):
    """SafeLoader that records the 1-based line of every mapping (pure Python: exact errors)."""


_Fast = getattr(yaml, "CSafeLoader", None)


class FastLineLoader(_Fast or yaml.SafeLoader):  # type: ignore[misc]
    """The same on libyaml, ten times faster; used first, errors re-parsed with LineLoader."""


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = LinedDict(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {
        k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)
    }
    return mapping


class LinedDict(dict):  # type: ignore[type-arg]
    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return getattr(self, "key_lines", {}).get(key, self.line)


for _loader in (LineLoader, FastLineLoader):
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(text: str, file: str, line_offset: int = 0) -> tuple[Any, list[Problem]]:
    """Parse YAML; on error return (None, [file:line problem]). Never raises for bad input."""
    try:
        return yaml.load(text, Loader=FastLineLoader), []  # noqa: S506 - a SafeLoader
    except yaml.YAMLError:
        pass   # re-parse with the pure-Python loader, whose messages and marks we report
    try:
        return yaml.load(text, Loader=LineLoader), []  # noqa: S506 - LineLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context_mark and "<stream end>" in what:
            # the file ended inside something left open: point at where it was opened
            mark = exc.context_mark
            opened = (exc.context or "a bracket").replace("while parsing ", "")
            what = f"{opened} is never closed (the file ends first)"
        line = (mark.line + 1 + line_offset) if mark else None
        return None, [Problem(file, line, f"invalid YAML: {what}")]
    except yaml.YAMLError as exc:
        return None, [Problem(file, None, f"invalid YAML: {exc}")]


def line_of(obj: Any, key: str | None = None, offset: int = 0) -> int | None:
    if isinstance(obj, LinedDict):
        return (obj.line_of(key) if key else obj.line) + offset
    return None


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
