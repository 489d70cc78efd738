"""The worker's supervisor against the real Redis and real child processes: small Python
programs that stand for training (one writes an outcome, one crashes, one ignores a cancel)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lpft_contract.records import ErrorInfo, JobRecord, JobStatus
from lpft_contract.stores import Stores, connect
from lpft_worker.outcome import Outcome
from lpft_worker.settings import WorkerSettings
from lpft_worker.supervisor import Ending, JobSupervisor

from tests.api.test_metrics import job as queued_job
from tests.jobstore import empty_database
from tests.redis_fixtures import RedisDatabase, free_port

WORKER = "host:1"
#: Long enough that only the supervisor ends these children before the test does.
FOREVER = [sys.executable, "-c", "import time; time.sleep(120)"]


def writes_outcome(outcome: Outcome, after_s: float = 0.0) -> list[str]:
    """A child that works ``after_s`` seconds, then reports ``outcome`` as training does."""
    script = (
        "import sys, time; from pathlib import Path; "
        "from lpft_worker.outcome import Outcome; "
        f"time.sleep({after_s}); "
        f"Outcome.model_validate_json({outcome.model_dump_json()!r}).write(Path(sys.argv[1]))"
    )
    return [sys.executable, "-c", script]


def settings(**overrides: float) -> WorkerSettings:
    values = {"lease_seconds": 5.0, "heartbeat_seconds": 0.1, "cancel_grace_seconds": 0.5}
    return WorkerSettings(**{**values, **overrides})


@pytest.fixture
def stores(tmp_path: Path, redis_db: RedisDatabase) -> Iterator[Stores]:
    client = redis_db.client()
    with empty_database(client):
        yield Stores.over(client, tmp_path)


@pytest.fixture
def running(stores: Stores) -> JobRecord:
    """A job this test's worker has claimed, as ``run_job`` leaves it before training."""
    record = stores.jobs.create_job(queued_job("finetune"))
    claimed = stores.jobs.claim(record.id, WORKER, lease_s=5.0)
    assert claimed is not None
    return claimed


def supervisor(stores: Stores, record: JobRecord, **overrides: float) -> JobSupervisor:
    return JobSupervisor(record.id, WORKER, settings(**overrides), stores, stores)


def final(stores: Stores, record: JobRecord) -> JobRecord:
    current = stores.jobs.get_job(record.id)
    assert current is not None
    return current


def test_the_outcome_the_child_reports_is_recorded(stores: Stores, running: JobRecord) -> None:
    error = ErrorInfo(code="dataset_invalid", message="no label column")
    reported = Outcome(status=JobStatus.FAILED, error=error)
    ending = supervisor(stores, running).run(writes_outcome(reported))
    assert ending == Ending.EXITED
    assert final(stores, running).status == JobStatus.FAILED
    assert final(stores, running).error == error
    last = stores.events.read(running.id, after=None, limit=10).items[-1]
    assert last["type"] == "status" and last["data"]["status"] == "failed"


def test_the_lease_is_renewed_while_the_child_trains(stores: Stores, running: JobRecord) -> None:
    """Claimed with a 2 s lease, the job trains for 4 s: only renewals keep it alive."""
    alive: list[bool] = []
    done = threading.Event()

    def sample() -> None:
        time.sleep(2.5)
        while not done.is_set():
            alive.append(stores.jobs.lease_alive(running.id))
            time.sleep(0.2)

    stores.jobs.heartbeat(running.id, WORKER, ttl=2.0)
    sampler = threading.Thread(target=sample)
    sampler.start()
    succeeded = Outcome(status=JobStatus.SUCCEEDED)
    ending = supervisor(stores, running, lease_seconds=2.0).run(writes_outcome(succeeded, 4.0))
    done.set()
    sampler.join()
    assert ending == Ending.EXITED and final(stores, running).status == JobStatus.SUCCEEDED
    assert alive and all(alive), alive


