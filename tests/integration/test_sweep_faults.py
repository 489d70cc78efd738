"""Sweeps under cancels, deletes and faults, over two real worker processes.

This module runs its own stack (its own Redis database, API and two workers), so killing a
worker touches no other test, and its recovery pass acts within seconds
(``LPFT_LOST_MESSAGE_SECONDS=1`` beside the tests' 3 s lease). Each case asserts what the
user sees through the API, and what is left in Redis and on the artifact volume.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from lpft_contract.records import JobStatus, worker_lost
from lpft_contract.stores import Stores, connect

from tests.integration.conftest import (
    KEYS,
    ApiServer,
    Worker,
    job_body,
    stack_env,
    upload,
    wait_for,
)
from tests.redis_fixtures import RedisDatabase

#: Trials long enough (three epochs of 90 rows one by one, some seconds) to be cancelled or
#: killed in their middle.
LONG_TRIAL = {"epochs": 3, "batch_size": 1}


@dataclass
class SweepStack:
    """The module's API, workers, Redis and artifact volume."""

    env: dict[str, str]
    directory: Path
    api: ApiServer
    workers: list[Worker]
    redis: redis.Redis

    @property
    def artifacts(self) -> Path:
        return Path(self.env["LPFT_ARTIFACTS_DIR"])

    def stores(self) -> Stores:
        """The stores as a worker or the API opens them."""
        return Stores.over(connect(self.env["LPFT_REDIS_URL"]), self.artifacts)

    def worker_of(self, job: dict) -> Worker:
        """The worker running ``job`` (a job's worker is ``host:pid`` of its process)."""
        pid = int(job["worker"].rsplit(":", 1)[1])
        return next(w for w in self.workers if w.process.pid == pid)

    def replace(self, worker: Worker) -> None:
        """Start a new worker in place of ``worker`` (killed)."""
        index = self.workers.index(worker)
        name = f"sweep-{index}-{time.monotonic_ns()}"
        self.workers[index] = Worker(self.env, "cpu", name, self.directory / f"{name}.log")


@pytest.fixture(scope="module")
def stack(
    redis_db: RedisDatabase, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SweepStack]:
    directory = tmp_path_factory.mktemp("sweep-faults")
    env = {
        **stack_env(redis_db, directory / "artifacts", tiny_model_dir.parent),
        "LPFT_LOST_MESSAGE_SECONDS": "1",
    }
    api = ApiServer(env, directory / "api.log", wait=False)  # imports while the workers start
    workers = [Worker(env, "cpu", f"sweep-{i}", directory / f"worker-{i}.log") for i in (0, 1)]
    api.wait_until_ready()
    state = SweepStack(env, directory, api, workers, redis_db.client())
    yield state
    for worker in state.workers:
        worker.stop()
    api.stop()


