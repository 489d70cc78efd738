"""A job's event log, as pages or live, and the metrics it holds before the job is done."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from lpft_jobstore.records import JobRecord, JobStatus
from lpft_jobstore.store import Store

from lpft_api.errors import Unprocessable
from lpft_api.schemas import EventList, LiveMetrics
from lpft_core.model.artifacts import METRICS

#: Redis stream ids, the only cursors the event log accepts.
EVENT_ID = r"^\d{1,19}-\d{1,19}$"  # below 2**63: Redis refuses larger ids
#: Events read per call while streaming, and how long a call waits for the first one (ms).
STREAM_BATCH, STREAM_WAIT_MS = 200, 1000


async def page(job_id: str, after: str | None, limit: int, store: Store) -> EventList:
    """Up to ``limit`` events after ``after``; read off the event loop, since the log of a
    finished job may come from its file on the volume."""
    events, has_more = await asyncio.to_thread(store.events, job_id, after, limit)
    return EventList(data=events, last_id=events[-1]["id"] if events else after, has_more=has_more)


def resume_point(last_event_id: str | None, after: str | None) -> str | None:
    """Where a stream starts: after ``Last-Event-ID`` (a reconnecting EventSource sends it),
    else after ``after``, else at the beginning.

    Raises:
        Unprocessable: ``Last-Event-ID`` is not an event id (``after`` is checked by its
            query parameter).
    """
    start = last_event_id or after
    if start is not None and not re.fullmatch(EVENT_ID, start):
        raise Unprocessable(
            f"{start!r} is not an event id (like 1700000000000-0); resume from the id of "
            "the last event received",
            field="Last-Event-ID",
        )
    return start


async def stream(
    job_id: str, after: str | None, store: Store, disconnected: Callable[[], Awaitable[bool]]
) -> AsyncIterator[str]:
    """Server-Sent Events of the job's log from ``after`` on, until the job has finished and
    its last event was sent, or ``disconnected()``. A comment goes out whenever no event came
    for a while, so that proxies keep the connection open."""
    cursor = after
    while not await disconnected():
        events, _ = await asyncio.to_thread(
            store.events, job_id, cursor, STREAM_BATCH, STREAM_WAIT_MS
        )
        for event in events:
            cursor = event["id"]
            yield f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
        if not events:
            record = await asyncio.to_thread(store.get_job, job_id)
            if record is None or record.status.is_terminal:
                return
            yield ": keep-alive\n\n"


def metrics(job: JobRecord, store: Store) -> dict[str, Any] | LiveMetrics:
    """The full lpft_core metrics once the job succeeded; until then, what its event log
    holds: the stage, the per-step history and the per-epoch validation."""
    path = store.model_dir(job.id) / METRICS
    if job.status == JobStatus.SUCCEEDED and path.is_file():
        return json.loads(path.read_text())
    events, _ = store.events(job.id, after=None, limit=1_000_000)
    stages = [e["data"]["stage"] for e in events if e["type"] == "stage"]
    return LiveMetrics(
        status=job.status,
        kind=job.kind,
        method=job.method,
        stage=stages[-1] if stages else None,
        history=[e["data"] for e in events if e["type"] == "step"],
        epochs=[e["data"] for e in events if e["type"] == "epoch"],
    )
