"""The series read from Redis at scrape time: jobs, job durations, queues and workers.

They describe the whole service, not this process: any API replica serves the same numbers.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import redis
from lpft_contract import job_stats
from lpft_contract.tasks import Queue, broker_lists
from lpft_contract.workers import WorkerBeat, read_beats
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.datastructures import State


class StoreCollector(Collector):
    """Reads the store's counters, the Celery queues and the workers' heartbeats."""

    def __init__(self, state: State, stale_after_s: float) -> None:
        self.state = state
        self.stale_after_s = stale_after_s

    def collect(self) -> Iterator[Metric]:
        stores = getattr(self.state, "stores", None)
        if stores is None:  # the lifespan has not opened the store (yet)
            return
        try:
            families = [
                _jobs(stores.redis),
                _durations(stores.redis),
                _queues(stores.redis),
                *_workers(read_beats(stores.redis), time.time(), self.stale_after_s),
            ]
        except redis.RedisError:
            families = []
        yield GaugeMetricFamily(
            "lpft_redis_up", "whether the store answered this scrape", value=bool(families)
        )
        yield from families


def _jobs(client: redis.Redis) -> Metric:
    family = GaugeMetricFamily(
        "lpft_jobs", "jobs in the store by status and kind", labels=["status", "kind"]
    )
    for (status, kind), count in sorted(job_stats.status_counts(client).items()):
        family.add_metric([status, kind], count)
    return family


def _durations(client: redis.Redis) -> Metric:
    family = HistogramMetricFamily(
        "lpft_job_duration_seconds",
        "jobs that reached a terminal state, from their last start to that state",
        labels=["kind", "method", "status"],
    )
    for histogram in job_stats.duration_histograms(client):
        buckets = [(floatToGoString(bound), count) for bound, count in histogram.buckets]
        labels = [histogram.kind, histogram.method, histogram.status]
        family.add_metric(labels, buckets, histogram.sum)
    return family


def _queues(client: redis.Redis) -> Metric:
    family = GaugeMetricFamily(
        "lpft_queue_depth", "task messages waiting in a worker queue", labels=["queue"]
    )
    pipe = client.pipeline(transaction=False)
    for queue in Queue:
        for key in broker_lists(queue.value):
            pipe.llen(key)
    lengths = iter(pipe.execute())
    for queue in Queue:
        family.add_metric([queue.value], sum(next(lengths) for _ in broker_lists(queue.value)))
    return family


def _workers(beats: list[WorkerBeat], now: float, stale_after_s: float) -> list[Metric]:
    states: Counter[tuple[str, str]] = Counter()
    for queue in Queue:
        states[queue.value, "alive"] = states[queue.value, "stale"] = 0
    last_beat = GaugeMetricFamily(
        "lpft_worker_last_heartbeat_timestamp_seconds",
        "time of each worker's last heartbeat (Unix seconds)",
        labels=["worker"],
    )
    busy = GaugeMetricFamily(
        "lpft_worker_busy", "1 while the worker handles a job, else 0", labels=["worker"]
    )
    finished = CounterMetricFamily(
        "lpft_worker_jobs_finished",
        "jobs the worker brought to a terminal state since it started",
        labels=["worker"],
    )
    for beat in sorted(beats, key=lambda b: b.name):
        state = "alive" if beat.alive(now, stale_after_s) else "stale"
        for queue in beat.queues:
            states[queue, state] += 1
        last_beat.add_metric([beat.name], beat.beat_at)
        busy.add_metric([beat.name], int(beat.current_job is not None))
        finished.add_metric([beat.name], beat.jobs_finished)
    workers = GaugeMetricFamily(
        "lpft_workers",
        "workers by queue: alive, or stale (no heartbeat for LPFT_WORKER_STALE_SECONDS)",
        labels=["queue", "state"],
    )
    for (queue, state), count in sorted(states.items()):
        workers.add_metric([queue, state], count)
    return [workers, last_beat, busy, finished]
