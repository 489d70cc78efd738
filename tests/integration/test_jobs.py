"""The job API end to end against a real server, real workers and a real Redis."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import SHARED_DATA
from tests.integration.conftest import (
    Worker,
    download_archive,
    job_body,
    upload,
    wait_for,
)


def sse_events(client: httpx.Client, job_id: str) -> list[dict]:
    events = []
    headers = {"Accept": "text/event-stream"}
    with client.stream("GET", f"/jobs/{job_id}/events", headers=headers, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def test_upload_submit_watch_metrics_predict_artifacts(
    alice: httpx.Client, cpu_worker: Worker, dataset: dict[str, str], tiny_model_dir: Path
) -> None:
    response = alice.post("/jobs", json=job_body(dataset, tiny_model_dir))
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["status"] == "queued" and job["queue"] == "cpu"
    assert job["hyperparameters"]["ece_bins"] == 15  # unset options get the defaults

    events = sse_events(alice, job["id"])
    statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    stages = [e["data"]["stage"] for e in events if e["type"] == "stage"]
    assert stages == ["load", "lp", "ft", "calibrate", "save"]
    assert sum(e["type"] == "step" for e in events) == 2 * 6
    assert sum(e["type"] == "epoch" for e in events) == 2

    page = alice.get(f"/jobs/{job['id']}/events", params={"limit": 5}).json()
    assert len(page["data"]) == 5 and page["has_more"]
    rest = alice.get(
        f"/jobs/{job['id']}/events", params={"after": page["last_id"], "limit": 1000}
    ).json()
    assert [e["id"] for e in page["data"] + rest["data"]] == [e["id"] for e in events]

    metrics = alice.get(f"/jobs/{job['id']}/metrics").json()
    assert metrics["method"] == "lp_ft" and len(metrics["history"]) == 12
    for side in ("uncalibrated", "calibrated"):
        assert set(metrics["test"][side]) == {
            "accuracy",
            "macro_f1",
            "mcc",
            "nll",
            "brier",
            "ece",
            "mce",
        }
    assert len(metrics["test"]["reliability"]["calibrated"]) == 15
    temperature = metrics["temperature"]
    assert abs(temperature - 1) > 1e-3

    inputs = [{"text": "the movie was good and great"}, {"text": "awful bad plot"}]
    calibrated = alice.post("/predict", json={"job_id": job["id"], "inputs": inputs}).json()
    raw = alice.post(
        "/predict", json={"job_id": job["id"], "inputs": inputs, "calibrated": False}
    ).json()
    assert calibrated["temperature"] == pytest.approx(temperature) and raw["temperature"] == 1.0
    assert calibrated["warnings"] == [w["code"] for w in metrics["warnings"]]
    for a, b in zip(calibrated["predictions"], raw["predictions"], strict=True):
        assert sum(a["probabilities"].values()) == pytest.approx(1.0)
        assert set(a["probabilities"]) == {"neg", "neu", "pos"}
        assert a["logits"] == b["logits"] and a["label"] == b["label"]
        assert a["probabilities"] != pytest.approx(b["probabilities"], abs=1e-6)
    sets = alice.post(
        "/predict",
        json={
            "job_id": job["id"],
            "inputs": inputs,
            "conformal": {"alpha": 0.2, "method": "lac"},
            "min_confidence": 1.0,
        },
    ).json()
    for p in sets["predictions"]:
        assert set(p["prediction_set"]) <= {"neg", "neu", "pos"}
        assert p["abstained"] and p["label"] is None
    assert {(r["method"], r["alpha"]) for r in metrics["conformal"]} == {
        (m, a) for m in ("lac", "aps", "aps_randomized") for a in (0.05, 0.1, 0.2)
    }

    names = download_archive(alice, f"/jobs/{job['id']}/artifacts").getnames()
    for name in (
        "model/config.json",
        "model/model.safetensors",
        "model/calibration.json",
        "model/metrics.json",
        "model/labels.json",
        "model/spec.json",
    ):
        assert name in names
    exported = download_archive(alice, f"/jobs/{job['id']}/export?format=hf").getnames()
    assert {"./README.md", "./labels.json", "./model.safetensors"} <= set(exported)
    assert alice.get(f"/jobs/{job['id']}/export", params={"format": "pt"}).status_code == 422

    listed = alice.get("/jobs", params={"status": "succeeded"}).json()
    assert job["id"] in [j["id"] for j in listed["data"]]


def test_predict_serves_mondrian_sets_and_names_a_label_with_too_few_rows(
    alice: httpx.Client,
    cpu_worker: Worker,
    dataset: dict[str, str],
    tiny_model_dir: Path,
    service_env: dict[str, str],
) -> None:
    job = alice.post("/jobs", json={**job_body(dataset, tiny_model_dir), "method": "lp"}).json()
    wait_for(alice, job["id"], {"succeeded"})
    inputs = [{"text": "the movie was good and great"}, {"text": "awful bad plot"}]

    def predict(conformal: dict) -> httpx.Response:
        body = {"job_id": job["id"], "inputs": inputs, "conformal": conformal}
        return alice.post("/predict", json=body)

    by_label = predict({"alpha": 0.2, "mondrian": True})
    assert by_label.status_code == 200, by_label.text
    for p in by_label.json()["predictions"]:
        assert set(p["prediction_set"]) <= {"neg", "neu", "pos"}
    unnamed, lac = predict({"alpha": 0.2}).json(), predict({"alpha": 0.2, "method": "lac"}).json()
    assert unnamed["predictions"] == lac["predictions"]  # lac is the default

    # The job calibrated on 10 validation rows a label; Mondrian sets at alpha 0.05 need 19.
    too_few = predict({"alpha": 0.05, "mondrian": True})
    assert too_few.status_code == 422, too_few.text
    problem = too_few.json()
    assert [e["field"] for e in problem["errors"]] == ["conformal.alpha"]
    assert "has 10 calibration rows" in problem["detail"] and "at least 19" in problem["detail"]
    assert any(f"label '{name}'" in problem["detail"] for name in ("neg", "neu", "pos"))

    metrics = alice.get(f"/jobs/{job['id']}/metrics").json()
    for row in metrics["conformal"]:
        assert set(row["class_coverage"]["calibration"]) == {"neg", "neu", "pos"}
    assert {r["alpha"] for r in metrics["conformal"] if r["mondrian"]} == {0.1, 0.2}

    # A model calibrated before Mondrian sets existed: marginal sets still, Mondrian ones 409.
    model = Path(service_env["LPFT_ARTIFACTS_DIR"]) / "jobs" / job["id"] / "model"
    record = json.loads((model / "calibration.json").read_text())
    del record["conformal"]["class_scores"]
    (model / "calibration.json").write_text(json.dumps(record))
    stale = predict({"alpha": 0.2, "mondrian": True})
    assert stale.status_code == 409 and "re-calibrate" in stale.json()["detail"], stale.text
    assert predict({"alpha": 0.2}).status_code == 200


def test_finished_job_survives_losing_its_redis_keys(
    alice: httpx.Client,
    cpu_worker: Worker,
    dataset: dict[str, str],
    tiny_model_dir: Path,
    service_env: dict[str, str],
) -> None:
    job = alice.post("/jobs", json=job_body(dataset, tiny_model_dir, epochs=1)).json()
    wait_for(alice, job["id"], {"succeeded"})
    client = redis.Redis.from_url(service_env["LPFT_REDIS_URL"])
    client.delete(f"lpft:job:{job['id']}", f"lpft:job:{job['id']}:events")
    assert alice.get(f"/jobs/{job['id']}").json()["status"] == "succeeded"
    assert "temperature" in alice.get(f"/jobs/{job['id']}/metrics").json()
    events = alice.get(f"/jobs/{job['id']}/events", params={"limit": 1000}).json()["data"]
    assert events[-1]["data"]["status"] == "succeeded"
    assert sse_events(alice, job["id"]) == events
    after = alice.get(f"/jobs/{job['id']}/events", params={"after": events[-3]["id"]}).json()
    assert after["data"] == events[-2:]
    response = alice.post("/predict", json={"job_id": job["id"], "inputs": [{"text": "good"}]})
    assert response.status_code == 200


def test_cancel_stops_a_running_job_within_seconds(
    alice: httpx.Client, cpu_worker: Worker, dataset: dict[str, str], tiny_model_dir: Path
) -> None:
    body = job_body(dataset, tiny_model_dir, epochs=100, batch_size=1)
    job = alice.post("/jobs", json=body).json()
    wait_for_steps(alice, job["id"], 20)
    requested = time.monotonic()
    response = alice.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 200 and response.json()["cancel_requested"]
    final = wait_for(alice, job["id"], {"cancelled", "failed", "succeeded"}, timeout=30)
    elapsed = time.monotonic() - requested
    assert final["status"] == "cancelled", final
    assert elapsed < 5, f"cancel took {elapsed:.1f} s"
    print(f"cancel: job left running {elapsed:.2f} s after the request")
    metrics = alice.get(f"/jobs/{job['id']}/metrics").json()
    assert metrics["partial"] and len(metrics["history"]) < 100 * 90
    assert alice.post(f"/jobs/{job['id']}/cancel").status_code == 409


def test_sigkill_of_the_worker_queues_the_job_again_at_once(
    alice: httpx.Client,
    api_url: str,
    service_env: dict[str, str],
    dataset: dict[str, str],
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    worker = Worker(service_env, "gpu", "doomed", tmp_path / "doomed.log")
    body = job_body(dataset, tiny_model_dir, epochs=100, batch_size=1, device="auto")
    job = alice.post("/jobs", json=body).json()
    assert job["queue"] == "gpu"
    wait_for_steps(alice, job["id"], 20)
    os.kill(worker.process.pid, signal.SIGKILL)
    # The orphaned training process notices, stops, and queues the job again (to resume
    # from its checkpoint on the next gpu worker; tests/integration/test_faults.py runs that).
    requeued = wait_for(alice, job["id"], {"queued"}, timeout=30)
    assert requeued["attempts"] == 1, requeued
    log = alice.get(f"/jobs/{job['id']}/events", params={"limit": 1000}).json()["data"]
    retry = [e["data"] for e in log if e["type"] == "status" and "retry" in e["data"]]
    assert retry == [{"status": "queued", "retry": 2, "reason": retry[0]["reason"]}], retry
    deadline = time.monotonic() + 10
    while runner_processes(job["id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not runner_processes(job["id"])
    assert alice.post(f"/jobs/{job['id']}/cancel").json()["status"] == "cancelled"


def test_two_workers_drain_one_queue_without_running_a_job_twice(
    alice: httpx.Client,
    service_env: dict[str, str],
    dataset: dict[str, str],
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    workers = [Worker(service_env, "gpu", f"w{i}", tmp_path / f"w{i}.log") for i in range(2)]
    try:
        ids = [
            alice.post(
                "/jobs", json=job_body(dataset, tiny_model_dir, epochs=3, device="auto")
            ).json()["id"]
            for _ in range(4)
        ]
        for job_id in ids:
            assert wait_for(alice, job_id, {"succeeded", "failed"})["status"] == "succeeded"
        ran_on = []
        for job_id in ids:
            events = alice.get(f"/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
            running = [
                e for e in events if e["type"] == "status" and e["data"]["status"] == "running"
            ]
            assert len(running) == 1
            ran_on.append(running[0]["data"]["worker"])
        assert len(set(ran_on)) == 2, ran_on
    finally:
        for worker in workers:
            worker.stop()


def test_idempotency_key_returns_the_same_job(
    alice: httpx.Client, cpu_worker: Worker, dataset: dict[str, str], tiny_model_dir: Path
) -> None:
    body = job_body(dataset, tiny_model_dir, epochs=1)
    headers = {"Idempotency-Key": f"retry-{time.time()}"}
    invalid = alice.post("/jobs", json={**body, "dataset": {"train": "ds-nope"}}, headers=headers)
    assert invalid.status_code == 422  # a rejected request does not use up the key
    first = alice.post("/jobs", json=body, headers=headers)
    again = alice.post("/jobs", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    changed = alice.post("/jobs", json={**body, "seed": 1}, headers=headers)
    assert changed.status_code == 422
    assert changed.json()["errors"][0]["field"] == "Idempotency-Key"
    other = alice.post("/jobs", json=body, headers={"Idempotency-Key": "another"})
    assert other.json()["id"] != first.json()["id"]


def test_tenants_see_only_their_own_resources(
    bob: httpx.Client, api_url: str, finished_job: dict, tiny_model_dir: Path
) -> None:
    job, dataset = finished_job, finished_job["dataset"]
    for path in (
        f"/jobs/{job['id']}",
        f"/jobs/{job['id']}/metrics",
        f"/jobs/{job['id']}/events",
        f"/datasets/{dataset['train']}",
    ):
        response = bob.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
    assert bob.post(f"/jobs/{job['id']}/cancel").status_code == 404
    predicted = bob.post("/predict", json={"job_id": job["id"], "inputs": [{"text": "x"}]})
    assert predicted.status_code == 404
    stolen = bob.post("/jobs", json=job_body(dataset, tiny_model_dir))
    assert stolen.status_code == 422 and stolen.json()["errors"][0]["field"] == "dataset.train"
    assert job["id"] not in [j["id"] for j in bob.get("/jobs").json()["data"]]
    assert httpx.get(f"{api_url}/jobs").status_code == 401
    wrong = httpx.get(f"{api_url}/jobs", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized"


@pytest.mark.slow  # the real offline model on 300 SST-2 rows: about 20 s on 2 cores
def test_default_model_on_real_data_end_to_end(
    alice: httpx.Client, cpu_worker: Worker, tmp_path: Path
) -> None:
    lines = (SHARED_DATA / "sst2" / "train.jsonl").read_text().splitlines(keepends=True)
    train = tmp_path / "sst2-train.jsonl"
    train.write_text("".join(lines[:300]))
    body = {
        "method": "lp_ft",
        "dataset": {"train": upload(alice, train)},
        "hyperparameters": {"epochs": 1, "max_length": 64, "device": "cpu"},
    }
    job = alice.post("/jobs", json=body).json()
    assert wait_for(alice, job["id"], {"succeeded", "failed"}, timeout=600)["status"] == (
        "succeeded"
    )
    metrics = alice.get(f"/jobs/{job['id']}/metrics").json()
    assert metrics["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert metrics["test"]["split"] == "held_out" and metrics["lp"]["C"] > 0
    result = alice.post(
        "/predict",
        json={
            "job_id": job["id"],
            "inputs": [{"text": "a moving, beautifully made film"}, {"text": "dull and lifeless"}],
        },
    ).json()
    assert [p["label"] for p in result["predictions"]] == ["positive", "negative"]


def wait_for_steps(client: httpx.Client, job_id: str, steps: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        history = client.get(f"/jobs/{job_id}/metrics").json().get("history", [])
        if len(history) >= steps:
            return
        assert time.monotonic() < deadline, "training never reached enough steps"
        time.sleep(0.1)


def runner_processes(job_id: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "lpft_worker.runner" in cmdline and job_id in cmdline:
                found.append(int(entry.name))
    return found
