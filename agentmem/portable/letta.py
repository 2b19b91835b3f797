"""Letta agent files (.af) -> Imported.

Two layouts exist. v1 (Letta before 0.8): one agent object with `core_memory` (its blocks),
`messages`, `tools`, `llm_config` and `system` at the top level. v2: `agents[]`, `blocks[]` and
`tools[]` at the top level, an agent naming its blocks and tools by id (`block_ids`,
`tool_ids`) and holding its own `messages`. Some exporters write the whole document as one JSON
string (double-encoded); it is decoded twice.

The mapping (docs/format.md, "Importing"): the `persona` block and the system prompt make the
persona.md body; other blocks become lessons titled by their label (`human`, or `human: Section`
for each heading of a block that has headings); `read_only` blocks become pinned text; block
limits (characters) become token budgets; messages become log events with their own times.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from agentmem import persona as persona_fmt
from agentmem.errors import UsageError
from agentmem.lessons import FENCE, Lesson
from agentmem.pins import PIN_OPEN
from agentmem.portable.source import Imported, ImportedLesson

# Letta's provider names (llm_config.model_endpoint_type, or the part of a handle before "/")
# -> litellm's
PROVIDERS = {
    "openai": "openai", "anthropic": "anthropic", "ollama": "ollama", "google_ai": "gemini",
    "gemini": "gemini", "google_vertex": "vertex_ai", "groq": "groq", "mistral": "mistral",
    "together": "together_ai", "deepseek": "deepseek", "xai": "xai", "azure": "azure",
    "bedrock": "bedrock", "openrouter": "openrouter", "vllm": "hosted_vllm",
    "lmstudio": "lm_studio", "lmstudio_openai": "lm_studio", "cohere": "cohere",
    "fireworks": "fireworks_ai",
}
DEFAULT_ENDPOINTS = {"openai": "https://api.openai.com/v1",
                     "anthropic": "https://api.anthropic.com/v1"}
SEND_MESSAGE = "send_message"
# user messages Letta writes itself (JSON with one of these types): not experience
AUTOMATED = {"login", "heartbeat", "system_alert"}
CHARS_PER_TOKEN = 4           # as agentmem.tokens estimates
HEADING = re.compile(r"^(#{1,6})\s+(\S.*?)\s*#*\s*$")
MARK = "agentmem"             # the metadata key our own export writes (see export.py)
# persona.md settings an agent file holds in Letta's own fields (the rest only in our mark)
LETTA_SETTINGS = ("name", "description", "model", "api_base", "temperature", "tags")


def parse(data: bytes, where: str) -> Imported:
    doc = _decode(data, where)
    if isinstance(doc.get("agents"), list):
        return _v2(doc, where)
    if isinstance(doc.get("core_memory"), list) or (
            isinstance(doc.get("messages"), list) and isinstance(doc.get("system"), str)):
        return _agent(doc, _list(doc.get("core_memory")), _list(doc.get("tools")), where, [], "v1")
    raise UsageError(f"{where} is JSON but not a Letta agent file (no 'agents' list, as in v2, "
                     "and no 'core_memory', as in v1); nothing was created",
                     "export the agent from Letta again (Export agent file)")


def _decode(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc: Any = json.loads(data.decode("utf-8-sig"))
        if isinstance(doc, str):          # double-encoded: the document is a JSON string
            doc = json.loads(doc)
    except UnicodeDecodeError:
        raise UsageError(f"{where} is not UTF-8 text, so not a Letta agent file; nothing was "
                         "created") from None
    except ValueError as exc:
        raise UsageError(f"{where} is not valid JSON ({exc}); nothing was created",
                         "a Letta agent file (.af) is JSON; for Markdown use a .md name") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{where} holds a JSON {type(doc).__name__}, not a Letta agent object; "
                         "nothing was created")
    return doc


def _dict(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _list(value: Any) -> list[dict[str, Any]]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _v2(doc: dict[str, Any], where: str) -> Imported:
    agents = _list(doc.get("agents"))
    if not agents:
        raise UsageError(f"{where} holds no agent (its 'agents' list is empty); nothing was created")
    managers = {g.get("manager_config", {}).get("manager_agent_id") for g in _list(doc.get("groups"))
                if isinstance(g.get("manager_config"), dict)}
    chosen = next((a for a in agents if a.get("id") in managers), None) or next(
        (a for a in agents if a.get("agent_type") != "sleeptime_agent"), agents[0])
    skipped = [f"agent '{a.get('name')}' ({a.get('agent_type')}): one agent is imported, "
               f"'{chosen.get('name')}'" for a in agents if a is not chosen]
    blocks = {b.get("id"): b for b in _list(doc.get("blocks"))}
    tools = {t.get("id"): t for t in _list(doc.get("tools"))}
    mine = [blocks[i] for i in chosen.get("block_ids") or [] if i in blocks]
    mine += _list(chosen.get("memory_blocks"))
    my_tools = [tools[i] for i in chosen.get("tool_ids") or [] if i in tools]
    my_tools += _list(chosen.get("tools"))
    for key in ("files", "sources", "mcp_servers"):
        if doc.get(key):
            skipped.append(f"{len(doc[key])} {key.replace('_', ' ')}: agentmem keeps no documents "
                           "or servers")
    return _agent(chosen, mine, my_tools, where, skipped, "v2")


def _agent(agent: dict[str, Any], blocks: list[dict[str, Any]], tools: list[dict[str, Any]],
           where: str, skipped: list[str], layout: str) -> Imported:
    name = str(agent.get("name") or "letta-agent").strip() or "letta-agent"
    # our own export marks its persona block (metadata.agentmem: agent, version, budgets)
    ours = next((_dict(_dict(b, "metadata"), MARK) for b in blocks
                 if b.get("label") == "persona" and _dict(_dict(b, "metadata"), MARK)), None)
    settings: dict[str, Any] = {"name": name}
    if isinstance(agent.get("description"), str) and agent["description"].strip():
        settings["description"] = " ".join(agent["description"].split())
    model, api_base, note = model_of(agent)
    if model:
        settings["model"] = model
    if api_base:
        settings["api_base"] = api_base
    if note:
        skipped.append(note)
    temperature = _dict(agent, "llm_config").get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        settings["temperature"] = temperature
    tags = agent.get("tags")
    if isinstance(tags, list) and tags and all(isinstance(t, str) for t in tags):
        settings["tags"] = list(tags)

    system = _str(agent, "system")
    persona_parts: list[str] = []
    if ours:
        skipped.append("the system prompt agentmem wrote when it exported this agent")
    elif system.strip():
        persona_parts.append(system.strip())
    persona_limit = 0
    lessons: list[ImportedLesson] = []
    pinned_texts: list[tuple[str, str]] = []
    lesson_limit = 0
    for block in blocks:
        label = str(block.get("label") or "block")
        value = _str(block, "value")
        limit = block["limit"] if isinstance(block.get("limit"), int) else 0
        read_only = block.get("read_only") is True
        if label == "persona":
            persona_limit += limit
            if value.strip():
                text = value if ours else value.strip()
                persona_parts.append(_pin(text, label) if read_only and not ours else text)
            continue
        if not value.strip():
            skipped.append(f"block '{label}': empty")
            continue
        lesson_limit += limit
        meta = block.get("metadata")
        exported = meta.get(MARK) if isinstance(meta, dict) else None
        if isinstance(exported, dict) and exported.get("pinned_text") is True:
            marker = exported.get("pin")
            pinned_texts.append((marker if isinstance(marker, str) and PIN_OPEN.match(marker)
                                 else "<!-- pin -->", value))
            continue
        if isinstance(exported, dict) and isinstance(exported.get("title"), str):
            marker = exported.get("pin")
            lessons.append(ImportedLesson(_our_lesson(exported, value), read_only,
                                          marker if isinstance(marker, str) and PIN_OPEN.match(
                                              marker) else "<!-- pin -->"))
            continue
        for title, body in sections(label, value):
            lessons.append(ImportedLesson(Lesson(title, body), read_only,
                                          f"<!-- pin: Letta block '{label}' is read-only -->"))
    budgets = _budgets(ours, system, persona_limit, lesson_limit)
    if budgets:
        settings["budgets"] = budgets
    saved = ours.get("settings") if ours else None
    if isinstance(saved, dict) and saved:
        # our own export: its front matter as it was (no model or budgets added), with what
        # Letta holds for the keys it had (a model changed in Letta is kept)
        settings = {k: settings.get(k, v) if k in LETTA_SETTINGS else v
                    for k, v in saved.items()}
    if ours:
        body = "".join(persona_parts)
    else:
        body = f"# {name}\n\n" + "\n\n".join(persona_parts) + "\n"
    events, notes = messages_to_events(_list(agent.get("messages")))
    skipped += notes
    comments, tool_notes = _tools(tools)
    skipped += tool_notes
    for key, why in (("embedding_config", "agentmem does not embed (no archival memory)"),
                     ("tool_rules", "agentmem has no tool rules")):
        if agent.get(key):
            skipped.append(f"{key}: {why}")
    return Imported(name=name, settings=settings, persona_body=body, lessons=lessons,
                    pinned_texts=pinned_texts, events=events, tool_comments=comments, skipped=skipped,
                    source=f"Letta agent file ({layout} layout) {where}")


def _pin(text: str, label: str) -> str:
    return f"<!-- pin: Letta block '{label}' is read-only -->\n{text}\n<!-- /pin -->"


def _our_lesson(meta: dict[str, Any], body: str) -> Lesson:
    evidence = meta.get("evidence")
    return Lesson(str(meta["title"]), body, id=meta.get("id") if isinstance(meta.get("id"), str)
                  else None,
                  evidence=[e for e in evidence if isinstance(e, str)] if isinstance(evidence, list)
                  else [],
                  helpful=int(meta.get("helpful") or 0), harmful=int(meta.get("harmful") or 0))


def _budgets(ours: dict[str, Any] | None, system: str, persona_limit: int,
             lesson_limit: int) -> dict[str, int]:
    """Letta limits are characters per block; budgets are tokens (four characters a token).
    The persona budget holds the system prompt and the persona block's limit, the lessons
    budget the other blocks' limits; never below agentmem's defaults."""
    if ours and isinstance(ours.get("budgets"), dict):
        return {k: v for k, v in ours["budgets"].items()
                if k in persona_fmt.BUDGET_KEYS and isinstance(v, int) and v > 0}
    out = {}
    persona_tokens = math.ceil((len(system) + persona_limit) / CHARS_PER_TOKEN)
    lesson_tokens = math.ceil(lesson_limit / CHARS_PER_TOKEN)
    if persona_tokens > persona_fmt.DEFAULT_BUDGETS["persona"]:
        out["persona"] = persona_tokens
    if lesson_tokens > persona_fmt.DEFAULT_BUDGETS["lessons"]:
        out["lessons"] = lesson_tokens
    return out


def sections(label: str, text: str) -> list[tuple[str, str]]:
    """A block's text as lessons: one titled by the label, or one per heading section titled
    `label: Heading` (text before the first heading keeps the bare label). Headings in fenced
    code do not count."""
    out: list[tuple[str, str]] = []
    title, lines, fenced = label, list[str](), False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if match:
            if "\n".join(lines).strip():
                out.append((title, "\n".join(lines).strip("\n")))
            title, lines = f"{label}: {match.group(2)}", []
        else:
            lines.append(line)
    if "\n".join(lines).strip():
        out.append((title, "\n".join(lines).strip("\n")))
    return out


def model_of(agent: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(litellm model string, api_base, note when the model is left out)."""
    config = _dict(agent, "llm_config")
    handle = agent.get("model") if isinstance(agent.get("model"), str) else None
    provider = config.get("model_endpoint_type")
    name = config.get("model")
    endpoint = config.get("model_endpoint")
    if handle and "/" in handle:
        provider, name = handle.split("/", 1)
    elif not (isinstance(provider, str) and isinstance(name, str)) and isinstance(
            config.get("handle"), str) and "/" in config["handle"]:
        provider, name = config["handle"].split("/", 1)
    if not (isinstance(provider, str) and isinstance(name, str) and name):
        return None, None, ("model: the agent file names none; set 'model:' in persona.md or "
                            "pass --model to chat")
    ours = PROVIDERS.get(provider)
    if ours is None:
        return None, None, (f"model: Letta's provider '{provider}' (model '{name}') has no "
                            "litellm name agentmem knows; set 'model:' in persona.md")
    api_base = None
    if isinstance(endpoint, str) and endpoint and (
            ours == "ollama" or (provider in DEFAULT_ENDPOINTS
                                 and endpoint.rstrip("/") != DEFAULT_ENDPOINTS[provider])):
        api_base = endpoint
    return f"{ours}/{name}", api_base, None


