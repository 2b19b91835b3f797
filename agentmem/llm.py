"""The only module that imports litellm, lazily: commands that need no model never pay for it.

Importing litellm takes seconds; `preload()` starts it in a background thread so an interactive
session's first reply is not late. The import never touches the network: the local cost map is
used and litellm runs in production mode.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentmem import baton
from agentmem.errors import ModelError
from agentmem.models import ModelSpec
from agentmem.scripted import PROVIDER as SCRIPTED
from agentmem.scripted import Script, ScriptExhausted

_lock = threading.Lock()
_module: Any = None
_script: Script | None = None


def litellm() -> Any:
    global _module
    with _lock:
        if _module is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_MODE", "PRODUCTION")
            import warnings

            # litellm's pydantic models warn on import and on first use; none is actionable
            warnings.filterwarnings("ignore", category=UserWarning, module=r"pydantic\..*")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import litellm as module
            module.suppress_debug_info = True
            module.drop_params = True
            module.telemetry = False
            _skip_unheard_logging(module)
            _module = module
    return _module


_CALLBACK_LISTS = ("callbacks", "success_callback", "failure_callback", "input_callback",
                   "service_callback", "_async_success_callback", "_async_failure_callback",
                   "_async_input_callback")
# what litellm sends to its logging pool after a call or a streamed chunk (litellm 1.106)
_LOGGING_HANDLERS = {"success_handler", "failure_handler", "run_success_logging_and_cache_storage"}
_PRINT_PAYLOAD = "LITELLM_PRINT_STANDARD_LOGGING_PAYLOAD"    # litellm's debug print: it listens


def _skip_unheard_logging(lib: Any) -> None:
    """After each call (and each streamed chunk) litellm hands its success logging to a pool of
    background threads: ~1 ms of CPU that builds a payload for the callbacks, and a thread that
    competes for the GIL with the next pass. agentmem registers no callbacks, global or per
    call, so while none is registered (and no litellm cache is set) those handlers are dropped,
    the way litellm itself drops them when its backlog is full. Anything else sent to that pool
    runs as before, and a callback registered later is served again."""
    try:
        from contextvars import Context

        from litellm.litellm_core_utils import thread_pool_executor
        from litellm.litellm_core_utils.litellm_logging import Logging
        from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
    except ImportError:       # another litellm layout: leave its logging alone
        return
    pool = thread_pool_executor.executor
    submit = pool.submit
    owners = (Logging, CustomStreamWrapper)

    def submit_if_heard(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        # the sync wrapper sends `contextvars.copy_context().run, handler, ...`
        target = args[0] if args and isinstance(getattr(fn, "__self__", None), Context) else fn
        if (getattr(target, "__name__", "") in _LOGGING_HANDLERS
                and isinstance(getattr(target, "__self__", None), owners)
                and lib.cache is None and not os.environ.get(_PRINT_PAYLOAD)
                and not any(getattr(lib, name, None) for name in _CALLBACK_LISTS)):
            from concurrent.futures import Future

            dropped: Future[Any] = Future()
            dropped.cancel()
            return dropped
        return submit(fn, *args, **kwargs)

    pool.submit = submit_if_heard  # type: ignore[method-assign]


def preload() -> threading.Thread:
    thread = threading.Thread(target=litellm, name="litellm-import", daemon=True)
    thread.start()
    return thread


# -- errors --------------------------------------------------------------------------------
# litellm class name -> (kind, message, hint, retryable). Order matters: subclasses first.
ERRORS: list[tuple[str, str, str, str, bool]] = [
    ("ContextWindowExceededError", "context", "the conversation is too long for this model",
     "start a new session, or use a model with a larger context window", False),
    ("ContentPolicyViolationError", "policy", "the provider refused the request (content policy)",
     "rephrase the message", False),
    ("AuthenticationError", "auth", "the provider rejected the API key",
     "check the key in your environment (e.g. OPENAI_API_KEY, ANTHROPIC_API_KEY)", False),
    ("PermissionDeniedError", "auth", "the API key may not use this model",
     "check your plan and the model name", False),
    ("PaymentRequiredError", "auth", "the provider requires payment for this request",
     "check your account's billing", False),
    ("NotFoundError", "not_found", "the provider does not know this model",
     "check the model name (e.g. openai/gpt-4.1-mini) with --model", False),
    ("RateLimitError", "rate_limit", "rate limited by the provider",
     "wait a moment and try again, or use another model", True),
    ("Timeout", "timeout", "the model did not answer in time",
     "try again; a local server may still be loading the model", True),
    ("ServiceUnavailableError", "unavailable", "the provider is unavailable",
     "try again later", True),
    ("BadGatewayError", "unavailable", "the provider's gateway failed", "try again later", True),
    ("InternalServerError", "server", "the provider had an internal error", "try again", True),
    ("APIConnectionError", "connection", "could not reach the model",
     "check your network, or that the local server (Ollama, llama.cpp, vLLM) is running and "
     "api_base is right", True),
    ("UnsupportedParamsError", "bad_request", "the model does not support a parameter agentmem "
     "sent", "try another model", False),
    ("BadRequestError", "bad_request", "the provider rejected the request",
     "check the model name and settings", False),
    ("UnprocessableEntityError", "bad_request", "the provider rejected the request",
     "check the model name and settings", False),
    ("APIResponseValidationError", "server", "the provider sent an invalid response", "try again",
     True),
    ("JSONSchemaValidationError", "server", "the model's answer did not match the schema",
     "try again", True),
    ("RejectedRequestError", "bad_request", "the provider rejected the request", "rephrase", False),
    ("UnsupportedEndpointError", "bad_request", "the provider does not offer this endpoint",
     "try another model", False),
    ("BudgetExceededError", "budget", "litellm's budget was exceeded", "raise the budget", False),
    ("APIError", "server", "the provider returned an error", "try again", True),
    ("OpenAIError", "server", "the provider returned an error", "try again", True),
]


def translate(exc: BaseException, model: str) -> ModelError:
    """Turn any litellm exception into a ModelError with a human message and a retry flag."""
    context = exc.__context__
    if isinstance(context, ScriptExhausted):
        raise context
    lib = litellm()
    for name, kind, message, hint, retryable in ERRORS:
        cls = getattr(lib.exceptions, name, None) or getattr(lib, name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            detail = _first_line(exc)
            return ModelError(f"{model}: {message}" + (f" ({detail})" if detail else ""), hint,
                              retryable=retryable, kind=kind)
    return ModelError(f"{model}: {type(exc).__name__}: {_first_line(exc)}", "try again",
                      retryable=False, kind="unknown")


def _first_line(exc: BaseException) -> str:
    from agentmem.redact import redact

    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    line = text[0] if text else ""
    for prefix in ("litellm.", "openai."):
        if line.startswith(prefix):
            line = line.split(": ", 1)[-1]
    return redact(line)[:300]


# -- calls ---------------------------------------------------------------------------------
@dataclass
class ToolRequest:
    id: str
    name: str
    arguments: str


@dataclass
class Completion:
    text: str
    tool_calls: list[ToolRequest] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    model: str = ""

    @property
    def usage(self) -> dict[str, Any]:
        return usage(self.prompt_tokens, self.completion_tokens, self.cost)


def usage(prompt_tokens: int, completion_tokens: int, cost: float) -> dict[str, Any]:
    """Tokens and cost as the log and --json report them (cost in USD, to 8 places)."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "cost": round(cost, 8)}


