"""A small real HTTP server on loopback that answers with a script: the counterpart for
tests of the client's protocol handling (retries, ``Retry-After``, a stream cut mid-way),
which the real API cannot be made to produce on demand. It records every request it gets."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[BaseHTTPRequestHandler], None]


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]


class ScriptedServer:
    """Answers the n-th request with ``replies[n]`` (the last one repeats)."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                index = len(server.received)
                server.received.append(
                    Received(
                        self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
                    )
                )
                server.replies[min(index, len(server.replies) - 1)](self)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    """A JSON answer (``application/problem+json`` for an error status)."""

    def reply(handler: BaseHTTPRequestHandler) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        kind = "application/problem+json" if status >= 400 else "application/json"
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    return reply


def sse_reply(events: list[dict[str, Any]], cut: bool = False) -> Reply:
    """A Server-Sent Events answer (chunked, as uvicorn sends it) with ``events`` and a
    keep-alive comment; ``cut`` closes the connection mid-body, as a killed server does,
    leaving half an event unsent."""

    def chunk(handler: BaseHTTPRequestHandler, text: str) -> None:
        data = text.encode()
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def reply(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        chunk(handler, ": keep-alive\n\n")
        for event in events:
            chunk(
                handler, f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
            )
        if cut:
            chunk(handler, 'id: 9-9\nevent: step\ndata: {"half')
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(2)  # SHUT_RDWR: the peer sees the body end short
            return
        handler.wfile.write(b"0\r\n\r\n")

    return reply


def event(n: int, kind: str = "step", **data: Any) -> dict[str, Any]:
    """The n-th event of a job's log, as the API sends it."""
    body = data or {"stage": "ft", "step": n, "total": 6, "loss": 1 / n}
    return {"id": f"1700000000000-{n}", "type": kind, "created_at": 1.0, "data": body}


def job(status: str = "running") -> dict[str, Any]:
    """A job as the API shows it."""
    return {
        "object": "job",
        "id": "job-1",
        "kind": "finetune",
        "status": status,
        "method": "lp_ft",
        "methods": None,
        "source_job": None,
        "model": None,
        "dataset": {"train": "ds-1", "validation": None, "test": None},
        "eval_sets": {},
        "hyperparameters": {},
        "queue": "cpu",
        "created_at": 1.0,
        "started_at": None,
        "finished_at": None,
        "error": None,
        "cancel_requested": False,
        "attempts": 0,
    }
