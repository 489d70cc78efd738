"""The worker's settings: the shared ones and those only a worker reads."""

from __future__ import annotations

import functools

from lpft_contract.settings import SharedSettings
from pydantic import Field


class WorkerSettings(SharedSettings):
    """A worker's settings, read from ``LPFT_<NAME>`` like the shared ones."""

    worker_beat_seconds: float = 5.0
    """How often each worker writes its heartbeat record (also while training)."""
    worker_queue: str = ""
    """The queue a worker container consumes; its health check looks for it."""
    cancel_grace_seconds: float = 10.0
    """After a cancel, how long training may take to stop before it is killed."""
    training_threads: int | None = Field(None, ge=1)
    """Intra-op threads of a training process; unset: the CPUs this process may use (its
    affinity and its cgroup's CPU quota), not the host's cores. Workers sharing one host
    should split its CPUs between them (two workers on 8 CPUs: 4 each): each would otherwise
    take them all, and two trainings then run slower side by side than one after another."""
    mlflow_timeout_seconds: float = Field(60.0, gt=0)
    """The longest a job's MLflow logging may take, retries included, once its outputs are
    published (a sweep's: each of its runs, the parent, a child per trial, the best model);
    past it the job succeeds with its integration failed and a warning."""


@functools.cache
def get_worker_settings() -> WorkerSettings:
    """The worker process's settings, read once, when first needed (not at import, so that
    importing the Celery app or a task module reads no environment)."""
    return WorkerSettings()
