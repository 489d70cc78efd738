"""A real stack for the service tests: a database of the run's private Redis, a uvicorn server
and Celery workers as separate processes, talking exactly as in production.

The API runs with ``LPFT_AUTO_QUEUE=gpu``: jobs with ``device: cpu`` go to the ``cpu`` queue,
served by the session's worker, and jobs with ``device: auto`` to the ``gpu`` queue, which only
the workers a test starts itself consume (no GPU is needed: ``auto`` trains on the CPU here).
That lets a test kill its own worker without touching the others.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_HYPERPARAMETERS, toy_rows, write_jsonl
from tests.redis_fixtures import PrivateRedis, RedisDatabase, free_port

KEYS = {"alice": "key-alice", "bob": "key-bob", "carol": "key-carol"}


def stack_env(database: RedisDatabase, artifacts: Path, models_dir: Path) -> dict[str, str]:
    """The environment of a test stack on its own Redis ``database``."""
    return {
        **os.environ,
        "LPFT_REDIS_URL": database.url,
        "LPFT_ARTIFACTS_DIR": str(artifacts),
        "LPFT_API_KEYS": ",".join(f"{t}:{k}" for t, k in KEYS.items()),
        "LPFT_AUTO_QUEUE": "gpu",
        "LPFT_LEASE_SECONDS": "3",
        "LPFT_HEARTBEAT_SECONDS": "0.5",
        "LPFT_CANCEL_GRACE_SECONDS": "5",
        "LPFT_MAX_UPLOAD_BYTES": "200000",
        # Jobs name the tiny test model by its path, which must lie in the models directory.
        "LPFT_MODELS_DIR": str(models_dir),
        # A hub id at POST /jobs is sized from the hub: offline, from the local cache only,
        # so that no test stack ever reaches the network.
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        # The default (auto) serves through onnxruntime and exports each model's graph at its
        # first /predict, seconds per job; the shared stack serves with torch, and
        # test_onnx_backend.py starts servers on the default and on onnx by name.
        "LPFT_PREDICT_BACKEND": "torch",
    }


@pytest.fixture(scope="session")
def service_env(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, redis_server: PrivateRedis
) -> dict[str, str]:
    artifacts = tmp_path_factory.mktemp("artifacts")
    return stack_env(redis_server.new_database(), artifacts, tiny_model_dir.parent)


class Worker:
    """A Celery worker process consuming one queue (in ``cwd``, or the tests' directory)."""

    def __init__(
        self, env: dict[str, str], queue: str, name: str, log: Path, cwd: Path | None = None
    ) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "lpft_worker.celery_app",
                "worker",
                "-Q",
                queue,
                "-P",
                "solo",
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "info",
            ],
            env=env,
            cwd=cwd,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text():
            assert self.process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "worker did not start: " + log.read_text()
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


#: How long an API process may take to answer /readyz. It imports the ML stack first, which
#: took over 40 s on a loaded 2-core machine; a process that exits fails the wait at once.
API_START_S = 300


