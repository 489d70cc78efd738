"""The training child process: ``python -m lpft_worker.runner JOB_ID OUTCOME_PATH``.

Runs one claimed job (``lpft_core.run_job``, the same call for every registered kind),
publishes its progress as job events, polls the cancel flag between steps, and writes the
outcome to ``OUTCOME_PATH`` for its worker's supervisor to record (``lpft_worker.supervisor``).
It stops by itself if the worker that started it dies, so an orphan never trains on: it
queues the job again to resume elsewhere. It logs JSON lines (``lpft_contract.logs``) to
stderr, which it shares with its worker, and to the job's own log; an internal error as one
record with its ``error_id`` and traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
import torch
from lpft_contract.enqueue import Enqueuer
from lpft_contract.event_log import EventLog
from lpft_contract.job_files import JobFiles
from lpft_contract.logs import (
    configure_logging,
    job_logging,
    new_error_id,
    route_transformers_logs,
)
from lpft_contract.objects import ObjectStoreError
from lpft_contract.records import ErrorInfo, JobRecord, JobStatus
from lpft_contract.stores import Stores, stores_from

from lpft_core import JobCancelled, LpftError, ProgressEvent, run_job, usable_cpus
from lpft_worker.outcome import Outcome
from lpft_worker.settings import WorkerSettings, get_worker_settings
from lpft_worker.sweeps import trial_pruning
from lpft_worker.tracking import track_job

#: After a failed write, events are only buffered for this long before the next try, so a
#: Redis outage costs training nothing.
RETRY_AFTER_S = 2.0
logger = logging.getLogger("lpft.training")


class BufferedEvents:
    """Job events written in order, buffered in memory while Redis is unreachable.

    Training should not wait for Redis: a write that fails keeps the event (and every later
    one) pending, and the next write after ``RETRY_AFTER_S`` sends the backlog first, so an
    outage costs a few short timeouts (the store's fast client) every ``RETRY_AFTER_S``.
    ``flush`` at the end waits for Redis as long as the patient store does.
    """

    def __init__(self, log: EventLog, job_id: str) -> None:
        self.log = log
        self.job_id = job_id
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.retry_at = 0.0

    def append(self, kind: str, data: dict[str, Any]) -> None:
        """Queue an event and send what Redis will take now."""
        self.pending.append((kind, data))
        if time.monotonic() >= self.retry_at:
            try:
                self._send()
            except redis.RedisError:
                self.retry_at = time.monotonic() + RETRY_AFTER_S

    def flush(self, log: EventLog) -> None:
        """Send the backlog through ``log`` (a patient one), raising if Redis stays away."""
        self.log, fast = log, self.log
        try:
            self._send()
        finally:
            self.log = fast

    def _send(self) -> None:
        while self.pending:
            kind, data = self.pending[0]
            self.log.append(self.job_id, kind, data)
            self.pending.pop(0)

    def reachable(self) -> bool:
        """Whether Redis is worth asking right now (no failure in the last moments)."""
        return time.monotonic() >= self.retry_at


class EventPublisher:
    """Turns lpft_core progress events into job events: a ``stage`` event when a stage
    starts, a ``step`` event per optimisation step, an ``epoch`` event per epoch."""

    def __init__(self, events: BufferedEvents) -> None:
        self.events = events
        self.stage: str | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage != self.stage:
            self.stage = event.stage
            self.events.append("stage", {"stage": event.stage, "total": event.total})
        if "loss" in event.metrics:
            kind = "step"
        elif "epoch" in event.metrics:
            kind = "epoch"
        elif event.metrics:
            kind = "metrics"
        else:
            return
        data = {"stage": event.stage, "step": event.step, "total": event.total, **event.metrics}
        self.events.append(kind, data)


@contextlib.contextmanager
def warnings_as_events(events: BufferedEvents) -> Iterator[None]:
    """Publish every warning raised while training (a probe that did not converge, a
    truncated input...) as a ``warning`` event, once per place it comes from."""

    def publish(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        events.append("warning", {"category": category.__name__, "message": str(message)})

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = publish
        yield


def main(job_id: str, outcome_path: Path) -> int:
    """Run the job; the exit status is 0 whenever it came to an outcome or was handed on."""
    settings = get_worker_settings()
    torch.set_num_threads(settings.training_threads or usable_cpus())
    stores, patient = stores_from(settings), stores_from(settings, patient=True)
    record = patient.jobs.get_job(job_id)
    if record is None or record.status != JobStatus.RUNNING:
        logger.warning("job %s is not running, so not trained here", job_id)
        return 1
    # The spec's paths are keys in the artifact store, found under this process's copy of it.
    patient.volume.root.mkdir(parents=True, exist_ok=True)
    os.chdir(patient.volume.root)
    with job_logging(patient.volume.job_dir(job_id), job_id, record.tenant):
        return _run_and_report(record, settings, stores, patient, outcome_path)


def _run_and_report(
    record: JobRecord, settings: WorkerSettings, stores: Stores, patient: Stores, path: Path
) -> int:
    job_id = record.id
    logger.info(
        "training process started: %s (attempt %d)",
        record.method or record.kind,
        record.attempts,
        extra={"kind": record.kind, "method": record.method, "attempt": record.attempts},
    )
    events = BufferedEvents(stores.events, job_id)
    parent = os.getppid()

    def orphaned() -> bool:
        return os.getppid() != parent

    def should_stop() -> bool:
        if orphaned():
            return True
        if not events.reachable():
            return False
        try:
            return stores.jobs.cancel_requested(job_id)
        except redis.RedisError:
            return False

    def still_ours() -> bool:  # asked of the patient store: it must not guess in an outage
        now = patient.jobs.get_job(job_id)
        return now is not None and now.status == JobStatus.RUNNING and now.worker == record.worker

    files = JobFiles(patient.volume, record, still_ours=still_ours)
    outcome = _run(record, files, events, should_stop, orphaned)
    events.flush(patient.events)
    if outcome is not None and outcome.status == JobStatus.SUCCEEDED and record.integrations:
        # The job has ended: its supervisor records that now, and the trackers are written
        # beside it, so that a slow tracker (a model to export and upload) delays no job.
        outcome.model_copy(update={"tracking": True}).write(path)

        def warn(message: str) -> None:
            events.append("warning", {"category": "TrackingWarning", "message": message})

        track_job(record, patient.volume, patient.jobs, warn, settings)
        events.flush(patient.events)
        patient.jobs.copy_events_again(job_id)  # a warning, kept where the record is
        return 0
    if outcome is None:  # the worker died under us: resume elsewhere
        _publish_last_checkpoint(files)
        reason = f"worker {record.worker} died"
        logger.warning("%s; the job is queued again to resume from its checkpoint", reason)
        if patient.jobs.requeue_or_fail(record, reason, settings.max_job_attempts):
            Enqueuer(settings.redis_url, settings.visibility_timeout_seconds).run_job(
                record.id, record.queue
            )
    else:
        outcome.write(path)
    return 0


def _run(
    record: JobRecord,
    files: JobFiles,
    events: BufferedEvents,
    should_stop: Callable[[], bool],
    orphaned: Callable[[], bool],
) -> Outcome | None:
    """The job's outcome, or None when it stopped because its worker was lost. Its inputs
    are fetched from the artifact store first, each new checkpoint is published as training
    reports progress (between steps, when no checkpoint file is being written), and its
    outputs are published before it counts as succeeded."""
    publish_events = EventPublisher(events)

    def progress(event: ProgressEvent) -> None:
        publish_events(event)
        files.publish_checkpoint()

    # A sweep's trial reports each epoch to its study, and stops when the pruner says so.
    pruning = trial_pruning(record, progress, should_stop, stores_from(get_worker_settings()))
    if pruning is not None:
        progress, should_stop = pruning.progress, pruning.should_stop
    try:
        with warnings_as_events(events):
            files.fetch_inputs()
            run_job(
                record.kind,
                record.spec,
                f"Job {record.id} ({record.method or record.kind})",
                progress=progress,
                should_stop=should_stop,
            )
            files.publish_outputs()
    except JobCancelled:
        if orphaned():
            return None
        if pruning is not None and pruning.pruned_at is not None:
            return Outcome(status=JobStatus.CANCELLED, error=pruning.outcome_error())
        return Outcome(status=JobStatus.CANCELLED)
    except LpftError as exc:
        logger.warning("job failed: %s", exc, extra={"code": exc.code})
        return Outcome(status=JobStatus.FAILED, error=ErrorInfo(code=exc.code, message=str(exc)))
    except ObjectStoreError as exc:
        logger.error("the artifact store failed: %s", exc)
        message = (
            f"the artifact store failed: {exc}; the operator's LPFT_ARTIFACTS_URL, its "
            "credentials or the store itself need attention"
        )
        return Outcome(
            status=JobStatus.FAILED, error=ErrorInfo(code="artifact_store", message=message)
        )
    except Exception:  # noqa: BLE001 - any crash must end as a failed job, with a reason
        error_id = new_error_id()
        logger.exception("job failed on an internal error")
        message = (
            f"the job failed on an internal error ({error_id}); its record in the job's log "
            "(GET /jobs/{id}/logs) and the worker log say more"
        )
        return Outcome(status=JobStatus.FAILED, error=ErrorInfo(code="internal", message=message))
    return Outcome(status=JobStatus.SUCCEEDED)


def _publish_last_checkpoint(files: JobFiles) -> None:
    """Keep the progress made since the last checkpoint was published, for the worker that
    resumes the job (training stopped between steps, so the directory is consistent)."""
    try:
        files.publish_checkpoint()
    except ObjectStoreError as exc:
        logger.warning("the last checkpoint could not be published: %s", exc)


if __name__ == "__main__":
    configure_logging(get_worker_settings().log_level)
    route_transformers_logs()
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
