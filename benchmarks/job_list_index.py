"""``GET /jobs?status=``: the first page of one status among 100,000 jobs of one tenant,
against the unfiltered first page.

    python benchmarks/job_list_index.py                # 100,000 jobs, Redis DB 9
    python benchmarks/job_list_index.py --jobs 20000 --redis-url redis://127.0.0.1:6379/9

The jobs are written straight into a scratch Redis database (``JobStore.index_jobs``, a pipeline
per 1,000 records; nothing on the volume) with every status but ``cancelled``: 1 % ``failed``,
spread evenly through the history, so a first page of them is the rare status a scan reads the
most records for, and ``cancelled`` holds none, the worst case (a scan reads all of them). Each
page is ``JobStore.list_jobs`` as the route calls it (20 jobs, the route's default), the fastest
of ``--repeats`` calls. Target: every filtered page within 2x of the unfiltered one. The
database is flushed before and after.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from pathlib import Path

import redis
from _results import append
from _timing import best_of
from lpft_contract.records import JobRecord, JobStatus
from lpft_contract.stores import Stores

TENANT = "bench"
PAGE = 20


def records(count: int) -> Iterator[JobRecord]:
    """``count`` finished-looking jobs, one second apart; every 100th one failed."""
    for n in range(count):
        status = JobStatus.FAILED if n % 100 == 50 else JobStatus.SUCCEEDED
        if n >= count - 3:  # the newest few still queued or running, as in a live store
            status = JobStatus.QUEUED if n == count - 1 else JobStatus.RUNNING
        yield JobRecord(
            id=f"job-{n:020d}",
            tenant=TENANT,
            status=status,
            method="lp_ft",
            model=None,
            dataset={"train": "ds-bench"},
            hyperparameters={"epochs": 3},
            queue="gpu",
            spec={},
            created_at=1_700_000_000.0 + n,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis_url, decode_responses=True)
    client.flushdb()
    try:
        with tempfile.TemporaryDirectory() as volume:
            store = Stores.over(client, Path(volume)).jobs
            store.index_jobs(records(args.jobs))
            rows = []
            for status in (None, JobStatus.FAILED, JobStatus.CANCELLED):
                seconds, page = best_of(
                    args.repeats, lambda s=status: store.list_jobs(TENANT, None, PAGE, s)
                )
                rows.append((status, seconds, len(page.items)))
    finally:
        client.flushdb()
    unfiltered = rows[0][1]
    lines = [
        "| status filter | jobs of that status | jobs on the page | first page (ms) | "
        "× unfiltered |",
        "|---|---|---|---|---|",
    ]
    share = {None: args.jobs, JobStatus.FAILED: args.jobs // 100, JobStatus.CANCELLED: 0}
    for status, seconds, found in rows:
        name = status.value if status else "(none)"
        lines.append(
            f"| {name} | {share[status]:,} | {found} | {seconds * 1000:.2f} | "
            f"{seconds / unfiltered:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    append(
        f"GET /jobs?status=: first page among {args.jobs:,} jobs of one tenant",
        table,
        f"`JobStore.list_jobs(tenant, after=None, limit={PAGE}, status)` on Redis at "
        f"{args.redis_url} (loopback), the fastest of {args.repeats} calls. "
        "Target: each filtered page within 2x of the unfiltered one.",
    )


if __name__ == "__main__":
    main()
