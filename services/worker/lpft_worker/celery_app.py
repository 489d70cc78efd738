"""The Celery application, configured for long ML jobs on a Redis broker.

- ``acks_late`` with ``task_reject_on_worker_lost``: a job's message is acknowledged only
  after the task returns, so a lost worker's message is not silently dropped.
- prefetch 1: a worker holds only the job it runs; queued jobs stay available to idle workers.
- a visibility timeout above the longest job, set in all three places Celery reads it, so a
  long job is never redelivered to a second worker while it still runs.
- logs: JSON lines (``lpft_contract.logs``) instead of Celery's text, set up on its
  ``setup_logging`` signal (a receiver there is what keeps Celery from setting up its own).
The job store, not Celery's result backend, holds job state (results expire). Each worker
also beats in Redis from a thread of its own (``lpft_worker.heartbeat``).
"""

from __future__ import annotations

import logging

from celery import Celery, signals
from kombu import Queue
from lpft_contract.logs import configure_logging
from lpft_contract.store_checks import ArtifactStoreMisconfigured, check_at_startup
from lpft_contract.tasks import Queue as JobQueue

from lpft_worker import heartbeat
from lpft_worker.settings import WorkerSettings, get_worker_settings

logger = logging.getLogger("lpft.worker")


def create_celery() -> Celery:
    """A Celery app with the ``gpu`` and ``cpu`` queues. It reads the worker's settings when
    Celery first needs its configuration (as the worker starts), not when this module is
    imported: ``celery -A lpft_worker.celery_app`` imports it before anything else runs."""
    app = Celery("lpft", include=["lpft_worker.tasks"])
    app.add_defaults(lambda: celery_config(get_worker_settings()))
    return app


def celery_config(settings: WorkerSettings) -> dict[str, object]:
    """Celery's configuration for ``settings``: the broker at ``settings.redis_url`` and the
    delivery guarantees above."""
    transport = {"visibility_timeout": settings.visibility_timeout_seconds}
    return {
        "broker_url": settings.redis_url,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "visibility_timeout": settings.visibility_timeout_seconds,
        "task_ignore_result": True,
        "task_queues": [Queue(JobQueue.GPU.value), Queue(JobQueue.CPU.value)],
        "task_default_queue": JobQueue.CPU.value,
        "task_create_missing_queues": False,
        # A broker outage must not cost a running job: the task only watches its training
        # child, which rides the outage out (see lpft_worker.tasks).
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
    }


@signals.worker_init.connect
def artifact_store_usable(**_: object) -> None:
    """Refuse to start with credentials the artifact store refuses or a bucket it lacks:
    the operator learns it now, not from the first job that fails. Celery logs and ignores
    a receiver's exception; a SystemExit stops the worker."""
    try:
        check_at_startup(get_worker_settings())
    except ArtifactStoreMisconfigured:
        logger.critical("the worker cannot use its artifact store", exc_info=True)
        raise SystemExit(1) from None


@signals.setup_logging.connect
def json_logs(loglevel: int | None = None, **_: object) -> None:
    """Log as JSON lines at the worker's ``-l`` level (else ``LPFT_LOG_LEVEL``)."""
    configure_logging(loglevel or get_worker_settings().log_level)


app = create_celery()
heartbeat.install()
