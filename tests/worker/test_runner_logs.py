"""The training process logs JSON lines to stderr and to the job's own log; an internal
error as one record with its traceback and the ``error_id`` that the job's error quotes; the
job's own log (its tenant reads it) has lpft's records, the failure without its traceback."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from lpft_contract.logs import JOB_LOG, JobLogFile, job_id, read_job_log
from lpft_contract.records import JobRecord, JobStatus, new_id
from lpft_contract.stores import Stores
from lpft_worker.outcome import Outcome

from tests.redis_fixtures import RedisDatabase


def test_an_internal_error_is_one_json_record_with_its_error_id(
    tmp_path: Path, redis_db: RedisDatabase
) -> None:
    stores = Stores.over(redis_db.client(), tmp_path)
    jobs = stores.jobs
    tenant = new_id("tenant")
    record = JobRecord(
        id=new_id("job"),
        tenant=tenant,
        kind="no-such-kind",  # dispatch raises ValueError: not a job error, an internal one
        method=None,
        model=None,
        dataset={},
        hyperparameters={},
        queue="cpu",
        spec={},
    )
    jobs.create_job(record)
    assert jobs.claim(record.id, "test-worker", lease_s=120) is not None
    env = {
        **os.environ,
        "LPFT_REDIS_URL": redis_db.url,
        "LPFT_ARTIFACTS_DIR": str(tmp_path),
    }
    report = tmp_path / "outcome.json"
    done = subprocess.run(
        [sys.executable, "-m", "lpft_worker.runner", record.id, str(report)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    logged = [json.loads(line) for line in done.stderr.splitlines()]
    assert all(r["job_id"] == record.id and r["tenant"] == tenant for r in logged), logged
    [failure] = [r for r in logged if r["level"] == "ERROR"]
    assert failure["error_id"].startswith("err-")
    assert "ValueError: 'no-such-kind' is not a valid JobKind" in failure["traceback"]
    outcome = Outcome.read(report)
    assert outcome is not None and outcome.status == JobStatus.FAILED
    assert outcome.error is not None and outcome.error.code == "internal"
    assert failure["error_id"] in outcome.error.message
    # the outcome is the supervisor's to record (tests/worker/test_supervisor.py), not the
    # training process's: the job still runs until its worker ends it
    still = jobs.get_job(record.id)
    assert still is not None and still.status == JobStatus.RUNNING
    # the tenant's own log has the same records, but no traceback: that shows the server's
    # code and paths, and stays in the process log where the error id leads the operator
    job_log, has_more = read_job_log(stores.volume.job_dir(record.id) / JOB_LOG, limit=100)
    assert job_log == [
        {k: v for k, v in r.items() if k != "traceback"}
        for r in logged
        if r["logger"].startswith("lpft")
    ]
    assert not has_more


def test_a_job_log_takes_only_its_job_and_stops_at_its_cap_after_a_note(tmp_path: Path) -> None:
    path = tmp_path / JOB_LOG
    logger = logging.getLogger(f"lpft.test.{new_id('log')}")
    logger.propagate = False
    logger.addHandler(handler := JobLogFile(path, "job-1", max_bytes=2000))
    logger.warning("before the job")
    token = job_id.set("job-1")
    for i in range(100):
        logger.warning("record %d", i)
    job_id.reset(token)
    logger.warning("after the job")
    handler.close()
    records, has_more = read_job_log(path, limit=1000)
    *kept, note = [r["message"] for r in records]
    assert 0 < len(kept) < 100 and not has_more
    assert kept == [f"record {i}" for i in range(len(kept))]
    assert note == "the job log reached its cap of 2000 bytes; later records dropped"
    assert path.stat().st_size <= 2000 + len(json.dumps(records[-1])) + 1