def retries() -> tuple[int, float]:
    return (int(os.environ.get("AGENTMEM_RETRIES", "2")),
            float(os.environ.get("AGENTMEM_RETRY_DELAY", "1.0")))


def complete(spec: ModelSpec, messages: list[dict[str, Any]], *,
             tools: list[dict[str, Any]] | None = None,
             on_text: Callable[[str], None] | None = None,
             max_tokens: int | None = None,
             temperature: float | None = None,
             on_retry: Callable[[ModelError, float], None] | None = None) -> Completion:
    """One model call (streamed to `on_text` when given), retried on transient failures."""
    attempts, delay = retries()
    for attempt in range(attempts + 1):
        streamed: list[str] = []

        def sink(text: str, streamed: list[str] = streamed) -> None:
            streamed.append(text)
            if on_text:
                on_text(text)

        try:
            with baton.model_call():
                return _call(spec, messages, tools, sink if on_text else None, max_tokens,
                             temperature)
        except ScriptExhausted:
            raise
        except ModelError:
            raise
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - every provider failure is translated here
            error = translate(exc, spec.model)
            if not error.retryable or attempt == attempts or streamed:
                raise error from None
            wait = delay * (2 ** attempt)
            if on_retry:
                on_retry(error, wait)
            with baton.waiting():
                time.sleep(wait)
    raise AssertionError("unreachable")



