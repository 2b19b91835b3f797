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
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentmem import baton
from agentmem.errors import AgentmemError, ModelError
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
CONTEXT_HINT = ("start a new session, run 'agentmem sleep' to condense lessons.md, or use a model "
                "with a larger window (--model); if the model's window is smaller than agentmem "
                "thinks, set 'context_window:' in persona.md")

# litellm class name -> (kind, message, hint, retryable). Order matters: subclasses first.
# translate() sharpens some of them with what it knows: the HTTP status, the URL, the key's
# variable, where the model name came from.
ERRORS: list[tuple[str, str, str, str, bool]] = [
    ("ContextWindowExceededError", "context_window",
     "the conversation is too long for the model's context window", CONTEXT_HINT, False),
    ("ContentPolicyViolationError", "policy", "the provider refused the request under its "
     "content policy", "rephrase the message", False),
    ("AuthenticationError", "auth", "the provider rejected the API key", "", False),
    ("PermissionDeniedError", "auth", "the API key may not use this model", "", False),
    ("PaymentRequiredError", "auth", "the provider requires payment for this request",
     "check your account's billing", False),
    ("NotFoundError", "not_found", "the provider does not know this model", "", False),
    ("RateLimitError", "rate_limit", "rate limited by the provider",
     "wait a minute and try again, or use another model; AGENTMEM_RETRIES sets how often "
     "agentmem retries", True),
    ("Timeout", "timeout", "the model did not answer in time", "", True),
    ("MidStreamFallbackError", "stream_cut", "the reply stopped mid-way (the stream was cut)",
     "try again; if it keeps happening, the server or a proxy is cutting long replies", True),
    ("ServiceUnavailableError", "unavailable", "the provider is unavailable",
     "try again later", True),
    ("BadGatewayError", "unavailable", "the provider's gateway failed", "try again later", True),
    ("InternalServerError", "server", "the provider had an internal error", "try again later",
     True),
    ("APIConnectionError", "connection", "could not reach the model", "", True),
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


def translate(exc: BaseException, spec: ModelSpec) -> ModelError:
    """Turn any litellm exception into a one-line ModelError that names its cause and the fix,
    with a retry flag. The cause is read from the whole exception chain, since litellm files a
    refused connection under "internal server error" for some providers: a failure below HTTP
    (connection refused, DNS, TLS, a connection closed unanswered or mid-reply) is recognised
    first, then the exception's class (a timeout among them)."""
    context = exc.__context__
    if isinstance(context, ScriptExhausted):
        raise context
    chain = _chain(exc)
    url = _url(chain) or spec.api_base or "the provider"
    network = _network_error(chain, spec, url)
    if network is not None:
        return network
    lib = litellm()
    row = next((row for row in ERRORS if isinstance(exc, _litellm_class(lib, row[0]))), None)
    if row is None:
        return ModelError(f"{spec.model}: {type(exc).__name__}: {_detail(exc)}", "try again",
                          retryable=False, kind="unknown")
    _, kind, message, hint, retryable = row
    status = _status(chain)
    detail = "" if kind == "timeout" else _detail(exc)
    if status and kind not in ("timeout", "connection", "stream_cut"):
        detail = f"HTTP {status}" + (f": {detail}" if detail else "")
    if kind == "auth" and not hint:
        hint = _key_hint(spec, status)
    elif kind == "not_found":
        message = f"the provider does not know this model, set by {spec.source}"
        hint = (f"check the model name where it is set ({spec.source}); litellm names look like "
                "openai/gpt-4.1-mini")
        if spec.api_base:
            hint += f", and that api_base {spec.api_base} is the server's base URL"
    elif kind == "timeout":
        message = f"the model did not answer in time: nothing from {url} within {timeout():g} s"
        hint = ("try again; a local server may still be loading the model; allow longer with "
                f"{TIMEOUT_ENV}=SECONDS")
    elif kind == "connection":
        hint = _connection_hint(spec)
    return ModelError(f"{spec.model}: {message}" + (f" ({detail})" if detail else ""), hint,
                      retryable=retryable, kind=kind)


def _litellm_class(lib: Any, name: str) -> type | tuple[()]:
    """litellm's exception class of that name; () (matching nothing) when this litellm has none."""
    cls = getattr(lib.exceptions, name, None) or getattr(lib, name, None)
    return cls if isinstance(cls, type) else ()


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and the ones it was raised from or during, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _url(chain: list[BaseException]) -> str | None:
    """The URL the failed request went to, from the HTTP client's own exception (litellm's
    wrappers carry placeholder URLs), without its query string (it may hold a key)."""
    for exc in reversed(chain):
        if not type(exc).__module__.startswith(("httpx", "openai")):
            continue
        try:
            request = getattr(exc, "request", None)
        except RuntimeError:       # an httpx error raised without a request
            continue
        url = getattr(request, "url", None)
        if url is not None:
            return str(url).split("?", 1)[0]
    return None


def _status(chain: list[BaseException]) -> int | None:
    """The HTTP status the provider answered with (litellm's wrappers may carry another)."""
    for exc in reversed(chain):
        response = exc.__dict__.get("response")
        code = getattr(response, "status_code", None)
        if type(exc).__module__.startswith(("httpx", "openai")) and isinstance(code, int):
            return code
    return None


def _network_error(chain: list[BaseException], spec: ModelSpec, url: str) -> ModelError | None:
    """A failure below HTTP, named by its cause: a refused connection, a DNS or TLS failure
    (none retried: the fix is the user's), a connection closed unanswered or mid-reply."""
    import socket
    import ssl

    model = spec.model
    for exc in chain:
        if isinstance(exc, ConnectionRefusedError):
            return ModelError(f"{model}: could not connect to {url}: connection refused",
                              "is the server running? " + _connection_hint(spec),
                              retryable=False, kind="connection")
        if isinstance(exc, socket.gaierror):
            host = url.split("//", 1)[-1].split("/", 1)[0]
            return ModelError(f"{model}: could not look up the host {host} for {url} (DNS: "
                              f"{exc.strerror or exc})",
                              "check the host name and your network; " + _connection_hint(spec),
                              retryable=False, kind="connection")
        if isinstance(exc, ssl.SSLError):
            reason = exc.reason or exc.strerror or str(exc)
            return ModelError(f"{model}: the TLS handshake with {url} failed ({reason})",
                              "a server that speaks plain HTTP needs an http:// api_base; for a "
                              "private certificate authority set SSL_CERT_FILE",
                              retryable=False, kind="connection")
    for exc in chain:
        if "without sending a response" in str(exc) or "Server disconnected" in str(exc):
            return ModelError(f"{model}: the server at {url} closed the connection without "
                              "answering", "try again; if it keeps happening, see the server's "
                              "log", retryable=True, kind="connection")
        if type(exc).__name__ == "RemoteProtocolError" or "Stream ended before" in str(exc):
            return ModelError(f"{model}: the connection to {url} closed mid-reply (the stream "
                              "was cut)", "try again; if it keeps happening, the server or a "
                              "proxy is cutting long replies", retryable=True, kind="stream_cut")
    return None


def _connection_hint(spec: ModelSpec) -> str:
    if spec.api_base:
        return (f"check api_base {spec.api_base}" + (f" (from {spec.api_base_source})"
                                                     if spec.api_base_source else ""))
    return "check your network connection and proxy settings (HTTPS_PROXY)"


def _key_hint(spec: ModelSpec, status: int | None) -> str:
    from agentmem.models import KEYS, provider_of

    var = KEYS.get(provider_of(spec.model))
    if var is None:
        return "check the key in your environment (e.g. OPENAI_API_KEY, ANTHROPIC_API_KEY)"
    if status == 403:
        return f"check that {var} belongs to an account with access to {spec.model}"
    if spec.api_base and not os.environ.get(var):
        return f"the server at {spec.api_base} wants a key: set {var} (export {var}=...)"
    return f"check {var}: it is wrong, revoked or for another provider (export {var}=...)"


def _detail(exc: BaseException) -> str:
    """The provider's own words, one line: litellm's class-name prefixes and advice stripped,
    the message taken out of a JSON error body, secrets redacted."""
    from agentmem.redact import redact

    lines = str(getattr(exc, "message", None) or exc).strip().splitlines()
    line = lines[0] if lines else ""
    line = _PREFIX.sub("", line)
    for tail in (". Handle with `", " Original exception", " Received Model Group"):
        line = line.split(tail, 1)[0]
    if line.startswith("{"):
        try:
            body = json.loads(line)
        except ValueError:
            pass
        else:
            error = body.get("error", body) if isinstance(body, dict) else body
            if isinstance(error, dict):
                error = error.get("message") or error.get("type") or error
            line = str(error)
    return redact(line.strip())[:300]


_PREFIX = re.compile(r"^(?:(?:litellm\.)?[A-Za-z_]*(?:Error|Exception|Timeout)(?::| -)\s*)+")


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
             on_retry: Callable[[ModelError, float], None] | None = None) -> Completion:
    """One model call (streamed to `on_text` when given), retried on transient failures.

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
                             temperature, limit)
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
          temperature: float | None, limit: float) -> Completion:
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
