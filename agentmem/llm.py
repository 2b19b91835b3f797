"""The only module that imports litellm, lazily: commands that need no model never pay for it.

Importing litellm takes seconds; `preload()` starts it in a background thread so an interactive
session's first reply is not late. Neither the import nor a call reaches anything but the chosen
provider: litellm uses its bundled cost map and tables (offline mode) and runs in production
mode.
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
from agentmem.errors import AgentmemError, ModelError
from agentmem.models import ModelSpec
from agentmem.provider_errors import ERRORS, translate  # noqa: F401 - ERRORS for tests
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
            # litellm's bundled copies of what it would otherwise fetch on its own (Anthropic's
            # beta-header table at a beta tool's first call, tokenizers): only the provider the
            # user chose is contacted
            os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
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
            # the import leaves ~380,000 objects that live as long as the process; moved out
            # of the collector's sight, its full passes no longer walk them (they made a sleep
            # pass over 4,000 lessons cost 3.6x one over 2,000), and workers forked after this
            # share those pages instead of copying them when a collection touches them
            import gc

            gc.freeze()
            # and young objects are collected every GC_YOUNG allocations instead of 700: a
            # pass allocates a few objects per lesson per parse, and at the default rate the
            # full passes those collections trigger (walking every live object, the parse
            # memos' lessons among them) made a pass over 4,000 lessons 2.1-3.1x one over
            # 2,000 from run to run; at 10,000, 1.98x (benchmarks/sleep_scale.py)
            young, middle, old = gc.get_threshold()
            gc.set_threshold(max(young, GC_YOUNG), middle, old)
    return _module


GC_YOUNG = 10_000

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


RETRIES_ENV = "AGENTMEM_RETRIES"            # retries after the first request (default 2)
RETRY_DELAY_ENV = "AGENTMEM_RETRY_DELAY"    # the first backoff in seconds, doubled each time
RETRY_MAX_WAIT_ENV = "AGENTMEM_RETRY_MAX_WAIT"  # no wait is longer, Retry-After included
TIMEOUT_ENV = "AGENTMEM_TIMEOUT"            # seconds a request may take (each streamed read too)


@dataclass(frozen=True)
class Retries:
    attempts: int = 2          # retries after the first request: at most attempts + 1 requests
    delay: float = 1.0
    max_wait: float = 30.0

    def wait(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number `attempt + 1`: what the provider asked for (Retry-After)
        when it said, else an exponential backoff; never more than max_wait."""
        wanted = retry_after if retry_after is not None else self.delay * (2 ** attempt)
        return max(0.0, min(wanted, self.max_wait))


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0 or value != value:
        raise AgentmemError(f"${name} must be a number of at least 0, not {raw!r}",
                            f"fix it, or unset {name} for the default ({default:g})")
    return value


def retries() -> Retries:
    return Retries(int(_env_number(RETRIES_ENV, 2)), _env_number(RETRY_DELAY_ENV, 1.0),
                   _env_number(RETRY_MAX_WAIT_ENV, 30.0))


def timeout() -> float:
    return _env_number(TIMEOUT_ENV, 600.0) or 600.0


def retry_after(exc: BaseException) -> float | None:
    """The seconds a provider asked to wait before the next request (`retry-after-ms`, or
    `Retry-After` in seconds or as an HTTP date), from the response headers litellm keeps."""
    headers = getattr(exc, "litellm_response_headers", None)
    if not headers:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        found = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    except (TypeError, ValueError):
        return None
    try:
        if "retry-after-ms" in found:
            return float(found["retry-after-ms"]) / 1000
        if "retry-after" in found:
            return float(found["retry-after"])
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(found["retry-after"])
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return None


