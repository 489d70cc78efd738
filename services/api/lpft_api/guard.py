"""The gate every request passes before any of its body is read.

In order: the API key (401 before a single body byte is accepted, so an anonymous client
cannot make the server read, spool or parse anything), the declared ``Content-Length``
against the route's limit (413 at once), then the bytes as they arrive, chunked or not (413
as soon as the count passes the limit). JSON bodies are held (they are bounded by then) and
their nesting depth is checked before FastAPI parses them: Python's parser recurses, and a
deep enough body would cost a stack overflow rather than a clear 422.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

import numpy as np
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lpft_api.errors import problem

OPEN_TENANT = "default"
#: Routes anyone may call: probes and the API's own documentation.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/redoc"})
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its limit. An ``HTTPException``, so that
    FastAPI's body parsing lets it through to the problem+json handlers as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"the request body is over the limit of {limit} bytes; send less per request"
        )


@dataclass(frozen=True)
class Limits:
    """Body limits in bytes: uploads (``POST /datasets``) and every other request."""

    upload_bytes: int
    request_bytes: int
    json_depth: int

    def for_scope(self, scope: Scope) -> int:
        """The limit of this request's route."""
        upload = scope["method"] == "POST" and scope["path"].rstrip("/") == "/datasets"
        return self.upload_bytes if upload else self.request_bytes


class Keys:
    """API key → tenant, compared in constant time: every key is compared (as a SHA-256
    digest, so lengths match), whichever matches, so timing says nothing about a near-miss."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.digests = [(hashlib.sha256(k.encode()).digest(), t) for k, t in keys.items()]

    def __bool__(self) -> bool:
        return bool(self.digests)

    def tenant(self, key: str) -> str | None:
        """The tenant of ``key``, or None."""
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for candidate, tenant in self.digests:
            if hmac.compare_digest(candidate, digest):
                found = tenant
        return found


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body``, strings ignored; linear time
    in C (a regex and a cumulative sum), so even a full-size body costs milliseconds."""
    brackets = np.frombuffer(_JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS), np.uint8)
    if brackets.size == 0:
        return 0
    steps = np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


class RequestGuard:
    """ASGI middleware: authentication and body limits, before the app sees the request.

    The caller's tenant is left in ``scope["state"]["tenant"]`` for the routes.
    """

    def __init__(self, app: ASGIApp, keys: Keys, limits: Limits) -> None:
        self.app = app
        self.keys = keys
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        tenant = self._tenant(scope)
        if tenant is None and path not in PUBLIC_PATHS:
            await _refuse(scope, receive, send, *self._unauthorized(scope))
            return
        scope.setdefault("state", {})["tenant"] = tenant
        limit = self.limits.for_scope(scope)
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(scope, receive, send, limit)
            return
        counted = _CountingReceive(receive, limit)
        try:
            if (_header(scope, b"content-type") or "").startswith("application/json"):
                body = await counted.read_all()
                if json_depth(body) > self.limits.json_depth:
                    await _refuse(scope, receive, send, *self._too_deep())
                    return
                counted = _Replay(body, receive)
            await self.app(scope, counted, send)
        except BodyTooLarge:
            await _too_large(scope, receive, send, limit)  # raised outside the routes

    def _tenant(self, scope: Scope) -> str | None:
        if not self.keys:
            return OPEN_TENANT
        scheme, _, key = (_header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return self.keys.tenant(key.strip())

    @staticmethod
    def _unauthorized(scope: Scope) -> tuple[int, str, str, str, str]:
        sent = _header(scope, b"authorization")
        detail = "unknown API key" if sent else "send an API key as 'Authorization: Bearer <key>'"
        return 401, "Unauthorized", detail, "unauthorized", "Authorization"

    def _too_deep(self) -> tuple[int, str, str, str, str]:
        detail = (
            f"the JSON body is nested deeper than {self.limits.json_depth} levels; send flat "
            "objects as the API document describes"
        )
        return 422, "Invalid request", detail, "invalid_request", "body"


class _CountingReceive:
    """``receive`` that raises ``BodyTooLarge`` once the body passes ``limit`` bytes."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive = receive
        self.limit = limit
        self.seen = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                raise BodyTooLarge(self.limit)
        return message

    async def read_all(self) -> bytes:
        chunks = []
        while True:
            message = await self()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


class _Replay:
    """``receive`` that hands the app a body already read, then the connection's messages."""

    def __init__(self, body: bytes, receive: Receive) -> None:
        self.body: bytes | None = body
        self.receive = receive

    async def __call__(self) -> Message:
        if self.body is None:
            return await self.receive()
        body, self.body = self.body, None
        return {"type": "http.request", "body": body, "more_body": False}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    detail = BodyTooLarge(limit).detail
    await _refuse(scope, receive, send, 413, "Payload too large", detail, "payload_too_large")


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    title: str,
    detail: str,
    code: str,
    field: str | None = None,
) -> None:
    """Answer with a problem document and close the connection: the unread rest of the body
    must not be taken for the next request."""
    errors = [{"field": field, "message": detail}] if field else None
    headers = {"Connection": "close"}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    response = problem(status, title, detail, code, scope["path"], errors, headers)
    await response(scope, receive, send)
