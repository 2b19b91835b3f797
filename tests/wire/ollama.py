"""Ollama's chat endpoint (`POST /api/chat`, litellm's `ollama_chat/` provider), as Ollama's
API docs show it: streamed, one JSON object per line (`application/x-ndjson`), each with a
`message` piece and `"done": false`, the last with `"done": true`, `done_reason` and the token
counts (`prompt_eval_count`, `eval_count`); without streaming, that last object alone with the
whole message. A tool call comes whole, in one line, its arguments an object."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from wire import Response, json_response

PATH = "/api/chat"
CREATED = "2024-07-22T20:33:28.123648Z"


@dataclass
class Call:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        return {"function": {"name": self.name, "arguments": self.arguments}}


def _final(model: str, usage: tuple[int, int], reason: str,
           message: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "created_at": CREATED, "message": message, "done_reason": reason,
            "done": True, "total_duration": 4883583458, "load_duration": 1334875,
            "prompt_eval_count": usage[0], "prompt_eval_duration": 342546000,
            "eval_count": usage[1], "eval_duration": 4535599000}


def reply(text: str = "", calls: list[Call] | None = None, *, model: str = "llama3",
          usage: tuple[int, int] = (26, 11), reason: str = "stop") -> Response:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [c.wire() for c in calls]
    return json_response(200, _final(model, usage, reason, message))


def stream(pieces: list[str] | None = None, calls: list[Call] | None = None, *,
           model: str = "llama3", usage: tuple[int, int] = (26, 11), reason: str = "stop",
           cut_after: int | None = None) -> Response:
    lines = [{"model": model, "created_at": CREATED,
              "message": {"role": "assistant", "content": piece}, "done": False}
             for piece in pieces or []]
    if calls:
        lines.append({"model": model, "created_at": CREATED,
                      "message": {"role": "assistant", "content": "",
                                  "tool_calls": [c.wire() for c in calls]}, "done": False})
    lines.append(_final(model, usage, reason, {"role": "assistant", "content": ""}))
    body = [(json.dumps(line) + "\n").encode() for line in lines]
    cut = cut_after is not None
    return Response(200, body[:cut_after] if cut else body,
                    {"Content-Type": "application/x-ndjson"}, cut=cut)


def error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


def unknown_model(model: str = "llama3") -> Response:
    return error(404, f"model \"{model}\" not found, try pulling it first")