def test_a_success_reported_before_tracking_is_recorded_while_the_child_still_tracks(
    stores: Stores, running: JobRecord, tmp_path: Path
) -> None:
    """The child reports success with ``tracking`` and goes on (writing MLflow runs, here
    waiting for a file): the job is succeeded while it still runs, and the supervisor waits
    for it to end rather than killing it. The file is made only once the test has seen the
    job succeeded, so no timing decides the order; the child gives up after 60 s."""
    go = tmp_path / "go"
    reported = Outcome(status=JobStatus.SUCCEEDED, tracking=True)
    script = (
        "import sys, time; from pathlib import Path; from lpft_worker.outcome import Outcome; "
        f"Outcome.model_validate_json({reported.model_dump_json()!r}).write(Path(sys.argv[1])); "
        "deadline = time.monotonic() + 60\n"
        f"while not Path({str(go)!r}).exists():\n"
        "    time.sleep(0.05)\n"
        "    if time.monotonic() > deadline: raise SystemExit(7)\n"
        f"Path({str(tmp_path / 'tracked')!r}).touch()"
    )
    endings: list[Ending] = []
    watch = threading.Thread(
        target=lambda: endings.append(
            supervisor(stores, running).run([sys.executable, "-c", script])
        )
    )
    watch.start()
    deadline = time.monotonic() + 30
    while final(stores, running).status != JobStatus.SUCCEEDED:
        assert watch.is_alive() and time.monotonic() < deadline, final(stores, running)
        time.sleep(0.05)
    assert not (tmp_path / "tracked").exists()
    go.touch()
    watch.join(timeout=60)
    assert endings == [Ending.REPORTED]
    assert (tmp_path / "tracked").exists(), "the supervisor stopped the child's tracking"


def test_a_child_that_dies_without_an_outcome_fails_the_job(
    stores: Stores, running: JobRecord
) -> None:
    crash = [sys.executable, "-c", "raise SystemExit(3)"]
    assert supervisor(stores, running).run(crash) == Ending.EXITED
    error = final(stores, running).error
    assert final(stores, running).status == JobStatus.FAILED and error is not None
    assert error.code == "training_process_died"
    assert "exited with code 3" in error.message and "err-" in error.message


def test_a_cancel_the_child_ignores_is_enforced_after_its_grace(
    stores: Stores, running: JobRecord
) -> None:
    stores.jobs.request_cancel(running.id)
    started = time.monotonic()
    assert supervisor(stores, running).run(FOREVER) == Ending.CANCEL_ENFORCED
    assert time.monotonic() - started >= 0.5, "killed before the cancel's grace ran out"
    assert final(stores, running).status == JobStatus.CANCELLED


def test_a_job_handed_to_another_worker_stops_its_training_and_is_left_alone(
    stores: Stores, running: JobRecord
) -> None:
    """The recovery pass gave the job to worker 2 while this worker's training went on."""
    assert stores.jobs.requeue(running.id, WORKER, "lease lapsed") is not None
    assert stores.jobs.claim(running.id, "host:2", lease_s=60) is not None
    assert supervisor(stores, running).run(FOREVER) == Ending.LOST
    now = final(stores, running)
    assert now.status == JobStatus.RUNNING and now.worker == "host:2"


def test_a_job_ended_elsewhere_stops_its_training_and_keeps_its_end(
    stores: Stores, running: JobRecord
) -> None:
    lost = ErrorInfo(code="worker_lost", message="the recovery pass gave up on it")
    stores.jobs.finish(running.id, JobStatus.FAILED, lost, worker=WORKER)
    assert supervisor(stores, running).run(FOREVER) == Ending.LOST
    assert final(stores, running).error == lost


def unreachable(tmp_path: Path) -> Stores:
    """Stores whose Redis refuses every connection, as during an outage, through the client
    the worker watches with (its short retries bound how long a failing renewal blocks)."""
    return Stores.over(connect(f"redis://127.0.0.1:{free_port()}/0"), tmp_path)


def test_training_goes_on_through_a_redis_outage_shorter_than_the_fence(
    tmp_path: Path, stores: Stores, running: JobRecord
) -> None:
    """Renewals fail for the child's whole 1 s run, under the 4.5 s fence of a 3 s lease; the
    outcome is then written through the patient stores, which reach Redis again."""
    watch = JobSupervisor(
        running.id, WORKER, settings(lease_seconds=3.0), unreachable(tmp_path), stores
    )
    ending = watch.run(writes_outcome(Outcome(status=JobStatus.SUCCEEDED), 1.0))
    assert ending == Ending.EXITED
    assert final(stores, running).status == JobStatus.SUCCEEDED


def test_training_stops_once_redis_stays_away_past_the_fence(
    tmp_path: Path, stores: Stores, running: JobRecord
) -> None:
    watch = JobSupervisor(
        running.id, WORKER, settings(lease_seconds=1.0), unreachable(tmp_path), stores
    )
    started = time.monotonic()
    assert watch.run(FOREVER) == Ending.FENCED
    assert time.monotonic() - started >= 1.5, "fenced before 1.5 lease periods"
    assert final(stores, running).status == JobStatus.RUNNING, "a fenced job is not ended"
