"""The worker's heartbeat thread against the real Redis: it beats on its own while the
worker's thread is busy (as when a job trains), carries the job in hand, and a worker that
stops is forgotten."""

from __future__ import annotations

import os
import socket
import time
import uuid

import redis
from lpft_contract.workers import WorkerBeat, read_beats
from lpft_worker.heartbeat import Heartbeat

from tests.redis_fixtures import RedisDatabase

DEADLINE_S = 30  # only reached when the thread does not beat at all


def latest(client: redis.Redis, name: str) -> WorkerBeat | None:
    return next((beat for beat in read_beats(client) if beat.name == name), None)


def test_the_heartbeat_beats_while_the_worker_thread_is_busy(redis_db: RedisDatabase) -> None:
    client = redis_db.client()
    name, now = f"w-{uuid.uuid4().hex[:8]}@test", time.time()
    record = WorkerBeat(
        name=name,
        queues=["cpu"],
        pid=os.getpid(),
        hostname=socket.gethostname(),
        started_at=now,
        beat_at=now,
    )
    heartbeat = Heartbeat(client, record, interval_s=0.05)
    heartbeat.start()
    try:
        first = latest(client, name)
        assert first is not None  # written before start returns
        deadline = time.monotonic() + DEADLINE_S
        # This thread only reads, as a worker's thread only watches its training child.
        while (seen := latest(client, name)) is None or seen.beat_at == first.beat_at:
            assert time.monotonic() < deadline, "the heartbeat thread wrote no second beat"
            time.sleep(0.01)
        heartbeat.job_started("job-abc")
        while (seen := latest(client, name)) is None or seen.current_job != "job-abc":
            assert time.monotonic() < deadline, f"the beat never named the job: {seen}"
            time.sleep(0.01)
        heartbeat.job_ended(finished=True)
        while (seen := latest(client, name)) is None or seen.jobs_finished != 1:
            assert time.monotonic() < deadline, f"the beat never counted the job: {seen}"
            time.sleep(0.01)
        assert seen.current_job is None
    finally:
        heartbeat.stop()
    assert latest(client, name) is None
