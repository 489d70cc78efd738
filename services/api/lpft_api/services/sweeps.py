"""A sweep's trials as the API lists them, its cascades (cancel, delete) and the model it
serves: each trial is a job of its own, found through ``lpft_contract.sweeps``."""

from __future__ import annotations

from lpft_contract.records import JobRecord, JobStatus
from lpft_contract.stores import Stores
from lpft_contract.sweeps import SweepStore, served_job

from lpft_api.schemas import TrialList, TrialPublic

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
            )
        )
    return TrialList(data=page, has_more=len(numbers) > limit)


def cancel_trials(sweep: JobRecord, stores: Stores) -> None:
    """Ask every unfinished trial of the sweep to stop (a queued one is cancelled at once);
    the workers start no new one once the sweep's cancel is asked."""
    for job_id in SweepStore(stores.redis).trials(sweep.id).values():
        trial = stores.jobs.get_job(job_id)
        if trial is not None and not trial.status.is_terminal:
            stores.jobs.request_cancel(job_id)


def delete_trials(sweep: JobRecord, stores: Stores) -> None:
    """Delete every finished trial (its record, events and files) and the sweep's keys,
    its Optuna journal among them."""
    sweeps = SweepStore(stores.redis)
    for job_id in sweeps.trials(sweep.id).values():
        trial = stores.jobs.get_job(job_id)
        if trial is not None and trial.status.is_terminal:
            stores.jobs.delete_job(trial)
    sweeps.delete(sweep.id)


def serving(job: JobRecord, stores: Stores) -> JobRecord:
    """The job whose model serves for ``job`` (a sweep's best trial)."""
    return served_job(SweepStore(stores.redis), stores.jobs.get_job, job)
