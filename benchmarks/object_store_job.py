"""Issue 24's job overhead: the same lp_ft job on the local store and on an S3 server (moto),
wall time side by side. Goal: the S3 store adds under 10 % to a job.

    python benchmarks/object_store_job.py               # 2 runs per backend, alternating
    python benchmarks/object_store_job.py --rows 64 --no-record   # a smoke run

Two stacks on one private Redis (a database each), each an API and a solo Celery worker with
their own working directories and caches: one stores artifacts in a local directory, the other
in a fresh prefix of a bucket on moto. A stratified SST-2 train sample and the dev file (as
validation) are uploaded to each, then the same job (the offline default model, device cpu)
runs local, s3, local, s3. Wall time is POST /jobs to ``succeeded`` as the client sees it; job
time is the record's started_at to finished_at. The bytes are everything under jobs/{id} in
the store once the job has succeeded.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from _models import DATA, stratified_sample
from _moto import aws_environment, running_moto
from _results import append
from _stack import Stack, private_redis, running_stack
from lpft_contract.objects import LocalObjectStore, ObjectStore, S3ObjectStore

BUCKET = "bench"
TARGET_PCT = 10.0
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass(frozen=True)
class Run:
    backend: str
    run: int
    wall_s: float
    job_s: float
    stored_bytes: int
    objects: int


def upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as handle:
        response = client.post("/datasets", files={"file": (path.name, handle)})
    response.raise_for_status()
    return response.json()["id"]


def run_job(client: httpx.Client, body: dict, timeout_s: float = 1800) -> tuple[float, dict]:
    """Wall seconds from POST /jobs to ``succeeded``, and the finished record. Any other end
    stops the run, with the job's error."""
    started = time.perf_counter()
    response = client.post("/jobs", json=body)
    if response.status_code != 202:
        raise RuntimeError(f"POST /jobs: {response.status_code} {response.text}")
    job_id = response.json()["id"]
    while (job := client.get(f"/jobs/{job_id}").json())["status"] not in TERMINAL:
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"job {job_id} still {job['status']} after {timeout_s} s")
        time.sleep(0.2)
    wall = time.perf_counter() - started
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} ended {job['status']}: {job.get('error')}")
    return wall, job


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000, help="SST-2 train rows")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--runs", type=int, default=2, help="runs per backend")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    hyperparameters = {"epochs": args.epochs, "batch_size": 16, "max_length": 64}
    hyperparameters["device"] = "cpu"

    with ExitStack() as exits:
        root = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="lpft-store-job-")))
        (root / "redis").mkdir()
        redis_url = exits.enter_context(private_redis(root / "redis"))
        moto = exits.enter_context(running_moto(root / "moto.log"))
        prefix = f"job-bench-{uuid.uuid4().hex[:8]}"
        s3 = S3ObjectStore(BUCKET, prefix, environ=aws_environment(moto))
        import boto3

        boto3.client("s3", **boto_kwargs(moto)).create_bucket(Bucket=BUCKET)
        train = root / "train.jsonl"
        train.write_text("\n".join(stratified_sample(DATA / "sst2" / "train.jsonl", args.rows, 0)))
        validation = DATA / "sst2" / "validation.jsonl"

        stacks: dict[str, tuple[Stack, ObjectStore]] = {}
        environments = {
            "local": ({"LPFT_ARTIFACTS_DIR": str(root / "artifacts")}, None),
            "s3": ({**aws_environment(moto), "LPFT_ARTIFACTS_URL": f"s3://{BUCKET}/{prefix}"}, s3),
        }
        for number, (backend, (env, store)) in enumerate(environments.items()):
            (root / backend).mkdir()
            env = {**env, "LPFT_REDIS_URL": f"{redis_url}/{number}"}
            stack = exits.enter_context(running_stack(root / backend, env))
            stacks[backend] = (stack, store or LocalObjectStore(root / "artifacts"))
            print(f"{backend} stack up at {stack.url}", flush=True)

        bodies = {}
        for backend, (stack, _) in stacks.items():
            with stack.client() as client:
                dataset = {"train": upload(client, train), "validation": upload(client, validation)}
            bodies[backend] = {
                "method": "lp_ft",
                "dataset": dataset,
                "hyperparameters": hyperparameters,
                "seed": 0,
            }

        runs: list[Run] = []
        for number in range(1, args.runs + 1):
            for backend, (stack, store) in stacks.items():
                with stack.client() as client:
                    wall, job = run_job(client, bodies[backend])
                stored = store.list(f"jobs/{job['id']}")
                runs.append(
                    Run(
                        backend,
                        number,
                        wall,
                        job["finished_at"] - job["started_at"],
                        sum(info.size for info in stored),
                        len(stored),
                    )
                )
                print(runs[-1], flush=True)

    table, overhead = render(runs)
    print(table)
    if args.no_record:
        return
    verdict = "within" if overhead < TARGET_PCT else "over"
    append(
        f"Object store: one lp_ft job, local directory vs S3 (moto), {args.rows} SST-2 rows",
        table,
        f"The offline default model (all-MiniLM-L6-v2), `method: lp_ft`, {args.epochs} "
        f"epoch(s), batch 16, max_length 64, device cpu; train: {args.rows} stratified SST-2 "
        f"train rows, validation: the SST-2 dev file ({sum(1 for _ in validation.open())} rows). "
        "Each backend has its own API and solo Celery worker (own cwd, HOME, TMPDIR, "
        "LPFT_CACHE_DIR) on a private Redis; runs alternate local, s3. Wall: POST /jobs to "
        "`succeeded` seen by polling every 0.2 s; job: the record's started_at to finished_at. "
        "Bytes and objects: all under jobs/{id} in the store once the job succeeded. moto on "
        f"loopback keeps objects in memory. S3 overhead {overhead:+.1f} % of the local median "
        f"wall time ({verdict} the {TARGET_PCT:.0f} % goal).",
    )


def boto_kwargs(endpoint: str) -> dict[str, str]:
    env = aws_environment(endpoint)
    return {
        "endpoint_url": endpoint,
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_REGION"],
    }


def render(runs: list[Run]) -> tuple[str, float]:
    """The table, and the S3 overhead in % of the local median wall time."""
    median = {
        backend: statistics.median(r.wall_s for r in runs if r.backend == backend)
        for backend in ("local", "s3")
    }
    job_median = {
        backend: statistics.median(r.job_s for r in runs if r.backend == backend)
        for backend in ("local", "s3")
    }
    overhead = 100 * (median["s3"] / median["local"] - 1)
    rows = [
        "| backend | run | wall s | job s | stored under jobs/{id} (bytes, objects) |",
        "|---|---|---|---|---|",
    ]
    for r in runs:
        rows.append(
            f"| {r.backend} | {r.run} | {r.wall_s:.1f} | {r.job_s:.1f} "
            f"| {r.stored_bytes:,} ({r.objects}) |"
        )
    job_overhead = 100 * (job_median["s3"] / job_median["local"] - 1)
    rows.append(
        f"| s3 overhead (median vs local median) | – | {overhead:+.1f} % | {job_overhead:+.1f} % "
        "| – |"
    )
    return "\n".join(rows), overhead


if __name__ == "__main__":
    main()
