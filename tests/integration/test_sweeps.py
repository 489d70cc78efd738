"""Sweep jobs over two real Celery worker processes: the trials of one sweep run on both at
once, the sweep ends with ``n_trials`` trials and the best one by its objective, and
``/predict`` on the sweep's id answers with that trial's calibrated model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Worker, job_body, wait_for


@pytest.fixture
def second_worker(
    service_env: dict[str, str], cpu_worker: Worker, tmp_path: Path
) -> Iterator[Worker]:
    """A second worker on the cpu queue beside the session's."""
    worker = Worker(service_env, "cpu", "sweep-worker", tmp_path / "sweep-worker.log")
    yield worker
    worker.stop()


def sweep_body(dataset: dict[str, str], model: Path, **options: object) -> dict:
    base = job_body(dataset, model, epochs=1)
    return {
        **base,
        "kind": "sweep",
        "search_space": {
            "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
            "head_norm_scale": {"type": "categorical", "choices": [0.5, 1.0, 2.0]},
        },
        "n_trials": 4,
        "parallelism": 2,
        "objective": {"metric": "validation.nll", "direction": "minimize"},
        "sampler": "random",
        "pruner": "none",
        **options,
    }


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
