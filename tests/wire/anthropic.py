"""Anthropic Messages (`POST /v1/messages`), as the API reference documents it: a `message`
JSON object, or with `"stream": true` server-sent events, each `event: NAME\\ndata: {...}\\n\\n`:
message_start, then per content block content_block_start / content_block_delta (`text_delta`
for text, `input_json_delta` pieces of a tool_use's input, split anywhere, mid-token too) /
content_block_stop, then message_delta (stop_reason and the output usage) and message_stop.
Errors are `{"type": "error", "error": {"type", "message"}}`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wire import Response, json_response, pieces

PATH = "/v1/messages"
MESSAGE_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"


@dataclass
class ToolUse:
    """A tool_use block; its input JSON streams in `pieces` parts of `partial_json`."""

    name: str
    input: dict[str, Any]
    id: str = "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    pieces: int = 7

    def split(self) -> list[str]:
        return pieces(json.dumps(self.input), self.pieces)


def reply(text: str | None = None, uses: list[ToolUse] | None = None, *,
          model: str = "claude-x", usage: tuple[int, int] = (25, 12),
          stop_reason: str | None = None) -> Response:
    """A whole `message` object."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": u.id, "name": u.name, "input": u.input}
                for u in uses or []]
    return json_response(200, {
        "id": MESSAGE_ID, "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason or ("tool_use" if uses else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1],
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}},
        {"request-id": "req_018EeWyXxfu5pfWkrYcMdjWG"})


def stream(pieces: list[str] | None = None, uses: list[ToolUse] | None = None, *,
           model: str = "claude-x", usage: tuple[int, int] = (25, 12),
           stop_reason: str | None = None, cut_after: int | None = None) -> Response:
    """`text/event-stream` as above, a `ping` after the first block starts. `cut_after=n`
    closes the connection after the first n events."""
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {
        "type": "message_start", "message": {
            "id": MESSAGE_ID, "type": "message", "role": "assistant", "content": [],
            "model": model, "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": usage[0], "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 1}}})]
    index = 0
    if pieces:
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": {"type": "text", "text": ""}}))
        events.append(("ping", {"type": "ping"}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index,
                                            "delta": {"type": "text_delta", "text": piece}})
                   for piece in pieces]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    for use in uses or []:
        events.append(("content_block_start", {
            "type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": use.id, "name": use.name, "input": {}}}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index,
                                            "delta": {"type": "input_json_delta",
                                                      "partial_json": part}})
                   for part in ["", *use.split()]]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    events.append(("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason or ("tool_use" if uses else "end_turn"),
                  "stop_sequence": None},
        "usage": {"output_tokens": usage[1]}}))
    events.append(("message_stop", {"type": "message_stop"}))
    lines = [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]
    cut = cut_after is not None
    return Response(200, lines[:cut_after] if cut else lines,
                    {"Content-Type": "text/event-stream; charset=utf-8",
                     "Cache-Control": "no-cache", "request-id": "req_018EeWyXxfu5pfWkrYcMdjWG"},
                    cut=cut)


def error(status: int, type: str, message: str,
          headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"type": "error", "error": {"type": type, "message": message}},
                         {"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy", **(headers or {})})


def unauthorized() -> Response:
    return error(401, "authentication_error", "invalid x-api-key")


def unknown_model(model: str = "claude-x") -> Response:
    return error(404, "not_found_error", f"model: {model}")


def rate_limited(retry_after: str = "1") -> Response:
    return error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute "
                 "rate limit", {"retry-after": retry_after})


def server_error() -> Response:
    return error(500, "api_error", "Internal server error")


def overloaded() -> Response:
    return error(529, "overloaded_error", "Overloaded")
