"""Jobs logged as MLflow runs on a real tracking server, started here on loopback (sqlite
backend, served artifacts), through a real API and Celery worker: a job's run holds its tags,
params, curves and exactly the metric values ``GET /jobs/{id}/metrics`` returns, plus its
files and the export as an MLflow model; a re-calibration updates the same run;
``register_as`` makes the calibrated model a version of the tenant's registered model,
which loads in a process where lpft cannot be imported and reproduces ``/predict`` (a
re-calibration: a new version at the new temperature); a comparison is a parent run with a
child per method, and with seeds a child per seed under each method's; a sweep is a parent
run with a child per trial, in every ending (one cancelled while still queued: a parent run
with no child); a server stopped mid-job leaves the job succeeded, with a warning naming
MLflow and the integration failed (last here, since it stops the module's server).

The refusals of the API (a tenant naming a server, the limits, mlflow where no server is
configured) are unit tests: tests/api/test_integrations.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tests.integration.conftest import (
    ApiServer,
    Worker,
    job_body,
    stack_env,
    sweep_body,
    tenant_client,
    upload,
    wait_for,
)
from tests.integration.mlflow_server import TrackingServer
from tests.redis_fixtures import PrivateRedis

#: The worker's budget for one job's logging; the stopped-server test waits it out.
TIMEOUT_S = 15
#: Inputs the registered model and /predict must agree on.
TEXTS = ["good and great fun", "awful and bad", "a river, a chair", "<b>not html</b>"]
#: Loads registered versions in a fresh interpreter (isolated: no PYTHONPATH) in which every
#: ``lpft`` package fails to import, as in a team's serving environment without lpft; prints
#: each version's predictions and its signature's input names as JSON.
LOAD_WITHOUT_LPFT = """
import importlib.abc, json, sys

class NoLpft(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0].startswith("lpft"):
            raise ImportError(f"{name}: lpft is not installed here")
        return None

sys.meta_path.insert(0, NoLpft())
import mlflow.pyfunc
import pandas as pd

uris, texts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {}
for uri in uris:
    model = mlflow.pyfunc.load_model(uri)
    predicted = model.predict(pd.DataFrame({"text": texts}))
    out[uri] = {
        "rows": predicted.to_dict(orient="records"),
        "inputs": model.metadata.get_input_schema().input_names(),
        "example": model.metadata.saved_input_example_info is not None,
        "lpft": sorted(m for m in sys.modules if m.startswith("lpft")),
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    server = TrackingServer(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def tracker_up(tracking_server: TrackingServer) -> None:
    """The module's server, started again if an earlier test stopped it (the stopped-server
    test, last here, unless a run reorders or selects the tests): a test after it would
    otherwise see its integration ``failed`` on a refused connection, not its own fault."""
    if not tracking_server.running:
        tracking_server.start()


@pytest.fixture(scope="module")
def tracked_stack(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model_dir: Path,
    redis_server: PrivateRedis,
    tracking_server: TrackingServer,
) -> Iterator[dict]:
    """An API and a cpu worker configured with the tracking server."""
    artifacts = tmp_path_factory.mktemp("tracked-artifacts")
    logs = tmp_path_factory.mktemp("tracked-logs")
    env = stack_env(redis_server.new_database(), artifacts, tiny_model_dir.parent)
    env |= {
        "LPFT_MLFLOW_TRACKING_URI": tracking_server.url,
        "LPFT_MLFLOW_TIMEOUT_SECONDS": str(TIMEOUT_S),
    }
    api = ApiServer(env, logs / "api.log")
    worker = Worker(env, "cpu", "tracked-worker", logs / "worker.log")
    yield {"url": api.url, "artifacts": artifacts}
    worker.stop()
    api.stop()


@pytest.fixture(scope="module")
def alice_data(tracked_stack: dict, toy_dataset_files: dict[str, Path]) -> dict[str, str]:
    with tenant_client(tracked_stack["url"], "alice") as alice:
        return {split: upload(alice, path) for split, path in toy_dataset_files.items()}


def submit(client: httpx.Client, body: dict) -> dict:
    """The job ``body`` created (its 202 answer)."""
    created = client.post("/jobs", json=body)
    assert created.status_code == 202, created.text
    return created.json()


def wait_tracked(
    client: httpx.Client, job_id: str, timeout: float = 300, status: str = "succeeded"
) -> dict:
    """The job once it reached ``status`` and its integrations are no longer pending: the
    trackers are written beside the job, after its final state. Stops at the first other
    terminal state (``wait_for``) and says which integration is still pending at the
    deadline."""
    job = wait_for(client, job_id, {status}, timeout=timeout)
    deadline = time.monotonic() + TIMEOUT_S + 120
    while any(i["status"] == "pending" for i in job["integrations"]):
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id}'s integrations still pending: {job}")
        time.sleep(0.2)
        job = client.get(f"/jobs/{job_id}").json()
    return job


def tracked_job(dataset: dict[str, str], model: Path, **mlflow_options: object) -> dict:
    return {
        **job_body(dataset, model),
        "integrations": [{"type": "mlflow", "mlflow": mlflow_options}],
    }


def tracked_comparison(dataset: dict[str, str], model: Path, **options: object) -> dict:
    """A tracked comparison of LP and LP-FT on the tiny model, without the NTK."""
    body = {
        **tracked_job(dataset, model),
        "kind": "compare",
        "methods": ["lp", "lp_ft"],
        "ntk_samples": 0,
        **options,
    }
    del body["method"]
    return body


def logged_run(stack: dict, server: TrackingServer, body: dict) -> tuple[dict, MlflowClient, Run]:
    """Alice's job ``body`` once logged: its ``GET /jobs/{id}/metrics``, a client of
    ``server`` and the job's run."""
    with tenant_client(stack["url"], "alice") as alice:
        job = wait_tracked(alice, submit(alice, body)["id"])
        metrics = alice.get(f"/jobs/{job['id']}/metrics").json()
    (integration,) = job["integrations"]
    assert integration["status"] == "logged", integration.get("error")
    client = MlflowClient(tracking_uri=server.url)
    return metrics, client, client.get_run(integration["run_id"])


def children_of(client: MlflowClient, parent: Run) -> list[Run]:
    """The runs whose MLflow parent tag names ``parent``."""
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )


