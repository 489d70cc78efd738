"""The ``lpft.run_job`` task: claim the job, run it in a child process, watch over it.

Training runs in a child process (``python -m lpft_worker.runner``) rather than in the worker:
CUDA stays out of the worker process, and a cancel that training ignores can be enforced by
killing the child. This process supervises it (``lpft_worker.supervisor``): it renews the
job's lease, enforces cancels and records the final state. If the worker is killed,
its training process notices and queues the job again; if both die, the API's recovery pass
does so once the lease has lapsed. Either way the job resumes from its last checkpoint on
the next free worker instead of staying ``running``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from celery import shared_task
from lpft_contract.logs import job_logging
from lpft_contract.records import JobStatus
from lpft_contract.stores import stores_from
from lpft_contract.tasks import TaskName

from lpft_core import JobKind
from lpft_worker import sweeps
from lpft_worker.settings import get_worker_settings
from lpft_worker.supervisor import JobSupervisor
from lpft_worker.tracking.sweep_runs import track_sweep

logger = logging.getLogger("lpft.worker")


@shared_task(name=TaskName.RUN_JOB, acks_late=True)
def run_job(job_id: str) -> None:
    """Run one queued job to a terminal state. A message for a job that is not queued is a
    duplicate (a redelivery, a message sent again by recovery) and does nothing: a running
    job's worker keeps its lease, and the API's recovery pass resumes one that lost it. A
    running sweep's is the exception: recovery sends it when the sweep stalled, and it is
    picked up where it stands (``sweeps.reconcile``)."""
    settings = get_worker_settings()
    patient = stores_from(settings, patient=True)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    record = patient.jobs.get_job(job_id)
    if record is not None and record.sweep and record.status.is_terminal:
        # A trial cancelled while queued ends without a run: its sweep still counts it.
        sweeps.trial_ended(record, patient, settings)
    if record is not None and record.kind == JobKind.SWEEP and record.status.is_terminal:
        if record.started_at is None:
            # Cancelled while queued, so no worker ended it: its integrations end here (a
            # parent run with no trial, killed), not pending forever. A started sweep's are
            # written by the worker that finished it.
            track_sweep(record.id, patient, settings)
        return
    if record is not None and record.kind == JobKind.SWEEP and record.status == JobStatus.RUNNING:
        # Its message sent again: recovery saw none of its trials queued or running.
        sweeps.reconcile(record, patient, settings)
        return
    if record is None or record.status != JobStatus.QUEUED:
        return
    if record.sweep and patient.jobs.cancel_requested(record.sweep):
        if (cancelled := patient.jobs.finish(job_id, JobStatus.CANCELLED)) is not None:
            sweeps.trial_ended(cancelled, patient, settings)
        return
    if patient.jobs.claim(job_id, worker, settings.lease_seconds) is None:
        return
    if record.kind == JobKind.SWEEP:  # its trials run as jobs of their own
        sweeps.start_sweep(record, patient, settings)
        return
    with job_logging(patient.volume.job_dir(job_id), job_id, record.tenant):
        logger.info("job claimed by worker %s", worker, extra={"worker": worker})
        supervisor = JobSupervisor(job_id, worker, settings, stores_from(settings), patient)
        supervisor.run([sys.executable, "-m", "lpft_worker.runner", job_id])
    ended = patient.jobs.get_job(job_id)
    if ended is not None and ended.sweep and ended.status.is_terminal:
        sweeps.trial_ended(ended, patient, settings)
