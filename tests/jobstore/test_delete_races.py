"""A delete racing the writes that follow a job's end, against a real Redis (this module's
database, flushed around each test) and a real artifact directory: the delete wins.
The job never comes back (from its copy on the volume, nor after Redis loses its data and the
indexes are rebuilt), and its files stop counting toward its tenant's stored bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lpft_contract.job_store import INDEXED, REBUILDING, JobStore
from lpft_contract.records import JobRecord, JobStatus
from lpft_contract.stores import Stores

from tests.api.test_metrics import job as queued_job
from tests.jobstore import empty_database
from tests.redis_fixtures import RedisDatabase

WAIT_S = 30


class PausingStore(JobStore):
    """The real store, stopped right after a finish changed the status in Redis and before
    it writes the volume copies, until the test has deleted the job."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.committed = threading.Event()
        self.deleted = threading.Event()

    def _write_record(self, record: JobRecord) -> None:
        if record.status.is_terminal and not self.committed.is_set():
            self.committed.set()
            assert self.deleted.wait(WAIT_S), "the test never deleted the job"
        super()._write_record(record)


@pytest.fixture
def store(tmp_path: Path, redis_db: RedisDatabase) -> Iterator[PausingStore]:
    client = redis_db.client()
    with empty_database(client):
        pausing = Stores.over(client, tmp_path, jobs=PausingStore).jobs
        assert isinstance(pausing, PausingStore)
        yield pausing


def running_job(store: JobStore) -> JobRecord:
    """A claimed job with a model on the volume, as a worker leaves it before finishing."""
    record = store.create_job(queued_job("finetune"))
    assert store.claim(record.id, "w", 60) is not None
    store.volume.model_dir(record.id).mkdir(parents=True)
    (store.volume.model_dir(record.id) / "weights.bin").write_bytes(b"x" * 1000)
    return record


def finished_job(store: PausingStore) -> JobRecord:
    """A job that succeeded, its finish left to run through."""
    record = running_job(store)
    store.deleted.set()
    finished = store.finish(record.id, JobStatus.SUCCEEDED, worker="w")
    assert finished is not None
    return finished


def finish_succeeded(store: JobStore, record: JobRecord) -> None:
    store.finish(record.id, JobStatus.SUCCEEDED, worker="w")


def cancel_queued(store: JobStore, record: JobRecord) -> None:
    store.request_cancel(record.id)


def fail_lost_run(store: JobStore, record: JobRecord) -> None:
    claimed = store.get_job(record.id)
    assert claimed is not None
    assert not store.requeue_or_fail(claimed, "worker w was lost", max_attempts=1)


def assert_gone(store: JobStore, record: JobRecord) -> None:
    assert store.get_job(record.id) is None
    assert store.list_jobs(record.tenant, None, 10).items == []
    assert not store.volume.job_dir(record.id).exists()
    assert store.redis.hget(f"lpft:job-bytes:{record.tenant}", record.id) is None
    assert not store.redis.exists(f"lpft:job:{record.id}:events")
    indexes = store.redis.keys("lpft:jobs-with-status:*")
    assert all(store.redis.zscore(key, record.id) is None for key in indexes)


@pytest.mark.parametrize("end", [finish_succeeded, cancel_queued, fail_lost_run])
def test_a_delete_while_the_end_of_a_job_is_written_wins(
    store: PausingStore, end: Callable[[JobStore, JobRecord], None]
) -> None:
    if end is cancel_queued:
        record = store.create_job(queued_job("finetune"))
    else:
        record = running_job(store)
    errors: list[BaseException] = []

    def ending() -> None:
        try:
            end(store, record)
        except BaseException as error:  # reaches the assertion below
            errors.append(error)

    thread = threading.Thread(target=ending)
    thread.start()
    try:
        assert store.committed.wait(WAIT_S), f"the job never finished: {errors}"
        finished = store.get_job(record.id)
        assert finished is not None and finished.status.is_terminal, finished
        store.delete_job(finished)  # what the client does as soon as it sees the status
    finally:
        store.deleted.set()
        thread.join(WAIT_S)
    assert not thread.is_alive(), "the finish did not return"
    assert errors == []
    assert_gone(store, record)
    assert store.quotas.stored_bytes(record.tenant) == 0

    store.redis.flushdb()  # Redis loses its data; recovery rebuilds from the volume
    assert store.rebuild_indexes() == 0
    assert_gone(store, record)


def test_an_archive_measured_after_a_delete_does_not_count(store: PausingStore) -> None:
    record = finished_job(store)
    (store.volume.job_dir(record.id) / "model-1.tar.gz").write_bytes(b"y" * 500)  # a build done
    store.delete_job(record)  # before the build thread measured it
    store.quotas.measure_job(record)
    assert store.quotas.stored_bytes(record.tenant) == 0
    assert_gone(store, record)


def test_a_copy_left_behind_by_a_finish_that_died_is_not_read_back(store: PausingStore) -> None:
    record = finished_job(store)
    store.delete_job(record)
    # what a finish that wrote its copy as the delete came, then died, leaves behind
    store.volume.job_dir(record.id).mkdir(parents=True)
    (store.volume.job_dir(record.id) / "record.json").write_text(record.model_dump_json())
    assert store.get_job(record.id) is None
    assert store.list_jobs(record.tenant, None, 10).items == []
    assert store.finish(record.id, JobStatus.FAILED) is None  # nor re-indexed by a transition
    assert not store.redis.exists(f"lpft:job:{record.id}")


def test_a_rebuild_heals_the_stored_bytes(store: PausingStore) -> None:
    record = finished_job(store)
    measured = store.quotas.stored_bytes(record.tenant)
    assert measured >= 1000
    # drift an older release could leave: a deleted job still counted, a stale size
    store.redis.hset(f"lpft:job-bytes:{record.tenant}", mapping={"job-gone": 10**9})
    store.redis.hset(f"lpft:job-bytes:{record.tenant}", record.id, 1)
    store.redis.hset("lpft:job-bytes:bob", "job-gone-too", 5)
    store.redis.delete(INDEXED)  # a release whose indexes need building
    assert store.rebuild_indexes() == 1
    assert store.redis.hgetall(f"lpft:job-bytes:{record.tenant}") == {record.id: str(measured)}
    assert store.quotas.stored_bytes("bob") == 0


def test_one_replica_rebuilds_the_indexes(store: PausingStore) -> None:
    store.create_job(queued_job("finetune"))
    store.redis.flushdb()
    store.redis.set(REBUILDING, "another replica")
    assert store.rebuild_indexes() is None  # that replica does it
    assert not store.indexes_present()
    store.redis.delete(REBUILDING)  # it finished, or died and its lock expired
    assert store.rebuild_indexes() == 1
    assert store.indexes_present()
    assert not store.redis.exists(REBUILDING)
