"""A sweep's trials as the API lists them, its cascades (cancel, delete) and the model it
serves: each trial is a job of its own, found through ``lpft_contract.sweeps``.

``GET /jobs`` leaves trials out (a sweep of 50 trials would bury every other job) unless it
is asked for one sweep's trials (``?sweep=<id>``); ``GET /jobs/{id}/trials`` is their own
list, with their parameters and values."""

from __future__ import annotations

import json

from lpft_contract.paging import Page
from lpft_contract.records import JobRecord, JobStatus
from lpft_contract.stores import Stores
from lpft_contract.sweeps import SweepStore, served_job
from lpft_contract.volume import Volume

from lpft_api.errors import Conflict, StudyDatabaseUnavailable, Unprocessable
from lpft_api.schemas import JobList, JobPublic, TrialHeadNorm, TrialList, TrialPublic
from lpft_core import METRICS_FILE, head_norm_figures

#: A trial's state from its job's: a cancelled job the pruner stopped is ``pruned``.
_STATES = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "running",
    JobStatus.SUCCEEDED: "complete",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


def trials(sweep: JobRecord, after: int | None, limit: int, stores: Stores) -> TrialList:
    """A page of the sweep's trials in number order, those after trial ``after``."""
    sweeps = SweepStore(stores.redis)
    numbers = [n for n in sweeps.trials(sweep.id).items() if after is None or n[0] > after]
    values = sweeps.value(sweep.id)
    preset = sweep.spec.get("preset") == "head_norm"
    page = []
    for number, job_id in numbers[:limit]:
        job = stores.jobs.get_job(job_id)
        if job is None:
            continue
        pruned = job.error is not None and job.error.code == "pruned"
        params = {k: job.hyperparameters[k] for k in sweep.spec["search_space"]}
        page.append(
            TrialPublic(
                number=number,
                id=job.id,
                params=params,
                state="pruned" if pruned else _STATES[job.status],
                value=values.get(number),
                intermediate_values=sweeps.values(sweep.id, number),
                worker=job.worker,
                started_at=job.started_at,
                finished_at=job.finished_at,
                error=job.error,
                head_norm=_head_norm(job, stores) if preset else None,
            )
        )
    return TrialList(data=page, has_more=len(numbers) > limit)


#: Store pages of ``LIST_CHUNK`` jobs one page of ``GET /jobs`` reads at most while it
#: leaves trials out: a page may then hold fewer jobs than asked, ``has_more`` still true.
LIST_READS, LIST_CHUNK = 5, 100


def jobs_page(
    tenant: str,
    after: str | None,
    limit: int,
    status: JobStatus | None,
    sweep_id: str | None,
    stores: Stores,
) -> JobList:
    """A page of the tenant's jobs (of ``status``), newest first: those that are no trial,
    or, with ``sweep_id``, that sweep's trials alone."""
    if sweep_id is not None:
        found = _trial_jobs(tenant, sweep_id, after, limit, status, stores)
    else:
        found = _jobs_but_trials(tenant, after, limit, status, stores)
    return JobList.of(found, [JobPublic.from_record(r) for r in found.items])


def _jobs_but_trials(
    tenant: str, after: str | None, limit: int, status: JobStatus | None, stores: Stores
) -> Page[JobRecord]:
    kept: list[JobRecord] = []
    last_id, has_more = after, True
    for _ in range(LIST_READS):
        page = stores.jobs.list_jobs(tenant, last_id, LIST_CHUNK, status)
        last_id, has_more = page.last_id, page.has_more
        for position, record in enumerate(page.items):
            if record.sweep is None:
                kept.append(record)
            if len(kept) == limit:
                if position + 1 < len(page.items):  # the rest of this read is the next page's
                    last_id, has_more = record.id, True
                return Page(kept, last_id, has_more)
        if not has_more:
            break
    return Page(kept, last_id, has_more)


