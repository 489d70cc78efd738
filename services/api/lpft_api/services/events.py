"""A job's event log, as pages or live, and the metrics it holds before the job is done.

Live streams are counted per tenant (``StreamSlots``): each holds a slot in Redis, so every
API replica counts the same streams, and a slot lapses unless its stream renews it, so an API
process killed mid-stream leaks none.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis
from lpft_contract.keys import PREFIX
from lpft_contract.records import JobRecord, JobStatus
from lpft_contract.stores import Stores
from lpft_contract.volume import Volume
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from lpft_api.errors import TooManyRequests, Unprocessable
from lpft_api.schemas import Event, EventList, LiveMetrics
from lpft_api.settings import ApiSettings
from lpft_core import METRICS_FILE

#: Redis stream ids, the only cursors the event log accepts: ASCII digits (``\d`` would let
#: other scripts' digits through, which Redis refuses with an error).
EVENT_ID = r"^[0-9]{1,19}-[0-9]{1,19}$"
#: The threads of the streams' blocking reads (each waits up to ``STREAM_WAIT_MS``): open
#: streams must never queue the default executor's short calls (a /predict model fetch, a
#: page read) behind them. Streams are capped per tenant; past this many at once across
#: tenants, they wait for each other only.
STREAM_READERS = ThreadPoolExecutor(max_workers=256, thread_name_prefix="stream-read")
#: Events read per call while streaming, and how long a call waits for the first one (ms):
#: also how often a stream looks for its job's end and its client's departure.
STREAM_BATCH, STREAM_WAIT_MS = 200, 1000
#: A stream's slot lapses this many keep-alive intervals after its last renewal.
LEASE_INTERVALS = 3
#: Redis' clock, in ms, for every replica to agree on when a slot lapses.
_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
#: Keeps a slot for another lease, or takes it (a new one, or one that lapsed or that Redis
#: lost) if the tenant holds fewer than the cap once the lapsed ones are dropped: one script,
#: so concurrent requests never overshoot.
_TAKE = f"""{_NOW}
local lapses = redis.call('ZSCORE', KEYS[1], ARGV[2])
if (not lapses) or tonumber(lapses) <= now then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
_HELD = _NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')"


Read = TypeVar("Read")


async def blocking_read(read: Callable[..., Read], *args: Any) -> Read:
    """``read(*args)``, a stream read that may block for ``STREAM_WAIT_MS``, on the streams'
    own threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(STREAM_READERS, functools.partial(read, *args))


class StreamSlots:
    """The live event streams each tenant holds, at most ``cap`` at once across replicas.

    A slot is a member of the tenant's sorted set, scored by when it lapses; taking one drops
    the lapsed ones first, in the same script, so concurrent requests never overshoot.
    """

    def __init__(self, client: redis.Redis, cap: int, lease_s: float) -> None:
        self.cap = cap
        self.lease_ms = max(1, int(lease_s * 1000))
        self._take = client.register_script(_TAKE)
        self._held = client.register_script(_HELD)
        self._client = client

    @staticmethod
    def key(tenant: str) -> str:
        """The Redis key of the tenant's slots."""
        return f"{PREFIX}:event-streams:{tenant}"

    def acquire(self, tenant: str) -> str | None:
        """A new slot's id, or ``None`` when the tenant holds ``cap`` live slots."""
        slot = uuid.uuid4().hex
        return slot if self.renew(tenant, slot) else None

    def renew(self, tenant: str, slot: str) -> bool:
        """Keep the slot for another lease; False when it was lost and cannot be taken again
        under the cap. A slot is lost when it lapsed (its stream stalled on a client that
        stopped reading) or Redis lost it (a restart): an uncounted stream would let a
        tenant hold more than the cap."""
        return bool(self._take(keys=[self.key(tenant)], args=[self.lease_ms, slot, self.cap]))

    def release(self, tenant: str, slot: str) -> None:
        """Give the slot back."""
        self._client.zrem(self.key(tenant), slot)

    def held(self, tenant: str) -> int:
        """How many live slots the tenant holds."""
        return int(self._held(keys=[self.key(tenant)]))


def stream_slots(stores: Stores, settings: ApiSettings) -> StreamSlots:
    """The slots of ``settings``' cap, leased for a few keep-alive intervals."""
    lease_s = LEASE_INTERVALS * settings.event_stream_keepalive_seconds
    return StreamSlots(stores.redis, settings.max_event_streams_per_tenant, lease_s)