def test_a_job_is_a_run_with_its_params_curves_and_the_apis_exact_metrics(
    tracked_stack: dict,
    tracking_server: TrackingServer,
    alice_data: dict[str, str],
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    body = tracked_job(
        alice_data, tiny_model_dir, experiment="sentiment", run_name="first", tags={"team": "nlp"}
    )
    with tenant_client(tracked_stack["url"], "alice") as alice:
        created = submit(alice, body)
        assert created["integrations"][0]["status"] == "pending"
        job = wait_tracked(alice, created["id"])
        metrics = alice.get(f"/jobs/{job['id']}/metrics").json()
    (integration,) = job["integrations"]
    assert integration["status"] == "logged", integration.get("error")
    assert integration["experiment"] == "lpft/alice/sentiment"
    client = MlflowClient(tracking_uri=tracking_server.url)
    run = client.get_run(integration["run_id"])
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "lpft/alice/sentiment"
    assert run.info.run_name == "first" and run.info.status == "FINISHED"

    tags = run.data.tags
    assert tags["lpft.job_id"] == job["id"] and tags["lpft.tenant"] == "alice"
    assert tags["lpft.kind"] == "finetune" and tags["lpft.version"] and tags["team"] == "nlp"

    params = run.data.params
    assert params["method"] == "lp_ft" and params["model"] == str(tiny_model_dir)
    assert params["epochs"] == "2" and params["learning_rate"] == "0.001"
    assert params["seed"] == "0" and params["pooling"] == "mean"
    stored = tracked_stack["artifacts"] / "datasets" / f"{alice_data['train']}.jsonl"
    assert params["dataset.train"] == alice_data["train"]
    assert params["dataset.train.sha256"] == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert params["dataset.test"] == alice_data["test"]

    # The final metrics are the API's values exactly, before and after temperature scaling.
    logged = run.data.metrics
    for stage in ("uncalibrated", "calibrated"):
        for name, value in metrics["test"][stage].items():
            assert logged[f"test.{stage}.{name}"] == value, (stage, name)
    assert logged["temperature"] == metrics["temperature"]
    assert logged["calibration.nll_after"] == metrics["calibration"]["nll_after"]
    assert logged["features.test.difference"] == metrics["features"]["test"]["difference"]
    assert logged["lp.C"] == metrics["lp"]["C"]

    # Curves: per step and per epoch, at their steps.
    def curve(key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))

    history = metrics["history"]
    assert len(history) > 2
    assert curve("step/loss") == [(h["step"], h["loss"]) for h in history]
    assert curve("step/learning_rate") == [(h["step"], h["learning_rate"]) for h in history]
    epochs = metrics["epochs"]
    assert curve("epoch/validation_loss") == [(e["epoch"], e["validation_loss"]) for e in epochs]

    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "report.html", "report.md", "plots", "model"} <= files, files
    # The export, as the MLflow model a team can load or register by hand.
    model_files = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/MLmodel", "model/requirements.txt"} <= model_files, model_files
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/reliability.png" in plots, plots
    local = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == metrics


