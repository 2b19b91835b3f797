from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
os.environ.setdefault("NO_COLOR", "1")


# e1-e3 of a log where the user corrected the agent: the lesson a sleep pass should learn
FLAKE8_CORRECTED = (
    {"session": "s1", "kind": "user", "content": "Review my PR"},                     # e1
    {"session": "s1", "kind": "assistant", "content": "Please run flake8 first."},    # e2
    {"session": "s1", "kind": "user", "content": "No: we use ruff, not flake8."},     # e3
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own agent home and config; no real keys or models leak in."""
    monkeypatch.setenv("AGENTMEM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AGENTMEM_CONFIG", str(tmp_path / "config.yaml"))
    for var in ("AGENTMEM_MODEL", "AGENTMEM_SLEEP_MODEL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cli():
    """Run the real CLI in-process: cli("diff", path) -> Result with exit_code/stdout/stderr."""
    from agentmem.cli import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def agent(tmp_path: Path):
    """A fresh agent copied from the code-reviewer sample, with its history started."""
    from agentmem.agent import Agent

    return Agent.create(str(tmp_path / "reviewer"), "code-reviewer")


@pytest.fixture
def blank(tmp_path: Path):
    from agentmem.agent import Agent

    return Agent.create(str(tmp_path / "blank"))


def snapshot(agent) -> dict[str, object]:
    """The memory files, the log, the versions and the sleep state: for 'nothing changed'."""
    files = {p.name: p.read_bytes() for p in sorted(agent.folder.iterdir()) if p.is_file()}
    agent.history.refresh()
    return {"files": files, "versions": [v.commit for v in agent.history.versions()],
            "state": agent.read_state()}


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch):
    """The scripted model, served through litellm's real call path. Queue replies with
    model.push(...); the test fails if it asks for more than it queued or leaves some unused."""
    from agentmem import llm
    from agentmem.scripted import Script

    script = llm.install_scripted(Script())
    monkeypatch.setenv("AGENTMEM_MODEL", "scripted/test")
    monkeypatch.setenv("AGENTMEM_RETRY_DELAY", "0")
    yield script
    script.assert_done()
