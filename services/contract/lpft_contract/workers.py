"""Worker heartbeats: which Celery workers consume which queues, and whether they still beat.

Each worker writes its ``WorkerBeat`` every few seconds from a thread of its own
(``lpft_worker.heartbeat``), also while a job trains. The API reads them all for ``/metrics``;
a worker container's health check (``python -m lpft_worker.health``) reads those of its host.
Timestamps are the writer's wall clock, so hosts are assumed to keep time (NTP).

Redis holds one record per worker, which expires ``FORGET_AFTER_S`` after its last beat (a
worker gone that long is forgotten, not reported stale forever), and a sorted set of worker
names by last beat, so reading every worker takes two commands and no SCAN.
"""

from __future__ import annotations

import redis
from pydantic import BaseModel, Field

PREFIX = "lpft"
WORKERS = f"{PREFIX}:workers"
FORGET_AFTER_S = 86_400


class WorkerBeat(BaseModel):
    """One worker's latest heartbeat."""

    name: str = Field(description="Celery node name, e.g. cpu@host")
    queues: list[str]
    pid: int
    hostname: str
    started_at: float
    beat_at: float = Field(description="time of the last beat (Unix seconds)")
    current_job: str | None = Field(None, description="the job whose task the worker runs")
    jobs_finished: int = Field(0, description="jobs this worker brought to a terminal state")

    def alive(self, now: float, stale_after_s: float) -> bool:
        """Whether the worker beat within the last ``stale_after_s`` seconds."""
        return now - self.beat_at <= stale_after_s


def _record_key(name: str) -> str:
    return f"{PREFIX}:worker:{name}"


def write_beat(client: redis.Redis, beat: WorkerBeat) -> None:
    """Store ``beat`` as the worker's latest."""
    pipe = client.pipeline()
    pipe.set(_record_key(beat.name), beat.model_dump_json(), ex=FORGET_AFTER_S)
    pipe.zadd(WORKERS, {beat.name: beat.beat_at})
    pipe.execute()


def remove_worker(client: redis.Redis, name: str) -> None:
    """Forget a worker that shut down cleanly: it is gone, not stale."""
    pipe = client.pipeline()
    pipe.delete(_record_key(name))
    pipe.zrem(WORKERS, name)
    pipe.execute()


def read_beats(client: redis.Redis) -> list[WorkerBeat]:
    """The latest beat of every worker not yet forgotten (expired names are dropped)."""
    names = client.zrange(WORKERS, 0, -1)
    if not names:
        return []
    raws = client.mget([_record_key(name) for name in names])
    expired = [name for name, raw in zip(names, raws, strict=True) if raw is None]
    if expired:
        client.zrem(WORKERS, *expired)
    return [WorkerBeat.model_validate_json(raw) for raw in raws if raw is not None]
