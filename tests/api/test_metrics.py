"""``GET /metrics`` under TestClient: the text format, route templates as labels, the key
setting, and the series read from the store.

Unlike the rest of this directory, the store here is real (this module's Redis database, so
these are ``redis`` tier tests): the job and worker series are counters the store keeps in
Redis. Each test's jobs and workers carry a kind or a queue of its own, so its numbers are its
own whatever else that database holds.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from lpft_api.main import create_app
from lpft_api.model_cache import ModelCache
from lpft_api.settings import ApiSettings
from lpft_contract.records import JobRecord, JobStatus, new_id
from lpft_contract.stores import Stores
from lpft_contract.workers import WorkerBeat, remove_worker, write_beat
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_fixtures import RedisDatabase
from tests.test_imports import loaded_after

KEY = "key-alice"
AUTH = {"Authorization": f"Bearer {KEY}"}
SERIES = {
    "http_request_duration_seconds",
    "lpft_predict_latency_seconds",
    "lpft_predict_batch_size",
    "lpft_model_cache_models",
    "lpft_redis_up",
    "lpft_jobs",
    "lpft_job_duration_seconds",
    "lpft_queue_depth",
    "lpft_workers",
    "lpft_worker_last_heartbeat_timestamp_seconds",
    "lpft_worker_busy",
    "lpft_worker_jobs_finished",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def serving(settings: ApiSettings, stores: Stores) -> TestClient:
    """The app with the store and model cache its lifespan would open (not run here: its
    recovery loop would act on whatever else the database holds)."""
    app: FastAPI = create_app(settings)
    app.state.stores = stores
    app.state.models = ModelCache(1, 4, "cpu")
    return TestClient(app)


@pytest.fixture
def stores(tmp_path: Path, redis_db: RedisDatabase) -> Stores:
    return Stores.over(redis_db.client(), tmp_path)


@pytest.fixture
def client(stores: Stores) -> Iterator[TestClient]:
    client = serving(ApiSettings(api_keys=f"alice:{KEY}"), stores)
    yield client
    client.app.state.models.close()


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_is_prometheus_text_with_every_series(client: TestClient) -> None:
    response = client.get("/metrics")  # no key: public by default, as Prometheus expects
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert SERIES <= names, SERIES - names
    assert "# TYPE lpft_job_duration_seconds histogram" in response.text
    samples = parse(response.text)
    assert value(samples, "lpft_redis_up") == 1
    assert value(samples, "lpft_queue_depth", queue="gpu") is not None
    assert value(samples, "lpft_model_cache_models") == 0


def test_a_request_is_observed_under_its_route_template(client: TestClient) -> None:
    job_id = new_id("job")
    assert client.get(f"/jobs/{job_id}", headers=AUTH).status_code == 404
    assert client.get(f"/jobs/{job_id}").status_code == 401  # refused before routing
    response = client.get("/metrics")
    samples = parse(response.text)
    counted = {"method": "GET", "route": "/jobs/{job_id}", "status": "404"}
    assert value(samples, "http_request_duration_seconds_count", **counted) >= 1
    refused = {"method": "GET", "route": "unrouted", "status": "401"}
    assert value(samples, "http_request_duration_seconds_count", **refused) >= 1
    assert job_id not in response.text  # ids never become label values


def test_metrics_asks_for_a_key_unless_public(stores: Stores) -> None:
    client = serving(ApiSettings(api_keys=f"alice:{KEY}", metrics_public=False), stores)
    try:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=AUTH).status_code == 200
    finally:
        client.app.state.models.close()


def job(kind: str) -> JobRecord:
    return JobRecord(
        id=new_id("job"),
        tenant="alice",
        kind=kind,
        method="lp_ft",
        model=None,
        dataset={"train": "ds-x"},
        hyperparameters={},
        queue="cpu",
        spec={},
    )


def test_job_counts_and_durations_follow_the_store(client: TestClient, stores: Stores) -> None:
    kind = f"kind-{uuid.uuid4().hex[:8]}"
    first, second = stores.jobs.create_job(job(kind)), stores.jobs.create_job(job(kind))
    samples = scrape(client)
    assert value(samples, "lpft_jobs", status="queued", kind=kind) == 2
    assert value(samples, "lpft_jobs", status="succeeded", kind=kind) == 0

    assert stores.jobs.claim(first.id, "w", lease_s=30) is not None
    stores.jobs.finish(first.id, JobStatus.SUCCEEDED, worker="w")
    stores.jobs.finish(second.id, JobStatus.CANCELLED)  # never started: no duration
    samples = scrape(client)
    assert value(samples, "lpft_jobs", status="queued", kind=kind) == 0
    assert value(samples, "lpft_jobs", status="running", kind=kind) == 0
    assert value(samples, "lpft_jobs", status="succeeded", kind=kind) == 1
    assert value(samples, "lpft_jobs", status="cancelled", kind=kind) == 1
    durations = {"kind": kind, "method": "lp_ft", "status": "succeeded"}
    assert value(samples, "lpft_job_duration_seconds_count", **durations) == 1
    assert value(samples, "lpft_job_duration_seconds_bucket", le="1.0", **durations) == 1
    cancelled = {**durations, "status": "cancelled"}
    assert value(samples, "lpft_job_duration_seconds_count", **cancelled) is None

    stores.jobs.delete_job(stores.jobs.get_job(first.id))
    assert value(scrape(client), "lpft_jobs", status="succeeded", kind=kind) == 0


def test_workers_are_alive_or_stale_by_their_last_heartbeat(
    client: TestClient, stores: Stores
) -> None:
    queue, now = f"q-{uuid.uuid4().hex[:8]}", time.time()
    beats = [
        WorkerBeat(
            name=f"{queue}-{age}@test",
            queues=[queue],
            pid=1,
            hostname=socket.gethostname(),
            started_at=now - 3600,
            beat_at=now - age,
            current_job="job-1" if age == 0 else None,
            jobs_finished=7,
        )
        for age in (0, 3600)
    ]
    for beat in beats:
        write_beat(stores.redis, beat)
    try:
        samples = scrape(client)
    finally:
        for beat in beats:
            remove_worker(stores.redis, beat.name)
    assert value(samples, "lpft_workers", queue=queue, state="alive") == 1
    assert value(samples, "lpft_workers", queue=queue, state="stale") == 1
    fresh, stale = (beat.name for beat in beats)
    assert value(samples, "lpft_worker_last_heartbeat_timestamp_seconds", worker=fresh) == now
    assert value(samples, "lpft_worker_busy", worker=fresh) == 1
    assert value(samples, "lpft_worker_busy", worker=stale) == 0
    assert value(samples, "lpft_worker_jobs_finished_total", worker=fresh) == 7


def test_a_scrape_loads_no_torch(redis_db: RedisDatabase) -> None:
    code = (
        "import redis\n"
        "from prometheus_client import generate_latest\n"
        "from starlette.datastructures import State\n"
        "from lpft_api.prometheus import registry_for\n"
        "from lpft_contract.stores import Stores\n"
        "state = State()\n"
        f"client = redis.Redis.from_url({redis_db.url!r}, decode_responses=True)\n"
        "state.stores = Stores.over(client, '.')\n"
        "assert b'lpft_redis_up 1.0' in generate_latest(registry_for(state, 30.0))"
    )
    assert "torch" not in loaded_after(code)


def test_a_store_from_before_the_status_index_is_backfilled(
    client: TestClient, stores: Stores
) -> None:
    kind = f"kind-{uuid.uuid4().hex[:8]}"
    record = stores.jobs.create_job(job(kind))
    # what a store written before the index looks like: the record, but no status set
    stores.redis.srem(f"lpft:jobs-by-status:queued:{kind}", record.id)
    assert value(scrape(client), "lpft_jobs", status="queued", kind=kind) == 0
    stores.jobs.rebuild_indexes()  # what recovery runs when the current index marker is missing
    assert value(scrape(client), "lpft_jobs", status="queued", kind=kind) == 1
    assert stores.jobs.get_job(record.id) == record  # the Redis record itself is left alone