def _tools(tools: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    builtin = sorted({str(t.get("name")) for t in tools
                      if str(t.get("tool_type") or "").startswith("letta_")})
    custom = [t for t in tools if not str(t.get("tool_type") or "").startswith("letta_")]
    notes = []
    if builtin:
        notes.append("Letta's built-in tools (agentmem's memory tool replaces them): "
                     + ", ".join(builtin))
    comments = []
    if custom:
        notes.append("custom tools, listed in tools.yaml but not runnable (tools.yaml runs argv "
                     "commands only; write a command for each you need): "
                     + ", ".join(str(t.get("name")) for t in custom))
        comments.append("# Custom tools of the imported Letta agent (their code is Python, run "
                        "by Letta): not runnable here.")
        comments.append("# To use one, add an entry with a `command:` that does the same job.")
        for tool in custom:
            about = str(tool.get("description") or "").strip().splitlines()
            first = about[0][:160] if about else ""
            comments.append(f"#   {tool.get('name')} ({tool.get('source_type') or 'python'}): "
                            f"{first}".rstrip())
    return comments, notes


# -- messages ------------------------------------------------------------------------------

def _time(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:           # Letta writes UTC, sometimes without the offset
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = [p.get("text") for p in _list(content) if p.get("type") == "text"]
    return "\n".join(p for p in parts if isinstance(p, str))


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _status(message: dict[str, Any], text: str) -> bool:
    for ret in _list(message.get("tool_returns")):
        if ret.get("status") == "error":
            return False
    parsed = _arguments(text)
    return not (isinstance(parsed, dict) and str(parsed.get("status", "")).lower() in
                ("failed", "error"))


def messages_to_events(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Letta messages as log events (user, assistant, tool_call, tool_result) in one session,
    each with the message's own time; and notes on what was left out."""
    events: list[dict[str, Any]] = []
    counts = {"system": 0, "automated": 0, "send": 0}
    names: dict[str, str] = {}
    model = None
    for message in messages:
        role = message.get("role")
        when = _time(message.get("created_at"))
        stamp = {"time": when} if when else {}
        text = _text(message)
        if role == "system":
            counts["system"] += 1
        elif role == "user":
            parsed = _arguments(text)
            if isinstance(parsed, dict) and parsed.get("type") in AUTOMATED:
                counts["automated"] += 1
                continue
            if isinstance(parsed, dict) and parsed.get("type") == "user_message":
                text = str(parsed.get("message") or "")
            events.append({**stamp, "kind": "user", "content": text})
        elif role == "assistant":
            model = message.get("model") or model
            reply, calls = None, []
            for call in _list(message.get("tool_calls")):
                function = _dict(call, "function")
                name = str(function.get("name") or "")
                args = _arguments(function.get("arguments"))
                names[str(call.get("id"))] = name
                if name == SEND_MESSAGE and isinstance(args, dict):
                    reply = str(args.get("message") or "")
                else:
                    calls.append({**stamp, "kind": "tool_call", "name": name,
                                  "arguments": args, "call_id": call.get("id")})
            event: dict[str, Any] = {**stamp, "kind": "assistant",
                                     "content": reply if reply is not None else text}
            if reply is not None and text.strip():
                event["reasoning"] = text           # Letta's inner thoughts
            if message.get("model"):
                event["model"] = message["model"]
            if calls:
                event["tool_calls"] = [c["name"] for c in calls]
            if event["content"] or calls or event.get("reasoning"):
                events.append(event)
            events.extend(calls)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            name = names.get(str(call_id), str(message.get("name") or "tool"))
            if name == SEND_MESSAGE:
                counts["send"] += 1
                continue
            if not text:
                text = "\n".join(str(r.get("func_response") or "")
                                 for r in _list(message.get("tool_returns")))
            events.append({**stamp, "kind": "tool_result", "name": name, "call_id": call_id,
                           "ok": _status(message, text), "untrusted": True, "content": text})
    notes = []
    if counts["system"]:
        notes.append(f"{counts['system']} system messages: agentmem builds the system prompt "
                     "from persona.md and lessons.md at every turn")
    if counts["automated"]:
        notes.append(f"{counts['automated']} user messages Letta wrote itself (login, heartbeat, "
                     "system alerts)")
    if counts["send"]:
        notes.append(f"{counts['send']} send_message results (the message is the assistant "
                     "event's content)")
    if not events:
        return [], notes
    first = next((e["time"] for e in events if e.get("time")), None)
    last = next((e["time"] for e in reversed(events) if e.get("time")), None)
    try:
        started = datetime.fromisoformat((first or "").replace("Z", "+00:00"))
    except ValueError:
        started = datetime.now(UTC)
    session = f"s-{started:%Y%m%d-%H%M%S}-letta"
    start: dict[str, Any] = {"kind": "session_start", "model": model}
    end: dict[str, Any] = {"kind": "session_end"}
    if first:
        start["time"] = first
    if last:
        end["time"] = last
    return [{"session": session, **e} for e in (start, *events, end)], notes