class EventStream(StreamingResponse):
    """A Server-Sent Events response that gives its slot back however it ends: the job
    finished, the client left (Starlette stops the body when it reads the disconnect), the
    server shuts down."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Shielded: a cancelled request still releases; if Redis is down, the lease lapses.
            await asyncio.shield(asyncio.to_thread(self.release))


class SlotLease:
    """One of the tenant's stream slots, held by one live stream: renewed as the stream
    writes, given back when it ends."""

    def __init__(self, slots: StreamSlots, tenant: str, slot: str, renew_every_s: float) -> None:
        self.slots, self.tenant, self.slot = slots, tenant, slot
        self.renew_every_s = renew_every_s
        self.renewed = time.monotonic()

    async def renew(self) -> bool:
        """Keep the slot, at most once every ``renew_every_s``; False once it is lost."""
        if time.monotonic() - self.renewed < self.renew_every_s:
            return True
        self.renewed = time.monotonic()
        return await asyncio.to_thread(self.slots.renew, self.tenant, self.slot)

    def release(self) -> None:
        """Give the slot back; with Redis away, its lease lapses instead (a stream ended by
        an outage must not fail again as it closes)."""
        try:
            self.slots.release(self.tenant, self.slot)
        except (redis.ConnectionError, redis.TimeoutError):
            pass


async def leased_stream(
    tenant: str,
    stores: Stores,
    settings: ApiSettings,
    instead: str,
    content: Callable[[Callable[[], Awaitable[bool]]], AsyncIterator[str]],
) -> EventStream:
    """A live stream in one of the tenant's stream slots: ``content(renew)`` writes it,
    calling ``renew`` as it goes (it ends once that says the slot is lost); the slot is
    given back however the stream ends.

    Raises:
        TooManyRequests: the tenant holds ``max_event_streams_per_tenant`` streams already;
            its detail suggests ``instead``.
    """
    slots = stream_slots(stores, settings)
    slot = await asyncio.to_thread(slots.acquire, tenant)
    if slot is None:
        raise TooManyRequests(
            f"you have {slots.cap} live event streams open, the most allowed at once "
            f"(LPFT_MAX_EVENT_STREAMS_PER_TENANT); close one, or {instead}",
            retry_after=max(1, round(settings.event_stream_keepalive_seconds)),
        )
    lease = SlotLease(slots, tenant, slot, settings.event_stream_keepalive_seconds)
    return EventStream(content(lease.renew), lease.release)


async def live(
    job_id: str,
    after: str | None,
    tenant: str,
    stores: Stores,
    settings: ApiSettings,
    disconnected: Callable[[], Awaitable[bool]],
) -> EventStream:
    """The job's live event stream, in one of the tenant's stream slots (see
    ``leased_stream``)."""
    keepalive_s = settings.event_stream_keepalive_seconds
    return await leased_stream(
        tenant,
        stores,
        settings,
        "read GET /jobs/{id}/events as JSON pages",
        lambda renew: stream(job_id, after, stores, disconnected, keepalive_s, renew),
    )


async def page(job_id: str, after: str | None, limit: int, stores: Stores) -> EventList:
    """Up to ``limit`` events after ``after``; read off the event loop, since the log of a
    finished job may come from its file on the volume."""
    found = await asyncio.to_thread(stores.events.read, job_id, after, limit)
    return EventList.of(found, [Event.model_validate(event) for event in found.items])


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
    job_id: str,
    after: str | None,
    stores: Stores,
    disconnected: Callable[[], Awaitable[bool]],
    keepalive_s: float,
    renew: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """Server-Sent Events of the job's log from ``after`` on, until the job has finished and
    its last event was sent, or ``disconnected()`` (asked at least once a second, and every
    ``keepalive_s``). A comment goes out after ``keepalive_s`` without an event, so that
    proxies keep the connection open and a client that vanished without closing it fails the
    write. ``renew`` keeps the stream's slot while it runs; a stream whose slot is lost ends,
    and its client, reconnecting with ``Last-Event-ID``, is counted again."""
    cursor = after
    wait_ms = max(1, min(STREAM_WAIT_MS, int(keepalive_s * 1000)))
    written = time.monotonic()
    while not await disconnected():
        if not await renew():
            return
        found = await blocking_read(stores.events.read, job_id, cursor, STREAM_BATCH, wait_ms)
        events = found.items
        for event in events:
            cursor = event["id"]
            yield f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
            written = time.monotonic()
        if not events:
            record = await asyncio.to_thread(stores.jobs.get_job, job_id)
            if record is None or record.status.is_terminal:
                return
            if time.monotonic() - written >= keepalive_s:
                yield ": keep-alive\n\n"
                written = time.monotonic()


def metrics(job: JobRecord, stores: Stores) -> dict[str, Any] | LiveMetrics:
    """The full lpft_core metrics once the job succeeded; until then, what its event log
    holds: the stage, the per-step history and the per-epoch validation."""
    if job.status == JobStatus.SUCCEEDED:
        document = stores.volume.read_text(f"{Volume.model_key(job.id)}/{METRICS_FILE}")
        if document is not None:
            return json.loads(document)
    events = stores.events.read(job.id, after=None, limit=1_000_000).items
    stages = [e["data"]["stage"] for e in events if e["type"] == "stage"]
    return LiveMetrics(
        status=job.status,
        kind=job.kind,
        method=job.method,
        stage=stages[-1] if stages else None,
        history=[e["data"] for e in events if e["type"] == "step"],
        epochs=[e["data"] for e in events if e["type"] == "epoch"],
    )
