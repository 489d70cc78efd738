"""The worker's heartbeat: a thread that writes this worker's ``WorkerBeat`` to Redis every
``LPFT_WORKER_BEAT_SECONDS``, whatever the job being trained.

The worker runs ``-P solo``: its one thread spends a whole job watching the training child,
so a beat written by that thread (or Celery's ``inspect ping``, answered by it) says nothing
while a job runs. This thread starts when the worker is ready (``worker_ready``, sent in the
worker's own process, which is the one that runs tasks under ``solo``) and stops at
``worker_shutdown``, which also removes the record: a worker that left cleanly is gone, not
stale. The task signals tell it which job the worker handles and how many it finished.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import redis
from celery import signals
from lpft_contract.stores import Stores, connect
from lpft_contract.tasks import TaskName
from lpft_contract.workers import WorkerBeat, remove_worker, write_beat

from lpft_worker.settings import get_worker_settings

logger = logging.getLogger("lpft.worker")


class Heartbeat:
    """Writes ``beat`` every ``interval_s`` seconds on a daemon thread until ``stop``."""

    def __init__(self, client: redis.Redis, beat: WorkerBeat, interval_s: float) -> None:
        self.client = client
        self.beat = beat
        self.interval_s = interval_s
        self.lock = threading.Lock()
        #: When the worker took its current job's task (a run it claims starts after this).
        self.job_since = 0.0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lpft-heartbeat", daemon=True)

    def start(self) -> None:
        """Write the first beat now (the worker is healthy from its first moment), then
        keep beating in the background."""
        self._write()
        self.thread.start()

    def stop(self) -> None:
        """Stop beating and forget this worker."""
        self.stopped.set()
        self.thread.join(timeout=self.interval_s + 10)
        try:
            remove_worker(self.client, self.beat.name)
        except redis.RedisError as exc:
            logger.warning("could not remove the heartbeat of %s: %s", self.beat.name, exc)

    def job_started(self, job_id: str) -> None:
        """Name the job the worker now handles (in the beat written at once)."""
        self.job_since = time.time()
        with self.lock:
            self.beat = self.beat.model_copy(update={"current_job": job_id})
        self._try_write()

    def job_ended(self, finished: bool) -> None:
        """The job is over; ``finished``: this worker brought it to a terminal state."""
        with self.lock:
            update = {"current_job": None, "jobs_finished": self.beat.jobs_finished + finished}
            self.beat = self.beat.model_copy(update=update)
        self._try_write()

    def _run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self._try_write()

    def _try_write(self) -> None:
        try:
            self._write()
        except redis.RedisError as exc:  # a Redis outage must not end the heartbeat
            logger.warning("heartbeat of %s not written: %s", self.beat.name, exc)

    def _write(self) -> None:
        with self.lock:
            self.beat = self.beat.model_copy(update={"beat_at": time.time()})
            beat = self.beat
        write_beat(self.client, beat)


_heartbeat: Heartbeat | None = None


def _start(sender: Any, **_: Any) -> None:
    """``worker_ready``: ``sender`` is the worker's consumer."""
    global _heartbeat
    settings = get_worker_settings()
    now = time.time()
    beat = WorkerBeat(
        name=sender.hostname,
        queues=sorted(sender.app.amqp.queues.consume_from),
        pid=os.getpid(),
        hostname=socket.gethostname(),
        started_at=now,
        beat_at=now,
    )
    _heartbeat = Heartbeat(connect(settings.redis_url), beat, settings.worker_beat_seconds)
    _heartbeat.start()


def _stop(**_: Any) -> None:
    """``worker_shutdown``."""
    global _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None


def _task_started(task: Any, args: Any = None, **_: Any) -> None:
    if _heartbeat is not None and task.name == TaskName.RUN_JOB and args:
        _heartbeat.job_started(args[0])


def _task_ended(task: Any, args: Any = None, **_: Any) -> None:
    if _heartbeat is None or task.name != TaskName.RUN_JOB or not args:
        return
    # A duplicate message (the job was not queued) ends without running anything: count only
    # a job this task claimed (under the lease name ``tasks.run_job`` uses) and left terminal.
    try:
        stores = Stores.over(_heartbeat.client, get_worker_settings().artifacts_dir)
        record = stores.jobs.get_job(args[0])
    except redis.RedisError:
        record = None
    lease_owner = f"{socket.gethostname()}:{os.getpid()}"
    finished = (
        record is not None
        and record.status.is_terminal
        and record.worker == lease_owner
        and (record.started_at or 0.0) >= _heartbeat.job_since
    )
    _heartbeat.job_ended(finished)


def install() -> None:
    """Connect the heartbeat to the worker's signals (done by ``lpft_worker.celery_app``)."""
    signals.worker_ready.connect(_start, weak=False)
    signals.worker_shutdown.connect(_stop, weak=False)
    signals.task_prerun.connect(_task_started, weak=False)
    signals.task_postrun.connect(_task_ended, weak=False)