def _trial_jobs(
    tenant: str,
    sweep_id: str,
    after: str | None,
    limit: int,
    status: JobStatus | None,
    stores: Stores,
) -> Page[JobRecord]:
    """The sweep's trials newest (highest number) first, after the trial job ``after``."""
    sweep = stores.jobs.get_job(sweep_id, tenant)
    if sweep is None or sweep.kind != "sweep":
        raise Unprocessable(f"no sweep job {sweep_id!r}", field="sweep")
    ids = list(reversed(SweepStore(stores.redis).trials(sweep_id).values()))
    if after is not None:
        if after not in ids:
            raise Unprocessable(f"job {after!r} is no trial of sweep {sweep_id}", field="after")
        ids = ids[ids.index(after) + 1 :]
    records = [stores.jobs.get_job(job_id, tenant) for job_id in ids[:limit]]
    kept = [r for r in records if r is not None and (status is None or r.status == status)]
    last_id = ids[:limit][-1] if ids else after
    return Page(kept, last_id, len(ids) > limit)


def _head_norm(trial: JobRecord, stores: Stores) -> TrialHeadNorm | None:
    """A complete trial's head-norm figures, read from its metrics (``None`` before)."""
    if trial.status != JobStatus.SUCCEEDED:
        return None
    document = stores.volume.read_text(f"{Volume.model_key(trial.id)}/{METRICS_FILE}")
    if document is None:
        return None
    return TrialHeadNorm.model_validate(
        head_norm_figures(json.loads(document)), from_attributes=True
    )


def cancel_trials(sweep: JobRecord, stores: Stores) -> None:
    """Ask every unfinished trial of the sweep to stop (a queued one is cancelled at once);
    the workers start no new one once the sweep's cancel is asked."""
    for job_id in SweepStore(stores.redis).trials(sweep.id).values():
        trial = stores.jobs.get_job(job_id)
        if trial is not None and not trial.status.is_terminal:
            stores.jobs.request_cancel(job_id)


def delete_trials(sweep: JobRecord, stores: Stores, study_database: str = "") -> None:
    """Delete the sweep's study, every finished trial (its record, events and files) and the
    sweep's keys, its Optuna journal among them. The study goes first: where it lives in a
    database that is down, nothing is deleted and the client may try again.

    Raises:
        Conflict: an unfinished job reads a trial's model (a re-calibration of the sweep
            rewrites its best trial's), before anything is deleted.
        StudyDatabaseUnavailable: the study's database (``study_database``) did not answer.
    """
    sweeps = SweepStore(stores.redis)
    trial_ids = list(sweeps.trials(sweep.id).values())
    users = stores.jobs.jobs_using_any(sweep.tenant, set(trial_ids))
    if users:
        raise Conflict(
            f"unfinished jobs {', '.join(sorted(users))} use this sweep's best model; wait for "
            "them or cancel them first"
        )
    if study_database:
        _delete_study(study_database, sweep.id)
    for job_id in trial_ids:
        trial = stores.jobs.get_job(job_id)
        if trial is not None and trial.status.is_terminal:
            stores.jobs.delete_job(trial)
    sweeps.delete(sweep.id)


def _delete_study(database: str, sweep_id: str) -> None:
    # Imported here: Optuna is the postgres extra's in the API, needed by this alone.
    from sqlalchemy.exc import OperationalError

    from lpft_core import delete_sweep_study, sweep_database

    try:
        delete_sweep_study(sweep_database(database), sweep_id)
    except OperationalError as exc:
        raise StudyDatabaseUnavailable(
            f"the sweeps' study database did not answer ({type(exc.orig).__name__}); "
            "nothing was deleted, try again",
            retry_after=30,
        ) from exc


def serving(job: JobRecord, stores: Stores) -> JobRecord:
    """The job whose model serves for ``job`` (a sweep's best trial)."""
    return served_job(SweepStore(stores.redis), stores.jobs.get_job, job)
