"""Request durations by method, route template and status, as ASGI middleware."""

from __future__ import annotations

import time

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP requests by method, route template and status, from the first byte in to the last out",
    ["method", "route", "status"],
    registry=None,
)
#: The route of a request answered before routing: refused by the request guard (401, 413) or
#: with a path no route has (404). Its status tells which.
UNROUTED = "unrouted"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetrics:
    """Observes every HTTP request, refused ones included (added outside the request guard).

    The label is the route's template, never the raw path: a path with an id would make a
    series per job, and an unknown path one per scanner's guess.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before responding

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = getattr(scope.get("route"), "path", UNROUTED)  # set by the router
            HTTP_REQUEST_DURATION.labels(method, route, str(status)).observe(
                time.perf_counter() - started
            )
