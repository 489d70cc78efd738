"""The web console at ``/ui``: static pages and scripts shipped in this package, which call
the API from the browser like any other client (same origin, same keys).

A Starlette app mounted on the API rather than FastAPI routes: the console is no part of the
API's contract, so it stays out of the OpenAPI document and out of the API's query-parameter
check (its pages read their own, ``?status=`` and the like, in the browser). The files hold
no data, so they are served without a key; the API calls they make need one as usual.

Every answer carries a Content-Security-Policy that allows scripts, styles, images and
connections from this origin only (no inline script, no ``eval``, no framing), and
``nosniff``: a string that slipped into the page as HTML could still not run anything.

One inline stylesheet is allowed, by its hash: the job report's. The job page opens the
report (fetched with the caller's key) in a new tab from a ``blob:`` URL, and a ``blob:``
document keeps the policy of the page that made it, so the report's ``<style>`` would be
refused and the report shown unstyled. Its pictures are ``data:`` URLs, which ``img-src``
allows; it has no script, and none could run.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lpft_core import REPORT_STYLESHEET

STATIC = Path(__file__).resolve().parent.parent / "console" / "static"
PREFIX = "/ui"


#: The job report's inline stylesheet, the same in every report (see the module's doc), as
#: a CSP hash source.
REPORT_STYLE = (
    f"'sha256-{base64.b64encode(hashlib.sha256(REPORT_STYLESHEET.encode()).digest()).decode()}'"
)
HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'self'; script-src 'self'; style-src 'self' {REPORT_STYLE}; "
        "img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Pages are tiny and change with each release; the browser asks each time (304 when
    # unchanged, by the ETag StaticFiles and FileResponse send).
    "Cache-Control": "no-cache",
}


class SecurityHeaders:
    """ASGI middleware that puts ``HEADERS`` on every answer of the console, 404s included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _page(name: str) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of a page: the same HTML for every path it serves (its script reads the
    path, ``/ui/jobs/{id}``'s id)."""

    async def endpoint(request: Request) -> Response:
        return FileResponse(STATIC / name, media_type="text/html; charset=utf-8")

    return endpoint


async def _to_jobs(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=308, headers=HEADERS)


def console_app(keys_required: bool, max_upload_bytes: int) -> ASGIApp:
    """The console, to mount at ``PREFIX``: ``/`` the jobs, ``/jobs/{id}`` one job,
    ``/datasets`` the datasets (upload, preview, delete), ``/new`` a new job's form,
    ``/predict?job={id}`` predictions of a job's model, ``/compare?jobs=a,b`` runs side by side,
    ``/assets/...`` the scripts, styles and vendored libraries they load, and
    ``/config.json``, whether this server wants a key (so that a page asks for one before
    its first call instead of after a 401) and the most bytes an upload may have (so that
    /ui/datasets refuses a file over it before sending it: the API answers such a body with
    a 413 before reading it and closes the connection, which a browser reports as a
    dropped connection, not as the 413)."""
    config = {"keys_required": keys_required, "max_upload_bytes": max_upload_bytes}

    async def configuration(request: Request) -> Response:
        return JSONResponse(config)

    app = Starlette(
        routes=[
            Route("/", _page("jobs.html")),
            Route("/config.json", configuration),
            Route("/jobs/{job_id}", _page("job.html")),
            Route("/jobs", _to_jobs),
            Route("/datasets", _page("datasets.html")),
            Route("/new", _page("new.html")),
            Route("/predict", _page("predict.html")),
            Route("/compare", _page("compare.html")),
            Mount("/assets", StaticFiles(directory=STATIC / "assets")),
        ]
    )
    return SecurityHeaders(app)


def mount(app: Starlette, keys_required: bool, max_upload_bytes: int) -> None:
    """Serve the console at ``PREFIX`` (``/ui`` itself redirects to ``/ui/``)."""
    app.mount(PREFIX, console_app(keys_required, max_upload_bytes), name="console")
    app.add_route(PREFIX, _to_jobs, include_in_schema=False)
