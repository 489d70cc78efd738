"""The worker's watch over one training process, and the one place a worker ends a job.

A worker that claimed a job starts its training as a child process and supervises it:

- it renews the job's lease every heartbeat, so the API's recovery pass leaves the job alone;
- it stops the training at once when the job turns out not to be this worker's any more
  (handed to another worker, or ended by the recovery pass);
- it tolerates a Redis outage while the child trains on, but kills the child once renewals
  have failed for 1.5 lease periods: the recovery pass hands a job to another worker only
  after its lease expired (one lease period after the last renewal) and then stayed missing
  for a whole lease period, so two trainings never write one job;
- it kills a child that ignores a cancel for longer than the grace period;
- when the child exits by itself, it records the outcome the child wrote, or, if it wrote
  none (killed, out of memory), that it died;
- when the child reports a success and goes on to write the job's trackers (MLflow), it
  records the success at once and then waits, bounded, for the child to finish them.

Each of these ends in an ``Ending``; ``conclude`` turns it into the job's final state, and
nothing else in the worker writes one.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path

import redis
from lpft_contract.job_files import LiveLog, publish_job_log
from lpft_contract.logs import new_error_id
from lpft_contract.objects import ObjectStoreError
from lpft_contract.records import ErrorInfo, JobRecord, JobStatus
from lpft_contract.stores import Stores
from lpft_contract.volume import Volume

from lpft_worker.outcome import Outcome
from lpft_worker.settings import WorkerSettings

logger = logging.getLogger("lpft.worker")
#: How often the cancel grace is checked once a cancel was seen, and the outcome file.
CANCEL_POLL_S = 0.5
#: What a child writing trackers gets beyond their time budget (a model's export) before it
#: is stopped.
TRACKING_GRACE_S = 300.0


class Ending(StrEnum):
    """How the supervision of one training process ended."""

    EXITED = "exited"
    """The child ended by itself: its outcome, or its death, is this worker's to record."""
    CANCEL_ENFORCED = "cancel_enforced"
    """The child ignored a cancel past its grace and was killed: the job is cancelled."""
    LOST = "lost"
    """The job is no longer this worker's (another worker has it, or it ended): nothing to
    record."""
    FENCED = "fenced"
    """Redis stayed unreachable too long; training was stopped so that the job resumes on
    another worker: nothing to record."""
    REPORTED = "reported"
    """The child reported its outcome and goes on writing the job's trackers: the outcome
    is recorded at once, and the child is waited for after."""


