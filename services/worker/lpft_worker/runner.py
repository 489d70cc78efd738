"""The training child process: ``python -m lpft_worker.runner JOB_ID``.

Runs one claimed job (``lpft_core.jobs.execute``: finetune, compare or analysis), publishes
its progress as job events, polls the cancel flag between steps, and records the outcome. It
stops by itself if the worker that started it dies, so an orphan never trains on.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
import warnings
from collections.abc import Iterator

from lpft_contract.records import ErrorInfo, JobStatus, worker_lost
from lpft_contract.settings import get_settings
from lpft_contract.store import Store, connect

from lpft_core import CancelledError, LpftError, ProgressEvent
from lpft_core.jobs import execute


class EventPublisher:
    """Turns lpft_core progress events into job events: a ``stage`` event when a stage
    starts, a ``step`` event per optimisation step, an ``epoch`` event per epoch."""

    def __init__(self, store: Store, job_id: str) -> None:
        self.store = store
        self.job_id = job_id
        self.stage: str | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage != self.stage:
            self.stage = event.stage
            self.store.append_event(
                self.job_id, "stage", {"stage": event.stage, "total": event.total}
            )
        if "loss" in event.metrics:
            kind = "step"
        elif "epoch" in event.metrics:
            kind = "epoch"
        elif event.metrics:
            kind = "metrics"
        else:
            return
        data = {"stage": event.stage, "step": event.step, "total": event.total, **event.metrics}
        self.store.append_event(self.job_id, kind, data)


@contextlib.contextmanager
def warnings_as_events(store: Store, job_id: str) -> Iterator[None]:
    """Publish every warning raised while training (a probe that did not converge, a
    truncated input...) as a ``warning`` event, once per place it comes from."""

    def publish(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        store.append_event(
            job_id, "warning", {"category": category.__name__, "message": str(message)}
        )

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = publish
        yield


def main(job_id: str) -> int:
    """Run the job; the exit status is 0 whenever an outcome was recorded."""
    settings = get_settings()
    store = Store(connect(settings.redis_url), settings.artifacts_dir)
    record = store.get_job(job_id)
    if record is None or record.status != JobStatus.RUNNING:
        return 1
    parent = os.getppid()

    def orphaned() -> bool:
        return os.getppid() != parent

    def should_stop() -> bool:
        return orphaned() or store.cancel_requested(job_id)

    try:
        with warnings_as_events(store, job_id):
            execute(
                record.kind,
                record.spec,
                f"Job {job_id} ({record.method or record.kind})",
                progress=EventPublisher(store, job_id),
                should_stop=should_stop,
            )
    except CancelledError:
        if orphaned():
            store.finish(job_id, JobStatus.FAILED, worker_lost(record.worker))
        else:
            store.finish(job_id, JobStatus.CANCELLED)
        return 0
    except LpftError as exc:
        store.finish(job_id, JobStatus.FAILED, ErrorInfo(code=exc.code, message=str(exc)))
        return 0
    except Exception as exc:  # noqa: BLE001 - any crash must end as a failed job, with a reason
        traceback.print_exc()
        store.finish(
            job_id,
            JobStatus.FAILED,
            ErrorInfo(code="internal", message=f"{type(exc).__name__}: {exc}"),
        )
        return 0
    store.finish(job_id, JobStatus.SUCCEEDED)
    return 0


if __name__ == "__main__":
    from transformers.utils import logging

    logging.disable_progress_bar()
    sys.exit(main(sys.argv[1]))