def test_a_recalibration_updates_the_same_run(
    tracked_stack: dict,
    tracking_server: TrackingServer,
    alice_data: dict[str, str],
    tiny_model_dir: Path,
) -> None:
    with tenant_client(tracked_stack["url"], "alice") as alice:
        created = submit(alice, tracked_job(alice_data, tiny_model_dir))
        job = wait_tracked(alice, created["id"])
        refit_on = {"dataset": alice_data["test"]}
        response = alice.post(f"/jobs/{job['id']}/recalibrate", json=refit_on)
        assert response.status_code == 202, response.text
        recalibration = wait_tracked(alice, response.json()["id"])
        refit = alice.get(f"/jobs/{recalibration['id']}/metrics").json()
    run_id = job["integrations"][0]["run_id"]
    assert job["integrations"][0]["experiment"] == "lpft/alice/jobs"
    assert recalibration["integrations"][0]["status"] == "logged", recalibration["integrations"]
    assert recalibration["integrations"][0]["run_id"] == run_id
    client = MlflowClient(tracking_uri=tracking_server.url)
    history = client.get_metric_history(run_id, "temperature")
    temperatures = sorted((m.step, m.value) for m in history)
    assert [step for step, _ in temperatures] == [0, 1]
    assert temperatures[-1][1] == refit["temperature"]
    run = client.get_run(run_id)
    assert run.data.tags["lpft.recalibrated_by"] == recalibration["id"]


def predicted(client: httpx.Client, job_id: str) -> list[dict]:
    response = client.post(
        "/predict", json={"job_id": job_id, "inputs": [{"text": t} for t in TEXTS]}
    )
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_register_as_makes_versions_that_load_without_lpft_and_reproduce_predict(
    tracked_stack: dict,
    tracking_server: TrackingServer,
    alice_data: dict[str, str],
    tiny_model_dir: Path,
) -> None:
    body = tracked_job(alice_data, tiny_model_dir, register_as="sentiment")
    with tenant_client(tracked_stack["url"], "alice") as alice:
        job = wait_tracked(alice, submit(alice, body)["id"])
        served = predicted(alice, job["id"])
        response = alice.post(
            f"/jobs/{job['id']}/recalibrate", json={"dataset": alice_data["test"]}
        )
        assert response.status_code == 202, response.text
        recalibration = wait_tracked(alice, response.json()["id"])
        recalibrated = predicted(alice, job["id"])
    (integration,) = job["integrations"]
    assert integration["status"] == "logged", integration.get("error")
    name = integration["registered_model"]
    assert name == "lpft.alice.sentiment" and integration["model_version"] == "1"
    assert recalibration["integrations"][0]["model_version"] == "2"
    client = MlflowClient(tracking_uri=tracking_server.url)
    first, second = (client.get_model_version(name, v) for v in ("1", "2"))
    assert first.run_id == second.run_id == integration["run_id"]
    assert first.tags["lpft.job_id"] == job["id"]
    assert second.tags["lpft.job_id"] == recalibration["id"]

    uris = [f"models:/{name}/1", f"models:/{name}/2"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_server.url}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-I", "-c", LOAD_WITHOUT_LPFT, json.dumps(uris), json.dumps(TEXTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    for uri, api in zip(uris, [served, recalibrated], strict=True):
        version = loaded[uri]
        assert version["lpft"] == [] and version["inputs"] == ["text"] and version["example"]
        for row, prediction in zip(version["rows"], api, strict=True):
            assert row["label"] == prediction["label"]
            for label, probability in prediction["probabilities"].items():
                assert abs(row[label] - probability) < 1e-4, (uri, label, row, prediction)
    # The new temperature moved the probabilities; each version holds its own.
    assert served[0]["probabilities"] != recalibrated[0]["probabilities"]