def complete(spec: ModelSpec, messages: list[dict[str, Any]], *,
             tools: list[dict[str, Any]] | None = None,
             on_text: Callable[[str], None] | None = None,
             max_tokens: int | None = None,
             temperature: float | None = None,
             on_retry: Callable[[ModelError, float], None] | None = None,
             response_format: dict[str, Any] | None = None) -> Completion:
    """One model call (streamed to `on_text` when given), retried on transient failures;
    `response_format` as OpenAI's API has it (litellm maps it to each provider's own form).

    This is the only retry layer: litellm's and the provider SDK's own retries are turned off,
    so AGENTMEM_RETRIES=0 is exactly one request, and the default at most three. Each retry
    waits what the provider asked for (Retry-After) or an exponential backoff, capped, and is
    announced first through `on_retry(error, wait)`. A reply that already streamed text is not
    retried: that text has been shown."""
    policy, limit = retries(), timeout()     # a bad setting fails here, before any request
    for attempt in range(policy.attempts + 1):
        streamed: list[str] = []

        def sink(text: str, streamed: list[str] = streamed) -> None:
            streamed.append(text)
            if on_text:
                on_text(text)

        try:
            with baton.model_call():
                return _call(spec, messages, tools, sink if on_text else None, max_tokens,
                             temperature, limit, response_format)
        except ScriptExhausted:
            raise
        except ModelError:
            raise
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - every provider failure is translated here
            error = translate(exc, spec)
            if not error.retryable or attempt == policy.attempts or streamed:
                raise error from None
            wait = policy.wait(attempt, retry_after(exc))
            if on_retry:
                on_retry(error, wait)
            with baton.waiting():
                time.sleep(wait)
    raise AssertionError("unreachable")


def _call(spec: ModelSpec, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
          on_text: Callable[[str], None] | None, max_tokens: int | None,
          temperature: float | None, limit: float,
          response_format: dict[str, Any] | None = None) -> Completion:
    lib = litellm()
    if spec.model.startswith(SCRIPTED + "/"):
        _price_scripted(lib, spec.model)
    # num_retries=0: no litellm retry wrapper; max_retries=0: no retries inside the OpenAI SDK
    # litellm drives for openai-compatible providers. complete() is the one retry layer.
    kwargs: dict[str, Any] = {"model": spec.model, "messages": messages, "num_retries": 0,
                              "max_retries": 0, "timeout": limit}
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
    if response_format is not None:
        kwargs["response_format"] = response_format
    if on_text is None:
        response = lib.completion(**kwargs)
    else:
        chunks = []
        # include_usage: OpenAI sends the stream's token counts only when asked (a last chunk)
        for chunk in lib.completion(stream=True, stream_options={"include_usage": True},
                                    **kwargs):
            chunks.append(chunk)
            delta = chunk.choices[0].delta if chunk.choices else None
            if delta is not None and delta.content:
                on_text(delta.content)
        response = lib.stream_chunk_builder(chunks, messages=messages)
    choice = response.choices[0]
    if choice.finish_reason == "content_filter":
        raise ModelError(f"{spec.model}: the provider's content filter stopped the reply",
                         "rephrase the message", kind="policy")
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


def _local_lookup(model: str) -> bool:
    """Whether litellm would answer a question about `model` (its price, its window) by asking
    a server: for `ollama/` models it asks $OLLAMA_API_BASE or localhost:11434, whatever
    api_base the user chose. agentmem does not ask: a local model is free, and its window is
    the default unless persona.md sets `context_window:`."""
    return model.startswith("ollama/")


