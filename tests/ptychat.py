"""Drive `agentmem chat` in a pseudo-terminal against an OpenAI-compatible stand-in.

`Terminal` runs a command with a pty as its controlling terminal (so Ctrl-C sent as \\x03
reaches it as SIGINT, and the window size is real), and reads what it writes; every read has a
deadline, so a hang fails the test instead of blocking. `ChatStandIn` is a chat-completions
server on 127.0.0.1 (standard library only) answering each request with the next scripted
reply as an SSE stream; a reply can hold at a `Gate` until the test opens it.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# CSI (colours, cursor), OSC (titles, links) and two-character escapes, as a terminal reads them
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")

# run agentmem as `python -m agentmem ARGS` would, after taking the pty on stdin as this new
# session's controlling terminal (subprocess cannot do that without an unsafe preexec_fn)
BOOT = ("import fcntl, runpy, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "runpy.run_module('agentmem', run_name='__main__', alter_sys=True)")


def terminal_env() -> dict[str, str]:
    """The environment of a command run in a Terminal: this process's, without what would fix
    the window size, the colours or the model, with a dummy key for the stand-ins, litellm's
    local price list, and no retries."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "AGENTMEM_MODEL")}
    env.update(OPENAI_API_KEY="dummy-key-for-the-stand-in", LITELLM_LOCAL_MODEL_COST_MAP="True",
               TERM="xterm-256color", AGENTMEM_RETRIES="0")
    return env


def screen_text(raw: bytes) -> str:
    """What was written, as text, without escape sequences or carriage returns."""
    return ANSI.sub("", raw.decode("utf-8", "replace")).replace("\r", "")


class Terminal:
    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, *, columns: int = 80,
                 rows: int = 24) -> None:
        self.master, slave = pty.openpty()
        self.resize(columns, rows)
        self.proc = subprocess.Popen([sys.executable, "-c", BOOT, *args], stdin=slave,
                                     stdout=slave, stderr=slave, env=env, cwd=cwd,
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        self.raw = b""
        self.mark = 0          # where the last expect() matched: the next one looks after it

    def resize(self, columns: int, rows: int = 24) -> None:
        """Set the window size (the kernel sends SIGWINCH to the foreground process group)."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def _read(self, timeout: float) -> bool:
        """Read what is there within `timeout` seconds; False when the child's side closed."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:        # EIO: every copy of the slave side is closed
            return False
        self.raw += data
        return bool(data)

    @property
    def screen(self) -> str:
        return screen_text(self.raw)

    def expect(self, text: str, timeout: float = 60) -> str:
        """Wait until `text` appears after the last match; returns the screen text up to and
        including it (from the previous match on). Fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen
            at = screen.find(text, self.mark)
            if at >= 0:
                start, self.mark = self.mark, at + len(text)
                return screen[start:self.mark]
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.5)) and self.proc.poll() is not None:
                tail = screen[self.mark:][-2000:]
                raise AssertionError(f"{text!r} did not appear within {timeout} s; after the "
                                     f"last match the screen shows:\n{tail}")

    def wait(self, timeout: float = 60) -> int:
        """Read until the child exits; its exit status."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        try:
            return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        finally:
            while self._read(0):
                pass

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        os.close(self.master)


# -- the stand-in ----------------------------------------------------------------------------
class Gate(threading.Event):
    """A point in a streamed reply where the stand-in waits until the test calls open()."""

    def open(self) -> None:
        self.set()


@dataclass
class Reply:
    """One answer: text pieces (sent as separate SSE events), Gates between them, and tool
    calls (name, arguments dict) sent after the text."""

    pieces: list[str | Gate] = field(default_factory=list)
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _event(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 0,
             "model": "fake", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


class ChatStandIn:
    """POST /v1/chat/completions on 127.0.0.1 (port chosen by the kernel): `url` is the
    api_base. Each request gets the next queued Reply, streamed; `requests` holds the bodies."""

    GATE_TIMEOUT = 60.0

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.overdrawn = 0
        self._queue: deque[Reply] = deque()
        self._gates: list[Gate] = []
        self._lock = threading.Lock()
        serve: Callable[[BaseHTTPRequestHandler], None] = self._serve

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                serve(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass      # a client that hung up mid-stream (Ctrl-C) is expected

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)
            self._gates += [p for r in replies for p in r.pieces if isinstance(p, Gate)]

    @property
    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        for gate in self._gates:
            gate.open()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers.get("Content-Length") or 0)))
        with self._lock:
            self.requests.append(body)
            reply = self._queue.popleft() if self._queue else None
        if reply is None:
            self.overdrawn += 1
            handler.send_error(500, "stand-in: no reply queued")
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()     # HTTP/1.0: the stream ends when the connection closes

        def send(data: bytes) -> None:
            handler.wfile.write(data)
            handler.wfile.flush()

        send(_event({"role": "assistant", "content": ""}))
        for piece in reply.pieces:
            if isinstance(piece, Gate):
                piece.wait(self.GATE_TIMEOUT)
            else:
                send(_event({"content": piece}))
        for n, (name, arguments) in enumerate(reply.tool_calls):
            send(_event({"tool_calls": [{"index": n, "id": f"call_{n}", "type": "function",
                                         "function": {"name": name, "arguments": ""}}]}))
            send(_event({"tool_calls": [{"index": n, "function": {
                "arguments": json.dumps(arguments)}}]}))
        send(_event({}, "tool_calls" if reply.tool_calls else "stop"))
        send(b"data: [DONE]\n\n")
