"""One-shot `agentmem chat A -m TEXT`, the real console script as a subprocess against the
OpenAI stand-in: the process ends without the interpreter's teardown (no atexit handler runs),
and by then the answer, the log lines and the memory version it wrote are all delivered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import wire
from wire import openai

from agentmem.agent import Agent

AGENTMEM = str(Path(sys.executable).with_name("agentmem"))

# loaded by site at start-up from PYTHONPATH: writes a marker when the interpreter tears down
SITECUSTOMIZE = """\
import atexit, os
marker = os.environ.get("TEARDOWN_MARKER")
if marker:
    atexit.register(lambda: open(marker, "w").close())
"""


@pytest.fixture
def server() -> Iterator[wire.StandIn]:
    with wire.serve() as stand_in:
        wire.config(api_base=stand_in.url + "/v1")
        yield stand_in


def run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    marker = tmp_path / "torn-down"
    env = {**os.environ, "PYTHONPATH": str(site), "TEARDOWN_MARKER": str(marker),
           "OPENAI_API_KEY": "sk-test-oneshot", "NO_COLOR": "1"}
    proc = subprocess.run([AGENTMEM, *args], capture_output=True, text=True, env=env,
                          timeout=120)
    return proc, marker


def test_one_shot_chat_ends_without_teardown_with_its_log_and_version_on_disk(
        tmp_path: Path, agent: Agent, server: wire.StandIn):
    insert = wire.insert_lesson(agent, "\n## Use pathlib, not os.path\nThe team prefers pathlib.\n",
                                "user corrected me about os.path")
    server.push(openai.stream(["Noting it."], [openai.Call("memory", insert, pieces=3)]),
                openai.stream(["Noted: ", "pathlib."]))
    proc, marker = run(tmp_path, "chat", str(agent.folder), "-m", "We use pathlib.",
                       "--model", "openai/x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Noting it.Noted: pathlib.\n"
    assert not marker.exists(), "the interpreter tore down after the answer"
    fresh = Agent.open(str(agent.folder))      # what another process finds on disk
    kinds = [e["kind"] for e in fresh.journal.read().events]
    assert kinds[-1] == "session_end" and "memory_edit" in kinds and "assistant" in kinds
    assert [e for e in fresh.journal.read().events if e["kind"] == "assistant"][-1][
        "content"] == "Noted: pathlib."
    latest = fresh.history.latest()
    assert latest is not None and latest.author == "agent"
    assert latest.subject == "user corrected me about os.path"
    assert "## Use pathlib, not os.path" in (agent.folder / "lessons.md").read_text()
    assert fresh.history.dirty() == []


def test_a_long_answer_is_delivered_whole_through_a_pipe(tmp_path: Path, agent: Agent,
                                                         server: wire.StandIn):
    pieces = [f"line {i:06d} " + "x" * 90 + "\n" for i in range(3000)]     # ~300 KB
    server.push(openai.stream(pieces))
    proc, marker = run(tmp_path, "chat", str(agent.folder), "-m", "talk", "--model", "openai/x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "".join(pieces) + "\n" or proc.stdout == "".join(pieces)
    assert not marker.exists()


def test_the_json_answer_and_a_failure_keep_their_output_and_exit_code(
        tmp_path: Path, agent: Agent, server: wire.StandIn):
    server.push(openai.reply("Fine.", usage=(300, 2)), openai.unauthorized())
    proc, marker = run(tmp_path, "chat", str(agent.folder), "-m", "hi", "--json",
                       "--model", "openai/x")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "Fine." and not marker.exists()
    proc, marker = run(tmp_path, "chat", str(agent.folder), "-m", "hi", "--model", "openai/x")
    assert proc.returncode == 1 and proc.stderr.startswith("Error: "), proc.stderr
    assert not marker.exists()
    kinds = [e["kind"] for e in Agent.open(str(agent.folder)).journal.read().events]
    assert "turn_failed" in kinds and kinds[-1] == "session_end"


def test_commands_without_a_model_and_programs_calling_main_end_as_usual(tmp_path: Path,
                                                                          agent: Agent):
    proc, marker = run(tmp_path, "history", str(agent.folder))
    assert proc.returncode == 0 and marker.exists()
    probe = ("import sys, litellm; sys.argv = ['agentmem', 'history', sys.argv[1]]\n"
             "from agentmem.cli import main\n"
             "try:\n    main()\nexcept SystemExit as exc:\n    print('exit', exc.code)\n")
    proc = subprocess.run([sys.executable, "-c", probe, str(agent.folder)], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert proc.returncode == 0 and proc.stdout.rstrip().endswith("exit 0"), proc.stderr
