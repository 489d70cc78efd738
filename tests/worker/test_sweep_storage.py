"""A sweep's study in the database LPFT_SWEEP_STORAGE_URL names, against the machine's real
PostgreSQL: the trials one worker asks and tells are every other worker's (each opens the
study as ``lpft_worker.sweeps.study`` does, from its own settings), nothing of the study is
written to Redis, and deleting the sweep through the API's service removes the study, or,
while the database does not answer, nothing at all (a 503 to try again)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from lpft_api.errors import StudyDatabaseUnavailable
from lpft_api.services.sweeps import delete_trials
from lpft_contract.stores import Stores
from lpft_contract.sweeps import SweepStore, study_prefix
from lpft_worker.settings import WorkerSettings
from lpft_worker.sweeps import study
from optuna.trial import TrialState

from lpft_core import SweepSpec, ask_trial, sweep_database, tell_trial
from tests.api.test_metrics import job
from tests.jobstore import empty_database
from tests.jobstore.test_sweep_listing import add_trials
from tests.redis_fixtures import RedisDatabase
from tests.test_imports import SPEC_SAMPLES

#: The machine's PostgreSQL (trust authentication on loopback, database ``test``).
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def stores(tmp_path: Path, redis_db: RedisDatabase) -> Iterator[Stores]:
    client = redis_db.client()
    with empty_database(client):
        yield Stores.over(client, tmp_path)


def test_a_study_in_postgres_is_shared_and_deleted_with_its_sweep(
    stores: Stores, redis_db: RedisDatabase
) -> None:
    spec = SweepSpec.from_dict(SPEC_SAMPLES["sweep"])
    sweep = stores.jobs.create_job(job("sweep"))
    settings = WorkerSettings(redis_url=redis_db.url, sweep_storage_url=POSTGRES_URL)

    one, other = study(spec, sweep.id, settings), study(spec, sweep.id, settings)
    first, params = ask_trial(one, spec)
    second, _ = ask_trial(other, spec)
    assert (first, second) == (0, 1), "the second worker did not see the first one's trial"
    tell_trial(other, first, TrialState.COMPLETE, 0.25)
    tell_trial(one, second, TrialState.PRUNED)
    seen = study(spec, sweep.id, settings).get_trials(deepcopy=False)
    assert [(t.state, t.value) for t in seen] == [
        (TrialState.COMPLETE, 0.25),
        (TrialState.PRUNED, None),
    ]
    assert seen[0].params == params
    assert not list(stores.redis.scan_iter(match=f"{study_prefix(sweep.id)}*"))

    delete_trials(sweep, stores, POSTGRES_URL)
    names = optuna.get_all_study_names(storage=sweep_database(POSTGRES_URL))
    assert sweep.id not in names


def test_a_sweep_deleted_before_its_study_existed_deletes_cleanly(stores: Stores) -> None:
    sweep = stores.jobs.create_job(job("sweep"))
    delete_trials(sweep, stores, POSTGRES_URL)
    assert sweep.id not in optuna.get_all_study_names(storage=sweep_database(POSTGRES_URL))


def test_a_study_database_that_does_not_answer_deletes_nothing(stores: Stores) -> None:
    sweep = stores.jobs.create_job(job("sweep"))
    (trial,) = add_trials(stores, sweep, 1)

    with pytest.raises(StudyDatabaseUnavailable) as refused:
        delete_trials(sweep, stores, "postgresql+psycopg://postgres@127.0.0.1:1/test")
    assert refused.value.status == 503 and refused.value.retry_after > 0
    assert stores.jobs.get_job(trial) is not None, "a trial went before its study"
    assert SweepStore(stores.redis).trials(sweep.id) == {0: trial}
