"""A finished job's runs on the trackers its tenant asked for (the record's
``integrations``), logged by the training process once the job's outputs are published.

Tracking never fails a job: whatever goes wrong (the server down past the budget, a
missing client, a bug here) the job still succeeds, its integration shows ``failed`` with the
reason, and a ``warning`` event names MLflow and that reason.

The calibrated model the job serves (a re-calibration's: its source's, at the new
temperature) is uploaded into the run as an MLflow pyfunc model, the job's export
(``registered_model``); with ``register_as`` it is also made a new version of the tenant's
registered model.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lpft_contract.integrations import IntegrationRecord, IntegrationStatus, registered_name
from lpft_contract.job_store import JobStore
from lpft_contract.logs import new_error_id
from lpft_contract.records import JobRecord
from lpft_contract.volume import Volume

from lpft_core import JobKind, job_kind
from lpft_worker.settings import WorkerSettings
from lpft_worker.tracking.content import child_content, job_content, recalibration_content
from lpft_worker.tracking.mlflow_run import Budget, MlflowRun, TrackingFailed
from lpft_worker.tracking.registered_model import save_pyfunc

logger = logging.getLogger("lpft.training")


def track_job(
    record: JobRecord,
    volume: Volume,
    jobs: JobStore,
    warn: Callable[[str], None],
    settings: WorkerSettings,
) -> list[IntegrationRecord]:
    """Log ``record``'s run on each of its integrations within one time budget
    (``LPFT_MLFLOW_TIMEOUT_SECONDS``), record where each stands, and ``warn`` of each that
    failed. Never raises: tracking is not the job."""
    if not record.integrations:
        return []
    budget = Budget.of(settings.mlflow_timeout_seconds)
    started = time.monotonic()
    done = [_track(record, i, volume, settings, budget, warn) for i in record.integrations]
    logger.info(
        "integrations done in %.2f s",
        time.monotonic() - started,
        extra={"integrations": [i.status.value for i in done]},
    )
    try:
        jobs.set_integrations(record.id, done, worker=record.worker)
    except Exception as exc:  # noqa: BLE001 - the job's outcome matters more than this record
        logger.warning("the integrations' status could not be recorded: %s", exc)
    return done


def _track(
    record: JobRecord,
    integration: IntegrationRecord,
    volume: Volume,
    settings: WorkerSettings,
    budget: Budget,
    warn: Callable[[str], None],
) -> IntegrationRecord:
    model_dir = volume.model_dir(record.id)

    def write(written: Written) -> None:
        run = mlflow_client(settings, budget)
        if record.kind == JobKind.RECALIBRATE:
            if written.run_id is None:
                raise TrackingFailed("its source job has no MLflow run to update")
            step = run.next_step(written.run_id, "temperature")
            content = recalibration_content(record, model_dir, step)
        else:
            name = integration.mlflow.run_name or record.id
            keys = {"lpft.job_id": record.id}
            written.run_id = run.find_or_create(integration.experiment, keys, name)
            content = job_content(record, model_dir, integration.mlflow.tags)
            _log_children(run, record, integration.experiment, written.run_id, model_dir)
        run.write(written.run_id, content)
        written.model_version = _log_model(run, written.run_id, record, integration, volume) or (
            written.model_version
        )
        run.finish(written.run_id)

    return settled(integration, write, warn, "job")


@dataclass
class Written:
    """How far an integration's logging got: its run and its model version, as known so far
    (kept on the record when a later step fails)."""

    run_id: str | None
    model_version: str | None


def settled(
    integration: IntegrationRecord,
    write: Callable[[Written], None],
    warn: Callable[[str], None],
    subject: str,
) -> IntegrationRecord:
    """``integration`` once ``write`` logged its runs (``logged``) or failed (``failed``,
    with the reason, and a warning that names MLflow and says the ``subject``, the job or
    the sweep, is not affected). Never raises: a bug here must not fail the job."""
    written = Written(integration.run_id, integration.model_version)
    try:
        write(written)
    except TrackingFailed as exc:
        reason = str(exc)
    except Exception:  # noqa: BLE001 - a bug here must not fail the job
        error_id = new_error_id()
        logger.exception("MLflow logging failed on an internal error", extra={"error_id": error_id})
        reason = f"an internal error ({error_id}, in the job's log)"
    else:
        logger.info("logged to MLflow as run %s", written.run_id, extra={"run_id": written.run_id})
        return integration.model_copy(
            update={
                "status": IntegrationStatus.LOGGED,
                "run_id": written.run_id,
                "model_version": written.model_version,
                "error": None,
            }
        )
    warn(
        f"MLflow: the {subject}'s run was not logged: {reason}. "
        f"The {subject} itself is not affected"
    )
    return integration.model_copy(
        update={
            "status": IntegrationStatus.FAILED,
            "run_id": written.run_id,
            "model_version": written.model_version,
            "error": reason,
        }
    )


def _log_model(
    run: MlflowRun, run_id: str, record: JobRecord, integration: IntegrationRecord, volume: Volume
) -> str | None:
    """Upload the model ``record`` serves into its run and, with ``register_as``, register
    it: the version made (or found), ``None`` without one."""
    model = _served_model(record, volume)
    if model is None:
        return None
    served, folder = model
    register_as = integration.mlflow.register_as
    registered = None if register_as is None else registered_name(record.tenant, register_as)
    return log_model(run, run_id, served, folder, registered, {"lpft.job_id": record.id})


def log_model(
    run: MlflowRun,
    run_id: str,
    served: Path,
    folder: str,
    registered: str | None,
    keys: dict[str, str],
) -> str | None:
    """Upload the model in ``served`` into the run's ``folder`` as an MLflow pyfunc model
    and, given a ``registered`` model's name, make it a version of that model tagged with
    ``keys``: the version made (or found), ``None`` without one."""
    with tempfile.TemporaryDirectory() as scratch:
        build = functools.partial(save_pyfunc, served, Path(scratch) / "model")
        if registered is None:
            run.upload(run_id, build(), folder)
            return None
        return run.register(run_id, build, folder, registered, keys)


def _served_model(record: JobRecord, volume: Volume) -> tuple[Path, str] | None:
    """The model ``record`` leaves for its run (the export, as an MLflow pyfunc model) and
    the run's folder for it: a finetune job's own in ``model/``; a re-calibration's source's
    at the new temperature beside the re-calibration's metrics, the run's first model
    staying as it was; ``None`` for a kind that serves no model."""
    if record.kind == JobKind.RECALIBRATE and record.source_job is not None:
        return volume.model_dir(record.source_job), f"recalibration/{record.id}/model"
    if job_kind(record.kind).serves:
        return volume.model_dir(record.id), "model"
    return None


def _log_children(
    run: MlflowRun, record: JobRecord, experiment: str, parent: str, model_dir: Path
) -> None:
    """The job's child runs under ``parent`` (MLflow's own parent tag): one per method of a
    comparison, one per seed of a multi-seed finetune job. A multi-seed comparison's method
    child has its own children, one per seed, as a multi-seed finetune job's run does: the
    method's child holds the first seed's numbers and the summary, each seed's its own."""
    seeds = record.spec.get("seeds") or []
    for keys, name, directory in _children(record, model_dir):
        child = _log_child(run, record, experiment, parent, keys, name, directory)
        if record.kind == JobKind.COMPARE:
            for seed_keys, seed_name, seed_dir in _seed_children(seeds, directory):
                seed_keys = {**keys, **seed_keys}
                _log_child(run, record, experiment, child, seed_keys, seed_name, seed_dir)


