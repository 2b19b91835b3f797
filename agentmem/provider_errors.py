"""Provider failures, each turned into one ModelError that names its cause and the fix.

litellm raises its own exception classes, often wrapping the SDK's or httpx's; translate reads
the whole chain, so a refused connection, a failed name lookup, a TLS failure or a stream cut
mid-way is named as such before litellm's class decides the rest (ERRORS). A test fails when
litellm grows an exception this table does not know.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from agentmem.errors import ModelError
from agentmem.models import ModelSpec
from agentmem.scripted import ScriptExhausted

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
    from agentmem.llm import litellm

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
        from agentmem.llm import TIMEOUT_ENV, timeout

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