@pytest.fixture(scope="module")
def client(stack: SweepStack) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEYS['alice']}"}
    with httpx.Client(base_url=stack.api.url, headers=headers, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def splits(client: httpx.Client, toy_dataset_files: dict[str, Path]) -> dict[str, str]:
    return {split: upload(client, path) for split, path in toy_dataset_files.items()}


def sweep(client: httpx.Client, splits: dict[str, str], model: Path, **options: object) -> str:
    """Submit a sweep of long trials over the learning rate; its id."""
    body = {
        **job_body(splits, model, **LONG_TRIAL),
        "kind": "sweep",
        "search_space": {
            "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True}
        },
        "objective": {"metric": "validation.nll", "direction": "minimize"},
        "sampler": "random",
        "pruner": "none",
        **options,
    }
    response = client.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def trials(client: httpx.Client, sweep_id: str) -> list[dict]:
    return client.get(f"/jobs/{sweep_id}/trials").json()["data"]


def events(client: httpx.Client, job_id: str) -> list[dict]:
    return client.get(f"/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]


def training_process(worker: Worker) -> int:
    """The pid of the training process ``worker`` runs (its one child)."""
    pid = worker.process.pid
    (child,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(child)


def wait_until(condition: Callable[[], object], what: str, timeout: float = 120) -> object:
    """``condition()`` once it is true; fails at the deadline saying what it waited for."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s for {what}"
        time.sleep(0.1)
    return found


def training(client: httpx.Client, sweep_id: str, count: int, event: str = "step") -> list[dict]:
    """Once ``count`` trials run and each has sent an ``event`` event, those trials."""

    def started() -> list[dict] | None:
        running = [t for t in trials(client, sweep_id) if t["state"] == "running"]
        busy = [t for t in running if any(e["type"] == event for e in events(client, t["id"]))]
        return busy if len(busy) >= count else None

    return wait_until(started, f"{count} trials of {sweep_id} with a {event} event")  # type: ignore[return-value]


def test_cancel_ends_every_trial_starts_none_and_delete_removes_them(
    stack: SweepStack, client: httpx.Client, splits: dict[str, str], tiny_model_dir: Path
) -> None:
    sweep_id = sweep(client, splits, tiny_model_dir, n_trials=3, parallelism=2)
    training(client, sweep_id, 2)  # each of the two is seconds from its end

    refused = client.delete(f"/jobs/{sweep_id}")
    assert refused.status_code == 409 and "cancel it before deleting it" in refused.text

    before = [t["id"] for t in trials(client, sweep_id)]
    assert len(before) == 2
    assert client.post(f"/jobs/{sweep_id}/cancel").status_code == 200
    ended = wait_for(client, sweep_id, {"cancelled"}, timeout=120)
    assert ended["status"] == "cancelled"
    after = trials(client, sweep_id)
    assert [t["id"] for t in after] == before, "a trial started after the cancel"
    assert {t["state"] for t in after} <= {"cancelled", "complete"}, after
    for trial in after:
        assert client.get(f"/jobs/{trial['id']}").json()["status"] in {"cancelled", "succeeded"}

    ids = [sweep_id, *before]
    assert all((stack.artifacts / "jobs" / job_id).exists() for job_id in ids)
    patterns = [f"lpft:sweep:{sweep_id}:*", f"lpft:optuna:{sweep_id}*"]
    assert all(stack.redis.keys(pattern) for pattern in patterns), "no sweep keys to delete"

    assert client.delete(f"/jobs/{sweep_id}").status_code == 204
    for job_id in ids:
        assert client.get(f"/jobs/{job_id}").status_code == 404, job_id
        assert not (stack.artifacts / "jobs" / job_id).exists(), job_id
    assert [k for p in patterns for k in stack.redis.keys(p)] == []
    assert client.get(f"/jobs/{sweep_id}/trials").status_code == 404


def test_a_trial_whose_worker_is_killed_resumes_and_the_sweep_ends_whole(
    stack: SweepStack, client: httpx.Client, splits: dict[str, str], tiny_model_dir: Path
) -> None:
    sweep_id = sweep(client, splits, tiny_model_dir, n_trials=2, parallelism=2)
    victim = training(client, sweep_id, 1, event="epoch")[0]
    worker = stack.worker_of(victim)
    os.kill(worker.process.pid, signal.SIGKILL)
    worker.process.wait()
    stack.replace(worker)

    ended = wait_for(client, sweep_id, {"succeeded"}, timeout=300)
    assert ended["status"] == "succeeded"
    done = trials(client, sweep_id)
    assert [t["state"] for t in done] == ["complete", "complete"], done
    resumed_trial = next(t for t in done if t["id"] == victim["id"])
    assert resumed_trial["worker"] != victim["worker"]
    log = events(client, victim["id"])
    resumed = [e["data"] for e in log if "resumed_from_epoch" in e["data"]]
    assert resumed and resumed[0]["resumed_from_epoch"] >= 1, log[-10:]
    assert client.get(f"/jobs/{victim['id']}").json()["attempts"] == 2
    assert client.get(f"/jobs/{sweep_id}/metrics").json()["n_trials"] == 2


def test_a_sweep_whose_trial_end_and_start_were_lost_is_picked_up_by_recovery(
    stack: SweepStack, client: httpx.Client, splits: dict[str, str], tiny_model_dir: Path
) -> None:
    sweep_id = sweep(client, splits, tiny_model_dir, n_trials=2, parallelism=1)
    first = training(client, sweep_id, 1)[0]
    # A worker counted the start of the second trial and died before recording it.
    stack.redis.incr(f"lpft:sweep:{sweep_id}:launched")
    # The trial's worker dies, its training process with it, and the trial is failed as the
    # recovery pass fails a trial lost on its last attempt: nobody tells the sweep. The
    # training process is frozen first, so that it cannot notice its worker's death and
    # queue the trial again itself; the trial is failed long before the recovery pass
    # would see its lease missing (3 s after it lapses).
    worker = stack.worker_of(first)
    trainer = training_process(worker)
    os.kill(trainer, signal.SIGSTOP)
    os.kill(worker.process.pid, signal.SIGKILL)
    worker.process.wait()
    failed = stack.stores().jobs.finish(
        first["id"], JobStatus.FAILED, worker_lost(first["worker"], 1), worker=first["worker"]
    )
    assert failed is not None, "the trial was no longer running under its worker"
    os.kill(trainer, signal.SIGKILL)
    stack.replace(worker)

    ended = wait_for(client, sweep_id, {"succeeded"}, timeout=300)
    assert ended["status"] == "succeeded"
    sent_again = [e for e in events(client, sweep_id) if "sent again" in str(e["data"])]
    assert sent_again, "the recovery pass did not send the stalled sweep's message"
    done = trials(client, sweep_id)
    assert [t["state"] for t in done] == ["failed", "complete"], done
    assert done[0]["error"]["code"] == "worker_lost"
    metrics = client.get(f"/jobs/{sweep_id}/metrics").json()
    assert metrics["n_trials"] == 2
    assert [t["state"] for t in metrics["trials"]] == ["fail", "complete"]
    assert metrics["best_trial"]["number"] == 1