def _log_child(
    run: MlflowRun,
    record: JobRecord,
    experiment: str,
    parent: str,
    keys: dict[str, str],
    name: str,
    directory: Path,
) -> str:
    """One child run under ``parent``, tagged ``keys``, from the metrics in ``directory``:
    its id."""
    parent_keys = {"mlflow.parentRunId": parent, "lpft.parent_job_id": record.id}
    child = run.find_or_create(experiment, {**parent_keys, **keys}, name)
    run.write(child, child_content(record, directory, keys))
    run.finish(child)
    return child


def _children(record: JobRecord, model_dir: Path) -> list[tuple[dict[str, str], str, Path]]:
    """Each child's own tags, name and metrics directory: a comparison's methods in
    ``<method>/``; the seeds of a finetune job (``_seed_children``)."""
    if record.kind == JobKind.COMPARE:
        return [({"lpft.method": m}, m, model_dir / m) for m in record.methods or []]
    if record.kind != JobKind.FINETUNE:
        return []
    return _seed_children(record.spec.get("seeds") or [], model_dir)


def _seed_children(seeds: list[int], directory: Path) -> list[tuple[dict[str, str], str, Path]]:
    """Each seed's child of a multi-seed run whose outputs are in ``directory`` (a finetune
    job's, or one method's of a comparison): its tags, name and metrics directory, the first
    seed's being ``directory`` itself and the others' ``runs/seed-<s>/``; none for one seed."""
    if len(seeds) < 2:
        return []
    return [
        (
            {"lpft.seed": str(seed)},
            f"seed-{seed}",
            directory if seed == seeds[0] else directory / "runs" / f"seed-{seed}",
        )
        for seed in seeds
    ]


def mlflow_client(settings: WorkerSettings, budget: Budget) -> MlflowRun:
    """The client of the deployment's tracking server, bounded by ``budget``."""
    if not settings.mlflow_tracking_uri:
        raise TrackingFailed("this worker has no LPFT_MLFLOW_TRACKING_URI")
    try:
        return MlflowRun(settings.mlflow_tracking_uri, budget)
    except ImportError as exc:
        raise TrackingFailed(
            f"this worker lacks the MLflow client ({exc}); install lpft[mlflow]"
        ) from exc