class JobSupervisor:
    """Supervises the training of ``job_id``, claimed by ``worker``.

    ``stores`` answer fast (the lease renewals must not block the fencing clock);
    ``patient`` ones ride out a Redis restart when the final state is written.
    """

    def __init__(
        self,
        job_id: str,
        worker: str,
        settings: WorkerSettings,
        stores: Stores,
        patient: Stores,
    ) -> None:
        self.job_id = job_id
        self.worker = worker
        self.settings = settings
        self.stores = stores
        self.patient = patient

    def run(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> Ending:
        """Start ``command`` with the path its outcome goes to as a last argument, watch it
        to its end and record the job's final state (see ``conclude``)."""
        with tempfile.TemporaryDirectory(prefix="lpft-outcome-") as scratch:
            report = Path(scratch) / "outcome.json"
            child = subprocess.Popen([*command, str(report)], env=env)
            ending: Ending | None = None
            try:
                live = LiveLog(self.patient.volume, self.job_id, self.settings.heartbeat_seconds)
                with live:
                    ending = self.watch(child, report)
            finally:
                if child.poll() is None and ending != Ending.REPORTED:
                    _kill(child)  # the watch itself failed: leave no orphan
            self.conclude(ending, child.returncode, Outcome.read(report))
            if ending == Ending.REPORTED:
                self._await_trackers(child)
        # Everything of the job is in the store now, or will be written by the worker that
        # resumes it: a copy left in this worker's cache would outlive a delete.
        self.patient.volume.drop_local_copy(Volume.job_key(self.job_id))
        return ending

    def watch(self, child: subprocess.Popen[bytes], report: Path) -> Ending:
        """Renew the lease and enforce ownership, fencing and cancels until ``child`` ends,
        is stopped, or reports at ``report`` an outcome it goes on tracking after; the
        ending says which."""
        fence_s = 1.5 * self.settings.lease_seconds
        renewed = time.monotonic()
        cancel_seen: float | None = None
        while child.poll() is None:
            try:
                owned, cancelled = self._renew()
            except redis.RedisError as exc:
                if time.monotonic() - renewed > fence_s:
                    _kill(child)
                    logger.warning(
                        "job %s: Redis unreachable for %.0f s (%s); training stopped "
                        "so that the job can resume elsewhere",
                        self.job_id,
                        fence_s,
                        exc,
                    )
                    return Ending.FENCED
            else:
                renewed = time.monotonic()
                if not owned:
                    _kill(child)
                    logger.warning(
                        "job %s is no longer this worker's; its training stopped", self.job_id
                    )
                    return Ending.LOST
                if cancelled and cancel_seen is None:
                    cancel_seen = time.monotonic()
            if cancel_seen is not None and (
                time.monotonic() - cancel_seen > self.settings.cancel_grace_seconds
            ):
                _kill(child)
                return Ending.CANCEL_ENFORCED
            pause = self.settings.heartbeat_seconds if cancel_seen is None else CANCEL_POLL_S
            if _wait_for_report(child, report, pause):
                return Ending.REPORTED
        return Ending.EXITED

    def _await_trackers(self, child: subprocess.Popen[bytes]) -> None:
        """Wait for a child that writes the job's trackers after its outcome, within their
        budget and ``TRACKING_GRACE_S``; past it, stop it (its integrations stay
        ``pending``, and the job, already recorded, is unaffected)."""
        limit = self.settings.mlflow_timeout_seconds + TRACKING_GRACE_S
        try:
            child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            logger.warning("job %s: tracking took over %.0f s; stopped", self.job_id, limit)
            _kill(child)

    def _renew(self) -> tuple[bool, bool]:
        """Renew the lease; whether the job is still this worker's, and whether a cancel was
        asked for."""
        self.stores.jobs.heartbeat(self.job_id, self.worker, ttl=self.settings.lease_seconds)
        record = self.stores.jobs.get_job(self.job_id)
        if not self._is_ours(record):
            return False, False
        return True, self.stores.jobs.cancel_requested(self.job_id)

    def _is_ours(self, record: JobRecord | None) -> bool:
        return (
            record is not None
            and record.status == JobStatus.RUNNING
            and record.worker == self.worker
        )

    def conclude(
        self, ending: Ending, returncode: int | None, outcome: Outcome | None
    ) -> JobRecord | None:
        """Write the job's final state for ``ending``: the outcome the child reported, a
        cancel enforced, or the child's death; nothing for a job that is not this worker's
        to end. The record, if this call ended the job (never over another worker's run)."""
        if ending in (Ending.LOST, Ending.FENCED):
            return None
        if ending == Ending.CANCEL_ENFORCED:
            outcome = Outcome(status=JobStatus.CANCELLED)
        elif outcome is None:
            outcome = self._death(returncode)
        logger.info("job %s", outcome.status.value, extra={"status": outcome.status.value})
        try:  # before the final state, which tells its tenant the log is whole
            publish_job_log(self.patient.volume, self.job_id)
        except ObjectStoreError as exc:
            logger.warning("the job's log could not be stored: %s", exc)
        return self.patient.jobs.finish(
            self.job_id, outcome.status, outcome.error, worker=self.worker
        )

    def _death(self, returncode: int | None) -> Outcome:
        error_id = new_error_id()
        logger.error(
            "the training process exited with code %s, recording nothing",
            returncode,
            extra={"error_id": error_id},
        )
        died = ErrorInfo(
            code="training_process_died",
            message=f"the training process exited with code {returncode} before finishing "
            f"(killed or out of memory?); see the worker log under {error_id}",
        )
        return Outcome(status=JobStatus.FAILED, error=died)


def _wait_for_report(child: subprocess.Popen[bytes], report: Path, seconds: float) -> bool:
    """Wait ``seconds`` for ``child`` to end; whether it reported, meanwhile, an outcome it
    goes on tracking after (checked every ``CANCEL_POLL_S``)."""
    deadline = time.monotonic() + seconds
    while child.poll() is None:
        if report.exists() and (outcome := Outcome.read(report)) and outcome.tracking:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            child.wait(timeout=min(left, CANCEL_POLL_S))
        except subprocess.TimeoutExpired:
            pass
    return False


def _kill(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    child.wait()