def test_a_comparison_is_a_parent_run_with_a_child_per_method(
    tracked_stack: dict,
    tracking_server: TrackingServer,
    alice_data: dict[str, str],
    tiny_model_dir: Path,
) -> None:
    body = tracked_comparison(alice_data, tiny_model_dir)
    metrics, client, parent = logged_run(tracked_stack, tracking_server, body)
    children = children_of(client, parent)
    assert sorted(c.data.tags["lpft.method"] for c in children) == ["lp", "lp_ft"]
    for child in children:
        method = child.data.tags["lpft.method"]
        calibrated = metrics["methods"][method]["test"]["calibrated"]
        assert child.data.metrics["test.calibrated.ece"] == calibrated["ece"]
        assert parent.data.metrics[f"methods.{method}.test.calibrated.ece"] == calibrated["ece"]
        assert child.data.params["method"] == method and child.info.status == "FINISHED"
    history = metrics["methods"]["lp_ft"]["history"]
    lp_ft = next(c for c in children if c.data.tags["lpft.method"] == "lp_ft")
    logged = client.get_metric_history(lp_ft.info.run_id, "step/loss")
    assert sorted((m.step, m.value) for m in logged) == [(h["step"], h["loss"]) for h in history]


def test_a_job_with_seeds_has_a_child_run_per_seed(
    tracked_stack: dict,
    tracking_server: TrackingServer,
    alice_data: dict[str, str],
    tiny_model_dir: Path,
) -> None:
    body = {**tracked_job(alice_data, tiny_model_dir), "seeds": [0, 1]}
    with tenant_client(tracked_stack["url"], "alice") as alice:
        job = wait_tracked(alice, submit(alice, body)["id"])
        metrics = alice.get(f"/jobs/{job['id']}/metrics").json()
    client = MlflowClient(tracking_uri=tracking_server.url)
    parent = client.get_run(job["integrations"][0]["run_id"])
    children = children_of(client, parent)
    by_seed = {c.data.tags["lpft.seed"]: c for c in children}
    assert sorted(by_seed) == ["0", "1"]
    for entry in metrics["runs"]:
        child = by_seed[str(entry["seed"])]
        assert child.data.metrics["test.calibrated.ece"] == entry["test"]["calibrated"]["ece"]
        assert child.data.params["seed"] == str(entry["seed"])
    summary = metrics["summary"]["test"]["calibrated"]["ece"]
    assert parent.data.metrics["summary.test.calibrated.ece.mean"] == summary["mean"]


def test_a_comparison_with_seeds_has_a_child_per_seed_under_each_method(
    tracked_stack: dict,
    tracking_server: TrackingServer,
    alice_data: dict[str, str],
    tiny_model_dir: Path,
) -> None:
    body = tracked_comparison(alice_data, tiny_model_dir, seeds=[0, 1])
    body["hyperparameters"]["epochs"] = 1
    metrics, client, parent = logged_run(tracked_stack, tracking_server, body)
    methods = {c.data.tags["lpft.method"]: c for c in children_of(client, parent)}
    assert sorted(methods) == ["lp", "lp_ft"]
    for method, child in methods.items():
        served = metrics["methods"][method]
        assert child.data.metrics["test.calibrated.ece"] == served["test"]["calibrated"]["ece"]
        summary = served["summary"]["test"]["calibrated"]["ece"]
        assert child.data.metrics["summary.test.calibrated.ece.mean"] == summary["mean"]
        assert child.data.metrics["summary.test.calibrated.ece.std"] == summary["std"]
        by_seed = {c.data.tags["lpft.seed"]: c for c in children_of(client, child)}
        assert sorted(by_seed) == ["0", "1"]
        for entry in served["runs"]:
            seed = by_seed[str(entry["seed"])]
            assert seed.data.tags["lpft.method"] == method
            assert seed.data.params["seed"] == str(entry["seed"])
            assert seed.data.params["method"] == method
            assert seed.info.status == "FINISHED"
            expected = {
                f"test.{side}.{name}": value
                for side in ("uncalibrated", "calibrated")
                for name, value in entry["test"][side].items()
                if isinstance(value, int | float) and not isinstance(value, bool)
            }
            assert expected and {k: seed.data.metrics.get(k) for k in expected} == expected
    # The two seeds trained differently: the grandchildren are not one run twice.
    runs = metrics["methods"]["lp_ft"]["runs"]
    assert runs[0]["test"] != runs[1]["test"]


