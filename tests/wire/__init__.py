"""Loopback stand-ins for model providers' HTTP APIs: standard library only.

A StandIn is a real HTTP/1.1 server on 127.0.0.1 (port 0: the kernel picks a free one), run on
a thread for one test. It records every request it gets (method, path, headers with credential
values hidden, the JSON body) and answers each with the next response queued with `push()`. A
request beyond the queue is answered 599 and recorded, and `assert_done()` (run by the test's
fixture when the test ends) fails the test: so does a queued response nobody asked for.

The provider modules build the responses byte for byte as each provider documents them:
`wire.openai` (chat completions, JSON and SSE), `wire.anthropic` (Messages, JSON and SSE) and
`wire.ollama` (/api/chat, JSON and NDJSON).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# header names whose values are credentials: recorded as HIDDEN
CREDENTIALS = {"authorization", "x-api-key", "api-key", "x-goog-api-key", "proxy-authorization"}
HIDDEN = "<hidden>"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]       # lower-case names; credential values are HIDDEN
    body: Any                     # the JSON body, parsed (None when there was none)


@dataclass
class Response:
    """One scripted answer. `body` bytes are sent with a Content-Length; a list of pieces is
    sent chunked (Transfer-Encoding: chunked), one chunk per piece, flushed as it goes, the way
    a provider streams. `cut` closes the connection after the pieces without ending the body
    (a stream cut mid-way); `drop` closes it without any answer; `delay` waits first."""

    status: int = 200
    body: bytes | list[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False
    drop: bool = False
    delay: float = 0.0


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(data).encode(),
                    {"Content-Type": "application/json", **(headers or {})})


def pieces(text: str, n: int) -> list[str]:
    """`text` cut into at most `n` (at least 1) nearly equal parts, as a stream sends it."""
    size = -(-len(text) // max(1, n))
    return [text[i:i + size] for i in range(0, len(text), size)]


class Loopback:
    """An HTTP/1.1 server on 127.0.0.1, on a daemon thread, that hands each GET and POST to
    `_serve`; `url` (no trailing slash). The network guard lets the process reach its port
    until `close()`."""

    def _listen(self, name: str) -> None:
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:   # quiet
                pass

            def do_GET(self) -> None:
                loopback._serve(self)

            def do_POST(self) -> None:
                loopback._serve(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass    # a client that hung up (a timeout test) is not the server's failure

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        _guard.allowed.add(self.port)
        self._thread = threading.Thread(target=self._server.serve_forever, name=name,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        _guard.allowed.discard(self.port)


class StandIn(Loopback):
    """A provider on 127.0.0.1: `url` (no trailing slash), `push(*responses)`, `requests`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.overdrawn: list[str] = []      # requests that found the queue empty
        self._queue: deque[Response | Callable[[Request], Response]] = deque()
        self._lock = threading.Lock()
        self._listen("stand-in")

    def push(self, *responses: Response | Callable[[Request], Response]) -> StandIn:
        """Queue answers, in order; a callable is called with the request it answers."""
        with self._lock:
            self._queue.extend(responses)
        return self

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def assert_done(self) -> None:
        assert not self.overdrawn, "the stand-in was asked for more responses than queued: " + \
            "; ".join(self.overdrawn)
        assert not self._queue, f"{len(self._queue)} queued response(s) were never asked for"

    # -- serving -------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): (HIDDEN if k.lower() in CREDENTIALS else v)
                   for k, v in handler.headers.items()}
        request = Request(handler.command, handler.path, headers, body)
        with self._lock:
            self.requests.append(request)
            number = len(self.requests)
            queued = self._queue.popleft() if self._queue else None
            if queued is None:
                self.overdrawn.append(f"request #{number} {handler.command} {handler.path}")
        response = queued(request) if callable(queued) else queued
        if response is None:
            response = Response(599, f"stand-in: no response queued for request #{number}"
                                .encode(), {"Content-Type": "text/plain"})
        _send(handler, response)


def _send(handler: BaseHTTPRequestHandler, response: Response) -> None:
    if response.delay:
        time.sleep(response.delay)
    if response.drop:
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)
        return
    handler.send_response(response.status)
    for name, value in response.headers.items():
        handler.send_header(name, value)
    if isinstance(response.body, bytes):
        handler.send_header("Content-Length", str(len(response.body)))
        handler.end_headers()
        handler.wfile.write(response.body)
        handler.wfile.flush()
        return
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for piece in response.body:
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        handler.wfile.flush()
    if response.cut:       # no terminating chunk: the client sees the body end mid-way
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)
        return
    handler.wfile.write(b"0\r\n\r\n")
    handler.wfile.flush()


