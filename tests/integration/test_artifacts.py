"""A job's files over HTTP, for every kind and every status: the file, a 202 while an archive
is built, or a problem that says why; never a 5xx."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_HYPERPARAMETERS
from tests.integration.conftest import Worker, download_archive, job_body, wait_for
from tests.integration.test_errors import assert_problem
from tests.integration.test_jobs import wait_for_steps

#: Every file route of a job.
FILE_ROUTES = ("artifacts", "export", "report", "report?format=md", "plots/reliability.png")


def assert_files_say_why(client: httpx.Client, job_id: str, status: int = 409) -> None:
    for route in FILE_ROUTES:
        problem = assert_problem(client.get(f"/jobs/{job_id}/{route}"), status)
        assert job_id in problem["detail"], (route, problem)


def test_every_kind_answers_its_archive_or_says_why_not(
    alice: httpx.Client, cpu_worker: Worker, dataset: dict[str, str], tiny_model_dir: Path
) -> None:
    hyper = {**TINY_HYPERPARAMETERS, "device": "cpu"}
    finetune = alice.post("/jobs", json=job_body(dataset, tiny_model_dir)).json()
    compare = alice.post(
        "/jobs",
        json={
            "kind": "compare",
            "methods": ["lp", "lp_ft"],
            "dataset": dataset,
            "model": str(tiny_model_dir),
            "hyperparameters": hyper,
            "ntk_samples": 0,
        },
    ).json()
    analysis = alice.post(
        "/jobs",
        json={
            "kind": "analysis",
            "dataset": dataset,
            "model": str(tiny_model_dir),
            "analyses": ["features"],
            "hyperparameters": hyper,
        },
    ).json()
    for job in (finetune, compare, analysis):
        wait_for(alice, job["id"], {"succeeded"}, 300)
        # Nothing is compressed in the request: the first one only starts the build.
        assert alice.get(f"/jobs/{job['id']}/artifacts").status_code == 202

    names = download_archive(alice, f"/jobs/{finetune['id']}/artifacts").getnames()
    assert {"model/model.safetensors", "model/calibration.json", "model/report.html"} <= set(names)
    names = download_archive(alice, f"/jobs/{compare['id']}/artifacts").getnames()
    for method in ("lp", "lp_ft"):
        assert f"model/{method}/model.safetensors" in names
    assert {"model/metrics.json", "model/report.html"} <= set(names)
    names = download_archive(alice, f"/jobs/{analysis['id']}/artifacts").getnames()
    assert {"model/metrics.json", "model/report.html"} <= set(names)
    export = download_archive(alice, f"/jobs/{finetune['id']}/export?format=hf").getnames()
    assert "./model.safetensors" in export
    for job in (compare, analysis):
        assert_problem(alice.get(f"/jobs/{job['id']}/export"), 409)

    recalibration = alice.post(
        f"/jobs/{finetune['id']}/recalibrate", json={"dataset": dataset["test"]}
    ).json()
    wait_for(alice, recalibration["id"], {"succeeded"})
    refused = assert_problem(alice.get(f"/jobs/{recalibration['id']}/artifacts"), 409)
    assert f"/jobs/{finetune['id']}/artifacts" in refused["detail"]
    temperature = alice.get(f"/jobs/{recalibration['id']}/metrics").json()["temperature"]
    rebuilt = download_archive(alice, f"/jobs/{finetune['id']}/artifacts")
    calibration = json.load(rebuilt.extractfile("model/calibration.json"))
    assert calibration["temperature"] == pytest.approx(temperature)


def test_an_archive_of_a_model_being_written_to_is_no_server_error(
    service_env: dict[str, str],
    alice: httpx.Client,
    cpu_worker: Worker,
    dataset: dict[str, str],
    tiny_model_dir: Path,
) -> None:
    """Other processes write into a model directory while it may be archived: a
    re-calibration's ``.calibration.json.partial``, a serving graph's ``.build-*`` folder,
    there one moment and renamed or removed the next. An archive built meanwhile once listed
    such a file, found it gone, and answered 500."""
    job = alice.post("/jobs", json=job_body(dataset, tiny_model_dir)).json()
    wait_for(alice, job["id"], {"succeeded"})
    model_dir = Path(service_env["LPFT_ARTIFACTS_DIR"]) / "jobs" / job["id"] / "model"
    stop = threading.Event()

    def write_scratch_files() -> None:
        while not stop.is_set():
            scratch = model_dir / ".calibration.json.partial"
            scratch.write_text("{}")
            scratch.unlink()

    writer = threading.Thread(target=write_scratch_files)
    writer.start()
    try:
        for _ in range(20):
            names = download_archive(alice, f"/jobs/{job['id']}/artifacts").getnames()
            assert "model/calibration.json" in names
            assert not any(Path(name).name.startswith(".") for name in names), names
    finally:
        stop.set()
        writer.join()


def test_the_files_of_an_unfinished_job_say_why_not(
    alice: httpx.Client, cpu_worker: Worker, dataset: dict[str, str], tiny_model_dir: Path
) -> None:
    # Sent to the gpu queue, which no session worker consumes: it stays queued.
    queued = alice.post("/jobs", json=job_body(dataset, tiny_model_dir, device="cuda")).json()
    assert_files_say_why(alice, queued["id"])
    assert alice.post(f"/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"
    assert_files_say_why(alice, queued["id"])

    running = alice.post(
        "/jobs", json=job_body(dataset, tiny_model_dir, epochs=100, batch_size=1)
    ).json()
    wait_for_steps(alice, running["id"], 2)
    assert_files_say_why(alice, running["id"])
    alice.post(f"/jobs/{running['id']}/cancel")
    wait_for(alice, running["id"], {"cancelled"}, 30)
    assert_files_say_why(alice, running["id"])
    alice.delete(f"/jobs/{running['id']}")
    assert_files_say_why(alice, running["id"], 404)


def test_a_build_that_fails_is_answered_not_retried_forever(
    service_env: dict[str, str],
    alice: httpx.Client,
    cpu_worker: Worker,
    dataset: dict[str, str],
    tiny_model_dir: Path,
) -> None:
    """A build runs off the request, so its failure must reach the next request: the export
    of a model whose weights are gone fails every time, and used to answer 202 until the
    client gave up. It is answered once as a problem with an error id, then built again."""
    job = alice.post("/jobs", json={**job_body(dataset, tiny_model_dir), "method": "lp"}).json()
    wait_for(alice, job["id"], {"succeeded"})
    model_dir = Path(service_env["LPFT_ARTIFACTS_DIR"]) / "jobs" / job["id"] / "model"
    (model_dir / "model.safetensors").unlink()
    route = f"/jobs/{job['id']}/export?format=hf"
    deadline = time.monotonic() + 60
    while (response := alice.get(route)).status_code == 202:
        assert time.monotonic() < deadline, f"{route} answered 202 for 60 s"
        time.sleep(0.1)
    assert response.status_code == 500, response.text
    assert response.json()["error_id"]
    assert alice.get(route).status_code == 202  # the failure was told once: a new build