def tracked_sweep(dataset: dict[str, str], model: Path, **mlflow_options: object) -> dict:
    """A small tracked sweep: three one-epoch trials of the tiny model, one at a time."""
    integrations = [{"type": "mlflow", "mlflow": mlflow_options}]
    return sweep_body(dataset, model, n_trials=3, parallelism=1, integrations=integrations)


def test_a_sweep_is_a_parent_run_with_a_child_per_trial_and_registers_its_best(
    tracked_stack: dict,
    tracking_server: TrackingServer,
    alice_data: dict[str, str],
    tiny_model_dir: Path,
) -> None:
    body = tracked_sweep(alice_data, tiny_model_dir, experiment="sweeps", register_as="best")
    with tenant_client(tracked_stack["url"], "alice") as alice:
        sweep = wait_tracked(alice, submit(alice, body)["id"], timeout=400)
        metrics = alice.get(f"/jobs/{sweep['id']}/metrics").json()
        trials = alice.get(f"/jobs/{sweep['id']}/trials").json()["data"]
        trial_metrics = {t["id"]: alice.get(f"/jobs/{t['id']}/metrics").json() for t in trials}
    (integration,) = sweep["integrations"]
    assert integration["status"] == "logged", integration.get("error")
    client = MlflowClient(tracking_uri=tracking_server.url)
    parent = client.get_run(integration["run_id"])
    assert parent.info.status == "FINISHED"
    assert client.get_experiment(parent.info.experiment_id).name == "lpft/alice/sweeps"
    tags, params, logged = parent.data.tags, parent.data.params, parent.data.metrics
    assert tags["lpft.job_id"] == sweep["id"] and tags["lpft.kind"] == "sweep"
    assert tags["lpft.tenant"] == "alice" and tags["lpft.version"]
    assert params["method"] == "lp_ft" and params["n_trials"] == "3"
    assert params["parallelism"] == "1" and params["objective"] == "validation.nll"
    assert params["direction"] == "minimize"
    assert params["sampler"] == "random" and params["pruner"] == "none"
    assert json.loads(params["search_space.learning_rate"])["high"] == 3e-3
    assert "learning_rate" not in params  # searched, so no single value of the sweep's
    assert logged["best_trial.value"] == metrics["best_trial"]["value"]
    assert logged["best_trial.number"] == metrics["best_trial"]["number"]
    best_test = metrics["best_metrics"]["test"]["calibrated"]
    for name, value in best_test.items():
        assert logged[f"best_metrics.test.calibrated.{name}"] == value, name
    files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"metrics.json", "plots", "model"} <= files, files

    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    by_trial = {int(c.data.tags["lpft.trial"]): c for c in children}
    assert sorted(by_trial) == [t["number"] for t in trials] == [0, 1, 2]
    for trial in trials:
        child, expected = by_trial[trial["number"]], trial_metrics[trial["id"]]
        assert child.info.status == "FINISHED"
        assert child.data.tags["lpft.job_id"] == trial["id"]
        assert child.data.tags["lpft.trial_state"] == trial["state"] == "complete"
        assert child.data.tags["lpft.sweep_id"] == sweep["id"]
        for name, value in trial["params"].items():
            assert child.data.params[name] == str(value), name
        for stage in ("uncalibrated", "calibrated"):
            for name, value in expected["test"][stage].items():
                assert child.data.metrics[f"test.{stage}.{name}"] == value, (stage, name)
        assert child.data.metrics["temperature"] == expected["temperature"]
        assert child.data.metrics["objective/validation.nll"] == trial["value"]
        history = client.get_metric_history(child.info.run_id, "step/loss")
        assert sorted((m.step, m.value) for m in history) == [
            (h["step"], h["loss"]) for h in expected["history"]
        ]

    # register_as: the best trial's calibrated model, from the parent run.
    (version,) = client.search_model_versions(f"name = '{integration['registered_model']}'")
    assert version.version == integration["model_version"]
    assert version.run_id == parent.info.run_id
    best = next(t for t in trials if t["number"] == metrics["best_trial"]["number"])
    assert version.tags["lpft.trial_job_id"] == best["id"]


