"""The ``lpft.train`` task: claim the job, run it in a child process, watch over it.

Training runs in a child process (``python -m lpft_worker.runner``) rather than in the worker:
CUDA stays out of the worker process, and a cancel that training ignores can be enforced by
killing the child. This process renews the job's lease meanwhile; if the whole worker is
killed, the lease expires and the job is failed with a reason instead of staying ``running``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from celery import shared_task
from lpft_contract.records import ErrorInfo, JobStatus, worker_lost
from lpft_contract.settings import get_settings
from lpft_contract.store import Store, connect
from lpft_contract.tasks import TaskName


@shared_task(name=TaskName.TRAIN, acks_late=True)
def train(job_id: str) -> None:
    """Run one training job to a terminal state (a redelivered finished job is a no-op)."""
    settings = get_settings()
    store = Store(connect(settings.redis_url), settings.artifacts_dir)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    record = store.get_job(job_id)
    if record is None or record.status.is_terminal:
        return
    if record.status == JobStatus.RUNNING:
        # A redelivery of a job another worker started: if that worker is alive it keeps the
        # lease; otherwise it died mid-job and the job is failed (never run twice).
        if not store.lease_alive(job_id):
            store.finish(job_id, JobStatus.FAILED, worker_lost(record.worker))
        return
    if store.claim(job_id, worker) is None:
        return
    child = subprocess.Popen([sys.executable, "-m", "lpft_worker.runner", job_id])
    _watch(
        store,
        job_id,
        worker,
        child,
        settings.heartbeat_seconds,
        settings.lease_seconds,
        settings.cancel_grace_seconds,
    )


def _watch(
    store: Store,
    job_id: str,
    worker: str,
    child: subprocess.Popen[bytes],
    heartbeat_s: float,
    lease_s: float,
    grace_s: float,
) -> None:
    cancel_seen: float | None = None
    while child.poll() is None:
        store.heartbeat(job_id, worker, ttl=lease_s)
        if cancel_seen is None and store.cancel_requested(job_id):
            cancel_seen = time.monotonic()
        if cancel_seen is not None and time.monotonic() - cancel_seen > grace_s:
            child.kill()
            child.wait()
            store.finish(job_id, JobStatus.CANCELLED)
            return
        try:
            child.wait(timeout=min(heartbeat_s, 0.5) if cancel_seen else heartbeat_s)
        except subprocess.TimeoutExpired:
            pass
    record = store.get_job(job_id)
    if record is not None and not record.status.is_terminal:
        # The child died without recording an outcome (killed, out of memory, crashed).
        store.finish(
            job_id,
            JobStatus.FAILED,
            ErrorInfo(
                code="training_process_died",
                message=f"the training process exited with code {child.returncode} before "
                "finishing (killed or out of memory?); see the worker log",
            ),
        )
