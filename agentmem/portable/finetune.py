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
undone by `agentmem revert VERSION`, or rolled back by a restore to an earlier version. Versions
are matched by commit, not number: after a sync two machines' versions can share a number, and
numbers move. A revert's message names the number the version had in the history the revert
was made on (its parent); an edit's event names the number its version had when made (the
versions leading up to it), and of two machines' versions with that number, the one made
closest in time to the event (at or before it in the log) is its own.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from agentmem.agent import Agent
from agentmem.chat import build_system
from agentmem.history import History, Version
from agentmem.journal import event_number
from agentmem.memory import validate
from agentmem.memory_tool import SCHEMA as MEMORY_SCHEMA
from agentmem.portable.export import Exported
from agentmem.redact import env_secrets, redact_obj

RATINGS = ("good",)
_REVERT = re.compile(r"^Revert version (\d+)\b")
_RESTORE = re.compile(r"^Restore memory as of version (\d+)\b")


def reverted_commits(history: History, versions: list[Version]) -> set[str]:
    """Commits of the versions a later revert undid, or a later restore rolled back: the number
    a revert's message names is read in the history as it was when the revert was made."""
    out: set[str] = set()
    for version in versions:
        one = _REVERT.match(version.subject)
        found = one or _RESTORE.match(version.subject)
        if version.author != "revert" or found is None:
            continue
        parent = history.git("rev-parse", "-q", "--verify", f"{version.commit}^1",
                             check=False).stdout.strip()
        number = int(found.group(1))
        total = int(history.git("rev-list", "--count", parent).stdout.strip()) if parent else 0
        if not 1 <= number <= total:
            continue
        listed = history.git("log", "--format=%H", f"-n{total - number + 1}", parent).stdout.split()
        out.update(listed[-1:] if one else listed[:-1])
    return out


def _made_as(history: History, head: str) -> dict[str, int]:
    """Commit -> the number it had when it was made: how many versions lead up to it, itself
    included (in a history without merges, its number now)."""
    reach: dict[str, int] = {}
    counts: dict[str, int] = {}
    out = history.git("log", "--topo-order", "--reverse", "--format=%H %P", head).stdout
    for bit, line in enumerate(out.splitlines()):
        commit, *parents = line.split()
        mask = 1 << bit
        for parent in parents:
            mask |= reach.get(parent, 0)
        reach[commit] = mask
        counts[commit] = mask.bit_count()
    return counts


def _edit_commit(event: dict[str, Any], by_number: dict[int, list[Version]]) -> str | None:
    """The commit of the version a memory_edit event names (see the module's text): the commit
    the event records (since it does), else found by its number."""
    if isinstance(event.get("commit"), str) and event["commit"]:
        return str(event["commit"])
    number = event.get("version")
    found = by_number.get(number, []) if isinstance(number, int) else []
    if len(found) > 1:
        author = "revert" if event.get("command") == "undo" else "agent"
        place = event_number(event.get("id")) or 0
        found = [v for v in found if v.author == author] or found
        found = [v for v in found if v.log_position is None or v.log_position < place] or found
        try:
            when = datetime.fromisoformat(str(event.get("time")))
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            found = sorted(found, key=lambda v: abs((v.time - when).total_seconds()))
    return found[0].commit if found else None


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
    reverted: set[str] = set()
    by_number: dict[int, list[Version]] = {}
    if skip_reverted and versions:
        reverted = reverted_commits(agent.history, versions)
        made = _made_as(agent.history, versions[-1].commit) if reverted else {}
        for made_version in versions:
            by_number.setdefault(made.get(made_version.commit, made_version.number),
                                 []).append(made_version)
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
        if reverted and any(e.get("kind") == "memory_edit" and
                            _edit_commit(e, by_number) in reverted for e in session_events):
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
