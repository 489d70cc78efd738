"""``python -m lpft_worker.health``, the worker container's health check, run as Docker runs
it against heartbeats written to the real Redis. Each test's worker consumes a queue of its
own, so no other worker on this host (a test stack's) answers for it."""

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
import redis
from lpft_contract.workers import WorkerBeat, remove_worker, write_beat

from tests.integration.conftest import REDIS_DB


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"q-{uuid.uuid4().hex[:8]}"
    yield name
    remove_worker(redis.Redis(db=REDIS_DB, decode_responses=True), f"{name}@test")


def beat(queue: str, age_s: float) -> None:
    now = time.time()
    record = WorkerBeat(
        name=f"{queue}@test",
        queues=[queue],
        pid=1,
        hostname=socket.gethostname(),
        started_at=now - age_s,
        beat_at=now - age_s,
    )
    write_beat(redis.Redis(db=REDIS_DB, decode_responses=True), record)


def health(queue: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LPFT_REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "LPFT_WORKER_QUEUE": queue,
        "LPFT_WORKER_STALE_SECONDS": "30",
    }
    command = [sys.executable, "-m", "lpft_worker.health"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_health_passes_with_a_fresh_heartbeat(queue: str) -> None:
    beat(queue, age_s=0)
    result = health(queue)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok:")


def test_health_fails_with_a_stale_heartbeat(queue: str) -> None:
    beat(queue, age_s=120)
    result = health(queue)
    assert result.returncode == 1
    reason = rf"unhealthy: {queue}@test's last heartbeat was 1\d\d s ago \(limit 30 s\)\n"
    assert re.fullmatch(reason, result.stdout), result.stdout


def test_health_fails_without_a_heartbeat_for_its_queue(queue: str) -> None:
    result = health(queue)
    assert result.returncode == 1
    expected = f"unhealthy: no heartbeat from a worker on host {socket.gethostname()} for queue"
    assert result.stdout.startswith(expected)
