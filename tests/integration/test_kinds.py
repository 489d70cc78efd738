"""compare and analysis jobs, reports, plots and re-calibration over HTTP."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_HYPERPARAMETERS
from tests.integration.conftest import TERMINAL, Worker, job_body, upload, wait_for

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_multi_seed_job_reports_every_run_and_serves_the_first(
    alice: httpx.Client, cpu_worker: Worker, dataset: dict[str, str], tiny_model_dir: Path
) -> None:
    body = {
        **job_body(dataset, tiny_model_dir, learning_rate={"lp_ft": 2e-3}),
        "seeds": [3, 1],
    }
    del body["seed"]
    response = alice.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["hyperparameters"]["seed"] == 3 and job["hyperparameters"]["seeds"] == [3, 1]
    assert wait_for(alice, job["id"], {"succeeded", "failed"}, 300)["status"] == "succeeded"

    metrics = alice.get(f"/jobs/{job['id']}/metrics").json()
    assert [run["seed"] for run in metrics["runs"]] == [3, 1]
    accuracy = metrics["summary"]["test"]["calibrated"]["accuracy"]
    runs = [run["test"]["calibrated"]["accuracy"] for run in metrics["runs"]]
    assert accuracy["mean"] == pytest.approx(sum(runs) / 2)
    peak = max(step["learning_rate"] for step in metrics["history"])
    assert 1e-3 < peak <= 2e-3  # the map's rate, not lp_ft's default of 2e-5
    predict = alice.post("/predict", json={"job_id": job["id"], "inputs": [{"text": "good"}]})
    assert predict.status_code == 200, predict.text
    assert predict.json()["seed"] == 3 and predict.json()["seeds"] == [3, 1]
    assert (
        "mean ± std over seeds [3, 1]"
        in alice.get(f"/jobs/{job['id']}/report", params={"format": "md"}).text
    )


def test_compare_job_returns_tables_and_a_report(
    alice: httpx.Client, cpu_worker: Worker, dataset: dict[str, str], tiny_model_dir: Path
) -> None:
    body = {
        "kind": "compare",
        "methods": ["lp", "lp_ft", "lora"],
        "dataset": dataset,
        "eval_sets": {"shifted": dataset["validation"]},
        "model": str(tiny_model_dir),
        "hyperparameters": {**TINY_HYPERPARAMETERS, "device": "cpu"},
        "ntk_samples": 8,
    }
    response = alice.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "compare" and job["methods"] == ["lp", "lp_ft", "lora"]
    assert job["method"] is None and job["eval_sets"] == {"shifted": dataset["validation"]}
    assert wait_for(alice, job["id"], {"succeeded", "failed"}, 300)["status"] == "succeeded"

    metrics = alice.get(f"/jobs/{job['id']}/metrics").json()
    assert metrics["kind"] == "compare" and set(metrics["methods"]) == {"lp", "lp_ft", "lora"}
    accuracy = metrics["tables"]["Accuracy"]
    assert accuracy["header"][:3] == ["method", "test acc", "shifted acc"]
    assert "NTK at the start of FT" in metrics["tables"]
    assert metrics["methods"]["lp_ft"]["ntk"]["samples_train"] == 8

    report = alice.get(f"/jobs/{job['id']}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert report.text.count("data:image/png;base64,") >= 4
    markdown = alice.get(f"/jobs/{job['id']}/report", params={"format": "md"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    for name in ("comparison", "ntk-spectra", "lp_ft-reliability"):
        assert f"(plots/{name}.png)" in markdown.text
        plot = alice.get(f"/jobs/{job['id']}/plots/{name}.png")
        assert plot.status_code == 200 and plot.content.startswith(PNG)
    assert alice.get(f"/jobs/{job['id']}/plots/nothing.png").status_code == 404

    predict = alice.post("/predict", json={"job_id": job["id"], "inputs": [{"text": "good"}]})
    assert predict.status_code == 409 and "finetune" in predict.json()["detail"]


def all_events(client: httpx.Client, job_id: str, after: str | None = None) -> list[dict]:
    """The job's events after ``after`` (from the start without it), every page."""
    events: list[dict] = []
    while True:
        cursor = events[-1]["id"] if events else after
        params = {"limit": 1000, **({"after": cursor} if cursor else {})}
        page = client.get(f"/jobs/{job_id}/events", params=params).json()
        events += page["data"]
        if not page["has_more"]:
            return events