@contextlib.contextmanager
def serve() -> Iterator[StandIn]:
    """A stand-in for the length of a `with` block; it must have served exactly its queue.
    Meanwhile the process is kept off the network (see `offline`)."""
    with offline():
        stand_in = StandIn()
        try:
            yield stand_in
        finally:
            stand_in.close()
        stand_in.assert_done()


def closed_port() -> str:
    """The URL of a port on 127.0.0.1 where nothing listens: a connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _guard.allowed.add(port)
    return f"http://127.0.0.1:{port}"


# -- keeping a test off the network --------------------------------------------------------------
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class _Guard:
    depth: int = 0
    allowed: set[int] = field(default_factory=set)      # ports on 127.0.0.1 a test may reach
    violations: list[str] = field(default_factory=list)
    saved: tuple[Any, Any] | None = None


_guard = _Guard()


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Refuse every connection but those to this module's stand-ins and closed ports, and
    every name lookup but loopback's: a lookup of a `.invalid` name (RFC 2606: it never
    resolves) fails as a real DNS failure does; anything else is refused and fails the test
    at the end of the block, so no test can reach a real provider, or a local server (Ollama
    on 11434, say) that happens to run on the machine."""
    if _guard.depth == 0:
        _guard.saved = (socket.socket.connect, socket.getaddrinfo)
        _guard.violations.clear()
        real_connect, real_getaddrinfo = _guard.saved

        def connect(sock: socket.socket, address: Any) -> None:
            host, port = (address[0], address[1]) if isinstance(address, tuple) else (address, 0)
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not (
                    host in LOOPBACK and port in _guard.allowed):
                _guard.violations.append(f"connect to {host}:{port}")
                raise ConnectionRefusedError(111, f"stand-in guard: {host}:{port} is off limits")
            real_connect(sock, address)

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if name not in LOOPBACK:
                if not name.endswith(".invalid"):
                    _guard.violations.append(f"name lookup of {name}")
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real_getaddrinfo(host, *args, **kwargs)

        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.getaddrinfo = getaddrinfo
    _guard.depth += 1
    try:
        yield
    finally:
        _guard.depth -= 1
        if _guard.depth == 0 and _guard.saved is not None:
            socket.socket.connect, socket.getaddrinfo = _guard.saved  # type: ignore[method-assign]
            _guard.saved = None
            found, _guard.violations[:] = list(_guard.violations), []
            assert not found, "the test tried to leave the machine: " + "; ".join(found)


# -- pointing agentmem at a stand-in -------------------------------------------------------------
def config(**settings: Any) -> None:
    """Write the user config file ($AGENTMEM_CONFIG, redirected by the tests' conftest)."""
    import yaml

    Path(os.environ["AGENTMEM_CONFIG"]).write_text(yaml.safe_dump(settings), encoding="utf-8")


def persona(agent: Any, **settings: Any) -> None:
    """Set top-level settings in an agent's persona.md front matter (None removes one), as a
    person's edit recorded as its own version."""
    import yaml

    path = agent.folder / "persona.md"
    _, head, body = path.read_text(encoding="utf-8").split("---\n", 2)
    data = yaml.safe_load(head) or {}
    data.update(settings)
    data = {k: v for k, v in data.items() if v is not None}
    text = "---\n" + yaml.safe_dump(data, sort_keys=False) + "---\n" + body
    agent.write({"persona.md": text}, "human", "set " + ", ".join(settings) + " in persona.md")


def insert_lesson(agent: Any, text: str, reason: str) -> dict[str, Any]:
    """The memory tool's arguments that insert `text` after the last line of lessons.md."""
    lessons = (agent.folder / "lessons.md").read_text(encoding="utf-8")
    return {"command": "insert", "path": "/memories/lessons.md",
            "insert_line": len(lessons.splitlines()), "insert_text": text, "reason": reason}


def events(agent: Any, kind: str | None = None) -> list[dict[str, Any]]:
    found = agent.journal.read().events
    return [e for e in found if kind is None or e["kind"] == kind]
