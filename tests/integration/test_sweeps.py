"""Sweep jobs over two real Celery worker processes: the trials of one sweep run on both at
once, the sweep ends with ``n_trials`` trials and the best one by its objective, and
``/predict`` on the sweep's id answers with that trial's calibrated model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lpft_client import LpftClient

from tests.integration.conftest import KEYS, Worker, sweep_body, wait_for


@pytest.fixture
def second_worker(
    service_env: dict[str, str], cpu_worker: Worker, tmp_path: Path
) -> Iterator[Worker]:
    """A second worker on the cpu queue beside the session's."""
    worker = Worker(service_env, "cpu", "sweep-worker", tmp_path / "sweep-worker.log")
    yield worker
    worker.stop()


def test_a_sweep_runs_its_trials_on_both_workers_and_serves_the_best(
    alice: httpx.Client,
    cpu_worker: Worker,
    second_worker: Worker,
    dataset: dict[str, str],
    tiny_model_dir: Path,
) -> None:
    response = alice.post("/jobs", json=sweep_body(dataset, tiny_model_dir))
    assert response.status_code == 202, response.text
    sweep = response.json()
    assert sweep["kind"] == "sweep"
    assert wait_for(alice, sweep["id"], {"succeeded"}, timeout=400)["status"] == "succeeded"

    trials = alice.get(f"/jobs/{sweep['id']}/trials").json()["data"]
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    assert {t["state"] for t in trials} == {"complete"}, trials
    assert len({t["worker"] for t in trials}) == 2, "the trials ran on one worker only"
    first, second = sorted(trials, key=lambda t: t["started_at"])[:2]
    assert second["started_at"] < first["finished_at"], "the first two trials did not overlap"
    for trial in trials:
        assert list(trial["intermediate_values"]) == ["1"]  # one epoch, one value
        job = alice.get(f"/jobs/{trial['id']}").json()
        assert job["sweep"] == sweep["id"] and job["trial"] == trial["number"]
        metrics = alice.get(f"/jobs/{trial['id']}/metrics").json()
        # The objective is the validation NLL after temperature scaling.
        assert trial["value"] == metrics["validation"]["calibrated"]["nll"]

    best = min(trials, key=lambda t: t["value"])
    metrics = alice.get(f"/jobs/{sweep['id']}/metrics").json()
    assert metrics["n_trials"] == 4
    assert metrics["best_trial"] == {
        "number": best["number"],
        "params": best["params"],
        "value": best["value"],
    }
    assert metrics["best_metrics"]["validation"]["calibrated"]["nll"] == best["value"]

    inputs = [{"text": "a wonderful and lovely movie"}, {"text": "an awful, dreadful plot"}]
    served = alice.post("/predict", json={"job_id": sweep["id"], "inputs": inputs})
    direct = alice.post("/predict", json={"job_id": best["id"], "inputs": inputs})
    assert served.status_code == 200 and direct.status_code == 200, served.text + direct.text
    assert served.json()["predictions"] == direct.json()["predictions"]
    assert served.json()["temperature"] == metrics["best_metrics"]["temperature"]


def test_the_median_pruner_stops_a_trial_that_learns_nothing(
    alice: httpx.Client, cpu_worker: Worker, dataset: dict[str, str], tiny_model_dir: Path
) -> None:
    # One trial at a time, drawn by the random sampler seeded with 2: 3e-3 first, then 1e-7
    # (checked below). The median pruner compares a trial with the complete ones from its
    # first epoch on (one startup trial, no warm-up): after epoch 1 the first trial's
    # validation loss is about 0.05 and the second's, which hardly moved its weights, about
    # 0.35, so the second stops there.
    body = sweep_body(
        dataset,
        tiny_model_dir,
        search_space={"learning_rate": {"type": "categorical", "choices": [3e-3, 1e-7]}},
        n_trials=2,
        parallelism=1,
        pruner="median",
        seed=2,
    )
    body["hyperparameters"]["epochs"] = 3
    response = alice.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    sweep = wait_for(alice, response.json()["id"], {"succeeded"}, timeout=300)

    good, bad = alice.get(f"/jobs/{sweep['id']}/trials").json()["data"]
    assert (good["params"], bad["params"]) == ({"learning_rate": 3e-3}, {"learning_rate": 1e-7})
    assert good["state"] == "complete" and list(good["intermediate_values"]) == ["1", "2", "3"]
    assert bad["state"] == "pruned", bad
    assert list(bad["intermediate_values"]) == ["1"], "the pruned trial trained on"
    assert bad["intermediate_values"]["1"] > good["intermediate_values"]["1"]
    assert bad["value"] is None and bad["error"]["code"] == "pruned"
    job = alice.get(f"/jobs/{bad['id']}").json()
    assert job["status"] == "cancelled" and job["error"]["code"] == "pruned", job
    epochs = [
        e
        for e in alice.get(f"/jobs/{bad['id']}/events", params={"limit": 1000}).json()["data"]
        if e["type"] == "epoch"
    ]
    assert len(epochs) == 1, epochs

    metrics = alice.get(f"/jobs/{sweep['id']}/metrics").json()
    assert metrics["n_trials"] == 2
    assert [t["state"] for t in metrics["trials"]] == ["complete", "pruned"]
    assert metrics["best_trial"]["number"] == good["number"]


