"""``/metrics`` on the real stack: a job run by the session's worker and two ``/predict`` calls
show up in the series, the worker beats, and its container's health check passes.

The session's API and worker serve other tests too, so every count is compared with a scrape
taken before this test's own work.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Worker, job_body, upload, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
DEADLINE_S = 30  # only reached when the worker never records the job in its heartbeat


def scrape(api_url: str) -> Samples:
    response = httpx.get(f"{api_url}/metrics", timeout=30)  # no key: public by default
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_show_jobs_predictions_and_a_live_worker(
    api_url: str,
    cpu_worker: Worker,
    alice: httpx.Client,
    toy_dataset_files: dict[str, Path],
    tiny_model_dir: Path,
    service_env: dict[str, str],
) -> None:
    worker = f"cpu-worker@{socket.gethostname()}"
    before = scrape(api_url)
    dataset = {split: upload(alice, path) for split, path in toy_dataset_files.items()}
    response = alice.post("/jobs", json=job_body(dataset, tiny_model_dir))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    wait_for(alice, job_id, {"succeeded"})
    for text in ("a good film", "an awful film"):
        answer = alice.post("/predict", json={"job_id": job_id, "inputs": [{"text": text}]})
        assert answer.status_code == 200, answer.text

    after = scrape(api_url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("lpft_jobs", status="succeeded", kind="finetune") >= 1
    finished = {"kind": "finetune", "method": "lp_ft", "status": "succeeded"}
    assert grew("lpft_job_duration_seconds_count", **finished) >= 1
    assert grew("lpft_predict_latency_seconds_count") >= 2
    assert grew("lpft_predict_batch_size_count") >= 2
    predicted = {"method": "POST", "route": "/predict", "status": "200"}
    assert grew("http_request_duration_seconds_count", **predicted) >= 2
    assert value(after, "lpft_model_cache_models") >= 1
    assert value(after, "lpft_redis_up") == 1
    assert value(after, "lpft_workers", queue="cpu", state="alive") >= 1
    last_beat = value(after, "lpft_worker_last_heartbeat_timestamp_seconds", worker=worker)
    beat_age = time.time() - last_beat
    assert beat_age < 30, f"{worker}'s last heartbeat is {beat_age:.0f} s old"

    # The worker counts the job once its task has returned, just after the outcome was stored.
    deadline = time.monotonic() + DEADLINE_S
    while grew("lpft_worker_jobs_finished_total", worker=worker) < 1:
        assert time.monotonic() < deadline, f"{worker} never counted job {job_id}"
        time.sleep(0.2)
        after = scrape(api_url)

    env = {**service_env, "LPFT_WORKER_QUEUE": "cpu"}
    command = [sys.executable, "-m", "lpft_worker.health"]
    health = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert health.returncode == 0, health.stdout + health.stderr
