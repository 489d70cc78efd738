"""Each tenant's feed of job changes against a real Redis: every transition the store makes
(created, claimed, re-queued, finished, cancelled, deleted) is on the feed of the job's own
tenant, in order, and a reader whose cursor fell behind the trimmed feed is told so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lpft_contract.job_changes import (
    CHANGES_MAXLEN,
    JobChanges,
    Position,
    changes_key,
    queue_change,
)
from lpft_contract.records import JobStatus
from lpft_contract.stores import Stores

from tests.api.test_metrics import job as queued_job
from tests.jobstore import empty_database
from tests.redis_fixtures import RedisDatabase


@pytest.fixture
def stores(tmp_path: Path, redis_db: RedisDatabase) -> Iterator[Stores]:
    client = redis_db.client()
    with empty_database(client):
        yield Stores.over(client, tmp_path)


def changes_of(stores: Stores, tenant: str) -> list[tuple[str, str, str, str | None]]:
    found = JobChanges(stores.redis).read(tenant, None, 1000).items
    return [(c["type"], c["job_id"], c["status"], c["previous_status"]) for c in found]


def test_every_transition_is_on_its_tenants_feed_in_order(stores: Stores) -> None:
    jobs = stores.jobs
    mine = jobs.create_job(queued_job("finetune"))
    theirs = jobs.create_job(queued_job("finetune").model_copy(update={"tenant": "bob"}))
    assert jobs.claim(mine.id, "w1", 60) is not None
    assert jobs.requeue(mine.id, "w1", "worker lost") is not None
    assert jobs.claim(mine.id, "w2", 60) is not None
    assert jobs.finish(mine.id, JobStatus.SUCCEEDED, worker="w2") is not None
    assert jobs.finish(mine.id, JobStatus.FAILED) is None  # already final: no change
    jobs.delete_job(jobs.get_job(mine.id))
    jobs.request_cancel(theirs.id)

    assert changes_of(stores, "alice") == [
        ("created", mine.id, "queued", None),
        ("status", mine.id, "running", "queued"),
        ("status", mine.id, "queued", "running"),
        ("status", mine.id, "running", "queued"),
        ("status", mine.id, "succeeded", "running"),
        ("deleted", mine.id, "succeeded", None),
    ]
    assert changes_of(stores, "bob") == [
        ("created", theirs.id, "queued", None),
        ("status", theirs.id, "cancelled", "queued"),
    ]


def test_a_cursor_behind_the_trimmed_feed_is_told_it_missed_changes(stores: Stores) -> None:
    record = queued_job("finetune")
    feed = JobChanges(stores.redis)
    assert feed.position("alice", None).head == "0-0"
    pipe = stores.redis.pipeline(transaction=False)
    queue_change(pipe, "created", record)
    first, _ = pipe.execute()  # the entry's id, and its feed's expiry renewed
    assert feed.position("alice", first).missed is False
    for _ in range(CHANGES_MAXLEN + 500):
        queue_change(pipe, "status", record, JobStatus.QUEUED)
    head = pipe.execute()[-2]
    assert stores.redis.xlen(changes_key("alice")) < CHANGES_MAXLEN + 501  # trimmed

    assert feed.position("alice", first).missed is True
    assert feed.position("alice", head) == feed.position("alice", None)
    assert feed.position("alice", head).head == head
    assert feed.position("alice", head).missed is False
    assert feed.read("alice", head, 10).items == []


def test_a_cursor_into_a_feed_redis_lost_is_told_it_missed_changes(stores: Stores) -> None:
    """Redis restarted empty (or from an older snapshot): the reader's cursor is not in the
    feed it finds, so it re-reads its list, whether the feed is gone, came back shorter or
    was written again after the restart."""
    feed = JobChanges(stores.redis)
    # No feed at all: a reader that started on an empty feed ("0-0") cannot tell it from one
    # Redis lost, so it is told to re-read its list: one read, where a feed was lost.
    assert feed.position("alice", "0-0") == Position("0-0", True)
    created = stores.jobs.create_job(queued_job("finetune"))
    [(seen, _)] = stores.redis.xrange(changes_key("alice"))
    assert feed.position("alice", "0-0").missed is False  # nothing trimmed: all of it is there
    assert stores.redis.ttl(changes_key("alice")) > 0  # an idle tenant's feed does not stay

    stores.redis.delete(changes_key("alice"))  # what a restart without the data leaves
    assert feed.position("alice", seen) == Position("0-0", True)
    stores.jobs.request_cancel(created.id)  # a change after the restart starts a new feed
    assert feed.position("alice", seen).missed is True
    [(after_restart, _)] = stores.redis.xrange(changes_key("alice"))
    assert feed.position("alice", after_restart).missed is False
    assert feed.position("alice", "9999999999999-0").missed is True  # ahead of the feed