class ApiServer:
    """A uvicorn process serving the API on a free port, ready once /readyz answers (in
    ``cwd``, or the tests' directory). With ``wait`` false the process is only started, and
    ``wait_until_ready`` waits for it: a test that needs several servers, or a server and a
    job, lets them import the ML stack side by side instead of one after the other."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        port: int | None = None,
        cwd: Path | None = None,
        *,
        wait: bool = True,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "lpft_api.main:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            cwd=cwd,
            stdout=log.open("a"),
            stderr=subprocess.STDOUT,
        )
        self.started = time.monotonic()
        if wait:
            self.wait_until_ready()

    def wait_until_ready(self) -> None:
        """Until /readyz answers 200; fails at once if the process exits, with its log."""
        deadline = self.started + API_START_S
        while True:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "API did not start: " + self.log.read_text()
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture(scope="session")
def api_url(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = ApiServer(service_env, tmp_path_factory.mktemp("logs") / "api.log")
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def cpu_worker(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    worker = Worker(service_env, "cpu", "cpu-worker", tmp_path_factory.mktemp("logs") / "w.log")
    yield worker
    worker.stop()


def tenant_client(api_url: str, tenant: str) -> httpx.Client:
    """An HTTP client that authenticates as ``tenant``."""
    headers = {"Authorization": f"Bearer {KEYS[tenant]}"}
    return httpx.Client(base_url=api_url, headers=headers, timeout=60)


@pytest.fixture
def alice(api_url: str) -> Iterator[httpx.Client]:
    with tenant_client(api_url, "alice") as client:
        yield client


@pytest.fixture
def bob(api_url: str) -> Iterator[httpx.Client]:
    with tenant_client(api_url, "bob") as client:
        yield client


@pytest.fixture(scope="session")
def toy_dataset_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("toy")
    return {
        "train": write_jsonl(directory / "train.jsonl", toy_rows(90, seed=1)),
        "validation": write_jsonl(directory / "validation.jsonl", toy_rows(30, seed=2)),
        "test": write_jsonl(directory / "test.jsonl", toy_rows(30, seed=3)),
    }


@pytest.fixture
def dataset(alice: httpx.Client, toy_dataset_files: dict[str, Path]) -> dict[str, str]:
    """The toy splits, uploaded by alice."""
    return {split: upload(alice, path) for split, path in toy_dataset_files.items()}


@pytest.fixture(scope="session")
def finished_job(
    api_url: str, cpu_worker: Worker, toy_dataset_files: dict[str, Path], tiny_model_dir: Path
) -> dict:
    """Alice's succeeded lp_ft toy job (its ``dataset`` her upload of the toy splits), trained
    once per run for the tests that only read a finished job. A test that changes one
    (recalibrates it, deletes its keys or files) trains its own."""
    with tenant_client(api_url, "alice") as alice:
        dataset = {split: upload(alice, path) for split, path in toy_dataset_files.items()}
        job = alice.post("/jobs", json=job_body(dataset, tiny_model_dir))
        assert job.status_code == 202, job.text
        return wait_for(alice, job.json()["id"], {"succeeded"}, timeout=300)


def upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as handle:
        response = client.post("/datasets", files={"file": (path.name, handle)})
    assert response.status_code == 201, response.text
    return response.json()["id"]


TERMINAL = {"succeeded", "failed", "cancelled"}


def wait_for(client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 120) -> dict:
    """Poll until the job reaches one of ``statuses``; stop at the first terminal state it
    was not meant to reach, or at the deadline, and say why with the job's last events."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        if job["status"] in TERMINAL or time.monotonic() > deadline:
            events = client.get(f"/jobs/{job_id}/events", params={"limit": 1000}).json()
            tail = [(e["type"], e["data"]) for e in events.get("data", [])][-8:]
            raise AssertionError(
                f"job {job_id} is {job['status']} (waited for {sorted(statuses)}); "
                f"error: {job.get('error')}; last events: {tail}"
            )
        time.sleep(0.1)


def download_archive(client: httpx.Client, route: str, timeout: float = 60) -> tarfile.TarFile:
    """The archive at ``route`` (``/jobs/{id}/artifacts``, ``…/export``), following its 202s
    (each with ``Location`` and ``Retry-After``) until it is built."""
    deadline = time.monotonic() + timeout
    while (response := client.get(route)).status_code == 202:
        assert response.headers["location"] == route
        assert int(response.headers["retry-after"]) >= 1 and response.json()["detail"]
        assert time.monotonic() < deadline, f"{route} is still being built"
        time.sleep(0.1)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    return tarfile.open(fileobj=io.BytesIO(response.content))


def job_body(dataset: dict[str, str], model: Path, **hyper: object) -> dict:
    options = {**TINY_HYPERPARAMETERS, "device": "cpu", **hyper}
    return {
        "method": "lp_ft",
        "dataset": dataset,
        "model": str(model),
        "hyperparameters": options,
        "seed": 0,
    }


def sweep_body(dataset: dict[str, str], model: Path, **options: object) -> dict:
    """A small sweep of one-epoch trials of the tiny model over a learning rate and a head
    norm scale (four trials, two at a time, unless ``options`` say otherwise)."""
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