def test_a_head_norm_sweep_reports_lists_and_recalibrates_its_best_trial(
    api_url: str,
    alice: httpx.Client,
    cpu_worker: Worker,
    dataset: dict[str, str],
    tiny_model_dir: Path,
) -> None:
    body = sweep_body(dataset, tiny_model_dir, search_space="head_norm", n_trials=2)
    body.update(parallelism=1, sampler="grid")
    response = alice.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    sweep = wait_for(alice, response.json()["id"], {"succeeded"}, timeout=300)

    # The paper's analysis, per complete trial: Diff(F) beside accuracy and ECE on test.
    trials = alice.get(f"/jobs/{sweep['id']}/trials").json()["data"]
    assert len({t["params"]["head_norm_scale"] for t in trials}) == 2, trials
    for trial in trials:
        metrics = alice.get(f"/jobs/{trial['id']}/metrics").json()
        figures = trial["head_norm"]
        assert figures["split"] == metrics["test"]["split"] == "test", figures
        assert figures["feature_change"] == metrics["features"]["test"]["difference"] > 0
        assert figures["accuracy"] == metrics["test"]["calibrated"]["accuracy"]
        assert figures["ece_calibrated"] == metrics["test"]["calibrated"]["ece"]
        assert figures["ece_uncalibrated"] == metrics["test"]["uncalibrated"]["ece"]
        assert figures["head_norm"] == metrics["head_norm"]["final"]

    # The report and the study's pictures, served like any job's.
    report = alice.get(f"/jobs/{sweep['id']}/report")
    assert report.status_code == 200 and "text/html" in report.headers["content-type"]
    for name in ("optimization-history", "parallel-coordinates"):
        plot = alice.get(f"/jobs/{sweep['id']}/plots/{name}.png")
        assert plot.status_code == 200 and plot.content[:8] == b"\x89PNG\r\n\x1a\n", name

    # One job in the list; its trials only when asked for, highest number first.
    listed = [j["id"] for j in alice.get("/jobs", params={"limit": 100}).json()["data"]]
    assert sweep["id"] in listed and not {t["id"] for t in trials} & set(listed)
    own = alice.get("/jobs", params={"sweep": sweep["id"]}).json()["data"]
    assert [j["id"] for j in own] == [t["id"] for t in reversed(trials)]

    # A re-calibration of the sweep fits a new temperature for its best trial's model, which
    # /predict with the sweep's id then uses.
    best = alice.get(f"/jobs/{sweep['id']}/metrics").json()["best_trial"]
    best_id = next(t["id"] for t in trials if t["number"] == best["number"])
    response = alice.post(f"/jobs/{sweep['id']}/recalibrate", json={"dataset": dataset["test"]})
    assert response.status_code == 202, response.text
    recalibration = response.json()
    assert recalibration["source_job"] == best_id
    wait_for(alice, recalibration["id"], {"succeeded"})
    fitted = alice.get(f"/jobs/{recalibration['id']}/metrics").json()["temperature"]
    inputs = {"job_id": sweep["id"], "inputs": [{"text": "a good and lovely story"}]}
    assert alice.post("/predict", json=inputs).json()["temperature"] == pytest.approx(fitted)

    # The Python client reads the same.
    with LpftClient(api_url, KEYS["alice"]) as client:
        page = client.jobs.trials(sweep["id"], limit=1)
        assert page.has_more and page.data[0].model_dump(mode="json") == trials[0]
        assert client.jobs.trials(sweep["id"], after=0).data[0].number == 1
        own_jobs = list(client.jobs.list(sweep=sweep["id"]))
        assert [(j.id, j.sweep, j.trial) for j in own_jobs] == [
            (t["id"], sweep["id"], t["number"]) for t in reversed(trials)
        ]

    assert alice.delete(f"/jobs/{sweep['id']}").status_code == 204
    assert all(alice.get(f"/jobs/{t['id']}").status_code == 404 for t in trials)
