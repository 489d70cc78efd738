"""A sweep's trials in the job list and its delete, against a real Redis: ``GET /jobs``
leaves trials out however many of them lie between two other jobs, and pages through the
rest without losing or repeating one; ``?sweep=`` pages through one sweep's trials; DELETE
of a sweep is refused, before anything is deleted, while a job reads one of its trials'
models (a re-calibration of the sweep rewrites its best trial's), and a trial is deleted
only with its sweep, which serves its best one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lpft_api.errors import Conflict, Unprocessable
from lpft_api.services.jobs import delete_job
from lpft_api.services.sweeps import LIST_CHUNK, delete_trials, jobs_page
from lpft_api.settings import ApiSettings
from lpft_contract.records import JobRecord, JobStatus
from lpft_contract.stores import Stores
from lpft_contract.sweeps import SweepStore

from tests.api.test_metrics import job
from tests.jobstore import empty_database
from tests.redis_fixtures import RedisDatabase


@pytest.fixture
def stores(tmp_path: Path, redis_db: RedisDatabase) -> Iterator[Stores]:
    client = redis_db.client()
    with empty_database(client):
        yield Stores.over(client, tmp_path)


def add_trials(stores: Stores, sweep: JobRecord, count: int) -> list[str]:
    """``count`` succeeded trials of ``sweep``, numbered from 0: their ids."""
    ids = []
    for number in range(count):
        trial = stores.jobs.create_job(
            job("finetune").model_copy(update={"sweep": sweep.id, "trial": number})
        )
        SweepStore(stores.redis).add_trial(sweep.id, number, trial.id)
        assert stores.jobs.claim(trial.id, "w", lease_s=30) is not None
        stores.jobs.finish(trial.id, JobStatus.SUCCEEDED, worker="w")
        ids.append(trial.id)
    return ids


def every_page(stores: Stores, limit: int, sweep_id: str | None = None) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = jobs_page("alice", after, limit, None, sweep_id, stores)
        pages.append([j.id for j in page.data])
        if not page.has_more:
            return pages
        after = page.last_id


def test_the_job_list_leaves_trials_out_across_store_reads(stores: Stores) -> None:
    # Newest first: after, then more trials than one store read holds, then the sweep and
    # before: the sweep's trials sit between two jobs of the list.
    before = stores.jobs.create_job(job("finetune"))
    sweep = stores.jobs.create_job(job("sweep"))
    trials = add_trials(stores, sweep, LIST_CHUNK + 20)
    after = stores.jobs.create_job(job("finetune"))

    assert every_page(stores, 2) == [[after.id, sweep.id], [before.id]]
    assert every_page(stores, 50) == [[after.id, sweep.id, before.id]]

    pages = every_page(stores, 50, sweep.id)
    assert [len(p) for p in pages] == [50, 50, 20]
    assert sum(pages, []) == list(reversed(trials)), "trials not highest number first"


def test_the_sweep_filter_names_a_sweep_of_the_callers(stores: Stores) -> None:
    plain = stores.jobs.create_job(job("finetune"))
    bobs = stores.jobs.create_job(job("sweep").model_copy(update={"tenant": "bob"}))
    for wrong in (plain.id, bobs.id, "job-missing"):
        with pytest.raises(Unprocessable) as refused:
            jobs_page("alice", None, 10, None, wrong, stores)
        assert refused.value.field == "sweep"


def test_a_sweep_is_not_deleted_while_a_job_reads_a_trials_model(stores: Stores) -> None:
    sweep = stores.jobs.create_job(job("sweep"))
    trials = add_trials(stores, sweep, 2)
    recalibration = stores.jobs.create_job(
        job("recalibrate").model_copy(update={"source_job": trials[1]})
    )

    with pytest.raises(Conflict) as refused:
        delete_trials(sweep, stores)
    assert recalibration.id in str(refused.value)
    assert all(stores.jobs.get_job(t) is not None for t in trials), "a trial was deleted"
    assert SweepStore(stores.redis).trials(sweep.id), "the sweep's keys were deleted"

    assert stores.jobs.claim(recalibration.id, "w", lease_s=30) is not None
    stores.jobs.finish(recalibration.id, JobStatus.SUCCEEDED, worker="w")
    delete_trials(sweep, stores)
    assert all(stores.jobs.get_job(t) is None for t in trials)
    assert not SweepStore(stores.redis).trials(sweep.id)


def test_a_trial_goes_only_with_its_sweep(stores: Stores) -> None:
    sweep = stores.jobs.create_job(job("sweep"))
    (trial,) = add_trials(stores, sweep, 1)
    with pytest.raises(Conflict) as refused:
        delete_job(stores.jobs.get_job(trial), stores, ApiSettings())
    assert sweep.id in str(refused.value)
    assert stores.jobs.get_job(trial) is not None
