"""A finished sweep's MLflow runs: a parent run for the sweep and a child run per trial,
written once from what the sweep and its trials left, by the worker that ended the sweep,
after the sweep's final state (so a tracker, slow or down, never holds a sweep back).

Trials run as finetune jobs of their own and carry no integrations: logging each beside its
job would make the next trial wait for the tracker, and a pruned or failed trial leaves no
run. Here every trial gets one, whatever its end:

- the parent (tagged ``lpft.job_id`` the sweep's id, ``lpft.kind`` ``sweep``): the sweep's
  method, model, fixed hyperparameters and datasets, ``search_space.<name>`` (each searched
  range as JSON), ``n_trials``, ``parallelism``, ``objective`` (``validation.nll``),
  ``direction``, ``sampler``, ``pruner`` as params; its ``metrics.json``'s numbers as metrics,
  named as a finetune run's
  (``best_trial.value``, ``best_trial.number``, ``best_metrics.test.calibrated.ece``…);
  ``metrics.json``, the report and the plots as artifacts; and, for a sweep that succeeded,
  its best trial's calibrated model in ``model/`` (with ``register_as``, a new version of the
  tenant's registered model). MLflow's status: FINISHED, FAILED or KILLED (cancelled);
- a child per trial (MLflow's ``mlflow.parentRunId``): exactly its finetune job's run, tagged
  ``lpft.job_id`` the trial's job, ``lpft.sweep_id``, ``lpft.trial`` its number and
  ``lpft.trial_state`` (complete, pruned, failed, cancelled) with ``lpft.error`` when it did
  not complete; ``trial`` and the sampled values among its params; each epoch's reported
  value as ``intermediate/<objective>`` at that epoch, and a complete trial's objective as
  ``objective/<objective>``. MLflow's status: FINISHED when complete, FAILED when failed,
  KILLED when pruned or cancelled.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpft_contract.integrations import IntegrationRecord, IntegrationStatus, registered_name
from lpft_contract.objects.published import fetch, is_complete
from lpft_contract.records import JobRecord, JobStatus
from lpft_contract.stores import Stores
from lpft_contract.sweeps import SweepStore
from lpft_contract.volume import Volume

from lpft_worker.settings import WorkerSettings
from lpft_worker.tracking import Written, log_model, mlflow_client, settled
from lpft_worker.tracking.content import (
    MAX_PARAM_CHARS,
    Point,
    RunContent,
    is_job_artifact,
    job_content,
)
from lpft_worker.tracking.mlflow_run import Budget, MlflowRun

logger = logging.getLogger("lpft.worker")
#: The error code of a trial the sweep's pruner stopped (``lpft_worker.sweeps.PRUNED``).
PRUNED = "pruned"
#: A trial's state, as ``GET /jobs/{id}/trials`` names it, from its job's status.
TRIAL_STATES = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "running",
    JobStatus.SUCCEEDED: "complete",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}
#: MLflow's end status of a run, by the sweep's status or the trial's state.
SWEEP_RUN_STATUS = {JobStatus.SUCCEEDED: "FINISHED", JobStatus.FAILED: "FAILED"}
TRIAL_RUN_STATUS = {"complete": "FINISHED", "failed": "FAILED"}
#: The sweep's own settings logged as params (from its spec).
SWEEP_PARAMS = ("n_trials", "parallelism", "direction", "sampler", "pruner", "preset")


@dataclass(frozen=True)
class Trial:
    """One trial as its child run needs it: its job, where its outputs are, how it ended."""

    number: int
    record: JobRecord
    model_dir: Path
    state: str
    value: float | None
    intermediate: dict[int, float]


def track_sweep(sweep_id: str, stores: Stores, settings: WorkerSettings) -> list[IntegrationRecord]:
    """Log the finished sweep's runs on each of its integrations still pending, record where
    each stands and warn, on the sweep's events, of each that failed. Called in every ending
    of a sweep (succeeded, failed, cancelled, cancelled while still queued); a sweep with
    nothing pending is left alone, so a second call does nothing. Never raises: tracking is
    not the sweep.

    Each run (the parent, each trial's child, the best model) has its own time budget,
    ``LPFT_MLFLOW_TIMEOUT_SECONDS``, and the first run that fails ends the integration
    ``failed``. A sweep's logging grows with its trials (up to ``LPFT_MAX_TRIALS``; against
    a loopback server on 2 cores, 0.2 s a trial's child, then 11 s for the best model's
    pyfunc and version), so one budget for all would fail a healthy server's large sweep, or
    leave its model less time than a finetune job's gets; a server that is down still costs
    one budget, not one per trial."""
    try:
        sweep = stores.jobs.get_job(sweep_id)
    except Exception as exc:  # noqa: BLE001 - the sweep has ended; nothing may fail it now
        logger.warning("sweep %s: its record could not be read for MLflow: %s", sweep_id, exc)
        return []
    if sweep is None or not sweep.status.is_terminal:
        return []
    if not any(i.status == IntegrationStatus.PENDING for i in sweep.integrations):
        return []
    started = time.monotonic()
    warned: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        done = [
            _track(sweep, integration, stores, settings, Path(scratch), warned.append)
            if integration.status == IntegrationStatus.PENDING
            else integration
            for integration in sweep.integrations
        ]
    logger.info(
        "sweep %s: integrations done in %.2f s",
        sweep.id,
        time.monotonic() - started,
        extra={"integrations": [i.status.value for i in done]},
    )
    try:
        for message in warned:
            stores.events.append(
                sweep.id, "warning", {"category": "TrackingWarning", "message": message}
            )
        stores.jobs.set_integrations(sweep.id, done, worker=None)
        if warned:
            stores.jobs.copy_events_again(sweep.id)  # the warning, kept where the record is
    except Exception as exc:  # noqa: BLE001 - the sweep's outcome matters more than this
        logger.warning(
            "sweep %s: the integrations' status could not be recorded: %s", sweep.id, exc
        )
    return done


def _track(
    sweep: JobRecord,
    integration: IntegrationRecord,
    stores: Stores,
    settings: WorkerSettings,
    scratch: Path,
    warn: Callable[[str], None],
) -> IntegrationRecord:
    def budget() -> Budget:  # one per run: see track_sweep
        return Budget.of(settings.mlflow_timeout_seconds)

    def write(written: Written) -> None:
        run = mlflow_client(settings, budget())
        name = integration.mlflow.run_name or sweep.id
        parent = run.find_or_create(integration.experiment, {"lpft.job_id": sweep.id}, name)
        written.run_id = parent
        tags = integration.mlflow.tags
        sweep_dir = stores.volume.model_dir(sweep.id)  # written by this process's finish
        run.write(parent, sweep_content(sweep, sweep_dir, tags, stores.volume.root))
        trials = _trials(sweep, stores, scratch)
        for trial in trials:
            run.budget = budget()
            _log_child(run, integration.experiment, parent, sweep, trial, tags, stores.volume.root)
        run.budget = budget()
        written.model_version = _log_best_model(run, parent, sweep, integration, stores, scratch)
        if written.model_version is None and integration.mlflow.register_as is not None:
            warn(
                f"MLflow: the sweep ended {sweep.status.value} with no best trial to serve, "
                "so no model version was registered"
            )
        run.finish(parent, SWEEP_RUN_STATUS.get(sweep.status, "KILLED"))

    return settled(integration, write, warn, "sweep")


def sweep_content(
    sweep: JobRecord, sweep_dir: Path, tenant_tags: dict[str, str], root: Path
) -> RunContent:
    """The sweep's parent run: a finetune run's content of the sweep (its tags, its
    ``metrics.json``'s numbers, its files) with its searched hyperparameters as ranges and
    its search's settings as params."""
    content = job_content(sweep, sweep_dir, tenant_tags, root)
    space: dict[str, Any] = sweep.spec.get("search_space") or {}
    params = {key: value for key, value in content.params.items() if key not in space}
    for name, search in space.items():
        params[f"search_space.{name}"] = json.dumps(search, sort_keys=True)[:MAX_PARAM_CHARS]
    for key in SWEEP_PARAMS:
        if sweep.spec.get(key) is not None:
            params[key] = str(sweep.spec[key])
    params["objective"] = objective_name(sweep)
    content.params = params
    return content


def trial_content(
    sweep: JobRecord, trial: Trial, tenant_tags: dict[str, str], root: Path
) -> RunContent:
    """A trial's child run: its finetune job's run, with its place in the sweep."""
    content = job_content(trial.record, trial.model_dir, tenant_tags, root)
    content.tags |= {
        "lpft.sweep_id": sweep.id,
        "lpft.parent_job_id": sweep.id,
        "lpft.trial": str(trial.number),
        "lpft.trial_state": trial.state,
    }
    if trial.record.error is not None:
        content.tags["lpft.error"] = trial.record.error.message[:MAX_PARAM_CHARS]
    content.params["trial"] = str(trial.number)
    objective = objective_name(sweep)
    content.metrics += [
        Point(f"intermediate/{objective}", value, epoch)
        for epoch, value in sorted(trial.intermediate.items())
    ]
    if trial.value is not None:
        content.metrics.append(Point(f"objective/{objective}", trial.value))
    return content


def objective_name(sweep: JobRecord) -> str:
    """The sweep's objective as its request names it (``validation.nll``)."""
    return f"validation.{sweep.spec.get('objective', 'nll')}"


def _log_child(
    run: MlflowRun,
    experiment: str,
    parent: str,
    sweep: JobRecord,
    trial: Trial,
    tenant_tags: dict[str, str],
    root: Path,
) -> None:
    keys = {"mlflow.parentRunId": parent, "lpft.job_id": trial.record.id}
    child = run.find_or_create(experiment, keys, f"trial-{trial.number}")
    run.write(child, trial_content(sweep, trial, tenant_tags, root))
    run.finish(child, TRIAL_RUN_STATUS.get(trial.state, "KILLED"))


def _trials(sweep: JobRecord, stores: Stores, scratch: Path) -> list[Trial]:
    """The sweep's trials in number order, each with a local copy of its outputs (none for
    a trial that published none)."""
    sweeps = SweepStore(stores.redis)
    values = sweeps.value(sweep.id)
    found = []
    for number, job_id in sorted(sweeps.trials(sweep.id).items()):
        record = stores.jobs.get_job(job_id)
        if record is None:  # deleted meanwhile
            continue
        pruned = record.error is not None and record.error.code == PRUNED
        found.append(
            Trial(
                number=number,
                record=record,
                model_dir=_outputs(stores.volume, job_id, scratch),
                state=PRUNED if pruned else TRIAL_STATES[record.status],
                value=values.get(number),
                intermediate=sweeps.values(sweep.id, number),
            )
        )
    return found


def _outputs(volume: Volume, job_id: str, scratch: Path, *, model: bool = False) -> Path:
    """Where this process reads the job's published outputs: the store itself when it
    shares this disk, else a copy fetched into ``scratch`` (an empty directory when the job
    published none): its metrics, report and plots alone, which is all a trial's child run
    logs, or, with ``model``, everything (a sweep of 50 trials would otherwise download 50
    models to log one)."""
    if volume.shares_disk:
        return volume.model_dir(job_id)
    local = scratch / ("model" if model else "artifacts") / job_id
    if not local.exists():
        if is_complete(volume.objects, Volume.model_key(job_id)):
            wanted = None if model else is_job_artifact
            fetch(volume.objects, Volume.model_key(job_id), local, wanted)
        else:
            local.mkdir(parents=True)
    return local


def _log_best_model(
    run: MlflowRun,
    parent: str,
    sweep: JobRecord,
    integration: IntegrationRecord,
    stores: Stores,
    scratch: Path,
) -> str | None:
    """The best trial's calibrated model, the one the sweep serves, in the parent run's
    ``model/`` (registered with ``register_as``): the version made, ``None`` without one or
    when the sweep serves none (it did not succeed)."""
    best = SweepStore(stores.redis).best(sweep.id)
    if sweep.status != JobStatus.SUCCEEDED or best is None:
        return None
    register_as = integration.mlflow.register_as
    registered = None if register_as is None else registered_name(sweep.tenant, register_as)
    served = _outputs(stores.volume, best, scratch, model=True)
    keys = {"lpft.job_id": sweep.id, "lpft.trial_job_id": best}
    return log_model(run, parent, served, "model", registered, keys)
