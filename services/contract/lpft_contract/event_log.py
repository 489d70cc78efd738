"""Each job's event log: a Redis stream while the job runs, copied to the volume when it
finishes, so a finished job's log outlives the stream's retention and a Redis flush."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from lpft_contract.keys import key
from lpft_contract.paging import Page, entries_page, stream_order, stream_page
from lpft_contract.volume import Volume, safe_id

EVENTS_MAXLEN = 200_000
#: A finished job's whole log, in its directory in the store.
EVENTS_COPY = "events.jsonl"


class EventLog:
    """Append to and read jobs' event logs.

    Args:
        client: a Redis client created with ``decode_responses=True``.
        volume: the artifact volume, where finished jobs' logs are copied.
        retention_s: how long Redis keeps a finished job's stream after its copy is written.
    """

    def __init__(self, client: redis.Redis, volume: Volume, retention_s: int) -> None:
        self.redis = client
        self.volume = volume
        self.retention_s = retention_s

    @staticmethod
    def stream_key(job_id: str) -> str:
        """The job's stream, for a transaction of another store that drops it."""
        return key("job", job_id, "events")

    def append(self, job_id: str, kind: str, data: dict[str, Any]) -> str:
        """Append an event (``status``, ``stage``, ``step``, ``epoch``, ``message``,
        ``warning``) to the job's log and return its id."""
        payload = json.dumps({"type": kind, "created_at": time.time(), "data": data})
        return self.redis.xadd(
            self.stream_key(job_id), {"event": payload}, maxlen=EVENTS_MAXLEN, approximate=True
        )

    def read(
        self, job_id: str, after: str | None, limit: int, block_ms: int | None = None
    ) -> Page[dict[str, Any]]:
        """Up to ``limit`` events after the event id ``after``, in order.

        With ``block_ms`` the call waits that long for a first new event.
        """
        stream = self.stream_key(job_id)
        if not self.redis.exists(stream):
            return self._read_copy(job_id, after, limit)
        return stream_page(self.redis, stream, "event", after, limit, block_ms)

    def copy_to_volume(self, job_id: str) -> None:
        """Write the whole log next to the finished job's record; Redis keeps the stream
        only for ``retention_s`` after."""
        events = self.read(job_id, after=None, limit=EVENTS_MAXLEN).items
        self.volume.write_text(
            Volume.job_key(job_id, EVENTS_COPY),
            "".join(json.dumps(event) + "\n" for event in events),
        )
        self.redis.expire(self.stream_key(job_id), self.retention_s)

    def _read_copy(self, job_id: str, after: str | None, limit: int) -> Page[dict[str, Any]]:
        """The copy written when the job finished (its Redis stream may be gone)."""
        copy = (
            self.volume.read_text(Volume.job_key(job_id, EVENTS_COPY)) if safe_id(job_id) else None
        )
        if copy is None:
            return Page([], after, False)
        events = [json.loads(line) for line in copy.splitlines() if line]
        if after is not None:
            events = [e for e in events if stream_order(e["id"]) > stream_order(after)]
        return entries_page(events, after, limit)
