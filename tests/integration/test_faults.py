"""Faults in the middle of real jobs: a Redis restart, an API SIGKILL, a worker SIGKILL.

This module runs its own stack (a Redis on another port with append-only persistence, an API
and a worker), so killing them touches no other test. Each case asserts what the user sees:
the job ends ``succeeded`` with the metrics of an undisturbed run of the same job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.integration.conftest import (
    KEYS,
    ApiServer,
    Worker,
    free_port,
    job_body,
    upload,
    wait_for,
)

#: Long enough (about 10 s of training on the tiny model) to be interrupted in its middle.
FAULT_JOB = {"epochs": 4, "batch_size": 1}


class RedisServer:
    """``redis-server`` with append-only persistence, restartable on the same port and data."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        subprocess.run(
            [
                "redis-server",
                "--daemonize", "yes",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
                "--pidfile", str(self.directory / "redis.pid"),
            ],
            check=True,
        )  # fmt: skip
        self._wait(lambda: self._cli("ping") == "PONG")

    def stop(self) -> None:
        """Shut down as a restart does (the append-only file is complete)."""
        self._cli("shutdown")
        self._wait(lambda: self._cli("ping") != "PONG")

    def _cli(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True
        )
        return done.stdout.strip()

    @staticmethod
    def _wait(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 20
        while not condition():
            assert time.monotonic() < deadline, "redis did not change state"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    directory = tmp_path_factory.mktemp("faults")
    redis_server = RedisServer(directory)
    env = {
        **service_env,
        "LPFT_REDIS_URL": redis_server.url,
        "LPFT_ARTIFACTS_DIR": str(directory / "artifacts"),
        "LPFT_LOST_MESSAGE_SECONDS": "1",
    }
    # The API imports the ML stack while the worker starts.
    api = ApiServer(env, directory / "api.log", wait=False)
    worker = Worker(env, "cpu", "faults", directory / "worker-1.log")
    api.wait_until_ready()
    state = {"redis": redis_server, "env": env, "api": api, "worker": worker, "dir": directory}
    yield state
    state["worker"].stop()
    state["api"].stop()
    redis_server.stop()


@pytest.fixture(scope="module")
def client(stack: dict) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEYS['alice']}"}
    with httpx.Client(base_url=stack["api"].url, headers=headers, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def fault_job(client: httpx.Client, toy_dataset_files: dict[str, Path], tiny_model_dir: Path):
    dataset = {split: upload(client, path) for split, path in toy_dataset_files.items()}
    return job_body(dataset, tiny_model_dir, **FAULT_JOB)


@pytest.fixture(scope="module")
def undisturbed(client: httpx.Client, fault_job: dict) -> dict:
    job = client.post("/jobs", json=fault_job).json()
    wait_for(client, job["id"], {"succeeded"}, timeout=300)
    return client.get(f"/jobs/{job['id']}/metrics").json()


def run_with_fault(client: httpx.Client, body: dict, fault: Callable[[], None]) -> dict:
    """Submit ``body``, apply ``fault`` once training is in its second epoch, and return the
    job once it ended (it must have been running when the fault struck)."""
    job = client.post("/jobs", json=body).json()
    deadline = time.monotonic() + 120
    while not any(e["type"] == "epoch" for e in events(client, job["id"])):
        assert time.monotonic() < deadline, "the job never finished an epoch"
        time.sleep(0.1)
    assert client.get(f"/jobs/{job['id']}").json()["status"] == "running"
    fault()
    return wait_for(client, job["id"], {"succeeded"}, timeout=300)


def events(client: httpx.Client, job_id: str) -> list[dict]:
    for _ in range(50):  # the API may be restarting
        try:
            return client.get(f"/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the API did not come back")


def assert_same_metrics(metrics: dict, reference: dict) -> None:
    for key in ("best_epoch", "splits", "labels"):
        assert metrics[key] == reference[key], key
    assert metrics["temperature"] == pytest.approx(reference["temperature"], rel=1e-5)
    for side in ("uncalibrated", "calibrated"):
        assert metrics["test"][side] == pytest.approx(reference["test"][side], rel=1e-5)
    assert [e["validation_accuracy"] for e in metrics["epochs"]] == pytest.approx(
        [e["validation_accuracy"] for e in reference["epochs"]]
    )


def test_a_redis_restart_mid_job_loses_nothing(
    stack: dict, client: httpx.Client, fault_job: dict, undisturbed: dict
) -> None:
    def restart_redis() -> None:
        stack["redis"].stop()
        time.sleep(3)
        stack["redis"].start()

    job = run_with_fault(client, fault_job, restart_redis)
    assert job["attempts"] == 1  # rode the outage out: no retry, no second training
    assert_same_metrics(client.get(f"/jobs/{job['id']}/metrics").json(), undisturbed)
    steps = [e for e in events(client, job["id"]) if e["type"] == "step"]
    assert len(steps) == len(undisturbed["history"])  # buffered events arrived, once each


def test_an_api_sigkill_mid_job_loses_nothing(
    stack: dict, client: httpx.Client, fault_job: dict, undisturbed: dict
) -> None:
    def kill_api() -> None:
        api = stack["api"]
        os.kill(api.process.pid, signal.SIGKILL)
        api.process.wait()
        time.sleep(2)
        stack["api"] = ApiServer(stack["env"], stack["dir"] / "api.log", port=api.port)

    job = run_with_fault(client, fault_job, kill_api)
    assert job["attempts"] == 1
    assert_same_metrics(client.get(f"/jobs/{job['id']}/metrics").json(), undisturbed)


def test_a_worker_sigkill_mid_job_resumes_from_its_checkpoint(
    stack: dict, client: httpx.Client, fault_job: dict, undisturbed: dict
) -> None:
    def kill_worker() -> None:
        worker = stack["worker"]
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
        stack["worker"] = Worker(stack["env"], "cpu", "faults2", stack["dir"] / "worker-2.log")

    job = run_with_fault(client, fault_job, kill_worker)
    assert job["attempts"] == 2
    log = events(client, job["id"])
    retries = [e["data"] for e in log if e["type"] == "status" and "retry" in e["data"]]
    assert retries and retries[0]["retry"] == 2 and "died" in retries[0]["reason"], retries
    resumed = [e["data"] for e in log if "resumed_from_epoch" in e["data"]]
    assert resumed and resumed[0]["resumed_from_epoch"] >= 1, log[-10:]
    assert_same_metrics(client.get(f"/jobs/{job['id']}/metrics").json(), undisturbed)


def test_redis_losing_its_data_loses_no_job_and_no_message(
    stack: dict, client: httpx.Client, fault_job: dict
) -> None:
    # device "cuda" goes to the gpu queue, which nothing here consumes: the job stays queued.
    waiting = client.post(
        "/jobs",
        json={**fault_job, "hyperparameters": {**fault_job["hyperparameters"], "device": "cuda"}},
    ).json()
    listed_before = {j["id"] for j in client.get("/jobs", params={"limit": 100}).json()["data"]}
    redis_client = redis.Redis.from_url(stack["redis"].url, decode_responses=True)
    redis_client.flushall()  # as a restart without persistence would
    deadline = time.monotonic() + 60
    while True:
        page = client.get("/jobs", params={"limit": 100})
        if page.status_code == 200 and {j["id"] for j in page.json()["data"]} == listed_before:
            break
        assert time.monotonic() < deadline, f"the job list was not rebuilt: {page.text}"
        time.sleep(0.2)
    while not redis_client.llen("gpu"):  # the lost message of the queued job, sent again
        assert time.monotonic() < deadline, "the queued job's lost message was not sent again"
        time.sleep(0.2)
    assert client.get(f"/jobs/{waiting['id']}").json()["status"] == "queued"
    log = events(client, waiting["id"])
    assert any("sent again" in str(e["data"]) for e in log), log
    assert client.post(f"/jobs/{waiting['id']}/cancel").json()["status"] == "cancelled"
