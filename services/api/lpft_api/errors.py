"""Errors as RFC 9457 ``application/problem+json``, rendered in one place.

Routers raise ``ApiError`` subclasses or let lpft_core's ``LpftError`` through; the handlers
below turn both, request-validation errors and unknown routes into problem documents with a
stable ``code`` and, where a field is at fault, ``errors: [{field, message}]``. Every problem
carries the request's ``X-Request-ID``; a 5xx also an ``error_id``, the one its log records
carry, for the user to quote.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from lpft_contract import logs
from lpft_contract.objects import ObjectNotFound, ObjectStoreError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from lpft_core import ConfigError, DataError, JobKind, LpftError

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger("lpft.api")


class ApiError(Exception):
    """An error with an HTTP status, a stable code and a message that says what to do."""

    status = 400
    code = "bad_request"
    title = "Bad request"
    #: A 5xx's id, when its log record was written before the error was raised.
    error_id: str | None = None

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(ApiError):
    """The resource does not exist (or belongs to another tenant)."""

    status, code, title = 404, "not_found", "Not found"


class Conflict(ApiError):
    """The resource is in a state that does not allow the request."""

    status, code, title = 409, "conflict", "Conflict"


class QuotaExceeded(ApiError):
    """A per-tenant storage cap is reached; deleting something frees room."""

    status, code, title = 409, "quota_exceeded", "Quota exceeded"


class RetryLater(ApiError):
    """An error that passes by itself: ``retry_after`` seconds is when to try again, sent as
    the answer's ``Retry-After``."""

    def __init__(self, detail: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.retry_after = retry_after


class TooManyRequests(RetryLater):
    """A per-tenant cap is reached."""

    status, code, title = 429, "too_many_requests", "Too many requests"


class Unprocessable(ApiError):
    """Well-formed but invalid content."""

    status, code, title = 422, "invalid_request", "Unprocessable content"


class ClientClosedRequest(ApiError):
    """The client left before its answer was ready (nginx's 499); nobody reads it."""

    status, code, title = 499, "client_closed_request", "Client closed request"


class BuildFailed(ApiError):
    """An archive or export built off the request failed; its traceback was logged then,
    under ``error_id``."""

    status, code, title = 500, "build_failed", "Internal server error"

    def __init__(self, detail: str, *, error_id: str) -> None:
        super().__init__(detail)
        self.error_id = error_id


class QueueUnavailable(ApiError):
    """The broker did not take the job."""

    status, code, title = 503, "queue_unavailable", "Service unavailable"


class StudyDatabaseUnavailable(RetryLater):
    """The database of the sweeps' studies (LPFT_SWEEP_STORAGE_URL) did not answer."""

    status, code, title = 503, "study_database_unavailable", "Service unavailable"


class HubUnavailable(RetryLater):
    """The Hugging Face Hub did not answer a check that must precede the job."""

    status, code, title = 503, "hub_unavailable", "Service unavailable"


#: lpft_core errors that reach the API are the user's to fix.
CORE_STATUS = {DataError: 422, ConfigError: 422}


def problem(
    status: int,
    title: str,
    detail: str,
    code: str,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    error_id: str | None = None,
) -> JSONResponse:
    """A problem+json response, with the request's id as ``X-Request-ID``."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    if error_id:
        body["error_id"] = error_id
    request_id = logs.request_id.get()
    if request_id:
        headers = {**(headers or {}), "X-Request-ID": request_id}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that make every error a problem document."""
    handlers: list[tuple[type[Exception], Any]] = [
        (ApiError, _api_error),
        (LpftError, _core_error),
        (RequestValidationError, _validation_error),
        (redis.ConnectionError, _store_unavailable),
        (redis.TimeoutError, _store_unavailable),
        (ObjectNotFound, _object_missing),
        (ObjectStoreError, _artifact_store_unavailable),
        (Exception, _unexpected_error),
        (StarletteHTTPException, _http_error),
    ]
    for error, handler in handlers:
        app.add_exception_handler(error, handler)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    errors = [{"field": exc.field, "message": exc.detail}] if exc.field else None
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if isinstance(exc, RetryLater):
        headers = {"Retry-After": str(exc.retry_after)}
    error_id = None
    if exc.status >= 500:
        error_id = exc.error_id or logs.new_error_id()
        logger.warning("%s on %s: %s", exc.code, request.url.path, exc.detail)
    path = request.url.path
    return problem(exc.status, exc.title, exc.detail, exc.code, path, errors, headers, error_id)


async def _core_error(request: Request, exc: LpftError) -> JSONResponse:
    status = next((s for t, s in CORE_STATUS.items() if isinstance(exc, t)), 400)
    field = getattr(exc, "field", None)
    # A dataset's bad row: its line too, for a client to point at (the console does).
    line = getattr(exc, "line", None)
    at = {"line": line} if line is not None else {}
    errors = [{"field": field, "message": str(exc), **at}] if field else None
    return problem(status, type(exc).__name__, str(exc), exc.code, request.url.path, errors)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"field": _field(e), "message": e["msg"]} for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, "Invalid request", detail, "invalid_request", request.url.path, errors)


async def _object_missing(request: Request, exc: ObjectNotFound) -> JSONResponse:
    """A file the job store says exists is not in the artifact store (removed there by
    hand, or never published by an older release)."""
    logger.warning("missing from the artifact store on %s: %s", request.url.path, exc)
    detail = "the files asked for are not in the artifact store"
    return problem(404, "Not found", detail, "not_found", request.url.path)


