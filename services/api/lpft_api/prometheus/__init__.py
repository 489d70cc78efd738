"""``GET /metrics``: the service in Prometheus' text format.

Series, all read at scrape time unless said otherwise:

- ``http_request_duration_seconds{method, route, status}`` (histogram, this API process):
  ``route`` is the route's template (``/jobs/{job_id}``), or ``unrouted`` for a request
  answered before routing (refused by the guard, or a path no route has), so ids never
  become label values; request counts are its ``_count``.
- ``lpft_predict_latency_seconds`` (histogram, this process): a served ``/predict`` request,
  from its checks to its predictions. ``lpft_predict_batch_size`` (histogram, this process):
  inputs per forward pass. ``lpft_model_cache_models``: models loaded in this process.
- ``lpft_jobs{status, kind}``: jobs in the store, from its status index (``job_stats``).
- ``lpft_job_duration_seconds{kind, method, status}`` (histogram): from a job's last start to
  its terminal state, recorded by whichever process (worker or API) wrote that state.
- ``lpft_queue_depth{queue}``: task messages waiting in a Celery queue (``cpu``, ``gpu``).
- ``lpft_workers{queue, state}``: workers by queue, ``alive`` or ``stale`` (no heartbeat for
  ``LPFT_WORKER_STALE_SECONDS``); ``lpft_worker_last_heartbeat_timestamp_seconds{worker}``,
  ``lpft_worker_busy{worker}`` (1 while it handles a job) and
  ``lpft_worker_jobs_finished_total{worker}`` (jobs it brought to a terminal state since it
  started) per worker, from the workers' heartbeats (``lpft_contract.workers``).
- ``lpft_redis_up``: whether the store answered this scrape (0: the store's series are absent).
- ``process_*`` and ``python_info``: prometheus_client's own, for this process.

Importing this package loads neither torch nor the model code: a scrape reads counters,
Redis and the model cache's size.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from starlette.datastructures import State

from lpft_api.prometheus.http import HTTP_REQUEST_DURATION
from lpft_api.prometheus.serving import PREDICT_BATCH_SIZE, PREDICT_LATENCY, ModelCacheCollector
from lpft_api.prometheus.store import StoreCollector

__all__ = ["registry_for"]


def registry_for(state: State, stale_after_s: float) -> CollectorRegistry:
    """The registry one app serves: this process's series and the collectors that read the
    app's store and model cache (from ``state``, once the lifespan has opened them)."""
    disable_created_metrics()  # *_created gauges only restate the process's start
    registry = CollectorRegistry()
    for metric in (HTTP_REQUEST_DURATION, PREDICT_LATENCY, PREDICT_BATCH_SIZE):
        registry.register(metric)
    registry.register(ModelCacheCollector(state))
    registry.register(StoreCollector(state, stale_after_s))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
