"""Sweep jobs over the worker fleet, ask and tell: no task waits for a trial.

A sweep's message starts ``parallelism`` trials and returns, so the sweep occupies no worker
slot. Each trial is a finetune job of its own (``JobRecord.sweep``/``trial``), run, leased,
resumed and cancelled like any job; when one ends, the worker that saw it tells the study
its value, starts the next trial, and, once every started trial has ended and no more are
due, finishes the sweep: its ``metrics.json`` (every trial, the best one and its metrics),
its plots, and the best trial's id, whose model ``/predict`` then serves under the sweep's
id. ``lpft_contract.sweeps`` holds the atomic counts that decide who does what.

The study is Optuna's journal storage on the stack's Redis, one prefix per sweep, which
every worker reaches with the URL it already has.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

import optuna
from lpft_contract.enqueue import Enqueuer
from lpft_contract.objects.published import publish
from lpft_contract.records import ErrorInfo, JobRecord, JobStatus, new_id
from lpft_contract.stores import Stores
from lpft_contract.sweeps import SweepStore, study_prefix
from lpft_contract.volume import Volume
from optuna.storages.journal import JournalRedisBackend, JournalStorage
from optuna.trial import TrialState

from lpft_core import (
    METRICS_FILE,
    ProgressEvent,
    PruningReporter,
    SweepSpec,
    ask_trial,
    finish_sweep,
    objective_value,
    sweep_database,
    tell_trial,
)
from lpft_core import sweep_study as open_study
from lpft_worker.settings import WorkerSettings, get_worker_settings
from lpft_worker.tracking.sweep_runs import track_sweep

ProgressCallback = Callable[[ProgressEvent], None]
StopCallback = Callable[[], bool]

logger = logging.getLogger("lpft.worker")
#: The error code of a trial the pruner stopped (its job ends cancelled with it).
PRUNED = "pruned"


def study(spec: SweepSpec, sweep_id: str, settings: WorkerSettings) -> optuna.Study:
    """The sweep's study: in the database LPFT_SWEEP_STORAGE_URL names, else a journal on
    the stack's Redis."""
    storage: optuna.storages.BaseStorage
    if settings.sweep_storage_url:
        storage = sweep_database(settings.sweep_storage_url)
    else:
        backend = JournalRedisBackend(settings.redis_url, prefix=study_prefix(sweep_id))
        storage = JournalStorage(backend)
    return open_study(spec, storage, sweep_id)


def start_sweep(record: JobRecord, stores: Stores, settings: WorkerSettings) -> None:
    """Start the first ``parallelism`` trials of a claimed sweep."""
    spec = SweepSpec.from_dict(record.spec)
    stores.events.append(record.id, "stage", {"stage": "trials", "total": spec.n_trials})
    for _ in range(spec.parallelism):
        launch_trial(record, spec, stores, settings)


def launch_trial(
    sweep: JobRecord, spec: SweepSpec, stores: Stores, settings: WorkerSettings
) -> JobRecord | None:
    """Ask the study for the next trial and queue its job; ``None`` when none is due (all
    started, or the sweep was cancelled)."""
    sweeps = SweepStore(stores.redis)
    if stores.jobs.cancel_requested(sweep.id) or not sweeps.next_launch(sweep.id, spec.n_trials):
        return None
    number, params = ask_trial(study(spec, sweep.id, settings), spec)
    job_id = new_id("job")
    trial = spec.trial_spec(
        number,
        params,
        output_dir=Volume.model_key(job_id),
        checkpoint_dir=Volume.checkpoint_key(job_id),
    )
    record = JobRecord(
        id=job_id,
        tenant=sweep.tenant,
        kind="finetune",
        method=spec.method.value,
        model=sweep.model,
        dataset=sweep.dataset,
        eval_sets=sweep.eval_sets,
        hyperparameters={**sweep.hyperparameters, **params},
        queue=sweep.queue,
        spec=trial.to_dict(),
        sweep=sweep.id,
        trial=number,
    )
    sweeps.add_trial(sweep.id, number, job_id)
    stores.jobs.create_job(record)
    Enqueuer(settings.redis_url, settings.visibility_timeout_seconds).run_job(job_id, record.queue)
    stores.events.append(
        sweep.id, "metrics", {"stage": "trials", "trial": number, "job_id": job_id, **params}
    )
    logger.info("sweep %s: trial %d queued as %s", sweep.id, number, job_id)
    return record


