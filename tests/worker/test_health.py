"""``python -m lpft_worker.health``, the worker container's health check, run as Docker runs
it against heartbeats written to the real Redis (this module's database). Each test's worker
consumes a queue of its own, so no other worker on this host answers for it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from lpft_contract.workers import WorkerBeat, remove_worker, write_beat

from tests.redis_fixtures import RedisDatabase


@pytest.fixture
def queue(redis_db: RedisDatabase) -> Iterator[str]:
    name = f"q-{uuid.uuid4().hex[:8]}"
    yield name
    remove_worker(redis_db.client(), f"{name}@test")


def beat(database: RedisDatabase, queue: str, age_s: float) -> None:
    now = time.time()
    record = WorkerBeat(
        name=f"{queue}@test",
        queues=[queue],
        pid=1,
        hostname=socket.gethostname(),
        started_at=now - age_s,
        beat_at=now - age_s,
    )
    write_beat(database.client(), record)


def health(database: RedisDatabase, queue: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LPFT_REDIS_URL": database.url,
        "LPFT_WORKER_QUEUE": queue,
        "LPFT_WORKER_STALE_SECONDS": "30",
    }
    command = [sys.executable, "-m", "lpft_worker.health"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_health_passes_with_a_fresh_heartbeat(queue: str, redis_db: RedisDatabase) -> None:
    beat(redis_db, queue, age_s=0)
    result = health(redis_db, queue)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok:")


def test_health_fails_with_a_stale_heartbeat(queue: str, redis_db: RedisDatabase) -> None:
    beat(redis_db, queue, age_s=120)
    result = health(redis_db, queue)
    assert result.returncode == 1
    reason = rf"unhealthy: {queue}@test's last heartbeat was 1\d\d s ago \(limit 30 s\)\n"
    assert re.fullmatch(reason, result.stdout), result.stdout


def test_health_fails_without_a_heartbeat_for_its_queue(
    queue: str, redis_db: RedisDatabase
) -> None:
    result = health(redis_db, queue)
    assert result.returncode == 1
    expected = f"unhealthy: no heartbeat from a worker on host {socket.gethostname()} for queue"
    assert result.stdout.startswith(expected)
