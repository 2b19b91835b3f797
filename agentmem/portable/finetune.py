"""An agent's log -> a fine-tuning set in OpenAI's chat format (JSONL, one conversation a line).

Each chat session is one line: `{"messages": [system, user, assistant, tool, ...]}`. The system
message is the prompt chat built from the memory version current when the session began
(`chat.build_system` on that version's files: the newest version recorded before the session's
first event), so the model learns from what it was shown then; a session older than every
version (an imported log) gets the first version's prompt.
Tool calls are the assistant's `tool_calls` (arguments as a JSON string), each answered by a
`tool` message with its `tool_call_id`; a call left unanswered is dropped. A line with tool calls
carries `tools`: the memory tool's function schema and tools.yaml's, from the same version, when
every tool it calls is among them (an imported Letta log calls Letta's tools: no `tools` then).
A line ends with the last reply that is not a tool call. Everything is redacted again
(redact.py) on the way out.

Ratings (`min_rating="good"`): a reply rated /bad (its latest feedback event) is kept as
context with `"weight": 0`, so nothing is learned from it; replies rated good or not rated are
learned from. A session with no reply left to learn from is left out.
`skip_reverted`: a session is left out when a memory version one of its edits made was later
undone by `agentmem revert VERSION`, or rolled back by a restore to an earlier version.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentmem.agent import Agent
from agentmem.chat import build_system
from agentmem.history import Version
from agentmem.journal import event_number
from agentmem.memory import validate
from agentmem.memory_tool import SCHEMA as MEMORY_SCHEMA
from agentmem.portable.export import Exported
from agentmem.redact import env_secrets, redact_obj

RATINGS = ("good",)
_REVERT = re.compile(r"^Revert version (\d+)\b")
_RESTORE = re.compile(r"^Restore memory as of version (\d+)\b")


def reverted_versions(versions: list[Version]) -> set[int]:
    """Numbers of the versions a later revert undid, or a later restore rolled back."""
    out: set[int] = set()
    for version in versions:
        if version.author != "revert":
            continue
        if match := _REVERT.match(version.subject):
            out.add(int(match.group(1)))
        elif match := _RESTORE.match(version.subject):
            out.update(range(int(match.group(1)) + 1, version.number))
    return out


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def conversation(events: list[dict[str, Any]], ratings: dict[str, str | None],
                 min_rating: str | None) -> list[dict[str, Any]]:
    """One session's events as chat messages (no system message), ending with a reply."""
    messages: list[dict[str, Any]] = []
    answered: set[str] = set()
    last_assistant: dict[str, Any] | None = None
    for event in events:
        kind = event.get("kind")
        content = event.get("content")
        if kind == "user":
            messages.append({"role": "user", "content": str(content or "")})
            last_assistant = None
        elif kind == "assistant":
            last_assistant = {"role": "assistant", "content": str(content or "")}
            if min_rating and ratings.get(str(event.get("id"))) == "bad":
                last_assistant["weight"] = 0
            messages.append(last_assistant)
        elif kind == "tool_call" and event.get("call_id"):
            if last_assistant is None:
                last_assistant = {"role": "assistant", "content": ""}
                messages.append(last_assistant)
            last_assistant.setdefault("tool_calls", []).append(
                {"id": str(event["call_id"]), "type": "function",
                 "function": {"name": str(event.get("name") or ""),
                              "arguments": _arguments(event.get("arguments"))}})
        elif kind == "tool_result" and event.get("call_id"):
            messages.append({"role": "tool", "tool_call_id": str(event["call_id"]),
                             "content": str(content or "")})
            answered.add(str(event["call_id"]))
    called: set[str] = set()
    cleaned: list[dict[str, Any]] = []
    for message in messages:
        if message.get("tool_calls"):
            message["tool_calls"] = [c for c in message["tool_calls"] if c["id"] in answered
                                     and c["id"] not in called]
            called.update(c["id"] for c in message["tool_calls"])
            if not message["tool_calls"]:
                del message["tool_calls"]
        if message["role"] == "tool" and message["tool_call_id"] not in called:
            continue
        if message["role"] == "assistant":
            if message.get("tool_calls") and not message["content"]:
                del message["content"]
            elif not message.get("tool_calls") and not message["content"]:
                continue
        cleaned.append(message)
    end = max((i for i, m in enumerate(cleaned)
               if m["role"] == "assistant" and not m.get("tool_calls")), default=-1)
    return cleaned[:end + 1]


def finetune(agent: Agent, *, min_rating: str | None = None,
             skip_reverted: bool = False) -> Exported:
    events = agent.journal.read().events
    versions = sorted(agent.history.versions(), key=lambda v: v.number)
    reverted = reverted_versions(versions) if skip_reverted else set()
    ratings: dict[str, str | None] = {}
    sessions: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("kind") == "feedback" and event.get("about"):
            ratings[str(event["about"])] = event.get("rating")
        if event.get("session"):
            sessions.setdefault(str(event["session"]), []).append(event)
    systems: dict[str, tuple[str, list[dict[str, Any]]] | None] = {}
    env = env_secrets()
    lines: list[str] = []
    left_out = {"reverted": 0, "no reply": 0, "all rated bad": 0, "invalid memory": 0}
    for session_events in sessions.values():
        if skip_reverted and any(e.get("kind") == "memory_edit" and e.get("version") in reverted
                                 for e in session_events):
            left_out["reverted"] += 1
            continue
        messages = conversation(session_events, ratings, min_rating)
        if not messages:
            left_out["no reply"] += 1
            continue
        if min_rating and all(m.get("weight") == 0 for m in messages if m["role"] == "assistant"):
            left_out["all rated bad"] += 1
            continue
        version = _version_at(versions, event_number(session_events[0].get("id")))
        if version is None:
            left_out["invalid memory"] += 1
            continue
        if version.commit not in systems:
            memory, problems = validate(agent.history.files_at(version))
            systems[version.commit] = (build_system(memory)[0], [
                MEMORY_SCHEMA, *(t.schema() for t in memory.tools)]) \
                if memory and not problems else None
        seen = systems[version.commit]
        if seen is None:
            left_out["invalid memory"] += 1
            continue
        system, tools = seen
        record: dict[str, Any] = {"messages": [{"role": "system", "content": system}, *messages]}
        called = {c["function"]["name"] for m in messages for c in m.get("tool_calls", [])}
        offered = {t["function"]["name"] for t in tools if isinstance(t.get("function"), dict)}
        if called and called <= offered:
            record["tools"] = tools
        line = redact_obj(record, env)
        lines.append(json.dumps(line, ensure_ascii=False) + "\n")
    notes = [f"{len(lines)} sessions exported"]
    reasons = {"reverted": "their memory edits were later reverted",
               "no reply": "no complete reply", "all rated bad": "every reply rated bad",
               "invalid memory": "the memory version of their time does not validate"}
    notes += [f"left out {n} sessions: {reasons[k]}" for k, n in left_out.items() if n]
    return Exported("".join(lines), notes)


def _version_at(versions: list[Version], first_event: int | None) -> Version | None:
    """The version current when the session began (versions oldest first): the newest one
    recorded before the session's first event was logged (its Agentmem-Log trailer is below
    that event's number), or the first version for a log older than any (an imported one)."""
    if not versions:
        return None
    if first_event is None:
        return versions[-1]
    current = versions[0]
    for version in versions:
        if version.log_position is not None and version.log_position < first_event:
            current = version
    return current
