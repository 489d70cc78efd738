"""The caller's feed of job changes (a job created, its status changed, deleted), as pages or
live: what a jobs list follows to stay current without re-reading itself.

A live feed holds one of the tenant's stream slots, as a job's event stream does (the cap
counts both), sends a comment every keep-alive interval, and ends after ``STREAM_MAX_S`` so
that a key revoked meanwhile stops being served: a client reconnects with ``Last-Event-ID``
and is authenticated again, missing nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

import redis
from lpft_contract.job_changes import JobChanges
from lpft_contract.records import JobStatus
from lpft_contract.stores import Stores
from pydantic import BaseModel, Field

from lpft_api.schemas import ListPage
from lpft_api.services.events import (
    STREAM_BATCH,
    STREAM_WAIT_MS,
    EventStream,
    blocking_read,
    leased_stream,
)
from lpft_api.settings import ApiSettings

logger = logging.getLogger("lpft.api")

#: How long one live feed runs before the server ends it (the client resumes at once).
STREAM_MAX_S = 300.0


class JobChange(BaseModel):
    """One change of one of the caller's jobs, as it was when it happened; ``GET
    /jobs/{job_id}`` has the job as it is now (404 once deleted)."""

    id: str = Field(description="the change's id: resume after it with ``after`` or Last-Event-ID")
    type: Literal["created", "status", "deleted"]
    job_id: str
    kind: str
    status: JobStatus = Field(description="the job's status after the change")
    previous_status: JobStatus | None = Field(description="the status it left (type status)")
    at: float = Field(description="when the change was made, Unix seconds")


class JobChangeList(ListPage[JobChange]):
    """A page of changes, oldest first. ``missed``: changes after ``after`` were dropped
    (each tenant's newest ~10,000 are kept), so re-read ``GET /jobs``."""

    missed: bool = False


async def page(tenant: str, after: str | None, limit: int, stores: Stores) -> JobChangeList:
    """Up to ``limit`` of the tenant's changes after ``after`` (from the oldest kept)."""
    return await asyncio.to_thread(_read_page, tenant, after, limit, JobChanges(stores.redis))


def _read_page(tenant: str, after: str | None, limit: int, changes: JobChanges) -> JobChangeList:
    missed = changes.position(tenant, after).missed
    found = changes.read(tenant, after, limit)
    data = [JobChange.model_validate(change) for change in found.items]
    return JobChangeList.of(found, data).model_copy(update={"missed": missed})


async def live(
    tenant: str,
    after: str | None,
    stores: Stores,
    settings: ApiSettings,
    disconnected: Callable[[], Awaitable[bool]],
) -> EventStream:
    """The tenant's live feed, in one of its stream slots (see ``leased_stream``)."""
    changes = JobChanges(stores.redis)
    return await leased_stream(
        tenant,
        stores,
        settings,
        "read GET /events/jobs as JSON pages",
        lambda renew: until_outage(stream(tenant, after, changes, disconnected, settings, renew)),
    )


async def until_outage(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """``events`` until Redis goes away: the stream then ends cleanly (not as a broken
    response), and the client, resuming with ``Last-Event-ID``, is either served again
    (told ``missed`` if Redis came back without the changes) or refused with a 503 it can
    fall back from."""
    try:
        async for event in events:
            yield event
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("Redis unavailable on a live feed of job changes, ending it: %s", exc)


def _event(kind: str, entry_id: str, data: dict[str, object]) -> str:
    return f"id: {entry_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"


async def stream(
    tenant: str,
    after: str | None,
    changes: JobChanges,
    disconnected: Callable[[], Awaitable[bool]],
    settings: ApiSettings,
    renew: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """Server-Sent Events: first ``ready``, with the id the feed goes on from (``after``, or
    the newest change for a fresh reader or one that missed changes, ``missed: true``: it
    must re-read its list), then each change as it happens, until ``disconnected()``, the
    slot is lost, or ``STREAM_MAX_S`` passed."""
    position = await asyncio.to_thread(changes.position, tenant, after)
    cursor = position.head if after is None or position.missed else after
    ready = {"type": "ready", "resumed": after is not None, "missed": position.missed}
    yield _event("ready", cursor, ready)
    keepalive_s = settings.event_stream_keepalive_seconds
    wait_ms = max(1, min(STREAM_WAIT_MS, int(keepalive_s * 1000)))
    started = written = time.monotonic()
    while time.monotonic() - started < STREAM_MAX_S and not await disconnected():
        if not await renew():
            return
        found = await blocking_read(changes.read, tenant, cursor, STREAM_BATCH, wait_ms)
        for change in found.items:
            cursor = change["id"]
            yield _event(change["type"], cursor, change)
            written = time.monotonic()
        if not found.items and time.monotonic() - written >= keepalive_s:
            yield ": keep-alive\n\n"
            written = time.monotonic()
