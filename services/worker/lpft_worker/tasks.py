"""The ``lpft.run_job`` task: claim the job, run it in a child process, watch over it.

Training runs in a child process (``python -m lpft_worker.runner``) rather than in the worker:
CUDA stays out of the worker process, and a cancel that training ignores can be enforced by
killing the child. This process renews the job's lease meanwhile. If the worker is killed,
its training process notices and queues the job again; if both die, the API's recovery pass
does so once the lease has lapsed. Either way the job resumes from its last checkpoint on
the next free worker instead of staying ``running``.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time

import redis
from celery import shared_task
from lpft_contract.logs import job_logging, new_error_id
from lpft_contract.records import ErrorInfo, JobStatus
from lpft_contract.stores import Stores, stores_from
from lpft_contract.tasks import TaskName

from lpft_worker.settings import WorkerSettings, get_worker_settings

logger = logging.getLogger("lpft.worker")


@shared_task(name=TaskName.RUN_JOB, acks_late=True)
def run_job(job_id: str) -> None:
    """Run one queued job to a terminal state. A message for a job that is not queued is a
    duplicate (a redelivery, a message sent again by recovery) and does nothing: a running
    job's worker keeps its lease, and the API's recovery pass resumes one that lost it."""
    settings = get_worker_settings()
    patient = stores_from(settings, patient=True)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    record = patient.jobs.get_job(job_id)
    if record is None or record.status != JobStatus.QUEUED:
        return
    if patient.jobs.claim(job_id, worker, settings.lease_seconds) is None:
        return
    with job_logging(patient.volume.job_dir(job_id), job_id, record.tenant):
        logger.info("job claimed by worker %s", worker, extra={"worker": worker})
        child = subprocess.Popen([sys.executable, "-m", "lpft_worker.runner", job_id])
        if _watch(stores_from(settings), job_id, worker, child, settings):
            _record_a_silent_death(patient, job_id, worker, child.returncode)


def _watch(
    stores: Stores,
    job_id: str,
    worker: str,
    child: subprocess.Popen[bytes],
    settings: WorkerSettings,
) -> bool:
    """Renew the lease while the child trains; enforce a cancel after its grace. Returns
    whether the outcome is this worker's to record.

    While Redis is unreachable the child trains on. The recovery pass hands a job to another
    worker only after its lease expired (one lease period after the last renewal) and then
    stayed missing for a whole lease period; the child is killed when renewals have failed
    for 1.5 lease periods (each failing call blocks for seconds at most: the fast client), so
    two trainings never write one job. The same happens at once if the job turns out to
    belong to another worker.
    """
    fence_s = 1.5 * settings.lease_seconds
    renewed = time.monotonic()
    grace_s = settings.cancel_grace_seconds
    cancel_seen: float | None = None
    while child.poll() is None:
        try:
            stores.jobs.heartbeat(job_id, worker, ttl=settings.lease_seconds)
            renewed = time.monotonic()
            record = stores.jobs.get_job(job_id)
            if record is None or record.status != JobStatus.RUNNING or record.worker != worker:
                if record is not None and record.worker == worker and record.status.is_terminal:
                    # Normally the child recorded its outcome and is exiting; but the recovery
                    # pass may have failed the job while the child trains on: never wait forever.
                    try:
                        child.wait(timeout=grace_s)
                    except subprocess.TimeoutExpired:
                        _kill(child)
                    return True
                _kill(child)
                logger.warning("job %s is no longer this worker's; its training stopped", job_id)
                return False
            if cancel_seen is None and stores.jobs.cancel_requested(job_id):
                cancel_seen = time.monotonic()
        except redis.RedisError as exc:
            if time.monotonic() - renewed > fence_s:
                _kill(child)
                logger.warning(
                    "job %s: Redis unreachable for %.0f s (%s); training stopped "
                    "so that the job can resume elsewhere",
                    job_id,
                    fence_s,
                    exc,
                )
                return False
        if cancel_seen is not None and time.monotonic() - cancel_seen > grace_s:
            _kill(child)
            stores.jobs.finish(job_id, JobStatus.CANCELLED, worker=worker)
            return False
        try:
            child.wait(timeout=0.5 if cancel_seen else settings.heartbeat_seconds)
        except subprocess.TimeoutExpired:
            pass
    return True


def _kill(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    child.wait()


def _record_a_silent_death(stores: Stores, job_id: str, worker: str, returncode: int) -> None:
    """The child exited; if it recorded no outcome (killed, out of memory), record one."""
    error_id = new_error_id()
    died = ErrorInfo(
        code="training_process_died",
        message=f"the training process exited with code {returncode} before finishing "
        f"(killed or out of memory?); see the worker log under {error_id}",
    )
    if stores.jobs.finish(job_id, JobStatus.FAILED, died, worker=worker) is not None:
        logger.error("the training process exited with code %d, recording nothing", returncode)
