"""The stores, one per resource, over one Redis client and one artifact store: jobs,
datasets, event logs and quotas. Redis holds live state; what must outlive it (finished
jobs' records, metrics and logs, uploaded datasets) is also written to the artifact store."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from lpft_contract.dataset_store import DatasetStore
from lpft_contract.event_log import EventLog
from lpft_contract.job_store import JobStore
from lpft_contract.local_copies import LocalCopies
from lpft_contract.objects import LocalObjectStore, ObjectStore, object_store_from_url
from lpft_contract.quotas import Quotas
from lpft_contract.settings import SharedSettings
from lpft_contract.volume import Volume

DEFAULT_EVENT_RETENTION_S = 7 * 86_400


@dataclass(frozen=True)
class Stores:
    """The service's persistent state, by resource."""

    redis: redis.Redis
    volume: Volume
    jobs: JobStore
    datasets: DatasetStore
    events: EventLog
    quotas: Quotas
    copies: LocalCopies

    @classmethod
    def over(
        cls,
        client: redis.Redis,
        artifacts_dir: Path | str,
        event_retention_s: int = DEFAULT_EVENT_RETENTION_S,
        *,
        objects: ObjectStore | None = None,
        jobs: type[JobStore] = JobStore,
    ) -> Stores:
        """The stores on ``client`` (created with ``decode_responses=True``) and the artifact
        store ``objects`` with its local copy at ``artifacts_dir`` (without ``objects``, that
        directory is the store); ``jobs`` is the job store's class (a test's subclass that
        pauses it)."""
        root = Path(artifacts_dir).absolute()  # the training process works inside it
        volume = Volume.local(root) if objects is None else Volume(root, objects)
        events = EventLog(client, volume, event_retention_s)
        quotas = Quotas(client, volume)
        datasets = DatasetStore(client, volume)
        job_store = jobs(client, volume, events, quotas, datasets)
        return cls(client, volume, job_store, datasets, events, quotas, LocalCopies(volume))


def connect(url: str, *, patient: bool = False) -> redis.Redis:
    """A Redis client for the stores (string responses, short connect timeout).

    Connection errors are retried with exponential back-off: briefly, with short timeouts,
    for the API and for the calls a worker makes while training runs (a request should fail
    fast, and a blocked call must not delay a worker's fencing); for about two minutes with
    ``patient`` (recording outcomes, which must ride out a Redis restart).
    """
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=5 if patient else 2,
        socket_timeout=30 if patient else 5,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=4.0, base=0.1), 40 if patient else 2),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def stores_from(settings: SharedSettings, *, patient: bool = False) -> Stores:
    """The stores the settings describe (see ``connect`` for ``patient``)."""
    objects = artifact_store(artifacts_location(settings), settings.store_retry_seconds)
    root = objects.root if isinstance(objects, LocalObjectStore) else settings.local_cache
    return Stores.over(
        connect(settings.redis_url, patient=patient),
        root,
        settings.event_retention_seconds,
        objects=objects,
    )


def artifacts_location(settings: SharedSettings) -> str:
    """Where the settings put the artifact store: ``LPFT_ARTIFACTS_URL``, else the directory
    ``LPFT_ARTIFACTS_DIR``."""
    return settings.artifacts_url or str(settings.artifacts_dir)


@functools.cache
def artifact_store(location: str, retry_seconds: float) -> ObjectStore:
    """The artifact store at ``location``, one per process (an S3 client holds a pool of
    connections worth keeping)."""
    return object_store_from_url(location, retry_seconds=retry_seconds)
