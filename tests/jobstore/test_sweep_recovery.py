"""The recovery pass and a stalled sweep, against a real Redis and a real broker queue: a
running sweep none of whose trials is queued or running (the end of its last one was lost)
gets its message again once the grace has passed, and one with a trial still running does
not. The worker's side, picking such a sweep up, is tested with real workers in
``tests/integration/test_sweep_faults.py``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lpft_contract.enqueue import Enqueuer
from lpft_contract.records import JobStatus
from lpft_contract.recovery import Recovery, message_pending
from lpft_contract.stores import Stores
from lpft_contract.sweeps import SweepStore

from tests.api.test_metrics import job
from tests.jobstore import empty_database
from tests.redis_fixtures import RedisDatabase

GRACE_S = 0.3


@pytest.fixture
def stores(tmp_path: Path, redis_db: RedisDatabase) -> Iterator[Stores]:
    client = redis_db.client()
    with empty_database(client):
        yield Stores.over(client, tmp_path)


def running_sweep_with_trial(stores: Stores, trial_status: JobStatus) -> tuple[str, str]:
    """A claimed sweep with one trial in ``trial_status``: the sweep's and trial's ids."""
    sweep = stores.jobs.create_job(job("sweep"))
    assert stores.jobs.claim(sweep.id, "w", lease_s=30) is not None
    trial = stores.jobs.create_job(
        job("finetune").model_copy(update={"sweep": sweep.id, "trial": 0})
    )
    SweepStore(stores.redis).add_trial(sweep.id, 0, trial.id)
    assert stores.jobs.claim(trial.id, "w", lease_s=30) is not None
    if trial_status.is_terminal:
        stores.jobs.finish(trial.id, trial_status, worker="w")
    return sweep.id, trial.id


def recovery(stores: Stores, redis_db: RedisDatabase) -> Recovery:
    enqueuer = Enqueuer(redis_db.url, visibility_timeout_s=3600)
    return Recovery(stores, enqueuer, lease_s=GRACE_S, max_attempts=3, queue_grace_s=GRACE_S)


def test_a_sweep_with_no_trial_left_running_gets_its_message_again(
    stores: Stores, redis_db: RedisDatabase
) -> None:
    sweep_id, _ = running_sweep_with_trial(stores, JobStatus.FAILED)
    passes = recovery(stores, redis_db)
    # The grace starts: a sweep is briefly so between two of its steps.
    assert not [line for line in passes.run_once() if sweep_id in line]
    assert not message_pending(stores.redis, "cpu", sweep_id)
    time.sleep(GRACE_S)
    done = passes.run_once()
    assert any(sweep_id in line and "sent again" in line for line in done), done
    assert message_pending(stores.redis, "cpu", sweep_id)
    events = stores.events.read(sweep_id, None, 100).items
    assert any(e["type"] == "message" and "sent again" in str(e["data"]) for e in events), events


def test_a_sweep_with_a_trial_running_is_left_alone(
    stores: Stores, redis_db: RedisDatabase
) -> None:
    sweep_id, trial_id = running_sweep_with_trial(stores, JobStatus.RUNNING)
    stores.jobs.heartbeat(trial_id, "w", ttl=30)  # its worker is alive
    passes = recovery(stores, redis_db)
    passes.run_once()
    time.sleep(GRACE_S)
    assert not [line for line in passes.run_once() if sweep_id in line]
    assert not message_pending(stores.redis, "cpu", sweep_id)
