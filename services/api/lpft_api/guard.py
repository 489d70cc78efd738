"""The gate every request passes before any of its body is read.

In order: the API key (401 before a single body byte is accepted, so an anonymous client
cannot make the server read, spool or parse anything), the declared ``Content-Length``
against the route's limit (413 at once), then the bytes as they arrive, chunked or not (413
as soon as the count passes the limit). JSON nested deeper than Python's parser recurses is
a 422 from the error handlers (``RecursionError``), so the body is never scanned twice here.
In open mode only loopback clients are served, however the server was started.

Every request gets a request id (the client's ``X-Request-ID`` if sane, else a new one),
echoed on every answer, refusals included; it and the tenant are on the log context for the
request's records, and one record per request says its status and duration.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

from fastapi.security import HTTPBearer
from lpft_contract import logs
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lpft_api.errors import problem

OPEN_TENANT = "default"
#: Routes anyone may call: probes and the API's own documentation (and ``PROMETHEUS_PATH`` when
#: ``LPFT_METRICS_PUBLIC`` says so).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/redoc"})
PROMETHEUS_PATH = "/metrics"
#: Trees anyone may fetch: the web console's pages and scripts (``lpft_api.routers.console``),
#: which hold no data; the API calls they make carry the caller's key like any other client's.
PUBLIC_TREES = ("/ui",)
#: The scheme the OpenAPI document declares on the routes that need a key, so that Swagger
#: has an Authorize button and client generators see it. It checks nothing (``auto_error``
#: off): this gate has refused a request without a valid key before any route runs.
BEARER = HTTPBearer(
    scheme_name="bearer", description="an API key: `Authorization: Bearer <key>`", auto_error=False
)
_LOOPBACK = frozenset({"127.0.0.1", "::1"})
logger = logging.getLogger("lpft.api")


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


class RequestGuard:
    """ASGI middleware: authentication and body limits, before the app sees the request.

    The caller's tenant and the request id are left in ``scope["state"]`` for the routes.
    """

    def __init__(
        self, app: ASGIApp, keys: Keys, limits: Limits, public_paths: frozenset[str] = PUBLIC_PATHS
    ) -> None:
        self.app = app
        self.keys = keys
        self.limits = limits
        self.public_paths = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        request_id = logs.request_id_from(_header(scope, b"x-request-id"))
        logs.request_id.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        reply = _Reply(send, request_id)
        try:
            await self._guard(scope, receive, reply)
        finally:
            ms = round(1000 * (time.monotonic() - started), 1)
            method, path, status = scope["method"], scope["path"], reply.status
            logger.info(
                "%s %s %d",
                method,
                path,
                status,
                extra={"method": method, "path": path, "status": status, "duration_ms": ms},
            )

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        tenant = self._tenant(scope)
        logs.tenant.set(tenant)
        if tenant is None and path not in self.public_paths and not _in_public_tree(path):
            await _refuse(scope, receive, send, *self._unauthorized(scope))
            return
        scope.setdefault("state", {})["tenant"] = tenant
        limit = self.limits.for_scope(scope)
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(scope, receive, send, limit)
            return
        try:
            await self.app(scope, _CountingReceive(receive, limit), send)
        except BodyTooLarge:
            await _too_large(scope, receive, send, limit)  # raised outside the routes

    def _tenant(self, scope: Scope) -> str | None:
        if not self.keys:
            client = scope.get("client") or ("", 0)
            return OPEN_TENANT if client[0] in _LOOPBACK else None
        scheme, _, key = (_header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return self.keys.tenant(key.strip())

    def _unauthorized(self, scope: Scope) -> tuple[int, str, str, str, str]:
        if not self.keys:
            detail = "this server runs without API keys (open mode) for loopback clients only"
        elif _header(scope, b"authorization"):
            detail = "unknown API key"
        else:
            detail = "send an API key as 'Authorization: Bearer <key>'"
        return 401, "Unauthorized", detail, "unauthorized", "Authorization"


class _Reply:
    """``send`` that puts ``X-Request-ID`` on the answer and remembers its status (500 until
    one is sent: an exception escaping the app is answered so, outside this middleware)."""

    def __init__(self, send: Send, request_id: str) -> None:
        self.send = send
        self.request_id = request_id
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            MutableHeaders(scope=message).setdefault("X-Request-ID", self.request_id)
        await self.send(message)


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


def _in_public_tree(path: str) -> bool:
    return any(path == tree or path.startswith(tree + "/") for tree in PUBLIC_TREES)


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
