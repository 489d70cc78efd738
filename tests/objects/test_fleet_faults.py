"""Faults of the artifact store as a fleet meets them (tests/objects/fleet.py): a 10 s outage
in the middle of a job, through a proxy the test closes and reopens (moto itself keeps its
objects), and processes started with wrong credentials or without their bucket."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import job_body, stack_env, upload, wait_for
from tests.objects.conftest import BUCKET
from tests.objects.fleet import running_fleet, wait_for_an_epoch
from tests.objects.moto_server import aws_environment, running_moto
from tests.objects.proxy import running_proxy
from tests.redis_fixtures import PrivateRedis

#: Longer than every wait the outage must outlast: three leases (LPFT_LEASE_SECONDS=3 in the
#: test stack, so a job stuck on the store would be taken for dead and run again), twice the
#: longest backoff between store retries (LONGEST_WAIT_S, 5 s) and the 2 s budget of /readyz's
#: probe; far inside LPFT_STORE_RETRY_SECONDS (60), after which a job would fail. The job
#: meets it within an epoch (about a second here): each epoch's checkpoint goes to the store.
OUTAGE_S = 10
#: How long a process may take to give up on a store it cannot use at startup.
START_S = 120


def readiness(url: str) -> tuple[int, dict]:
    answer = httpx.get(f"{url}/readyz", timeout=30)
    return answer.status_code, answer.json()


def test_a_job_rides_out_a_10_s_outage_of_the_store_while_readyz_says_so(
    tmp_path: Path,
    moto_endpoint: str,
    redis_server: PrivateRedis,
    tiny_model_dir: Path,
    toy_dataset_files: dict[str, Path],
) -> None:
    database = redis_server.new_database()
    with (
        running_proxy(moto_endpoint) as proxy,
        running_fleet(tmp_path, database, tiny_model_dir.parent, moto_endpoint, proxy.url) as fleet,
        fleet.client() as alice,
    ):
        dataset = {split: upload(alice, path) for split, path in toy_dataset_files.items()}
        job = alice.post("/jobs", json=job_body(dataset, tiny_model_dir, epochs=4, batch_size=1))
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        wait_for_an_epoch(alice, job_id)

        proxy.close()
        closed_at = time.monotonic()
        status, body = readiness(fleet.api.url)
        while status != 503:
            assert time.monotonic() - closed_at < OUTAGE_S, f"/readyz kept saying {body}"
            status, body = readiness(fleet.api.url)
        assert body["checks"]["redis"] == "ok" and body["checks"]["artifacts"] == "unavailable"
        assert alice.get(f"/jobs/{job_id}").json()["status"] == "running"
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - closed_at)))
        proxy.open()

        finished = wait_for(alice, job_id, {"succeeded"}, timeout=300)
        assert finished["attempts"] == 1, "the outage cost the job its run"
        assert readiness(fleet.api.url)[0] == 200
        assert f"jobs/{job_id}/model/metrics.json" in fleet.keys(f"jobs/{job_id}/model")


def start(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a service process that is expected to refuse to start, to its exit."""
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=START_S
    )


API = [sys.executable, "-m", "lpft_api"]
WORKER = [
    sys.executable, "-m", "celery", "-A", "lpft_worker.celery_app", "worker",
    "-Q", "cpu", "-P", "solo", "--without-gossip", "--without-mingle",
]  # fmt: skip


@pytest.mark.parametrize("process", [API, WORKER], ids=["api", "worker"])
@pytest.mark.parametrize("fault", ["wrong credentials", "missing bucket"])
def test_a_process_refuses_to_start_on_a_store_it_cannot_use_and_says_why(
    tmp_path: Path,
    moto_endpoint: str,
    redis_server: PrivateRedis,
    tiny_model_dir: Path,
    process: list[str],
    fault: str,
) -> None:
    env = {
        **stack_env(redis_server.new_database(), tmp_path / "unused", tiny_model_dir.parent),
        "LPFT_API_PORT": "0",
        "LPFT_CACHE_DIR": str(tmp_path / "cache"),
    }
    if fault == "missing bucket":
        env |= aws_environment(moto_endpoint) | {"LPFT_ARTIFACTS_URL": "s3://no-such-bucket/x"}
        done = start(process, env, tmp_path)
        expected = ["no-such-bucket", "LPFT_ARTIFACTS_URL"]
    else:
        with running_moto(tmp_path / "moto.log", iam_checks=True) as checked:
            env |= aws_environment(checked) | {"LPFT_ARTIFACTS_URL": f"s3://{BUCKET}/x"}
            done = start(process, env, tmp_path)
        expected = ["AWS_ACCESS_KEY_ID"]
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    for words in expected:
        assert words in output, output
    assert "ArtifactStoreMisconfigured" in output, output
    assert not os.path.exists(tmp_path / "unused")
