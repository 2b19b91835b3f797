"""`agentmem import`: read a Letta agent file or a Markdown instruction file into a new agent."""

from __future__ import annotations

from pathlib import Path

from agentmem.agent import Agent
from agentmem.errors import UsageError
from agentmem.portable import build, letta, markdown
from agentmem.portable.source import Imported, read_source

LETTA_SUFFIXES = {".af", ".json"}
MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdx", ".txt"}
INSTRUCTION_FILES = {"agents.md", "claude.md", "gemini.md", "copilot-instructions.md"}
SHAPES = ("lessons", "persona")


def import_file(file: str, dest: str | None = None, *, shape: str = "lessons") -> tuple[Agent, Imported]:
    """Create an agent folder from FILE; returns it and what was imported (and skipped)."""
    if shape not in SHAPES:
        raise UsageError(f"--as {shape} is not a choice (choose {' or '.join(SHAPES)})")
    path = Path(file).expanduser()
    data = read_source(path)
    kind = _kind(path, data)
    if kind == "letta":
        if shape == "persona":
            raise UsageError("--as persona is for Markdown files; a Letta agent file maps its "
                             "blocks itself", "leave out --as")
        imported = letta.parse(data, str(path))
    else:
        name = Path(dest).name if dest else _markdown_name(path)
        imported = markdown.parse(data, str(path), name, as_persona=shape == "persona")
    target = build.destination(dest, imported.name)
    return build.build(imported, target, path), imported


def _kind(path: Path, data: bytes) -> str:
    suffix = path.suffix.lower()
    if suffix in LETTA_SUFFIXES:
        return "letta"
    if suffix in MARKDOWN_SUFFIXES:
        return "markdown"
    return "letta" if data.lstrip()[:1] in (b"{", b'"', b"[") else "markdown"


def _markdown_name(path: Path) -> str:
    """AGENTS.md and the like are named after their folder (the repository); others by stem."""
    resolved = path.resolve()
    if resolved.name.lower() in INSTRUCTION_FILES and resolved.parent.name:
        return resolved.parent.name
    return resolved.stem
