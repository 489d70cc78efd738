"""Structured logs across the real stack: the API's and the worker's lines are JSON with their
ids, and ``GET /jobs/{id}/logs`` gives a job's owner what its worker and training process
logged about it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    ApiServer,
    Worker,
    job_body,
    tenant_client,
    upload,
    wait_for,
)


@pytest.fixture(scope="module")
def api_log(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """An API server of this module's own, whose log the tests read."""
    log = tmp_path_factory.mktemp("job-logs") / "api.log"
    server = ApiServer(service_env, log)
    yield server.url, log
    server.stop()


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_job_log_holds_its_worker_and_training_records(
    api_log: tuple[str, Path],
    cpu_worker: Worker,
    toy_dataset_files: dict[str, Path],
    tiny_model_dir: Path,
) -> None:
    url, log = api_log
    with tenant_client(url, "alice") as alice, tenant_client(url, "bob") as bob:
        dataset = {split: upload(alice, path) for split, path in toy_dataset_files.items()}
        body = job_body(dataset, tiny_model_dir)
        created = alice.post("/jobs", json=body, headers={"X-Request-ID": "it-job-logs-1"})
        assert created.status_code == 202, created.text
        assert created.headers["X-Request-ID"] == "it-job-logs-1"
        job_id = created.json()["id"]
        wait_for(alice, job_id, {"succeeded"})

        answer = alice.get(f"/jobs/{job_id}/logs", params={"limit": 1000})
        assert answer.status_code == 200, answer.text
        records = answer.json()["data"]
        assert records and not answer.json()["has_more"]
        assert all(r["job_id"] == job_id and r["tenant"] == "alice" for r in records), records
        assert [r for r in records if r["level"] != "INFO"] == []
        messages = {(r["logger"], r["message"]) for r in records}
        # the training process's records and the worker's, the outcome its supervisor's
        assert any(n == "lpft.training" and "process started" in t for n, t in messages)
        assert ("lpft.worker", "job succeeded") in messages
        assert any(name == "lpft.worker" and "claimed" in text for name, text in messages)
        tail = alice.get(f"/jobs/{job_id}/logs", params={"limit": 1}).json()
        assert tail["data"] == records[-1:] and tail["has_more"]

        refused = bob.get(f"/jobs/{job_id}/logs")
        assert refused.status_code == 404
        assert refused.headers["content-type"] == "application/problem+json"
        assert alice.get(f"/jobs/{job_id}/logs", params={"limit": 1001}).status_code == 422

    api_records = json_lines(log)  # every line, uvicorn's own included, is a JSON object
    assert any(r["logger"].startswith("uvicorn") for r in api_records)
    [creation] = [r for r in api_records if r.get("request_id") == "it-job-logs-1"]
    assert (creation["tenant"], creation["status"]) == ("alice", 202)
    # The worker's log has the training process's lines too (stderr is shared); Celery's
    # start-up banner is the only text in it.
    worker_records = [
        json.loads(line) for line in cpu_worker.log.read_text().splitlines() if job_id in line
    ]
    assert {r["logger"] for r in worker_records} >= {"lpft.worker", "lpft.training"}
