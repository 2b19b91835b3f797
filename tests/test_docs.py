"""The docs cannot drift from the program, and the layers stay apart."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from typer.main import get_command

from agentmem.cli import app

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "agentmem"
README = (REPO / "README.md").read_text(encoding="utf-8")
README_COMMANDS = re.findall(r"^### `agentmem ([a-z][a-z-]*)", README, re.M)


def _commands() -> dict:
    return dict(get_command(app).commands)  # type: ignore[attr-defined]


COMMANDS = sorted(_commands())


def test_the_known_commands_are_registered():
    assert {"new", "show", "chat", "history", "diff", "revert"} <= set(COMMANDS)
    assert README_COMMANDS, "README.md has no `### `agentmem NAME` headings"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example(name: str):
    command = _commands()[name]
    help_text = (command.help or "").strip()
    assert help_text, f"{name} has no help"
    assert "example" in help_text.lower(), f"{name}'s help has no example"
    assert f"agentmem {name}" in help_text, f"{name}'s example does not run agentmem {name}"
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option" and param.name != "help":
            assert (getattr(param, "help", None) or "").strip(), f"{name} --{param.name} has no help"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_a_readme_section(name: str):
    assert name in README_COMMANDS, f"README.md lacks a '### `agentmem {name}' section"


@pytest.mark.parametrize("name", sorted(set(README_COMMANDS)))
def test_every_readme_command_exists(name: str):
    assert name in _commands(), f"README.md documents 'agentmem {name}', which the CLI lacks"


def test_readme_quickstart_commands_exist():
    quick = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    used = set(re.findall(r"^agentmem ([a-z-]+)", quick, re.M))
    assert used
    assert used <= set(_commands())


# -- layering --------------------------------------------------------------------------------

def _imports(path: Path) -> set[str]:
    """Top-level package names a module imports, anywhere in it (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _modules(path: Path) -> set[str]:
    """The agentmem modules a module imports, by full name (`from agentmem import console`
    is agentmem.console), lazy imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] == "agentmem"}


ALL_MODULES = sorted(PACKAGE.rglob("*.py"))
# the core: everything below the command line (cli.py, __main__.py, commands/) and the terminal
# (console.py), subpackages such as sleep/ included
CORE_MODULES = [p for p in ALL_MODULES if p.relative_to(PACKAGE).parts[0]
                not in ("cli.py", "__main__.py", "console.py", "commands")]


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def test_the_scan_sees_the_package():
    rels = {_rel(p) for p in ALL_MODULES}
    assert {"agentmem/cli.py", "agentmem/console.py", "agentmem/llm.py",
            "agentmem/commands/diff.py"} <= rels
    assert {"agentmem/agent.py", "agentmem/sleep/passes.py"} <= {_rel(p) for p in CORE_MODULES}
    assert not {_rel(p) for p in CORE_MODULES} & {"agentmem/cli.py", "agentmem/console.py",
                                                    "agentmem/commands/sleep.py"}
    # the scanner itself finds what it should
    assert "litellm" in _imports(PACKAGE / "llm.py")
    assert "typer" in _imports(PACKAGE / "cli.py")
    assert "rich" in _imports(PACKAGE / "console.py")
    assert "agentmem.console" in _modules(PACKAGE / "commands" / "sleep.py")


@pytest.mark.parametrize("path", CORE_MODULES, ids=_rel)
def test_core_modules_import_neither_typer_nor_rich(path: Path):
    assert not _imports(path) & {"typer", "rich", "click"}


@pytest.mark.parametrize("path", CORE_MODULES, ids=_rel)
def test_core_modules_import_neither_console_nor_commands(path: Path):
    """The core returns results and raises errors; printing them is the command line's job."""
    above = {m for m in _modules(path)
             if m == "agentmem.console" or m.startswith(("agentmem.commands", "agentmem.cli"))}
    assert not above


def test_only_llm_imports_litellm():
    assert [_rel(p) for p in ALL_MODULES if "litellm" in _imports(p)] == ["agentmem/llm.py"]


def test_only_watcher_imports_watchfiles():
    users = [_rel(p) for p in ALL_MODULES if "watchfiles" in _imports(p)]
    assert users == ["agentmem/watcher.py"]


def test_rich_only_in_console_and_commands():
    users = {_rel(p) for p in ALL_MODULES if "rich" in _imports(p)}
    outside = {u for u in users if not u.startswith("agentmem/commands/")}
    assert outside == {"agentmem/console.py"}


def test_typer_only_in_cli_and_commands():
    users = {_rel(p) for p in ALL_MODULES if "typer" in _imports(p) or "click" in _imports(p)}
    outside = {u for u in users if not u.startswith("agentmem/commands/")}
    assert outside == {"agentmem/cli.py"}
