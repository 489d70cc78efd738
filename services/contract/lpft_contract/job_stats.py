"""Job counts by status and kind, and job durations, kept in Redis for ``/metrics``.

Both are written inside the store's own transactions (a job's status index moves with its
record; a duration is recorded with the terminal state), so a scrape reads a few set sizes
and one hash instead of every job record, and sees the same numbers whichever process wrote
them: jobs finish in the workers' processes, while the API serves the scrape.

- Status index: one set of job ids per ``(status, kind)``. Adding an id is idempotent, so a
  job indexed twice (a rebuild racing a transition after Redis lost its data) is counted once.
- Durations: a histogram per ``(kind, method, status)`` as per-bucket counters and a sum in
  one hash, the time from a job's (last) start to its terminal state. A job cancelled while
  still queued never ran and has no duration.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

import redis

from lpft_contract.records import JobRecord, JobStatus

PREFIX = "lpft"
#: Every job kind ever indexed, so a scrape knows which status sets to count.
KINDS = f"{PREFIX}:job-kinds"
DURATIONS = f"{PREFIX}:job-durations"
#: Upper bounds in seconds: a tiny job takes seconds, a real fine-tune hours.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
NO_METHOD = "none"


@dataclass(frozen=True)
class DurationHistogram:
    """Job durations of one ``(kind, method, status)``: cumulative ``(upper bound, count)``
    pairs ending with ``+inf``, as Prometheus wants them, and the sum in seconds."""

    kind: str
    method: str
    status: str
    buckets: list[tuple[float, int]]
    sum: float

    @property
    def count(self) -> int:
        return self.buckets[-1][1]


def _status_set(status: str, kind: str) -> str:
    return f"{PREFIX}:jobs-by-status:{status}:{kind}"


def index_status(pipe: redis.client.Pipeline, job_id: str, kind: str, status: JobStatus) -> None:
    """Queue the commands that put ``job_id`` in its status set (and out of the others)."""
    pipe.sadd(KINDS, kind)
    for other in JobStatus:
        if other != status:
            pipe.srem(_status_set(other.value, kind), job_id)
    pipe.sadd(_status_set(status.value, kind), job_id)


def unindex_status(pipe: redis.client.Pipeline, record: JobRecord) -> None:
    """Queue the command that stops counting a deleted job."""
    pipe.srem(_status_set(record.status.value, record.kind), record.id)


def record_duration(pipe: redis.client.Pipeline, record: JobRecord) -> None:
    """Queue the counters of a job that reached its terminal state (if it ever started)."""
    if record.started_at is None or record.finished_at is None:
        return
    seconds = max(0.0, record.finished_at - record.started_at)
    labels = f"{record.kind}|{record.method or NO_METHOD}|{record.status.value}"
    pipe.hincrby(DURATIONS, f"{labels}|{bisect_left(DURATION_BUCKETS, seconds)}", 1)
    pipe.hincrbyfloat(DURATIONS, f"{labels}|sum", seconds)


def status_counts(client: redis.Redis) -> dict[tuple[str, str], int]:
    """``(status, kind)`` → number of jobs in the store, every status of every known kind."""
    kinds = sorted(client.smembers(KINDS))
    pairs = [(status.value, kind) for kind in kinds for status in JobStatus]
    pipe = client.pipeline(transaction=False)
    for status, kind in pairs:
        pipe.scard(_status_set(status, kind))
    return dict(zip(pairs, pipe.execute(), strict=True))


def duration_histograms(client: redis.Redis) -> list[DurationHistogram]:
    """Every recorded job-duration histogram."""
    counts: dict[str, list[int]] = {}
    sums: dict[str, float] = {}
    for field, value in client.hgetall(DURATIONS).items():
        labels, _, slot = field.rpartition("|")
        if slot == "sum":
            sums[labels] = float(value)
        else:
            counts.setdefault(labels, [0] * (len(DURATION_BUCKETS) + 1))[int(slot)] += int(value)
    histograms = []
    for labels, per_bucket in sorted(counts.items()):
        kind, method, status = labels.split("|")
        bounds = [*map(float, DURATION_BUCKETS), float("inf")]
        cumulative, running = [], 0
        for bound, count in zip(bounds, per_bucket, strict=True):
            running += count
            cumulative.append((bound, running))
        histograms.append(DurationHistogram(kind, method, status, cumulative, sums.get(labels, 0)))
    return histograms
