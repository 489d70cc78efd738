"""The caller's feed of job changes, for a jobs list kept live.

At ``/events/jobs``, not under ``/jobs``: ``/jobs/{job_id}`` owns every segment after
``/jobs/`` (a route ``/jobs/events`` would shadow a job id ``events`` or be shadowed by it,
depending on route order), and the feed is about the tenant's jobs as a collection, not one
job; ``/events/<collection>`` leaves room for other collections' feeds.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from lpft_api.deps import EventReadDep, SettingsDep, StoresDep, TenantDep
from lpft_api.schemas import Problem
from lpft_api.services import job_changes
from lpft_api.services.job_changes import JobChangeList

router = APIRouter(prefix="/events", tags=["jobs"])

SSE_DESCRIPTION = (
    "JSON page, or with `Accept: text/event-stream` an SSE stream: first `ready` (data "
    "`{type, resumed, missed}`), then `created`, `status` and `deleted` events whose data is "
    "a JobChange and whose id resumes the stream; a `: keep-alive` comment every "
    "LPFT_EVENT_STREAM_KEEPALIVE_SECONDS"
)


@router.get(
    "/jobs",
    response_model=JobChangeList,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": SSE_DESCRIPTION,
        },
        429: {"model": Problem},
    },
)
async def get_job_changes(
    request: Request,
    read: EventReadDep,
    stores: StoresDep,
    tenant: TenantDep,
    settings: SettingsDep,
) -> Any:
    """Changes of the caller's jobs, and only theirs: a job created, its status changed, a
    job deleted. As JSON pages, oldest first, after ``after`` (``missed: true`` when changes
    after it may be gone, trimmed or lost by Redis: re-read ``GET /jobs``). Live, as
    Server-Sent Events when the client sends ``Accept: text/event-stream``: from now, or
    after ``Last-Event-ID`` (or ``after``) when resuming; the first event, ``ready``, says
    whether changes were missed. The server ends a stream after 5 minutes, or when Redis
    goes away, and the client resumes with ``Last-Event-ID``. Live streams count against
    ``LPFT_MAX_EVENT_STREAMS_PER_TENANT`` with jobs' event streams (429 above)."""
    if not read.live:
        return await job_changes.page(tenant, read.after, read.limit, stores)
    return await job_changes.live(tenant, read.after, stores, settings, request.is_disconnected)
