"""Recovery: the pass the API makes every few seconds so that no fault loses a job.

- Redis lost its data (a flush, a restart without persistence): the job and dataset
  indexes are rebuilt from the volume, where every record has a copy, by one API replica.
- A running job's lease stayed missing for ``lease_s`` (its worker died with its trainer,
  or its machine is gone): the job is queued again and resumes from its last checkpoint, up
  to ``max_attempts`` runs; only then does it fail, with ``worker_lost``. The lease must be
  seen missing for the whole ``lease_s`` by this process, so a Redis outage (when nobody can
  see or renew it) never counts against a healthy worker.
- A queued job whose Celery message is neither waiting in its queue nor delivered (Redis lost
  it, or the send failed) gets its message again.
- A running sweep with no trial queued or running for ``lease_s`` and ``queue_grace_s``, the
  longer (much longer than a sweep takes between two of its own steps; the end of its last
  trial was lost: its worker died before telling the sweep, or this pass failed the trial)
  gets its message again; the worker that takes it picks the sweep up where it stands.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from lpft_contract.enqueue import Enqueuer
from lpft_contract.records import JobRecord, JobStatus
from lpft_contract.stores import Stores
from lpft_contract.sweeps import SweepStore
from lpft_contract.tasks import broker_lists

#: Kombu's Redis transport: delivered messages wait for their acknowledgement in one hash.
_UNACKED = "unacked"


def message_pending(client: redis.Redis, queue: str, job_id: str) -> bool:
    """Whether a task message for ``job_id`` waits in ``queue`` or is delivered unacked."""
    needle = f"'{job_id}'"  # the message's argsrepr header: ['job-…']
    for key in broker_lists(queue):
        if any(needle in raw for raw in client.lrange(key, 0, -1)):
            return True
    return any(needle in raw for raw in client.hvals(_UNACKED))


@dataclass
class Recovery:
    """One recovery pass at a time (``run_once``); keeps what it saw between passes."""

    stores: Stores
    enqueuer: Enqueuer
    lease_s: float
    max_attempts: int
    #: A queued job is checked for a lost message once it has waited this long.
    queue_grace_s: float = 30.0
    missing_since: dict[str, float] = field(default_factory=dict)
    stalled_since: dict[str, float] = field(default_factory=dict)

    def run_once(self) -> list[str]:
        """Do one pass; returns what it did, one line each, for the log."""
        done = []
        if not self.stores.jobs.indexes_present():
            count = self.stores.jobs.rebuild_indexes()
            if count is not None:  # else another replica is rebuilding them
                done.append(f"rebuilt the indexes from {count} records")
        running = self.stores.jobs.running_jobs()
        done += self._lost_runs(running)
        done += self._stalled_sweeps(running)
        done += self._lost_messages()
        return done

    def _lost_runs(self, running: list[JobRecord]) -> list[str]:
        now = time.monotonic()
        ids = {record.id for record in running}
        self.missing_since = {k: v for k, v in self.missing_since.items() if k in ids}
        done = []
        for record in running:
            if record.kind == "sweep":
                continue  # a sweep holds no worker: its trials do, each with its lease
            if self.stores.jobs.lease_alive(record.id):
                self.missing_since.pop(record.id, None)
                continue
            if now - self.missing_since.setdefault(record.id, now) < self.lease_s:
                continue
            del self.missing_since[record.id]
            reason = f"worker {record.worker} was lost"
            if self.stores.jobs.requeue_or_fail(record, reason, self.max_attempts):
                self.enqueuer.run_job(record.id, record.queue)
                done.append(f"job {record.id} lost its worker; queued to resume")
            else:
                done.append(f"job {record.id} lost its worker on its last attempt; failed")
        return done

    def _stalled_sweeps(self, running: list[JobRecord]) -> list[str]:
        """Sweeps seen stalled (``SweepStore.stalled``) all along the grace get their message
        again. A sweep is briefly stalled between two of its own steps (claimed and starting
        its trials, one trial ended and the next not yet queued, finishing): the grace is
        much longer, and a message sent during one would at worst run more trials at once
        than ``parallelism``, never more than ``n_trials`` (``reconcile``)."""
        now = time.monotonic()
        grace = max(self.lease_s, self.queue_grace_s)
        sweeps = SweepStore(self.stores.redis)
        stalled = {
            record.id: record
            for record in running
            if record.kind == "sweep" and sweeps.stalled(record.id, self.stores.jobs.get_job)
        }
        self.stalled_since = {k: v for k, v in self.stalled_since.items() if k in stalled}
        done = []
        for sweep_id, record in stalled.items():
            if now - self.stalled_since.setdefault(sweep_id, now) < grace:
                continue
            del self.stalled_since[sweep_id]
            self.enqueuer.run_job(sweep_id, record.queue)
            message = "no trial of it was queued or running; its message was sent again"
            self.stores.events.append(sweep_id, "message", {"message": message})
            done.append(f"sweep {sweep_id}: {message}")
        return done

    def _lost_messages(self) -> list[str]:
        done = []
        for job_id in self.stores.jobs.queued_since(self.queue_grace_s):
            record = self.stores.jobs.get_job(job_id)
            if record is None or record.status != JobStatus.QUEUED:
                continue
            if message_pending(self.stores.redis, record.queue, job_id):
                continue
            self.enqueuer.run_job(job_id, record.queue)
            self.stores.jobs.touch_queued(job_id)
            self.stores.events.append(
                job_id, "message", {"message": "its queue message was lost; sent again"}
            )
            done.append(f"job {job_id} had no queue message; sent again")
        return done