def test_a_cancelled_sweep_ends_its_runs_killed(
    tracked_stack: dict,
    tracking_server: TrackingServer,
    alice_data: dict[str, str],
    tiny_model_dir: Path,
) -> None:
    body = tracked_sweep(alice_data, tiny_model_dir, experiment="sweeps")
    with tenant_client(tracked_stack["url"], "alice") as alice:
        created = submit(alice, body)
        wait_for(alice, created["id"], {"running"}, timeout=120)
        assert alice.post(f"/jobs/{created['id']}/cancel").status_code in (200, 202)
        sweep = wait_tracked(alice, created["id"], timeout=300, status="cancelled")
        trials = alice.get(f"/jobs/{sweep['id']}/trials").json()["data"]
    (integration,) = sweep["integrations"]
    assert integration["status"] == "logged", integration.get("error")
    client = MlflowClient(tracking_uri=tracking_server.url)
    parent = client.get_run(integration["run_id"])
    assert parent.info.status == "KILLED"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    states = {c.data.tags["lpft.trial"]: c.data.tags["lpft.trial_state"] for c in children}
    assert states == {str(t["number"]): t["state"] for t in trials}, (states, trials)


def test_a_sweep_cancelled_while_queued_still_ends_its_integration(
    tracked_stack: dict,
    tracking_server: TrackingServer,
    alice_data: dict[str, str],
    tiny_model_dir: Path,
) -> None:
    """No worker ends a sweep cancelled before one claimed it (the API cancels a queued job
    at once), so its message does: a parent run, killed, with no trial under it. The one
    worker is kept busy by a plain job meanwhile, so the sweep is still queued."""
    with tenant_client(tracked_stack["url"], "alice") as alice:
        busy = submit(alice, job_body(alice_data, tiny_model_dir, epochs=1))["id"]
        wait_for(alice, busy, {"running"}, timeout=120)
        created = submit(alice, tracked_sweep(alice_data, tiny_model_dir, experiment="sweeps"))
        cancelled = alice.post(f"/jobs/{created['id']}/cancel")
        assert cancelled.status_code in (200, 202) and cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["integrations"][0]["status"] == "pending"
        wait_for(alice, busy, {"succeeded"}, timeout=300)
        sweep = wait_tracked(alice, created["id"], timeout=120, status="cancelled")
        trials = alice.get(f"/jobs/{sweep['id']}/trials").json()["data"]
    assert trials == []
    (integration,) = sweep["integrations"]
    assert integration["status"] == "logged", integration.get("error")
    client = MlflowClient(tracking_uri=tracking_server.url)
    parent = client.get_run(integration["run_id"])
    assert parent.info.status == "KILLED"
    assert parent.data.tags["lpft.job_id"] == sweep["id"]
    assert parent.data.params["n_trials"] == "3"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert children == []


def test_a_server_stopped_mid_job_leaves_the_job_succeeded_with_a_warning(
    tracked_stack: dict,
    tracking_server: TrackingServer,
    alice_data: dict[str, str],
    tiny_model_dir: Path,
) -> None:
    """Last in this module: it stops the module's server. The job's final state does not
    wait for the tracker, which retries for its whole budget (TIMEOUT_S): the job is seen
    succeeded with its integration still pending, and a re-calibration, which logs into
    that run, is refused meanwhile with a 409 saying why."""
    with tenant_client(tracked_stack["url"], "alice") as alice:
        job_id = submit(alice, tracked_job(alice_data, tiny_model_dir))["id"]
        wait_for(alice, job_id, {"running"}, timeout=120)
        tracking_server.stop()
        succeeded = wait_for(alice, job_id, {"succeeded"}, timeout=300)
        assert succeeded["integrations"][0]["status"] == "pending", succeeded
        refit = alice.post(f"/jobs/{job_id}/recalibrate", json={"dataset": alice_data["test"]})
        assert refit.status_code == 409 and "pending" in refit.json()["detail"], refit.text
        job = wait_tracked(alice, job_id)
        events = alice.get(f"/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
    (integration,) = job["integrations"]
    assert integration["status"] == "failed", integration
    assert "LPFT_MLFLOW_TIMEOUT_SECONDS" in integration["error"]
    warnings = [e["data"]["message"] for e in events if e["type"] == "warning"]
    assert any(w.startswith("MLflow:") and integration["error"] in w for w in warnings), warnings
    assert job["error"] is None
