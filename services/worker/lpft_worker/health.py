"""The worker container's health check: ``python -m lpft_worker.health``.

Exits 0 when a worker on this host (``socket.gethostname()``) consuming ``LPFT_WORKER_QUEUE``
(any queue when unset) has beaten within ``LPFT_WORKER_STALE_SECONDS``, and 1 otherwise; one
line says why either way. It only reads Redis, so it answers while a job trains, unlike
``celery inspect ping``, which the worker's busy main thread answers only between jobs.
"""

from __future__ import annotations

import socket
import sys
import time

import redis
from lpft_contract.stores import connect
from lpft_contract.workers import WorkerBeat, read_beats

from lpft_worker.settings import get_worker_settings


def verdict(beats: list[WorkerBeat], hostname: str, queue: str, stale_after_s: float) -> str | None:
    """Why this host's worker is unhealthy, or None when it is healthy."""
    mine = [b for b in beats if b.hostname == hostname and (not queue or queue in b.queues)]
    wanted = f"a worker on host {hostname}" + (f" for queue {queue!r}" if queue else "")
    if not mine:
        return f"no heartbeat from {wanted}"
    freshest = max(mine, key=lambda beat: beat.beat_at)
    age = time.time() - freshest.beat_at
    if age > stale_after_s:
        return f"{freshest.name}'s last heartbeat was {age:.0f} s ago (limit {stale_after_s:g} s)"
    return None


def main() -> int:
    """Print one line and return the exit status."""
    settings = get_worker_settings()
    try:
        beats = read_beats(connect(settings.redis_url))
    except redis.RedisError as exc:
        sys.stdout.write(f"unhealthy: Redis unreachable: {exc}\n")
        return 1
    hostname = socket.gethostname()
    reason = verdict(beats, hostname, settings.worker_queue, settings.worker_stale_seconds)
    sys.stdout.write(f"unhealthy: {reason}\n" if reason else f"ok: {hostname} beats\n")
    return 1 if reason else 0


if __name__ == "__main__":
    sys.exit(main())
