"""Every 4xx path answers with problem+json naming the field and the fix."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import job_body, upload

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["code"]
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


@pytest.fixture
def datasets(alice: httpx.Client, toy_dataset_files: dict[str, Path]) -> dict[str, str]:
    return {split: upload(alice, path) for split, path in toy_dataset_files.items()}


def test_dataset_upload_errors(alice: httpx.Client, tmp_path: Path) -> None:
    bad = b'{"text": "fine", "label": "a"}\n{"text": "", "label": "b"}\n'
    body = assert_problem(alice.post("/datasets", files={"file": ("d.jsonl", bad)}), 422, "text")
    assert "d.jsonl, line 2" in body["detail"] and "text is empty" in body["detail"]
    body = assert_problem(alice.post("/datasets", files={"file": ("d.txt", b"x")}), 422)
    assert "unsupported file type" in body["detail"]
    assert_problem(alice.post("/datasets", files={"file": ("big.jsonl", b"x" * 300_000)}), 413)
    records = {"records": [{"text": "a", "label": "x"}, {"text": "b"}]}
    body = assert_problem(alice.post("/datasets", json=records), 422, "label")
    assert "line 2" in body["detail"]
    assert_problem(alice.post("/datasets", json={"records": []}), 422, "records")
    assert_problem(
        alice.post("/datasets", content=b"text", headers={"content-type": "text/plain"}),
        422,
        "content-type",
    )
    assert_problem(alice.post("/datasets", files={"other": ("d.jsonl", b"{}")}), 422, "file")
    assert_problem(alice.get("/datasets/ds-missing"), 404, "dataset_id")


def test_job_creation_errors(
    alice: httpx.Client, datasets: dict[str, str], tiny_model_dir: Path
) -> None:
    body = job_body(datasets, tiny_model_dir)
    assert_problem(alice.post("/jobs", json={**body, "method": "sgd"}), 422, "method")
    assert_problem(
        alice.post("/jobs", json={**body, "hyperparameters": {"epoch": 3}}),
        422,
        "hyperparameters.epoch",
    )
    assert_problem(
        alice.post("/jobs", json={**body, "hyperparameters": {"epochs": 0}}),
        422,
        "hyperparameters.epochs",
    )
    assert_problem(
        alice.post("/jobs", json={**body, "dataset": {"train": "ds-nope"}}), 422, "dataset.train"
    )
    assert_problem(
        alice.post("/jobs", json={**body, "hyperparameters": {"learning_rate": {"lp": 1e-3}}}),
        422,
        "hyperparameters.learning_rate.lp",
    )
    assert_problem(alice.post("/jobs", json={**body, "seed": 4, "seeds": [0, 1]}), 422, "seed")
    assert_problem(alice.post("/jobs", json={**body, "seeds": [1, 1]}), 422, "seeds")
    assert_problem(
        alice.post("/jobs", content=b"{not json", headers={"content-type": "application/json"}), 422
    )
    one_class = upload_records(alice, [{"text": f"t{i}", "label": "only"} for i in range(4)])
    body_one = {**body, "dataset": {"train": one_class}}
    detail = assert_problem(alice.post("/jobs", json=body_one), 422, "label")["detail"]
    assert "single class" in detail
    ints = upload_records(alice, [{"text": f"t{i}", "label": i % 2} for i in range(40)])
    strings = upload_records(alice, [{"text": f"v{i}", "label": str(i % 2)} for i in range(4)])
    typed = {**body, "dataset": {"train": ints, "validation": strings}}
    detail = assert_problem(alice.post("/jobs", json=typed), 422, "label")["detail"]
    assert "ints in train" in detail
    unseen = upload_records(alice, [{"text": "x", "label": "other"}])
    mixed = {**body, "dataset": {"train": datasets["train"], "validation": unseen}}
    assert (
        "does not occur in train"
        in assert_problem(alice.post("/jobs", json=mixed), 422, "label")["detail"]
    )


def test_job_state_errors(alice: httpx.Client, finished_job: dict) -> None:
    assert_problem(alice.get("/jobs/job-missing"), 404, "job_id")
    assert_problem(
        alice.post("/predict", json={"job_id": "job-missing", "inputs": [{"text": "x"}]}),
        404,
        "job_id",
    )
    # 409 before a job succeeds: test_artifacts_of_an_unfinished_job_conflict, on a job
    # that cannot finish while it asserts.
    job = finished_job
    assert_problem(alice.post(f"/jobs/{job['id']}/cancel"), 409)
    pair = alice.post(
        "/predict", json={"job_id": job["id"], "inputs": [{"text": "a", "text_pair": "b"}]}
    )
    assert_problem(pair, 422, "inputs[0].text_pair")
    assert_problem(alice.post("/predict", json={"job_id": job["id"], "inputs": []}), 422, "inputs")
    assert_problem(
        alice.post("/predict", json={"job_id": job["id"], "inputs": [{"text": " "}]}), 422
    )
    assert_problem(alice.get("/jobs", params={"limit": 0}), 422, "query.limit")
    assert_problem(alice.get("/no/such/route"), 404)


def test_artifacts_of_an_unfinished_job_conflict(
    alice: httpx.Client, datasets: dict[str, str], tiny_model_dir: Path
) -> None:
    # Sent to the gpu queue, which no session worker consumes: it stays queued.
    job = alice.post("/jobs", json=job_body(datasets, tiny_model_dir, device="cuda")).json()
    assert job["queue"] == "gpu" and job["status"] == "queued"
    assert_problem(alice.get(f"/jobs/{job['id']}/artifacts"), 409)
    assert_problem(
        alice.post("/predict", json={"job_id": job["id"], "inputs": [{"text": "x"}]}), 409
    )
    cancelled = alice.post(f"/jobs/{job['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"


def upload_records(client: httpx.Client, records: list[dict]) -> str:
    response = client.post("/datasets", json={"records": records})
    assert response.status_code == 201, response.text
    return response.json()["id"]
