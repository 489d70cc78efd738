"""The client and the ``lpft`` service verbs against the real service: a uvicorn API, a
Celery worker and a Redis database of this module's own, run for this module alone so that
killing its API touches no other test."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lpft_client import AsyncLpftClient, LpftClient
from lpft_client.types import EpochEvent, Job, JobMetrics

from tests.conftest import TINY_HYPERPARAMETERS, toy_rows
from tests.integration.conftest import KEYS, ApiServer, Worker, stack_env
from tests.redis_fixtures import RedisDatabase

#: Long enough (seconds of training on the tiny model) to kill the API in its middle.
LONG_JOB = {"epochs": 4, "batch_size": 1}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, redis_db: RedisDatabase
) -> Iterator[dict]:
    directory = tmp_path_factory.mktemp("client-stack")
    env = stack_env(redis_db, directory / "artifacts", tiny_model_dir.parent)
    state: dict[str, Any] = {"env": env, "dir": directory}
    # The API imports the ML stack while the worker starts.
    state["api"] = ApiServer(env, directory / "api.log", wait=False)
    state["worker"] = Worker(env, "cpu", "client-tests", directory / "worker.log")
    state["api"].wait_until_ready()
    yield state
    state["worker"].stop()
    state["api"].stop()


@pytest.fixture
def client(stack: dict) -> Iterator[LpftClient]:
    with LpftClient(stack["api"].url, KEYS["alice"]) as client:
        yield client


@pytest.fixture(scope="module")
def splits(stack: dict) -> dict[str, str]:
    with LpftClient(stack["api"].url, KEYS["alice"]) as client:
        return {
            name: client.datasets.create(toy_rows(n, seed=seed), name=name).id
            for name, n, seed in (("train", 90, 1), ("validation", 30, 2), ("test", 30, 3))
        }


def submit(client: LpftClient, splits: dict[str, str], model: Path, **hyper: Any) -> Job:
    return client.jobs.create(
        method="lp_ft",
        model=str(model),
        hyperparameters={**TINY_HYPERPARAMETERS, "device": "cpu", **hyper},
        **splits,
    )


@pytest.fixture(scope="module")
def finished_job(stack: dict, splits: dict[str, str], tiny_model_dir: Path) -> Job:
    with LpftClient(stack["api"].url, KEYS["alice"]) as client:
        job = client.jobs.wait(submit(client, splits, tiny_model_dir).id, poll_s=0.2, timeout_s=300)
    assert job.status == "succeeded", job.error
    return job


def lpft(stack: dict, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lpft_client.cli", *args]
    api = ["--api-url", stack["api"].url, "--api-key", KEYS["alice"]]
    return subprocess.run(command + api, capture_output=True, text=True, timeout=300)


def test_lists_iterate_across_pages(
    client: LpftClient, stack: dict, finished_job: Job, splits: dict[str, str], tiny_model_dir: Path
) -> None:
    submit(client, splits, tiny_model_dir)  # a second job, so the jobs span two pages
    one_page = [d.id for d in next(client.datasets.list(limit=100).pages()).data]
    assert len(one_page) >= 3
    assert [d.id for d in client.datasets.list(limit=1)] == one_page
    assert len(list(client.datasets.list(limit=1).pages())) == len(one_page)
    jobs = [j.id for j in client.jobs.list(limit=1)]
    assert len(jobs) >= 2 and len(set(jobs)) == len(jobs) and finished_job.id in jobs

    async def async_ids() -> tuple[list[str], list[str]]:
        async with AsyncLpftClient(stack["api"].url, KEYS["alice"]) as aclient:
            datasets = [d.id async for d in aclient.datasets.list(limit=2)]
            return datasets, [j.id async for j in aclient.jobs.list(limit=1)]

    assert asyncio.run(async_ids()) == (one_page, jobs)


def test_a_finished_job_streams_its_whole_log_sync_and_async(
    client: LpftClient, stack: dict, finished_job: Job
) -> None:
    streamed = [e.id for e in client.jobs.stream_events(finished_job.id)]
    assert streamed == [e.id for e in client.jobs.list_events(finished_job.id, limit=7)]

    async def async_stream() -> list[str]:
        async with AsyncLpftClient(stack["api"].url, KEYS["alice"]) as aclient:
            return [e.id async for e in aclient.jobs.stream_events(finished_job.id)]

    assert asyncio.run(async_stream()) == streamed


def test_a_job_log_comes_back_typed(client: LpftClient, finished_job: Job) -> None:
    log = client.jobs.logs(finished_job.id, limit=1000)
    assert log.data and {r.job_id for r in log.data} == {finished_job.id}
    assert "job succeeded" in [r.message for r in log.data]
    last = client.jobs.logs(finished_job.id, limit=1)
    assert last.has_more and last.data == log.data[-1:]
    metrics = client.jobs.metrics(finished_job.id)
    assert isinstance(metrics, JobMetrics) and metrics.test.rows == 30


def test_jobs_watch_draws_progress_then_the_metrics_table(stack: dict, finished_job: Job) -> None:
    watched = lpft(stack, "jobs", "watch", finished_job.id)
    assert watched.returncode == 0, watched.stderr
    assert "status: succeeded" in watched.stderr
    for stage in ("lp", "ft", "calibrate"):
        assert stage in watched.stderr  # one bar per stage
    assert "epoch 2" in watched.stderr and "loss" in watched.stderr
    assert "temperature T =" in watched.stdout and "calibrated" in watched.stdout

    as_json = lpft(stack, "jobs", "watch", finished_job.id, "--json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["job"]["status"] == "succeeded"
    assert document["metrics"]["test"]["rows"] == 30


def test_download_streams_the_model_archive_to_disk(
    client: LpftClient, stack: dict, finished_job: Job, tmp_path: Path
) -> None:
    archive = client.jobs.download(finished_job.id, "model", tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        assert any(name.endswith("metrics.json") for name in tar.getnames())
    assert not (tmp_path / "model.tar.gz.part").exists()
    out = tmp_path / "report.md"
    done = lpft(
        stack, "jobs", "download", finished_job.id, "--what", "report", "--format", "md",
        "--out", str(out), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bytes"] == out.stat().st_size > 0


def test_datasets_verbs(stack: dict, tmp_path: Path) -> None:
    path = tmp_path / "extra.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in toy_rows(12, seed=9)))
    uploaded = lpft(stack, "datasets", "upload", str(path), "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    dataset = json.loads(uploaded.stdout)
    assert dataset["rows"] == 12 and dataset["name"] == "extra.jsonl"
    listed = json.loads(lpft(stack, "datasets", "list", "--json", "--limit", "500").stdout)
    assert dataset["id"] in [d["id"] for d in listed["data"]]
    shown = lpft(stack, "datasets", "show", dataset["id"])
    assert json.loads(shown.stdout)["label_counts"] == dataset["label_counts"]
    deleted = lpft(stack, "datasets", "delete", dataset["id"])
    assert deleted.returncode == 0 and f"deleted {dataset['id']}" in deleted.stdout
    missing = lpft(stack, "datasets", "show", dataset["id"])
    assert missing.returncode == 2 and "404" in missing.stderr


def test_a_watch_rides_out_an_api_restart(
    client: LpftClient, stack: dict, splits: dict[str, str], tiny_model_dir: Path
) -> None:
    """The issue's done-when: the API is killed (SIGKILL) for a few seconds mid-job and
    started again on its port; both a ``lpft jobs watch`` and an in-process stream carry on
    to the end, and the stream received every event of the log once."""
    job = submit(client, splits, tiny_model_dir, **LONG_JOB)
    watcher = subprocess.Popen(
        [sys.executable, "-m", "lpft_client.cli", "jobs", "watch", job.id]
        + ["--api-url", stack["api"].url, "--api-key", KEYS["alice"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watcher.stderr is not None
    # The watch is connected once it printed the job's first status, before the kill.
    while not (line := watcher.stderr.readline()).startswith("status:"):
        assert line, f"the watch ended before it connected (exit {watcher.wait()})"
    received, restarted = [], False
    for event in client.jobs.stream_events(job.id):
        received.append(event.id)
        if isinstance(event, EpochEvent) and not restarted:
            api = stack["api"]
            os.kill(api.process.pid, signal.SIGKILL)
            api.process.wait()
            time.sleep(3)  # the API stays away for a few seconds
            stack["api"] = ApiServer(stack["env"], stack["dir"] / "api.log", port=api.port)
            restarted = True
    assert restarted, "the job ended before its first epoch: nothing was interrupted"
    out, err = watcher.communicate(timeout=300)
    assert watcher.returncode == 0, err
    assert "status: succeeded" in err and "temperature T =" in out
    log = [e.id for e in client.jobs.list_events(job.id, limit=1000)]
    assert received == log  # none lost, none twice
