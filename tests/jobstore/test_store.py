"""The store's job list against a real Redis (this module's database, flushed around each
test): ``list_jobs(status=...)`` pages a per-tenant, per-status index that moves with every
status change, instead of reading the tenant's whole history.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from lpft_contract.integrations import IntegrationRecord, IntegrationStatus, MlflowOptions
from lpft_contract.job_store import JobStore
from lpft_contract.paging import Page
from lpft_contract.records import JobRecord, JobStatus
from lpft_contract.stores import Stores

from tests.api.test_metrics import job as queued_job
from tests.jobstore import empty_database
from tests.redis_fixtures import RedisDatabase


class CountingRedis(redis.Redis):
    """A real client that counts the job records its commands read, to tell an index read
    (the page's records) from a scan (every record of the tenant)."""

    records_read = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if args[0] in ("GET", "MGET"):
            keys = args[1:]
            self.records_read += sum(
                1 for k in keys if k.startswith("lpft:job:") and k.count(":") == 2
            )
        return super().execute_command(*args, **options)


@pytest.fixture
def store(tmp_path: Path, redis_db: RedisDatabase) -> Iterator[JobStore]:
    client = redis_db.client(CountingRedis)
    with empty_database(client):
        yield Stores.over(client, tmp_path).jobs


def job(n: int, tenant: str = "alice", created_at: float | None = None) -> JobRecord:
    """Job ``n`` of ``tenant``, created ``n`` seconds after the others' start."""
    return queued_job("finetune").model_copy(
        update={
            "id": f"job-{n:06d}",
            "tenant": tenant,
            "created_at": 1_000.0 + n if created_at is None else created_at,
        }
    )


def ids(page: Page[JobRecord]) -> tuple[list[str], bool]:
    return [record.id for record in page.items], page.has_more


def fail(store: JobStore, job_id: str) -> None:
    assert store.claim(job_id, "w", 60) is not None
    assert store.finish(job_id, JobStatus.FAILED, worker="w") is not None


def test_a_status_filter_reads_the_page_not_the_history(store: JobStore) -> None:
    store.index_jobs(job(n) for n in range(500))
    for n in (7, 300, 450):
        fail(store, f"job-{n:06d}")
    store.redis.records_read = 0
    assert ids(store.list_jobs("alice", None, 2, JobStatus.FAILED)) == (
        ["job-000450", "job-000300"],
        True,
    )
    assert ids(store.list_jobs("alice", None, 20, JobStatus.CANCELLED)) == ([], False)
    assert store.redis.records_read <= 3  # the page's records (2 + 1 to know more follow)


def test_the_status_index_moves_with_each_transition_and_pages_newest_first(
    store: JobStore,
) -> None:
    for n in range(6):
        store.create_job(job(n))
    store.create_job(job(99, tenant="bob"))
    assert ids(store.list_jobs("alice", None, 10, JobStatus.QUEUED))[0] == [
        f"job-{n:06d}" for n in (5, 4, 3, 2, 1, 0)
    ]
    for n in (1, 3, 4):
        store.claim(f"job-{n:06d}", "w", 60)
    store.finish("job-000003", JobStatus.SUCCEEDED, worker="w")
    store.request_cancel("job-000005")  # a queued job is cancelled at once
    assert ids(store.list_jobs("alice", None, 10, JobStatus.QUEUED)) == (
        ["job-000002", "job-000000"],
        False,
    )
    assert ids(store.list_jobs("alice", None, 10, JobStatus.RUNNING))[0] == [
        "job-000004",
        "job-000001",
    ]
    assert ids(store.list_jobs("alice", None, 10, JobStatus.SUCCEEDED))[0] == ["job-000003"]
    assert ids(store.list_jobs("alice", None, 10, JobStatus.CANCELLED))[0] == ["job-000005"]
    assert ids(store.list_jobs("bob", None, 10, JobStatus.QUEUED))[0] == ["job-000099"]
    store.requeue("job-000004", "w", "lost")
    assert ids(store.list_jobs("alice", None, 1, JobStatus.QUEUED)) == (["job-000004"], True)

    store.delete_job(store.get_job("job-000003"))
    assert ids(store.list_jobs("alice", None, 10, JobStatus.SUCCEEDED)) == ([], False)
    indexes = store.redis.keys("lpft:jobs-with-status:*")
    assert all(store.redis.zscore(key, "job-000003") is None for key in indexes)


def test_paging_a_status_continues_after_any_of_the_tenants_jobs(store: JobStore) -> None:
    # Equal creation times are ordered as the tenant's unfiltered list orders them.
    store.index_jobs(
        [*(job(n) for n in range(4)), *(job(n, created_at=1_010.0) for n in (10, 11, 12))]
    )
    for n in (0, 2, 10, 12):
        fail(store, f"job-{n:06d}")
    unfiltered = ids(store.list_jobs("alice", None, 10))[0]
    assert unfiltered[:3] == ["job-000012", "job-000011", "job-000010"]
    first = ids(store.list_jobs("alice", None, 1, JobStatus.FAILED))
    assert first == (["job-000012"], True)
    assert ids(store.list_jobs("alice", "job-000012", 2, JobStatus.FAILED)) == (
        ["job-000010", "job-000002"],
        True,
    )
    # ``after`` needs not have the status (it changed since, or came from the unfiltered list)
    assert ids(store.list_jobs("alice", "job-000011", 10, JobStatus.FAILED)) == (
        ["job-000010", "job-000002", "job-000000"],
        False,
    )
    assert ids(store.list_jobs("alice", "job-000001", 10, JobStatus.FAILED)) == (
        ["job-000000"],
        False,
    )
    assert ids(store.list_jobs("alice", "job-nope", 10, JobStatus.FAILED)) == ([], False)


def test_a_store_from_before_the_tenant_status_index_is_backfilled(store: JobStore) -> None:
    failed = store.create_job(job(1))
    fail(store, failed.id)
    store.create_job(job(2))
    store.redis.set("lpft:indexed:v3", "1")  # a store the previous release indexed
    for key in store.redis.keys("lpft:jobs-with-status:*"):  # which had no such index
        store.redis.delete(key)
    assert not store.indexes_present()  # so recovery rebuilds the indexes
    store.rebuild_indexes()
    assert store.indexes_present()
    assert ids(store.list_jobs("alice", None, 10, JobStatus.FAILED)) == ([failed.id], False)
    assert ids(store.list_jobs("alice", None, 10, JobStatus.QUEUED)) == (["job-000002"], False)


def test_a_page_continues_after_the_last_job_it_read_even_one_left_out(store: JobStore) -> None:
    store.index_jobs(job(n) for n in range(4))
    store.redis.delete("lpft:job:job-000002")  # deleted after the page read the index
    page = store.list_jobs("alice", None, 2)
    assert ids(page) == (["job-000003"], True)
    assert page.last_id == "job-000002"  # not the last job shown: that would repeat it
    assert ids(store.list_jobs("alice", page.last_id, 2)) == (["job-000001", "job-000000"], False)
    assert store.list_jobs("alice", "job-000000", 2) == Page([], "job-000000", False)


@pytest.mark.parametrize("ending", ["cancelled while queued", "failed", "cancelled while running"])
def test_a_job_that_does_not_succeed_gives_its_integrations_up(
    store: JobStore, ending: str
) -> None:
    """A run is logged once a job succeeded: any other ending must not leave the record's
    integrations pending forever (a client waits for them to leave pending)."""
    mlflow = IntegrationRecord(type="mlflow", mlflow=MlflowOptions(), experiment="lpft/alice/x")
    record = store.create_job(queued_job("finetune").model_copy(update={"integrations": [mlflow]}))
    if ending == "cancelled while queued":
        ended = store.request_cancel(record.id)
    else:
        assert store.claim(record.id, "w", lease_s=30) is not None
        status = JobStatus.FAILED if ending == "failed" else JobStatus.CANCELLED
        ended = store.finish(record.id, status, worker="w")
    assert ended is not None and ended.status.is_terminal
    (integration,) = store.get_job(record.id).integrations
    assert integration.status == IntegrationStatus.FAILED
    assert integration.error and ended.status.value in integration.error

    succeeded = store.create_job(
        queued_job("finetune").model_copy(update={"integrations": [mlflow]})
    )
    assert store.claim(succeeded.id, "w", lease_s=30) is not None
    store.finish(succeeded.id, JobStatus.SUCCEEDED, worker="w")
    assert store.get_job(succeeded.id).integrations == [mlflow], "a success's run is still due"