def _call(spec: ModelSpec, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
          on_text: Callable[[str], None] | None, max_tokens: int | None,
          temperature: float | None) -> Completion:
    lib = litellm()
    if spec.model.startswith(SCRIPTED + "/"):
        _price_scripted(lib, spec.model)
    kwargs: dict[str, Any] = {"model": spec.model, "messages": messages}
    if tools:
        kwargs["tools"] = tools
    if spec.api_base:
        kwargs["api_base"] = spec.api_base
        from agentmem.models import KEYS, provider_of

        var = KEYS.get(provider_of(spec.model))
        if var and not os.environ.get(var):
            kwargs["api_key"] = "no-key-needed"   # OpenAI-compatible local servers ignore it
    if max_tokens:
        kwargs["max_tokens"] = max_tokens
    if temperature is not None:
        kwargs["temperature"] = temperature
    if on_text is None:
        response = lib.completion(**kwargs)
    else:
        chunks = []
        for chunk in lib.completion(stream=True, **kwargs):
            chunks.append(chunk)
            delta = chunk.choices[0].delta if chunk.choices else None
            if delta is not None and delta.content:
                on_text(delta.content)
        response = lib.stream_chunk_builder(chunks, messages=messages)
    choice = response.choices[0]
    message = choice.message
    calls = [ToolRequest(id=c.id or f"call_{i}", name=c.function.name or "",
                         arguments=c.function.arguments or "{}")
             for i, c in enumerate(getattr(message, "tool_calls", None) or [])]
    usage = getattr(response, "usage", None)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    known = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
    cost = float(known) if known is not None else cost_of(spec.model, prompt, completion)
    return Completion(text=message.content or "", tool_calls=calls,
                      finish_reason=choice.finish_reason or "stop", prompt_tokens=prompt,
                      completion_tokens=completion, cost=cost, model=spec.model)


