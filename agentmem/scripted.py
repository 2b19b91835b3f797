"""A scripted model for tests, benchmarks and offline evals.

Replies are queued per test (text, streamed text, tool calls, errors, truncation) and served
through the real litellm call path by a custom provider registered in `llm.install_scripted`.
Asking for more replies than were queued fails loudly, never with a silent "".
"""

from __future__ import annotations

import copy
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROVIDER = "scripted"


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class Reply:
    text: str | None = None
    tool_calls: list[ToolCall] | None = None
    error: str | None = None          # rate_limit, timeout, auth, context_window, unavailable, ...
    finish_reason: str | None = None  # default stop / tool_calls; "length" simulates truncation
    prompt_tokens: int | None = None  # default: estimated from the messages
    completion_tokens: int | None = None
    delay: float = 0.0                # seconds of simulated latency

    @property
    def finish(self) -> str:
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")


class ScriptExhausted(AssertionError):
    pass


def _coerce(item: Any) -> Reply:
    if isinstance(item, Reply):
        return item
    if isinstance(item, str):
        return Reply(text=item)
    if isinstance(item, ToolCall):
        return Reply(tool_calls=[item])
    if isinstance(item, list) and all(isinstance(t, ToolCall) for t in item):
        return Reply(tool_calls=item)
    raise TypeError(f"cannot script a reply from {item!r}")


class Script:
    """The queue of replies for one test; records every call (messages, tools) it served."""

    def __init__(self, *replies: Any, responder: Callable[[list[dict[str, Any]]], Any] | None = None):
        self.replies: deque[Reply] = deque(_coerce(r) for r in replies)
        self.responder = responder
        self.calls: list[dict[str, Any]] = []
        self.exhausted: list[ScriptExhausted] = []
        self._lock = threading.Lock()

    def push(self, *replies: Any) -> Script:
        self.replies.extend(_coerce(r) for r in replies)
        return self

    def next(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> Reply:
        with self._lock:
            self.calls.append({"messages": copy.deepcopy(messages),
                               "tools": copy.deepcopy(params.get("tools")),
                               "params": {k: v for k, v in params.items() if k != "tools"}})
            if self.replies:
                return self.replies.popleft()
            responder = self.responder
            if responder is None:
                last = messages[-1].get("content") if messages else None
                error = ScriptExhausted(f"scripted model: no reply queued for call "
                                        f"#{len(self.calls)} (last message: {str(last)[:200]!r})")
                self.exhausted.append(error)
                raise error
        return _coerce(responder(messages))      # outside the lock: concurrent calls overlap

    def assert_done(self) -> None:
        if self.exhausted:
            raise self.exhausted[0]
        assert not self.replies, f"scripted model: {len(self.replies)} queued replies never used"
