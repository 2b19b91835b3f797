"""OpenAI's Files and Batches API on 127.0.0.1, as its API reference documents them: a stand-in
with state (files and batches), not a queue of answers.

    POST /v1/files                   multipart/form-data: `purpose` (batch) and `file` (JSONL)
    GET  /v1/files/{id}/content      the file's bytes (an input, output or error file)
    POST /v1/batches                 {input_file_id, endpoint, completion_window, metadata}
    GET  /v1/batches/{id}            the batch object
    GET  /v1/batches                 {"object": "list", "data": [...], first_id, last_id, has_more}
    POST /v1/batches/{id}/cancel     the batch, cancelling, then cancelled

A batch starts `validating`; each GET of it moves it one step along `statuses` (default
in_progress, then completed), and a final status (completed, failed, expired, cancelled) fixes
it. On completion (or expiry/cancellation, where the first `answered` lines are answered) the
output file holds one line per answered request,
`{"id": "batch_req_...", "custom_id", "response": {"status_code": 200, "request_id", "body":
<chat.completion>}, "error": null}`, and the error file one per failed request: an HTTP error
(`response.status_code` 4xx/5xx and `body: {"error": {...}}`) or a non-HTTP error (`response:
null, error: {code, message}`). `request_counts` counts them. A `failed` batch (validation)
has `errors: {"object": "list", "data": [{code, message, param, line}]}` and no files.

`reject = (status, message)` answers batch creation with that error.

Per test: `answer(line)` gives each request line's answer: a string (the assistant's content),
a dict {"status_code": 4xx, "message": ...} (an HTTP error for that line) or {"code", "message"}
(a non-HTTP error), or a whole chat.completion dict (with "choices").
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Any

import wire
from wire.openai import CREATED, FINGERPRINT, _usage

FINAL = ("completed", "failed", "expired", "cancelled")
Answer = Callable[[dict[str, Any]], Any]


def completion(text: str, *, model: str = "x", usage: tuple[int, int] = (210, 40),
               finish: str = "stop", request: int = 0) -> dict[str, Any]:
    """A `chat.completion` object, as a batch output line's `response.body` carries it."""
    return {"id": f"chatcmpl-batch{request:06d}", "object": "chat.completion",
            "created": CREATED, "model": model, "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                                                 "refusal": None, "annotations": []},
                         "logprobs": None, "finish_reason": finish}],
            "usage": _usage(*usage), "service_tier": "default"}


@contextlib.contextmanager
def serve(answer: Answer | None = None) -> Iterator[BatchStandIn]:
    """A batch stand-in for the length of a `with` block, named as the user config's
    api_base, with the process kept off the network meanwhile (see `wire.offline`)."""
    with wire.offline():
        stand_in = BatchStandIn(answer)
        try:
            wire.config(api_base=stand_in.url + "/v1")
            yield stand_in
        finally:
            stand_in.close()