def trial_ended(trial: JobRecord, stores: Stores, settings: WorkerSettings) -> None:
    """Tell the study how a trial ended, start the next one, and finish the sweep once every
    started trial has ended and no more are due. Seeing one trial's end twice does nothing."""
    assert trial.sweep is not None and trial.trial is not None
    sweep = stores.jobs.get_job(trial.sweep)
    if sweep is None or sweep.status.is_terminal:
        return
    sweeps = SweepStore(stores.redis)
    new, _ = sweeps.end(sweep.id, trial.trial)
    if not new:
        return
    spec = SweepSpec.from_dict(sweep.spec)
    _tell(study(spec, sweep.id, settings), spec, sweep.id, trial.trial, trial, stores)
    launch_trial(sweep, spec, stores, settings)
    _finish_if_done(sweep, spec, stores, settings)


def reconcile(sweep: JobRecord, stores: Stores, settings: WorkerSettings) -> None:
    """Pick a running sweep up where it stands, for its message sent again: the recovery
    pass saw no trial of it queued or running, so the end of one was lost (its worker died
    between recording the trial's final state and ``trial_ended``, or recovery failed it)
    or its first trials were never started. Every finished trial is counted as ended and
    told to the study (both once, whoever did it first), trials are started up to
    ``parallelism``, and the sweep is finished if nothing is left to run. A start whose
    worker died before recording its trial is forgotten, and started again."""
    spec = SweepSpec.from_dict(sweep.spec)
    sweeps = SweepStore(stores.redis)
    the_study = study(spec, sweep.id, settings)
    if lost := sweeps.recount_launches(sweep.id, spec.n_trials):
        logger.warning("sweep %s: %d trial start(s) had been lost; started again", sweep.id, lost)
    recorded = sweeps.trials(sweep.id)
    for asked in the_study.get_trials(deepcopy=False):
        if asked.number not in recorded and not asked.state.is_finished():
            tell_trial(the_study, asked.number, TrialState.FAIL)  # asked, then lost
    unfinished = 0
    for number, job_id in recorded.items():
        trial = stores.jobs.get_job(job_id)
        if trial is not None and not trial.status.is_terminal:
            unfinished += 1
            continue
        if sweeps.end(sweep.id, number)[0]:
            logger.warning("sweep %s: trial %d's end had been lost; counted now", sweep.id, number)
        _tell(the_study, spec, sweep.id, number, trial, stores)
    while unfinished < spec.parallelism and launch_trial(sweep, spec, stores, settings):
        unfinished += 1
    _finish_if_done(sweep, spec, stores, settings)


def _tell(
    the_study: optuna.Study,
    spec: SweepSpec,
    sweep_id: str,
    number: int,
    trial: JobRecord | None,
    stores: Stores,
) -> None:
    """Tell the study trial ``number``'s outcome (a deleted trial's job failed) and keep a
    completed one's value; a trial the study already holds as finished is left alone."""
    state, value = _outcome(trial, spec, stores) if trial is not None else (TrialState.FAIL, None)
    tell_trial(the_study, number, state, value)
    if value is not None:
        SweepStore(stores.redis).set_value(sweep_id, number, value)


def _finish_if_done(
    sweep: JobRecord, spec: SweepSpec, stores: Stores, settings: WorkerSettings
) -> None:
    """Finish the sweep if every started trial has ended and none is due (all started, or
    its cancel asked), by one worker only."""
    sweeps = SweepStore(stores.redis)
    cancelled = stores.jobs.cancel_requested(sweep.id)
    launched = sweeps.launched(sweep.id, spec.n_trials)
    done = len(sweeps.ended(sweep.id)) >= launched
    if done and (cancelled or launched >= spec.n_trials) and sweeps.claim_finish(sweep.id):
        _finish(sweep, spec, stores, settings, cancelled)