def cost_of(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """Cost in USD from litellm's price table; 0.0 for models it has no price for."""
    if _local_lookup(model):
        return 0.0
    lib = litellm()
    try:
        prompt_cost, completion_cost = lib.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return float(prompt_cost + completion_cost)
    except Exception:  # noqa: BLE001 - unknown model: no price
        return 0.0


def price(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token, or None when litellm has no price for the model."""
    if _local_lookup(model):
        return 0.0, 0.0
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


# providers whose litellm form of JSON mode needs a schema: Anthropic's is a forced tool call
# (or its native output format) built from the schema; a bare {"type": "json_object"} is dropped
_JSON_MODE_NEEDS_SCHEMA = {"anthropic"}


@functools.lru_cache(maxsize=64)
def structured_output(model: str) -> str:
    """How litellm can ask `model` for a JSON answer, from its tables (no request): "schema"
    (response_format with a json_schema), "json" (JSON mode: {"type": "json_object"}) or
    "prompt" (neither, so only the prompt asks for JSON)."""
    from agentmem.models import provider_of

    lib = litellm()
    if any(entry.get("provider") == provider_of(model)
           for entry in getattr(lib, "custom_provider_map", None) or []):
        return "prompt"     # a custom handler (agentmem's scripted model): litellm's tables
                            # say nothing of it, whatever they answer for its name
    try:
        if lib.supports_response_schema(model=model):
            return "schema"
    except Exception:  # noqa: BLE001 - a model litellm does not know: ask what its provider takes
        pass
    try:
        params = lib.get_supported_openai_params(model=model) or []
    except Exception:  # noqa: BLE001
        params = []
    if "response_format" not in params:
        return "prompt"
    return "schema" if provider_of(model) in _JSON_MODE_NEEDS_SCHEMA else "json"


@functools.lru_cache(maxsize=64)
def context_window(model: str, default: int = 8192) -> int:
    if _local_lookup(model):
        return default
    lib = litellm()
    try:
        info = lib.get_model_info(model)
        return int(info.get("max_input_tokens") or info.get("max_tokens") or default)
    except Exception:  # noqa: BLE001
        return default


# -- provider batch APIs (files and batches) -------------------------------------------------
BATCH_PROVIDERS = ("openai", "azure", "hosted_vllm", "litellm_proxy")   # litellm speaks their batches


def batch_provider(spec: ModelSpec) -> str:
    """The provider whose files and batches API a batch for `spec` goes through; an
    AgentmemError for a model whose provider has none litellm speaks."""
    from agentmem.models import provider_of

    provider = provider_of(spec.model)
    if provider not in BATCH_PROVIDERS:
        raise AgentmemError(f"{spec.model}: batch sleep needs a provider with a batch API "
                            f"({', '.join(BATCH_PROVIDERS)}), not {provider or 'this one'}",
                            "choose one with --model (e.g. openai/gpt-4.1-mini), or sleep "
                            "without --batch")
    return provider


def batch_model_name(spec: ModelSpec) -> str:
    """The model as a batch request line names it: without litellm's provider prefix."""
    provider = batch_provider(spec)
    prefix = provider + "/"
    return spec.model[len(prefix):] if spec.model.startswith(prefix) else spec.model


def _batch_kwargs(spec: ModelSpec) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"custom_llm_provider": batch_provider(spec), "timeout": timeout(),
                              "max_retries": 0}
    if spec.api_base:
        kwargs["api_base"] = spec.api_base
        from agentmem.models import KEYS, provider_of

        var = KEYS.get(provider_of(spec.model))
        if var and not os.environ.get(var):
            kwargs["api_key"] = "no-key-needed"   # OpenAI-compatible local servers ignore it
    return kwargs


def _batch_call(spec: ModelSpec, what: str, call: Callable[[Any], Any]) -> Any:
    """One files/batches request; a provider failure becomes a ModelError naming `what`."""
    lib = litellm()
    try:
        return call(lib)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - every provider failure is translated here
        error = translate(exc, spec)
        raise ModelError(f"{what}: {error.message}", error.hint, retryable=error.retryable,
                         kind=error.kind) from None


def batch_submit(spec: ModelSpec, path: str, metadata: dict[str, str] | None = None
                 ) -> dict[str, Any]:
    """Upload the JSONL request file at `path` (purpose=batch) and create one batch of chat
    completions over it, answered within 24 h: the batch object, as a dict."""
    kwargs = _batch_kwargs(spec)
    with open(path, "rb") as handle:
        uploaded = _batch_call(spec, "uploading the batch file", lambda lib: lib.create_file(
            file=("agentmem-sleep.jsonl", handle, "application/jsonl"), purpose="batch",
            **kwargs))
    created = _batch_call(spec, "creating the batch", lambda lib: lib.create_batch(
        completion_window="24h", endpoint="/v1/chat/completions", input_file_id=uploaded.id,
        metadata=metadata, **kwargs))
    return _as_dict(created)


def batch_retrieve(spec: ModelSpec, batch_id: str) -> dict[str, Any]:
    """The batch object (status, request_counts, output_file_id, error_file_id, ...)."""
    kwargs = _batch_kwargs(spec)
    return _as_dict(_batch_call(spec, f"reading batch {batch_id}",
                                lambda lib: lib.retrieve_batch(batch_id=batch_id, **kwargs)))


def batch_find(spec: ModelSpec, key: str, value: str, pages: int = 5) -> dict[str, Any] | None:
    """The batch (newest first, up to `pages` pages of 100) whose metadata has `key` set to
    `value`, as a dict; None when the provider lists none."""
    kwargs = _batch_kwargs(spec)
    after: dict[str, str] = {}
    for _ in range(pages):
        where = {**after, **kwargs}
        page = _batch_call(spec, "listing batches",
                           lambda lib: lib.list_batches(limit=100, **where))  # noqa: B023
        listed = [_as_dict(b) for b in (getattr(page, "data", None) or
                                        (page.get("data") if isinstance(page, dict) else []) or [])]
        for batch in listed:
            if (batch.get("metadata") or {}).get(key) == value:
                return batch
        more = getattr(page, "has_more", None) if not isinstance(page, dict) else page.get("has_more")
        if not more or not listed:
            return None
        after = {"after": str(listed[-1].get("id"))}
    return None


def batch_file(spec: ModelSpec, file_id: str) -> bytes:
    """A batch's output or error file: JSONL bytes."""
    kwargs = _batch_kwargs(spec)
    content = _batch_call(spec, f"downloading file {file_id}",
                          lambda lib: lib.file_content(file_id=file_id, **kwargs))
    return bytes(content.content)


def _as_dict(obj: Any) -> dict[str, Any]:
    dump = getattr(obj, "model_dump", None)
    return dict(dump() if dump else obj)


def batch_price(model: str) -> tuple[float, float, str] | None:
    """(input, output) USD per token at batch prices, and where they come from: litellm's
    `*_cost_per_token_batches` for the model when it has them, else half the live price (what
    OpenAI, Anthropic, Azure and Vertex charge for batches); None when no price is known."""
    live = price(model)
    if live is None:
        return None
    info: dict[str, Any] = {}
    try:
        info = dict(litellm().get_model_info(model))
    except Exception:  # noqa: BLE001 - unknown model: the live price said so already
        pass
    batch_in, batch_out = (info.get("input_cost_per_token_batches"),
                           info.get("output_cost_per_token_batches"))
    if batch_in is not None and batch_out is not None:
        return float(batch_in), float(batch_out), "litellm's batch price"
    return live[0] / 2, live[1] / 2, "half the live price"


def batch_completion(model: str, body: dict[str, Any],
                     prices: tuple[float, float, str] | None) -> Completion:
    """A batch output line's `response.body` (a chat.completion object) as a Completion, its
    cost at batch prices."""
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    calls = [ToolRequest(id=c.get("id") or f"call_{i}",
                         name=(c.get("function") or {}).get("name") or "",
                         arguments=(c.get("function") or {}).get("arguments") or "{}")
             for i, c in enumerate(message.get("tool_calls") or [])]
    used = body.get("usage") or {}
    prompt = int(used.get("prompt_tokens") or 0)
    completion = int(used.get("completion_tokens") or 0)
    cost = prompt * prices[0] + completion * prices[1] if prices else 0.0
    return Completion(text=message.get("content") or "", tool_calls=calls,
                      finish_reason=choice.get("finish_reason") or "stop", prompt_tokens=prompt,
                      completion_tokens=completion, cost=cost, model=model)


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
