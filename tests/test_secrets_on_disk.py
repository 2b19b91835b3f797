"""No key reaches disk: not through a version's message (the memory tool's reason), the write's
intent, the reflog, nor a refused sleep pass's kept output."""

from __future__ import annotations

import json
import subprocess
import zlib
from pathlib import Path

import pytest

from agentmem import sleep as core
from agentmem.agent import Agent
from agentmem.errors import Refused
from agentmem.history import CURSOR_TRAILER, History
from agentmem.memory_tool import MemoryTool
from agentmem.models import ModelSpec
from agentmem.recovery import INTENT
from tests.test_redact import SECRETS

SPEC = ModelSpec("scripted/sleep", None, "test")
STRIPE = "sk_live_51HxYzAbCdEfGhIjKlMnOpQr"
AWS = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def leaks(folder: Path, secrets: list[str]) -> list[str]:
    """'file: secret' for each secret (or its last 12 characters) that any file under `folder`
    holds, git's loose objects decompressed."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.parent.parent.name == "objects" and len(path.parent.name) == 2:
            data = zlib.decompress(data)
        for secret in secrets:
            if secret.encode() in data or secret[-12:].encode() in data:
                found.append(f"{path.relative_to(folder)}: {secret}")
    return found


def edit(agent: Agent, heading: str, new: str, reason: str) -> None:
    outcome = MemoryTool(agent).run(json.dumps({
        "command": "str_replace", "path": "/memories/persona.md", "old_str": heading,
        "new_str": new, "reason": reason}))
    assert outcome.ok, outcome.output


def test_a_memory_edit_reason_puts_no_key_in_history_or_any_file(agent: Agent):
    heading = "# Code reviewer"
    for n, secret in enumerate(SECRETS, 1):
        edit(agent, heading, f"{heading} ({n})", f"rotated {secret} as asked\n\nit was {secret}")
        heading = f"{heading} ({n})"
    log = subprocess.run(["git", f"--git-dir={agent.folder / '.agentmem' / 'git'}", "log",
                          "--format=%B"], capture_output=True, text=True, check=True).stdout
    assert "rotated [REDACTED] as asked" in log
    assert not [s for s in SECRETS if s in log or s[-12:] in log]
    assert leaks(agent.folder, SECRETS) == []
    version = agent.history.versions()[0]
    assert (version.author, version.subject) == ("agent", "rotated [REDACTED] as asked it was "
                                                 "[REDACTED]")


def test_a_redacted_message_keeps_the_sleep_cursor_trailer():
    """An unterminated private key is redacted to the end of the text; the trailer after it is
    agentmem's own and stays, or a crashed pass could not be recognised as recorded."""
    message = f"add \"Deploy\": -----BEGIN PRIVATE KEY----- MIIEow\n\n{CURSOR_TRAILER}: 12 345"
    assert History.redact_message(message) == f"add \"Deploy\": [REDACTED]\n\n{CURSOR_TRAILER}: 12 345"


def test_the_write_intent_holds_the_message_redacted(agent: Agent, monkeypatch):
    seen = []
    commit = agent.history.commit

    def look_then_commit(*args, **kwargs):
        seen.append((agent.state_dir / INTENT).read_text())
        return commit(*args, **kwargs)

    monkeypatch.setattr(agent.history, "commit", look_then_commit)
    edit(agent, "# Code reviewer", "# Code reviewer (1)", f"rotated {STRIPE}")
    assert seen and STRIPE not in seen[0] and "rotated [REDACTED]" in seen[0]


def test_a_write_redacts_its_message_once(agent: Agent, monkeypatch):
    """The intent and the version take the same redacted message: it is redacted once a write."""
    from agentmem import history

    calls = []

    def counted(text: str, env: list[str] | None = None) -> str:
        calls.append(text)
        return real(text, env)

    real = history.redact
    monkeypatch.setattr(history, "redact", counted)
    edit(agent, "# Code reviewer", "# Code reviewer (1)", f"rotated {STRIPE}")
    assert [c for c in calls if "rotated" in c] == [f"rotated {STRIPE}"]
    assert agent.history.latest().subject == "rotated [REDACTED]"


def test_a_refused_sleep_output_is_kept_with_its_keys_redacted(blank: Agent, model):
    blank.journal.append({"session": "s1", "kind": "user", "content": "Deploy with the key"})
    outputs = [  # refused for the key it would put in memory; for the key in its op's name
        json.dumps({"summary": "s", "operations": [
            {"op": "add", "title": "Deploy key", "body": f"Use {STRIPE} and {AWS} to deploy.",
             "rationale": "asked", "evidence": ["e1"]}]}),
        json.dumps({"summary": "s", "operations": [
            {"op": f"use {STRIPE}", "rationale": "Deploy", "evidence": ["e1"]}]}),
    ]
    for output, reason in zip(outputs, ("looks like a secret", "unknown op"), strict=True):
        model.push(output)
        with pytest.raises(Refused) as refused:
            core.propose(blank, SPEC, repair=False)
        kept = json.loads(Path(refused.value.hint.rsplit(" ", 1)[-1]).read_text())
        assert reason in kept["reason"] and "Deploy" in kept["outputs"][0]
        assert "[REDACTED]" in kept["outputs"][0]
    assert len(list((blank.state_dir / "sleep").glob("refused-*.json"))) == 2
    assert leaks(blank.folder, [STRIPE, AWS]) == []
