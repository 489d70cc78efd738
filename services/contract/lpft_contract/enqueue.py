"""Sending tasks to the workers by name, so the API never imports the worker's code."""

from __future__ import annotations

from celery import Celery

from lpft_contract.tasks import TaskName


class Enqueuer:
    """Sends ``lpft.*`` tasks to a queue on the broker."""

    def __init__(self, broker_url: str, visibility_timeout_s: int) -> None:
        self.celery = Celery("lpft-api", broker=broker_url)
        transport = {"visibility_timeout": visibility_timeout_s}
        self.celery.conf.update(
            broker_transport_options=transport,
            broker_connection_retry_on_startup=True,
        )

    def run_job(self, job_id: str, queue: str) -> None:
        """Queue ``job_id`` (of any kind) on ``queue``."""
        self.celery.send_task(TaskName.RUN_JOB.value, args=[job_id], queue=queue)