def cost_of(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """Cost in USD from litellm's price table; 0.0 for models it has no price for."""
    lib = litellm()
    try:
        prompt_cost, completion_cost = lib.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return float(prompt_cost + completion_cost)
    except Exception:  # noqa: BLE001 - unknown model: no price
        return 0.0


def price(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token, or None when litellm has no price for the model."""
    lib = litellm()
    try:
        info = lib.get_model_info(model)
        return float(info.get("input_cost_per_token") or 0), float(
            info.get("output_cost_per_token") or 0)
    except Exception:  # noqa: BLE001
        return None


_priced: set[str] = set()
_free: set[str] = set()     # scripted models without a price: their cost is known to be 0


def _price_scripted(lib: Any, model: str) -> None:
    """The scripted model is free: give it a zero price (unless a test set one), so litellm's
    cost lookup finds it at once instead of searching its whole table on every call."""
    if model in _priced:
        return
    _priced.add(model)
    try:
        lib.get_model_info(model)
    except Exception:  # noqa: BLE001 - unknown to litellm: register it
        _free.add(model.split("/", 1)[1])
        lib.register_model({model: {
            "input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
            "cache_creation_input_token_cost": 0.0, "cache_read_input_token_cost": 0.0,
            "litellm_provider": SCRIPTED, "mode": "chat", "max_input_tokens": 128000,
            "max_tokens": 128000}})


@functools.lru_cache(maxsize=64)
def context_window(model: str, default: int = 8192) -> int:
    lib = litellm()
    try:
        info = lib.get_model_info(model)
        return int(info.get("max_input_tokens") or info.get("max_tokens") or default)
    except Exception:  # noqa: BLE001
        return default


# -- the scripted model --------------------------------------------------------------------
def install_scripted(script: Script) -> Script:
    """Serve `scripted/...` models from `script` through litellm's custom-provider path."""
    global _script
    lib = litellm()
    _script = script
    handler = _scripted_handler_class()()
    lib.custom_provider_map = [p for p in lib.custom_provider_map if p["provider"] != SCRIPTED] + [
        {"provider": SCRIPTED, "custom_handler": handler}]
    return script


_HANDLER: Any = None


def _scripted_handler_class() -> Any:
    global _HANDLER
    if _HANDLER is not None:
        return _HANDLER
    lib = litellm()
    from agentmem.tokens import estimate

    def reply_for(messages: list[dict[str, Any]], params: dict[str, Any]) -> Any:
        if _script is None:
            raise ScriptExhausted("scripted model used but no script is installed")
        reply = _script.next(messages, params)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.error:
            raise _error(lib, reply.error)
        prompt = reply.prompt_tokens if reply.prompt_tokens is not None else estimate(
            json.dumps(messages) + json.dumps(params.get("tools") or []))
        completion = reply.completion_tokens if reply.completion_tokens is not None else estimate(
            (reply.text or "") + "".join(c.arguments_json() for c in reply.tool_calls or []))
        return reply, {"prompt_tokens": prompt, "completion_tokens": completion,
                       "total_tokens": prompt + completion}

    class ScriptedHandler(lib.CustomLLM):  # type: ignore[misc,name-defined]
        def completion(self, model: str, messages: list[dict[str, Any]], *args: Any,
                       optional_params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
            reply, usage = reply_for(messages, optional_params or {})
            calls = [{"id": c.id or f"call_{i}", "type": "function",
                      "function": {"name": c.name, "arguments": c.arguments_json()}}
                     for i, c in enumerate(reply.tool_calls or [])] or None
            response = lib.ModelResponse(
                model=model, usage=lib.Usage(**usage),
                choices=[lib.Choices(index=0, finish_reason=reply.finish, message=lib.Message(
                    role="assistant", content=reply.text, tool_calls=calls))])
            if model in _free:   # spare litellm a price lookup it would answer with 0
                response._hidden_params["response_cost"] = 0.0
            return response

        def streaming(self, model: str, messages: list[dict[str, Any]], *args: Any,
                      optional_params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
            reply, usage = reply_for(messages, optional_params or {})
            return iter(_chunks(reply, usage))

    _HANDLER = ScriptedHandler
    return _HANDLER


def _chunks(reply: Any, usage: dict[str, int]) -> list[dict[str, Any]]:
    def chunk(text: str = "", tool_use: Any = None, done: bool = False) -> dict[str, Any]:
        return {"text": text, "tool_use": tool_use, "is_finished": done,
                "finish_reason": reply.finish if done else "", "usage": usage if done else None,
                "index": 0}

    text = reply.text or ""
    out = [chunk(text=text[i:i + 8]) for i in range(0, len(text), 8)]
    for n, call in enumerate(reply.tool_calls or []):
        args = call.arguments_json()
        half = len(args) // 2
        out.append(chunk(tool_use={"id": call.id or f"call_{n}", "type": "function", "index": n,
                                   "function": {"name": call.name, "arguments": args[:half]}}))
        out.append(chunk(tool_use={"id": None, "type": "function", "index": n,
                                   "function": {"name": None, "arguments": args[half:]}}))
    out.append(chunk(done=True))
    return out


def _error(lib: Any, kind: str) -> Exception:
    e = lib.exceptions
    kw = {"message": f"scripted {kind}", "model": "scripted", "llm_provider": SCRIPTED}
    makers: dict[str, Callable[[], Exception]] = {
        "rate_limit": lambda: e.RateLimitError(**kw),
        "timeout": lambda: e.Timeout(**kw),
        "auth": lambda: e.AuthenticationError(**kw),
        "context_window": lambda: e.ContextWindowExceededError(**kw),
        "bad_request": lambda: e.BadRequestError(**kw),
        "not_found": lambda: e.NotFoundError(**kw),
        "unavailable": lambda: e.ServiceUnavailableError(**kw),
        "server": lambda: e.InternalServerError(**kw),
        "connection": lambda: e.APIConnectionError(**kw),
    }
    if kind not in makers:
        raise ValueError(f"unknown scripted error '{kind}' (known: {', '.join(makers)})")
    return makers[kind]()