class BatchStandIn(wire.Loopback):
    """`url` (no trailing slash); `answer`, `statuses`, `answered`, `fail_validation` control
    what the next batches do; `files`, `batches`, `requests` ((method, path) pairs) and
    `inputs` (the request lines of each batch) say what happened."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer: Answer = answer or (lambda line: '{"operations": [], "summary": "none"}')
        self.statuses: list[str] = ["in_progress", "completed"]
        self.answered: int | None = None        # expired/cancelled: how many lines got answers
        self.fail_validation: str | None = None  # a message: the next batch fails validation
        self.reject: tuple[int, str] | None = None  # POST /v1/batches answers this error
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.inputs: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str]] = []
        self._steps: dict[str, list[str]] = {}
        self._why: dict[str, str] = {}
        self._partial: dict[str, int | None] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._listen("batch-stand-in")

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    # -- serving -------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.requests.append((handler.command, path))
            try:
                status, body, kind = self._route(handler.command, path, handler.headers, raw)
            except Exception as exc:  # noqa: BLE001 - a stand-in bug answers 500, visibly
                status, body, kind = 500, json.dumps({"error": {
                    "message": f"stand-in: {type(exc).__name__}: {exc}", "type": "server_error",
                    "param": None, "code": None}}).encode(), "application/json"
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()

    def _route(self, method: str, path: str, headers: Any, raw: bytes
               ) -> tuple[int, bytes, str]:
        parts = path.strip("/").split("/")     # v1, files|batches, ...
        if parts[:2] == ["v1", "files"] and method == "POST" and len(parts) == 2:
            return self._json(200, self._upload(headers, raw))
        if parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
            if parts[2] not in self.contents:
                return self._not_found(f"No such File object: {parts[2]}")
            return 200, self.contents[parts[2]], "application/octet-stream"
        if parts[:2] == ["v1", "batches"]:
            if len(parts) == 2 and method == "POST":
                if self.reject:
                    return self._json(self.reject[0], {"error": {
                        "message": self.reject[1], "type": "invalid_request_error",
                        "param": None, "code": None}})
                return self._create(json.loads(raw))
            if len(parts) == 2:
                data = sorted(self.batches.values(), key=lambda b: b["id"], reverse=True)
                return self._json(200, {"object": "list", "data": data,
                                        "first_id": data[0]["id"] if data else None,
                                        "last_id": data[-1]["id"] if data else None,
                                        "has_more": False})
            batch = self.batches.get(parts[2])
            if batch is None:
                return self._not_found(f"No batch found with id '{parts[2]}'.")
            if len(parts) == 4 and parts[3] == "cancel" and method == "POST":
                if batch["status"] not in FINAL:
                    batch.update(status="cancelling", cancelling_at=int(time.time()))
                    self._steps[batch["id"]] = ["cancelled"]
                return self._json(200, batch)
            if len(parts) == 3 and method == "GET":
                self._advance(batch)
                return self._json(200, batch)
        return self._not_found(f"Invalid URL ({method} {path})")

    @staticmethod
    def _json(status: int, data: Any) -> tuple[int, bytes, str]:
        return status, json.dumps(data).encode(), "application/json"

    def _not_found(self, message: str) -> tuple[int, bytes, str]:
        return self._json(404, {"error": {"message": message, "type": "invalid_request_error",
                                          "param": None, "code": None}})

    def _upload(self, headers: Any, raw: bytes) -> dict[str, Any]:
        head = f"Content-Type: {headers.get('Content-Type')}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + raw)
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True))
        filename, content = fields["file"]
        purpose = fields["purpose"][1].decode()
        return self._store(content, filename or "upload.jsonl", purpose)

    def _store(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        file_id = self._id("file-")
        self.contents[file_id] = content
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(content),
                               "created_at": int(time.time()), "filename": filename,
                               "purpose": purpose, "status": "processed", "expires_at": None,
                               "status_details": None}
        return self.files[file_id]

    def _create(self, body: dict[str, Any]) -> tuple[int, bytes, str]:
        file_id = body.get("input_file_id")
        if file_id not in self.contents:
            return self._not_found(f"No such File object: {file_id}")
        batch_id = self._id("batch_")
        lines = [json.loads(x) for x in self.contents[file_id].splitlines() if x.strip()]
        self.inputs[batch_id] = lines
        created = int(time.time())
        batch = {"id": batch_id, "object": "batch", "endpoint": body.get("endpoint"),
                 "errors": None, "input_file_id": file_id,
                 "completion_window": body.get("completion_window"), "status": "validating",
                 "output_file_id": None, "error_file_id": None, "created_at": created,
                 "in_progress_at": None, "expires_at": created + 86400, "finalizing_at": None,
                 "completed_at": None, "failed_at": None, "expired_at": None,
                 "cancelling_at": None, "cancelled_at": None,
                 "request_counts": {"total": 0, "completed": 0, "failed": 0},
                 "metadata": body.get("metadata")}
        self.batches[batch_id] = batch
        steps = list(self.statuses)
        if self.fail_validation:
            steps = ["failed"]
            self._why[batch_id] = self.fail_validation
            self.fail_validation = None
        self._steps[batch_id] = steps
        self._partial[batch_id] = self.answered
        return self._json(200, batch)

    def _advance(self, batch: dict[str, Any]) -> None:
        """One step along the batch's statuses; the output files are made on the final one."""
        steps = self._steps.get(batch["id"]) or []
        if batch["status"] in FINAL or not steps:
            return
        status = steps.pop(0)
        at = int(time.time())
        batch["status"] = status
        if status == "in_progress":
            batch["in_progress_at"] = at
            batch["request_counts"]["total"] = len(self.inputs[batch["id"]])
        elif status == "failed":
            batch["failed_at"] = at
            batch["errors"] = {"object": "list", "data": [
                {"code": "invalid_request", "message": self._why.get(batch["id"], "invalid"),
                 "param": None, "line": 1}]}
        elif status in FINAL:
            batch["finalizing_at"] = at
            batch[f"{status}_at"] = at
            limit = None if status == "completed" else self._partial.get(batch["id"]) or 0
            self._answer(batch, self.inputs[batch["id"]][:limit])

    def _answer(self, batch: dict[str, Any], lines: list[dict[str, Any]]) -> None:
        out, errors = [], []
        for n, line in enumerate(lines):
            answer = self.answer(line)
            request_id = f"req_{batch['id'][-6:]}{n:06d}"
            result: dict[str, Any] = {"id": f"batch_req_{batch['id'][-6:]}{n:06d}",
                                      "custom_id": line["custom_id"]}
            if isinstance(answer, str):
                result["response"] = {"status_code": 200, "request_id": request_id,
                                      "body": completion(answer, model=line["body"]["model"],
                                                         request=n)}
                result["error"] = None
                out.append(result)
            elif isinstance(answer, dict) and "choices" in answer:
                result["response"] = {"status_code": 200, "request_id": request_id,
                                      "body": answer}
                result["error"] = None
                out.append(result)
            elif isinstance(answer, dict) and "status_code" in answer:
                result["response"] = {"status_code": answer["status_code"],
                                      "request_id": request_id,
                                      "body": {"error": {"message": answer["message"],
                                                         "type": "invalid_request_error",
                                                         "param": None,
                                                         "code": answer.get("code")}}}
                result["error"] = None
                errors.append(result)
            else:
                result["response"] = None
                result["error"] = {"code": answer["code"], "message": answer["message"]}
                errors.append(result)
        batch["request_counts"] = {"total": len(self.inputs[batch["id"]]),
                                   "completed": len(out), "failed": len(errors)}
        if out:
            batch["output_file_id"] = self._store(_jsonl(out), f"{batch['id']}_output.jsonl",
                                                  "batch_output")["id"]
        if errors:
            batch["error_file_id"] = self._store(_jsonl(errors), f"{batch['id']}_error.jsonl",
                                                 "batch_output")["id"]


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)
