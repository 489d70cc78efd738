"""Workers that share no disk (tests/objects/fleet.py): an upload lands in the bucket; an
lp_ft job survives the SIGKILL of its first worker after a published checkpoint and resumes
on the second, from an empty disk; /predict serves the model read from the bucket; DELETE
leaves no object of the job behind, and no worker keeps a copy of it."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lpft_contract.local_copies import RECHECK_S
from lpft_contract.objects import MANIFEST

from tests.integration.conftest import ApiServer, download_archive, job_body, upload, wait_for
from tests.objects.fleet import Fleet, events, running_fleet, wait_for_an_epoch
from tests.redis_fixtures import PrivateRedis

#: Long enough (seconds of training on the tiny model) to be interrupted in its middle.
INTERRUPTED_JOB = {"epochs": 4, "batch_size": 1}


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory,
    moto_endpoint: str,
    redis_server: PrivateRedis,
    tiny_model_dir: Path,
) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    database = redis_server.new_database()
    with running_fleet(root, database, tiny_model_dir.parent, moto_endpoint) as fleet:
        yield fleet


def wait_for_a_published_epoch(fleet: Fleet, client: httpx.Client, job_id: str) -> None:
    """Until a checkpoint holding a finished epoch is complete in the bucket."""
    wait_for_an_epoch(client, job_id)
    deadline = time.monotonic() + 60
    prefix = f"jobs/{job_id}/checkpoint"
    while True:
        stored = fleet.keys(prefix)
        versions = {k.rsplit("/", 1)[0] for k in stored if k.endswith(f"/{MANIFEST}")}
        if any(f"{version}/training.pt" in stored for version in versions):
            return
        assert time.monotonic() < deadline, f"no epoch checkpoint was published: {stored}"
        time.sleep(0.1)


def test_a_job_resumes_on_another_worker_from_the_bucket_and_is_served_from_it(
    fleet: Fleet, toy_dataset_files: dict[str, Path], tiny_model_dir: Path
) -> None:
    with fleet.client() as alice:
        dataset = {split: upload(alice, path) for split, path in toy_dataset_files.items()}
        for dataset_id in dataset.values():
            assert f"datasets/{dataset_id}.jsonl" in fleet.keys("datasets")

        job = alice.post("/jobs", json=job_body(dataset, tiny_model_dir, **INTERRUPTED_JOB))
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        wait_for_a_published_epoch(fleet, alice, job_id)
        first = fleet.workers[0]
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        second = fleet.start_worker("worker-2")

        finished = wait_for(alice, job_id, {"succeeded"}, timeout=300)
        assert finished["attempts"] == 2
        resumed = [e["data"] for e in events(alice, job_id) if "resumed_from_epoch" in e["data"]]
        assert resumed and resumed[0]["resumed_from_epoch"] >= 1, "worker 2 started over"
        assert "training process started" in second.log.read_text()
        assert f"jobs/{job_id}/model/{MANIFEST}" in fleet.keys(f"jobs/{job_id}")
        # The checkpoint goes right after the final state is written, not before it.
        deadline = time.monotonic() + 30
        while left := fleet.keys(f"jobs/{job_id}/checkpoint"):
            assert time.monotonic() < deadline, f"a finished job kept its checkpoint: {left}"
            time.sleep(0.1)
        assert alice.get(f"/jobs/{job_id}/logs").json()["data"], "the job's log is in the bucket"
        assert not (fleet.machine("worker-2").cache / "jobs" / job_id).exists()

        rows = [{"text": "a fine, moving film"}, {"text": "dull and far too long"}]
        predicted = alice.post("/predict", json={"job_id": job_id, "inputs": rows})
        assert predicted.status_code == 200, predicted.text
        for prediction in predicted.json()["predictions"]:
            assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        metrics = alice.get(f"/jobs/{job_id}/metrics").json()
        assert metrics["temperature"] == pytest.approx(predicted.json()["temperature"])

        assert alice.delete(f"/jobs/{job_id}").status_code == 204
        assert fleet.keys(f"jobs/{job_id}") == [], "the deleted job left objects behind"
        assert not (fleet.machine("api").cache / "jobs" / job_id).exists()
        for dataset_id in dataset.values():
            assert alice.delete(f"/datasets/{dataset_id}").status_code == 204
            assert not [k for k in fleet.keys("datasets") if dataset_id in k]


def test_a_recalibration_through_another_replica_is_served_by_this_one(
    fleet: Fleet, toy_dataset_files: dict[str, Path], tiny_model_dir: Path
) -> None:
    """Replica 1 holds the model loaded; the re-calibration is asked of replica 2 and run by
    a worker, which publishes the new temperature to the bucket: replica 1 serves it within
    its version check (lpft_contract.local_copies.RECHECK_S)."""
    other = fleet.machine("api-2")
    # started now, to import the ML stack while the job trains; waited for once it is needed
    replica = ApiServer(
        other.env(fleet.shared), fleet.root / "api-2.log", cwd=other.work, wait=False
    )
    try:
        with fleet.client() as alice, fleet.client(base_url=replica.url) as alice_there:
            dataset = {split: upload(alice, path) for split, path in toy_dataset_files.items()}
            job = alice.post("/jobs", json=job_body(dataset, tiny_model_dir))
            assert job.status_code == 202, job.text
            job_id = wait_for(alice, job.json()["id"], {"succeeded"}, timeout=300)["id"]
            rows = {"job_id": job_id, "inputs": [{"text": "a fine, moving film"}]}
            before = alice.post("/predict", json=rows).json()["temperature"]
            replica.wait_until_ready()

            # fitted on the test split: another temperature than the validation split's
            recalibration = alice_there.post(
                f"/jobs/{job_id}/recalibrate", json={"dataset": dataset["test"]}
            )
            assert recalibration.status_code == 202, recalibration.text
            recal_id = recalibration.json()["id"]
            wait_for(alice_there, recal_id, {"succeeded"}, timeout=300)
            fitted = alice_there.get(f"/jobs/{recal_id}/metrics").json()["temperature"]
            assert fitted != pytest.approx(before), "the test split gave the same temperature"

            deadline = time.monotonic() + RECHECK_S + 10
            while (now := alice.post("/predict", json=rows).json()["temperature"]) != fitted:
                assert time.monotonic() < deadline, f"replica 1 still serves T={now}"
                time.sleep(0.2)

            # an archive one replica built is in the bucket, and the other serves it as is
            built = download_archive(alice, f"/jobs/{job_id}/artifacts")
            [archive] = [k for k in fleet.keys(f"jobs/{job_id}") if k.endswith(".tar.gz")]
            calibration = json.load(built.extractfile("model/calibration.json"))
            assert calibration["temperature"] == pytest.approx(fitted)
            response = alice_there.get(f"/jobs/{job_id}/artifacts")
            assert response.status_code == 200, "replica 2 built it again instead"
            assert response.content == fleet.store.get_bytes(archive)
    finally:
        replica.stop()
    assert not any(other.work.iterdir()), "replica 2 wrote into its working directory"