async def _artifact_store_unavailable(request: Request, exc: ObjectStoreError) -> JSONResponse:
    """Unreachable past its retry budget, refusing this process's credentials, without its
    bucket, or serving damaged objects: the operator's to fix, the client's to retry."""
    logger.warning("artifact store unavailable on %s: %s", request.url.path, exc)
    detail = "the artifact store is unreachable; running jobs go on. Retry shortly"
    return _dependency_down(request, detail, "artifact_store_unavailable")


async def _store_unavailable(request: Request, exc: redis.RedisError) -> JSONResponse:
    logger.warning("Redis unavailable on %s: %s", request.url.path, exc)
    detail = "the job store is briefly unreachable; running jobs go on. Retry shortly"
    return _dependency_down(request, detail, "store_unavailable")


def _dependency_down(request: Request, detail: str, code: str) -> JSONResponse:
    """A 503 for a dependency that is down: the client retries after a few seconds."""
    return problem(
        503,
        "Service unavailable",
        detail,
        code,
        request.url.path,
        headers={"Retry-After": "5"},
        error_id=logs.new_error_id(),
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # This handler runs in Starlette's outermost middleware, outside the request gate, where
    # a middleware in between may have run the request in a task (and context) of its own.
    logs.request_id.set(getattr(request.state, "request_id", None))
    logs.tenant.set(getattr(request.state, "tenant", None))
    error_id = logs.new_error_id()
    logger.exception("unhandled error on %s", request.url.path)
    return problem(
        500,
        "Internal server error",
        f"an unexpected error occurred; the operator can find it in the API log under {error_id}",
        "internal",
        request.url.path,
        error_id=error_id,
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    path = request.url.path
    if isinstance(exc.__cause__, RecursionError):  # FastAPI's JSON parse ran out of stack
        detail = "the JSON body is nested too deeply; send flat objects"
        errors = [{"field": "body", "message": detail}]
        return problem(422, "Invalid request", detail, "invalid_request", path, errors)
    status = exc.status_code
    headers = dict(exc.headers or {})
    if status == 405:  # Starlette names only the first route of the path; name them all
        headers["Allow"] = ", ".join(_allowed_methods(request))
    if status == 413:
        headers["Connection"] = "close"
    if status == 400:  # a body FastAPI or the form parser could not read: invalid input
        detail = f"the request body could not be read: {exc.detail}"
        errors = [{"field": "body", "message": detail}]
        return problem(422, "Invalid request", detail, "invalid_request", path, errors)
    title, code = _HTTP_ERRORS.get(status, ("HTTP error", "http_error"))
    return problem(status, title, str(exc.detail), code, path, headers=headers or None)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at the request's path."""
    methods: set[str] = set()
    for route in _flat_routes(request.app.router.routes):
        if route.matches(request.scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def _flat_routes(routes: list[Any]) -> Iterator[Any]:
    """The routes of the app, those of included routers too (FastAPI wraps an included
    router in one route that holds its own)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flat_routes(included.routes)
        else:
            yield route


_HTTP_ERRORS = {
    404: ("Not found", "not_found"),
    405: ("Method not allowed", "method_not_allowed"),
    413: ("Payload too large", "payload_too_large"),
}


#: What pydantic puts in an error's location for the branch of a union it tried
#: (``constrained-float``, ``dict[literal['ft',...],constrained-float]``) or for a bad dict
#: key (``[key]``, after the key itself): not fields, so left out of the field's name.
_UNION_BRANCH = re.compile(r"^(constrained-[a-z]+|function-[a-z-]+\[.*\]|[a-z]+\[.*\]|\[key\])$")


def _field(error: dict[str, Any]) -> str:
    """The dotted request field an error is about. A job body is a union tagged by ``kind``:
    the tag pydantic puts in the location is the branch taken, not a field, so it is left
    out, as are the branches of other unions; an unknown ``kind`` is reported on ``kind``."""
    parts = [p for p in error["loc"] if p != "body" and not _UNION_BRANCH.match(str(p))]
    if parts and parts[0] in set(JobKind):
        parts = parts[1:]
    if error["type"] == "union_tag_invalid":
        parts.append("kind")
    # Positions as the request spells them: inputs[0].text, as the service's own checks do.
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


#: Answers any authenticated route can give, whatever it does.
COMMON_PROBLEMS = {
    "401": "no API key, or an unknown one",
    "413": "the body is over the limit",
    "422": "invalid input: the errors name the fields",
    "503": "the job store is briefly unreachable; retry after Retry-After seconds",
    "500": "an unexpected error: its error_id is what the operator finds in the log",
}


def describe_problems(document: dict[str, Any], public_paths: frozenset[str]) -> dict[str, Any]:
    """Make the OpenAPI document say what the handlers above send: every error as
    ``application/problem+json`` with the ``Problem`` schema, and the answers every
    authenticated route can give (the bearer scheme is declared by ``guard.BEARER``)."""
    problem_content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in document["paths"].items():
        if path in public_paths:
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if int(status) >= 400:
                    response["content"] = problem_content
            for status, description in COMMON_PROBLEMS.items():
                responses.setdefault(status, {"description": description})
                responses[status]["content"] = problem_content
    components = document.setdefault("components", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(unused, None)
    return document
