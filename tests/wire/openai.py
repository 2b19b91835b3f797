"""OpenAI chat completions (`POST /v1/chat/completions`), as the API reference documents it:
a `chat.completion` JSON object, or with `"stream": true` server-sent events, one
`data: {chat.completion.chunk}\\n\\n` per chunk and `data: [DONE]\\n\\n` at the end. Tool calls
stream as deltas: the first carries the call's index, id, type and name with empty arguments,
the following ones pieces of the arguments. With `stream_options: {"include_usage": true}` a
last chunk with no choices carries the usage."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wire import Response, json_response, pieces

PATH = "/v1/chat/completions"
CREATED = 1_735_689_600
FINGERPRINT = "fp_44709d6fcb"


@dataclass
class Call:
    """A tool call: `arguments` is the JSON text, sent in `pieces` parts when streamed."""

    name: str
    arguments: dict[str, Any]
    id: str = "call_abc123"
    pieces: int = 5

    @property
    def text(self) -> str:
        return json.dumps(self.arguments)

    def split(self) -> list[str]:
        return pieces(self.text, self.pieces)


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def reply(text: str | None = None, calls: list[Call] | None = None, *, model: str = "x",
          usage: tuple[int, int] = (21, 9), finish: str | None = None) -> Response:
    """A whole `chat.completion` object."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None,
                               "annotations": []}
    if calls:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.text}}
                                 for c in calls]
    return json_response(200, {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion",
        "created": CREATED, "model": model, "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish or ("tool_calls" if calls else "stop")}],
        "usage": _usage(*usage), "service_tier": "default"})


def stream(pieces: list[str] | None = None, calls: list[Call] | None = None, *,
           model: str = "x", usage: tuple[int, int] | None = (21, 9),
           finish: str | None = None, cut_after: int | None = None) -> Response:
    """`text/event-stream`: a role chunk, one chunk per text piece, the tool-call deltas (name
    first, then the arguments in pieces), a finish chunk, the usage chunk, `[DONE]`.
    `cut_after=n` closes the connection after the first n events, mid-stream."""
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion.chunk",
                "created": CREATED, "model": model, "system_fingerprint": FINGERPRINT,
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish_reason}],
                **({"usage": None} if usage else {})}

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}) for piece in pieces or []]
    for index, call in enumerate(calls or []):
        events.append(chunk({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                                             "function": {"name": call.name, "arguments": ""}}]}))
        events += [chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
                   for part in call.split()]
    events.append(chunk({}, finish or ("tool_calls" if calls else "stop")))
    if usage:
        last = chunk({})
        last["choices"], last["usage"] = [], _usage(*usage)
        events.append(last)
    lines = [f"data: {_dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]
    cut = cut_after is not None
    return Response(200, lines[:cut_after] if cut else lines,
                    {"Content-Type": "text/event-stream; charset=utf-8",
                     "Cache-Control": "no-cache"}, cut=cut)


def error(status: int, message: str, *, type: str = "invalid_request_error",
          code: str | None = None, param: str | None = None,
          headers: dict[str, str] | None = None) -> Response:
    """An error object: `{"error": {"message", "type", "param", "code"}}`."""
    return json_response(status, {"error": {"message": message, "type": type, "param": param,
                                            "code": code}}, headers)


def unauthorized() -> Response:
    return error(401, "Incorrect API key provided: no-key-****eded. You can find your API key at "
                 "https://platform.openai.com/account/api-keys.", code="invalid_api_key")


def unknown_model(model: str = "x") -> Response:
    return error(404, f"The model `{model}` does not exist or you do not have access to it.",
                 code="model_not_found")


def rate_limited(retry_after: str = "1") -> Response:
    return error(429, "Rate limit reached for requests. Please try again in 1s.", type="requests",
                 code="rate_limit_exceeded", headers={"retry-after": retry_after,
                                                      "x-ratelimit-remaining-requests": "0"})


def server_error() -> Response:
    return error(500, "The server had an error while processing your request. Sorry about that!",
                 type="server_error")


def context_exceeded() -> Response:
    return error(400, "This model's maximum context length is 8192 tokens. However, your "
                 "messages resulted in 9001 tokens. Please reduce the length of the messages.",
                 param="messages", code="context_length_exceeded")