def _outcome(trial: JobRecord, spec: SweepSpec, stores: Stores) -> tuple[TrialState, float | None]:
    if trial.status == JobStatus.SUCCEEDED:
        return TrialState.COMPLETE, objective_value(_metrics(trial.id, stores) or {}, spec)
    if trial.error is not None and trial.error.code == PRUNED:
        return TrialState.PRUNED, None
    return TrialState.FAIL, None


def _metrics(job_id: str, stores: Stores) -> dict[str, Any] | None:
    text = stores.volume.read_text(f"{Volume.model_key(job_id)}/{METRICS_FILE}")
    return json.loads(text) if text else None


def _finish(
    sweep: JobRecord, spec: SweepSpec, stores: Stores, settings: WorkerSettings, cancelled: bool
) -> None:
    """Write the sweep's result and plots, publish them, and end the sweep: succeeded with
    its best trial served, or cancelled."""
    sweeps = SweepStore(stores.redis)
    jobs = sweeps.trials(sweep.id)
    the_study = study(spec, sweep.id, settings)
    metrics = {
        number: found
        for number, trial in enumerate(the_study.get_trials(deepcopy=False))
        if trial.state is TrialState.COMPLETE and (found := _metrics(jobs[number], stores))
    }
    out = stores.volume.model_dir(sweep.id)
    result = finish_sweep(the_study, dataclasses.replace(spec, output_dir=str(out)), metrics)
    if not stores.volume.shares_disk:
        publish(stores.volume.objects, Volume.model_key(sweep.id), out)
    best = result.best_trial
    if cancelled:
        status, error = JobStatus.CANCELLED, None
    elif best is None:
        status = JobStatus.FAILED
        error = ErrorInfo(
            code="no_complete_trial",
            message="no trial completed (every one failed or was pruned); see each trial's "
            "error at GET /jobs/{id}/trials and widen or move the search space",
        )
    else:
        sweeps.set_best(sweep.id, jobs[best["number"]])
        status, error = JobStatus.SUCCEEDED, None
    stores.jobs.finish(sweep.id, status, error)
    logger.info("sweep %s %s", sweep.id, status.value)
    track_sweep(sweep.id, stores, settings)  # its MLflow runs, after its final state


@dataclasses.dataclass
class TrialPruning:
    """A trial's training callbacks: each epoch's validation value reported to the study (and
    kept for ``GET /jobs/{id}/trials``), and a stop once the pruner asks for it."""

    progress: ProgressCallback
    should_stop: StopCallback
    reporter: PruningReporter

    @property
    def pruned_at(self) -> int | None:
        """The epoch after which the pruner stopped the trial, if it did."""
        return self.reporter.pruned_at

    def outcome_error(self) -> ErrorInfo:
        """The error a pruned trial's job ends cancelled with."""
        return ErrorInfo(
            code=PRUNED,
            message=f"stopped by the sweep's pruner after epoch {self.pruned_at}: its "
            "validation value was worse than the other trials' at that epoch",
        )


def trial_pruning(
    record: JobRecord, progress: ProgressCallback, should_stop: StopCallback, stores: Stores
) -> TrialPruning | None:
    """The pruning callbacks of a trial's run (``None`` for a job that is no trial)."""
    if record.sweep is None or record.trial is None:
        return None
    sweep = stores.jobs.get_job(record.sweep)
    if sweep is None:
        return None
    spec = SweepSpec.from_dict(sweep.spec)
    sweeps, number = SweepStore(stores.redis), record.trial
    reporter = PruningReporter(
        study(spec, sweep.id, get_worker_settings()),
        spec,
        number,
        progress,
        on_value=lambda epoch, value: sweeps.add_value(sweep.id, number, epoch, value),
    )
    return TrialPruning(reporter, reporter.should_stop(should_stop), reporter)