def test_a_compare_job_resumes_after_a_worker_sigkill_without_retraining_finished_methods(
    alice: httpx.Client,
    service_env: dict[str, str],
    dataset: dict[str, str],
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    # device auto: the gpu queue, which only the workers started here consume. Batches of one
    # make each method's training long enough (3 epochs of 90 steps) to be killed in.
    hyper = {**TINY_HYPERPARAMETERS, "epochs": 3, "batch_size": 1, "device": "auto"}
    body = {
        "kind": "compare",
        "methods": ["lp_ft", "ft"],
        "dataset": dataset,
        "model": str(tiny_model_dir),
        "hyperparameters": hyper,
        "ntk_samples": 0,
    }
    workers = [Worker(service_env, "gpu", "compare-1", tmp_path / "compare-1.log")]
    try:
        job = alice.post("/jobs", json=body).json()
        assert job["queue"] == "gpu", job
        deadline = time.monotonic() + 180
        # once the second method (ft) finished its first epoch; only new events are fetched
        seen = all_events(alice, job["id"])
        while not any(e["type"] == "epoch" and e["data"]["stage"] == "ft/ft" for e in seen):
            status = alice.get(f"/jobs/{job['id']}").json()["status"]
            assert status not in TERMINAL, f"the job ended {status} before it could be killed"
            assert time.monotonic() < deadline, "the second method never finished an epoch"
            time.sleep(0.1)
            seen += all_events(alice, job["id"], seen[-1]["id"] if seen else None)
        os.kill(workers[0].process.pid, signal.SIGKILL)
        workers[0].process.wait()
        workers.append(Worker(service_env, "gpu", "compare-2", tmp_path / "compare-2.log"))
        finished = wait_for(alice, job["id"], {"succeeded"}, timeout=300)
    finally:
        for worker in workers:
            worker.stop()

    assert finished["attempts"] == 2, finished
    log = all_events(alice, job["id"])
    started = [e["data"]["stage"] for e in log if e["type"] == "stage"]
    assert started.count("lp_ft/ft") == 1, started  # the first method trained once
    assert started.count("shared/lp") == 1, started  # and so did the probe it shared
    reused = [e["data"] for e in log if e["data"].get("already_finished")]
    assert [d["stage"] for d in reused] == ["shared/lp/resumed", "lp_ft/resumed"], reused
    resumed = [e["data"] for e in log if "resumed_from_epoch" in e["data"]]
    assert [d["stage"] for d in resumed] == ["ft/ft"], resumed  # from its own checkpoint
    assert resumed[0]["resumed_from_epoch"] >= 1, resumed
    metrics = alice.get(f"/jobs/{job['id']}/metrics").json()
    assert set(metrics["methods"]) == {"lp_ft", "ft"}
    assert [e["epoch"] for e in metrics["methods"]["ft"]["epochs"]] == [1, 2, 3]


def test_analysis_of_a_base_model_and_of_a_finished_job(
    alice: httpx.Client, finished_job: dict, tiny_model_dir: Path
) -> None:
    finetune, dataset = finished_job, finished_job["dataset"]
    hyper = {**TINY_HYPERPARAMETERS, "device": "cpu"}
    base = alice.post(
        "/jobs",
        json={
            "kind": "analysis",
            "dataset": dataset,
            "model": str(tiny_model_dir),
            "methods": ["ft", "lp_ft"],
            "ntk_samples": 6,
            "hyperparameters": hyper,
        },
    )
    assert base.status_code == 202, base.text
    assert wait_for(alice, base.json()["id"], {"succeeded", "failed"})["status"] == "succeeded"
    result = alice.get(f"/jobs/{base.json()['id']}/metrics").json()
    assert result["kind"] == "analysis" and set(result["ntk"]) == {"ft", "lp_ft"}
    assert set(result["feature_statistics"]) == {"test"} and result["feature_change"] == {}

    of_job = alice.post(
        "/jobs",
        json={
            "kind": "analysis",
            "source_job": finetune["id"],
            "analyses": ["features"],
            "hyperparameters": {"device": "cpu"},
        },
    )
    assert of_job.status_code == 202, of_job.text
    assert of_job.json()["dataset"] == dataset  # the source job's dataset
    assert wait_for(alice, of_job.json()["id"], {"succeeded", "failed"})["status"] == "succeeded"
    change = alice.get(f"/jobs/{of_job.json()['id']}/metrics").json()["feature_change"]
    trained = alice.get(f"/jobs/{finetune['id']}/metrics").json()["features"]["test"]
    assert change["test"]["difference"] == pytest.approx(trained["difference"], rel=1e-4)

    unfinished = alice.post("/jobs", json={"kind": "analysis", "source_job": of_job.json()["id"]})
    assert unfinished.status_code == 422
    assert unfinished.json()["errors"][0]["field"] == "source_job"


def test_recalibrate_changes_the_temperature_predict_uses(
    alice: httpx.Client,
    bob: httpx.Client,
    cpu_worker: Worker,
    dataset: dict[str, str],
    toy_dataset_files: dict[str, Path],
    tiny_model_dir: Path,
) -> None:
    job = alice.post("/jobs", json=job_body(dataset, tiny_model_dir)).json()
    assert wait_for(alice, job["id"], {"succeeded", "failed"})["status"] == "succeeded"
    inputs = {"job_id": job["id"], "inputs": [{"text": "a good and lovely story"}]}
    before = alice.post("/predict", json=inputs).json()

    response = alice.post(f"/jobs/{job['id']}/recalibrate", json={"dataset": dataset["test"]})
    assert response.status_code == 202, response.text
    recalibration = response.json()
    assert recalibration["kind"] == "recalibrate" and recalibration["source_job"] == job["id"]
    assert response.headers["location"] == f"/jobs/{recalibration['id']}"
    wait_for(alice, recalibration["id"], {"succeeded"})
    result = alice.get(f"/jobs/{recalibration['id']}/metrics").json()
    assert result["previous_temperature"] == pytest.approx(before["temperature"])
    assert result["fitted_on"] == dataset["test"] and result["rows"] == 30
    assert result["calibrated"]["nll"] <= result["previous"]["nll"] + 1e-9
    after = alice.post("/predict", json=inputs).json()
    assert after["temperature"] == pytest.approx(result["temperature"])

    missing = alice.post(f"/jobs/{job['id']}/recalibrate", json={"dataset": "ds-missing"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "dataset"
    # another tenant's dataset is as good as missing
    other = upload(bob, toy_dataset_files["test"])
    response = alice.post(f"/jobs/{job['id']}/recalibrate", json={"dataset": other})
    assert response.status_code == 422


def test_job_kind_options_are_validated(
    alice: httpx.Client, dataset: dict[str, str], tiny_model_dir: Path
) -> None:
    cases = [
        ({"kind": "compare", "dataset": dataset, "methods": ["lp", "lp"]}, "methods"),
        ({"kind": "compare", "dataset": dataset, "methods": ["sgd"]}, "methods"),
        ({"kind": "analysis"}, "dataset"),
        ({"kind": "analysis", "dataset": dataset, "methods": ["lp"]}, "methods"),
        ({"kind": "analysis", "dataset": dataset, "analyses": []}, "analyses"),
        ({"kind": "training", "dataset": dataset}, "kind"),
        (
            {**job_body(dataset, tiny_model_dir), "eval_sets": {"test": dataset["test"]}},
            "eval_sets",
        ),
        ({**job_body(dataset, tiny_model_dir), "eval_sets": {"ood": "ds-nope"}}, "eval_sets"),
    ]
    for body, field in cases:
        response = alice.post("/jobs", json=body)
        assert response.status_code == 422, (body, response.text)
        fields = [e["field"] for e in response.json().get("errors") or []]
        assert any(field in f for f in fields), (body, fields)
