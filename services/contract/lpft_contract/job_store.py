"""The jobs: their records and the state machine they move through (queued, running, a final
status), the leases that tell a lost worker, cancel flags, idempotency keys, the indexes the
lists and /metrics read, and their rebuild after Redis lost its data.

Redis holds the live state; each record is also copied to the artifact volume, so it survives
a Redis flush. Celery's own result backend is never used for state: its entries expire.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis

from lpft_contract import job_stats
from lpft_contract.dataset_store import DatasetStore
from lpft_contract.event_log import EventLog
from lpft_contract.integrations import IntegrationRecord, IntegrationStatus
from lpft_contract.job_changes import queue_change
from lpft_contract.keys import key as redis_key
from lpft_contract.paging import Page, sorted_set_page
from lpft_contract.quotas import Quotas, active_key, job_bytes_key
from lpft_contract.records import DatasetRecord, ErrorInfo, JobRecord, JobStatus, worker_lost
from lpft_contract.volume import Volume, safe_id

#: Marks Redis as holding the indexes rebuilt from the volume; gone after Redis lost its data.
#: Set once the indexes are built; its version moves when a new index needs building from
#: the records (v2: jobs by status and kind, for /metrics; v3: the bytes of finished jobs'
#: files, for the storage quota; v4: each tenant's jobs by status, for ``GET /jobs?status=``),
#: so an upgraded store backfills it.
INDEXED = redis_key("indexed", "v4")
#: Held by the one API replica rebuilding the indexes, so the others do not repeat its walk of
#: every job directory. It expires in case that replica dies mid-rebuild; long, since a second
#: replica joining a long rebuild is the very load the lock is there to spare, while until it
#: expires a job is still read from its copy on the volume.
REBUILDING = redis_key("rebuilding")
REBUILD_LOCK_S = 600
#: How long a deleted job's marker stays: far longer than a finish takes to write the job's
#: copies (even one riding out a Redis restart), which is all it must outlast.
DELETED_MARKER_S = 86_400
#: A job's durable copy of its record, in its directory in the store.
RECORD_COPY = "record.json"
#: The keys of the durable copies a rebuild reads back.
JOB_COPY = re.compile(rf"jobs/[^/]+/{re.escape(RECORD_COPY)}")
DATASET_COPY = re.compile(r"datasets/[^/]+\.json")

#: Frees a lock only for the holder that took it, not one that took it after it expired.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
end
"""


class JobStore:
    """Every job's record and state.

    Args:
        client: a Redis client created with ``decode_responses=True``.
        volume: the artifact volume, where records, logs and models are copied.
        events: the jobs' event logs, which every transition appends to.
        quotas: the tenants' counts, which a finish and a delete keep.
        datasets: the datasets, which a rebuild indexes with the jobs.
    """

    def __init__(
        self,
        client: redis.Redis,
        volume: Volume,
        events: EventLog,
        quotas: Quotas,
        datasets: DatasetStore,
    ) -> None:
        self.redis = client
        self.volume = volume
        self.events = events
        self.quotas = quotas
        self.datasets = datasets
        self._release_lock = client.register_script(_RELEASE)

    def create_job(self, record: JobRecord) -> JobRecord:
        """Store a new queued job and its first event (and its copy on the volume); its
        tenant's feed of changes says it was created, in the transaction that indexes it."""
        self._write_record(record)
        pipe = self.redis.pipeline()
        self._queue_index(pipe, record)
        queue_change(pipe, "created", record)
        pipe.execute()
        self.events.append(record.id, "status", {"status": record.status.value})
        return record

    def index_jobs(self, records: Iterable[JobRecord], batch: int = 1000) -> None:
        """Write job records and every index entry of theirs to Redis, ``batch`` records per
        transaction (a bulk import costs a round trip per batch, not per record)."""
        pending = iter(records)
        while chunk := list(itertools.islice(pending, batch)):
            pipe = self.redis.pipeline()
            for record in chunk:
                self._queue_index(pipe, record)
            pipe.execute()

    def _queue_index(self, pipe: redis.client.Pipeline, record: JobRecord) -> None:
        pipe.set(redis_key("job", record.id), record.model_dump_json())
        pipe.zadd(redis_key("jobs", record.tenant), {record.id: record.created_at})
        if record.status == JobStatus.QUEUED:
            pipe.zadd(redis_key("queued"), {record.id: time.time()})
        if record.status == JobStatus.RUNNING:
            pipe.sadd(redis_key("running"), record.id)
        if not record.status.is_terminal:
            pipe.sadd(active_key(record.tenant), record.id)
        job_stats.index_status(pipe, record.id, record.kind, record.status)
        self._index_tenant_status(pipe, record)

    def _index_tenant_status(self, pipe: redis.client.Pipeline, record: JobRecord) -> None:
        """Queue the commands that put the job in its tenant's list of its status, and out of
        the other statuses' lists. Scored as in the tenant's list of all jobs, so a filtered
        page is ordered, and continues after an ``after`` id, as the unfiltered list is."""
        for status in JobStatus:
            key = self._tenant_status_key(record.tenant, status)
            if status == record.status:
                pipe.zadd(key, {record.id: record.created_at})
            else:
                pipe.zrem(key, record.id)

    def _tenant_status_key(self, tenant: str, status: JobStatus) -> str:
        # The status before the tenant: a tenant name holding ":" cannot reach another's key.
        return redis_key("jobs-with-status", status.value, tenant)

    def get_job(self, job_id: str, tenant: str | None = None) -> JobRecord | None:
        """The job (from Redis, else its durable copy), if it belongs to ``tenant``."""
        raw = self.redis.get(redis_key("job", job_id))
        record = JobRecord.model_validate_json(raw) if raw else self._volume_record(job_id)
        if record is None or (tenant is not None and record.tenant != tenant):
            return None
        return record

    def _volume_record(self, job_id: str) -> JobRecord | None:
        """The job's copy on the volume, for a job Redis lost; never a deleted job's (files
        a finish wrote as the job was deleted, had it died before removing them)."""
        if not safe_id(job_id):
            return None
        copy = self.volume.read_text(Volume.job_key(job_id, RECORD_COPY))
        if copy is None or self._deleted(job_id):
            return None
        return JobRecord.model_validate_json(copy)

    def list_jobs(
        self, tenant: str, after: str | None, limit: int, status: JobStatus | None = None
    ) -> Page[JobRecord]:
        """A page of the tenant's jobs (with ``status``: from that status's index, so it costs
        the page's records however long the tenant's history), newest first, after the id
        ``after`` (any of the tenant's jobs)."""
        every_job = redis_key("jobs", tenant)
        index = every_job if status is None else self._tenant_status_key(tenant, status)
        ids = sorted_set_page(self.redis, index, after, limit, order=every_job)
        raw = (
            self.redis.mget([redis_key("job", job_id) for job_id in ids.items]) if ids.items else []
        )
        jobs = []
        for job_id, text in zip(ids.items, raw, strict=True):
            record = JobRecord.model_validate_json(text) if text else self._volume_record(job_id)
            # skips a job deleted, or moved to another status, since the index was read
            if record is not None and record.tenant == tenant:
                if status is None or record.status == status:
                    jobs.append(record)
        return Page(jobs, ids.last_id, ids.has_more)

    def jobs_using_job(self, tenant: str, job_id: str) -> list[str]:
        """The tenant's unfinished jobs that will read ``job_id``'s model (an analysis of it,
        a re-calibration)."""
        return self.jobs_using_any(tenant, {job_id})

    def jobs_using_any(self, tenant: str, job_ids: set[str]) -> list[str]:
        """The tenant's unfinished jobs that will read the model of any of ``job_ids`` (a
        sweep's trials): one pass over its unfinished jobs, however many ids."""
        return [
            other
            for other in self.redis.smembers(active_key(tenant))
            if (record := self.get_job(other)) is not None and record.source_job in job_ids
        ]

    def jobs_using_dataset(self, tenant: str, dataset_id: str) -> list[str]:
        """The tenant's unfinished jobs that will read ``dataset_id``."""
        return [
            job_id
            for job_id in self.redis.smembers(active_key(tenant))
            if (record := self.get_job(job_id)) is not None
            and (dataset_id in record.dataset.values() or dataset_id in record.eval_sets.values())
        ]

    def claim(self, job_id: str, worker: str, lease_s: float) -> JobRecord | None:
        """Move a queued job to running for ``worker``; ``None`` if it is not queued (another
        worker has it, or it was cancelled). The atomic step that keeps two workers from
        running one job; its lease and index entries change in the same transaction."""

        def indexes(pipe: redis.client.Pipeline, record: JobRecord) -> None:
            pipe.set(redis_key("job", job_id, "lease"), worker, px=int(lease_s * 1000))
            pipe.sadd(redis_key("running"), job_id)
            pipe.zrem(redis_key("queued"), job_id)

        record = self._transition(
            job_id,
            {JobStatus.QUEUED},
            lambda r: r.model_copy(
                update={
                    "status": JobStatus.RUNNING,
                    "worker": worker,
                    "started_at": time.time(),
                    "attempts": r.attempts + 1,
                }
            ),
            indexes,
        )
        if record is not None:
            data = {"status": "running", "worker": worker, "attempt": record.attempts}
            self.events.append(job_id, "status", data)
        return record

    def requeue(self, job_id: str, worker: str | None, reason: str) -> JobRecord | None:
        """Put a running job whose run was lost back in the queue, to resume from its last
        checkpoint; ``None`` if it is not running under ``worker`` any more (finished, or
        already handed to another worker). The caller sends the task."""

        def indexes(pipe: redis.client.Pipeline, record: JobRecord) -> None:
            pipe.delete(redis_key("job", job_id, "lease"))
            pipe.srem(redis_key("running"), job_id)
            pipe.zadd(redis_key("queued"), {job_id: time.time()})

        record = self._transition(
            job_id,
            {JobStatus.RUNNING},
            lambda r: r.model_copy(update={"status": JobStatus.QUEUED, "worker": None}),
            indexes,
            worker=worker,
        )
        if record is not None:
            data = {"status": "queued", "retry": record.attempts + 1, "reason": reason}
            self.events.append(job_id, "status", data)
        return record

    def requeue_or_fail(self, record: JobRecord, reason: str, max_attempts: int) -> bool:
        """After a lost run: queue the job again (True: the caller sends its task), or fail
        it with ``worker_lost`` when that was its last allowed run (False)."""
        if record.attempts < max_attempts:
            return self.requeue(record.id, record.worker, reason) is not None
        error = worker_lost(record.worker, record.attempts)
        self.finish(record.id, JobStatus.FAILED, error, worker=record.worker)
        return False

    def set_integrations(
        self, job_id: str, integrations: list[IntegrationRecord], *, worker: str | None
    ) -> JobRecord | None:
        """Record where a job's integrations stand (its tracker run logged or not), written
        once the job ended (a re-calibration's also while it runs; a sweep's in every
        ending, its runs showing how it ended); ``None`` if the job is no longer
        ``worker``'s or was deleted."""
        return self._transition(
            job_id,
            {JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED},
            lambda r: r.model_copy(update={"integrations": integrations}),
            worker=worker,
        )

    def queued_since(self, older_than_s: float) -> list[str]:
        """Jobs queued (or re-queued) more than ``older_than_s`` seconds ago."""
        return self.redis.zrangebyscore(redis_key("queued"), 0, time.time() - older_than_s)

    def touch_queued(self, job_id: str) -> None:
        """Restart the clock of a queued job (its message was just sent again)."""
        self.redis.zadd(redis_key("queued"), {job_id: time.time()}, xx=True)

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        error: ErrorInfo | None = None,
        *,
        worker: str | None = None,
    ) -> JobRecord | None:
        """Move a queued or running job to a terminal ``status``; ``None`` if it is already
        final, or (with ``worker``) no longer running under that worker.

        The record and the event log are also written to the artifact volume, after the
        status changed in Redis (only that transaction decides whether this call finishes the
        job). A client that sees the final status may delete the job while they are written;
        the delete wins: these writes end by checking for it and removing what they put back
        (see ``_drop_if_deleted``), so a deleted job never returns from the volume.
        """

        def indexes(pipe: redis.client.Pipeline, record: JobRecord) -> None:
            pipe.delete(redis_key("job", job_id, "lease"), redis_key("job", job_id, "cancel"))
            pipe.srem(redis_key("running"), job_id)
            pipe.zrem(redis_key("queued"), job_id)
            pipe.srem(active_key(record.tenant), job_id)
            job_stats.record_duration(pipe, record)

        def ended(record: JobRecord) -> JobRecord:
            update: dict[str, Any] = {"status": status, "error": error, "finished_at": time.time()}
            if status != JobStatus.SUCCEEDED and record.kind != "sweep":
                # A run is logged once a job succeeded (a sweep's in every ending, by the
                # worker that ends it): any other ending gives its integrations up now,
                # rather than leave them pending forever.
                update["integrations"] = [_given_up(i, status) for i in record.integrations]
            return record.model_copy(update=update)

        record = self._transition(
            job_id, {JobStatus.QUEUED, JobStatus.RUNNING}, ended, indexes, worker=worker
        )
        if record is None:
            return None
        data: dict[str, Any] = {"status": status.value}
        if error is not None:
            data["error"] = error.model_dump()
        self.events.append(job_id, "status", data)
        self.events.copy_to_volume(job_id)
        self.volume.remove(Volume.checkpoint_key(job_id))  # nothing will resume
        self.quotas.measure_job(record)
        # A re-calibration rewrote its source's calibration record.
        source = self.get_job(record.source_job) if record.source_job else None
        if source is not None and source.status.is_terminal:
            self.quotas.measure_job(source)
        self._drop_if_deleted(job_id)
        return record

    def copy_events_again(self, job_id: str) -> None:
        """Copy a finished job's event log to the volume once more, for events written after
        its finish (a tracker's warning); a job deleted meanwhile keeps nothing there."""
        self.events.copy_to_volume(job_id)
        self._drop_if_deleted(job_id)

    def _drop_if_deleted(self, job_id: str) -> None:
        """Remove the volume copies and event stream a finish wrote for a job deleted while it
        wrote them. Checked after the last write, and ``delete_job`` drops the Redis record
        before the directory: either the delete's transaction came first and is seen here,
        or its directory removal comes after every write. No lock, so a finish that died
        between (its files left behind) cannot keep the job from being deleted, and those
        files are not read back (``_deleted``)."""
        if self._deleted(job_id):
            self.redis.delete(self.events.stream_key(job_id))
            self.volume.remove(Volume.job_key(job_id))

    def _deleted(self, job_id: str) -> bool:
        """Whether the job was deleted: its delete marker is there. Only the marker proves it:
        a record missing from Redis is also what a Redis that lost keys leaves of a finished
        job, which its volume copy must then serve."""
        return bool(self.redis.exists(redis_key("job", job_id, "deleted")))

    def delete_job(self, record: JobRecord) -> None:
        """Remove a finished job: its record, events, model and every index entry. The Redis
        entries go first, in one transaction that also marks the job deleted, and the
        directory after: a finish or an archive build still writing relies on that order to
        notice the delete."""
        pipe = self.redis.pipeline()
        pipe.set(redis_key("job", record.id, "deleted"), "1", ex=DELETED_MARKER_S)
        pipe.delete(redis_key("job", record.id), self.events.stream_key(record.id))
        pipe.zrem(redis_key("jobs", record.tenant), record.id)
        pipe.hdel(job_bytes_key(record.tenant), record.id)
        for status in JobStatus:
            pipe.zrem(self._tenant_status_key(record.tenant, status), record.id)
        job_stats.unindex_status(pipe, record)
        queue_change(pipe, "deleted", record)
        pipe.execute()
        self.volume.remove(Volume.job_key(record.id))

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """Flag a running job for cancellation (a queued one is cancelled at once)."""
        self.redis.set(redis_key("job", job_id, "cancel"), "1")
        record = self.get_job(job_id)
        if record is None or record.status.is_terminal:
            return record
        if record.status == JobStatus.QUEUED:
            return self.finish(job_id, JobStatus.CANCELLED) or self.get_job(job_id)
        updated = self._transition(
            job_id, {JobStatus.RUNNING}, lambda r: r.model_copy(update={"cancel_requested": True})
        )
        self.events.append(job_id, "message", {"message": "cancel requested"})
        return updated or self.get_job(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked this job to stop."""
        return bool(self.redis.exists(redis_key("job", job_id, "cancel")))

    # ---- leases: how a lost worker is noticed ----------------------------------------------

    def heartbeat(self, job_id: str, worker: str, ttl: float) -> None:
        """Renew the worker's lease on a running job for ``ttl`` seconds."""
        self.redis.set(redis_key("job", job_id, "lease"), worker, px=int(ttl * 1000))

    def lease_alive(self, job_id: str) -> bool:
        """Whether a worker has renewed the job's lease recently."""
        return bool(self.redis.exists(redis_key("job", job_id, "lease")))

    def running_jobs(self) -> list[JobRecord]:
        """Every running job (stale index entries are dropped on the way)."""
        records = []
        for job_id in self.redis.smembers(redis_key("running")):
            record = self.get_job(job_id)
            if record is None or record.status != JobStatus.RUNNING:
                self.redis.srem(redis_key("running"), job_id)
            else:
                records.append(record)
        return records

    # ---- idempotency ------------------------------------------------------------------------

    def remember_idempotency(
        self, tenant: str, key: str, fingerprint: str, job_id: str, ttl_s: int = 86_400
    ) -> tuple[str, str]:
        """Bind ``key`` to ``(fingerprint, job_id)`` unless already bound; return the binding
        that holds (the earlier one on a retry)."""
        binding = redis_key("idempotency", tenant, key)
        value = json.dumps({"fingerprint": fingerprint, "job_id": job_id})
        if not self.redis.set(binding, value, nx=True, ex=ttl_s):
            value = self.redis.get(binding) or value
        bound = json.loads(value)
        return bound["fingerprint"], bound["job_id"]

    def forget_idempotency(self, tenant: str, key: str, job_id: str) -> None:
        """Unbind ``key`` if it is bound to ``job_id`` (whose creation failed), so a retry
        with the same key creates the job instead of returning the failed one."""
        binding = redis_key("idempotency", tenant, key)
        value = self.redis.get(binding)
        if value is not None and json.loads(value)["job_id"] == job_id:
            self.redis.delete(binding)

    # ---- recovery after Redis lost its data -------------------------------------------------

    def indexes_present(self) -> bool:
        """False once Redis has lost its data (a flush, a restart without persistence)."""
        return bool(self.redis.exists(INDEXED))

    def rebuild_indexes(self) -> int | None:
        """Index every job and dataset the volume holds; returns how many records were
        read, or None if another API replica is rebuilding them (one walk of the volume is
        enough, and each replica's recovery pass would otherwise start its own at once).
        Unfinished jobs get their Redis record back, so their workers can still record an
        outcome; a queued one is then found by the queue check and sent again."""
        token = uuid.uuid4().hex
        if not self.redis.set(REBUILDING, token, nx=True, ex=REBUILD_LOCK_S):
            return None
        try:
            count = 0
            for raw in self._copies("datasets", DATASET_COPY):
                self.datasets.index(DatasetRecord.model_validate_json(raw))
                count += 1
            for raw in self._copies("jobs", JOB_COPY):
                record = JobRecord.model_validate_json(raw)
                if not self.redis.exists(redis_key("job", record.id)):
                    self.index_jobs([record])
                else:
                    self._index_status_of(record.id)
                if record.status.is_terminal:
                    self.quotas.measure_job(record)
                count += 1
            self.quotas.drop_bytes_of_missing_jobs()
            self.redis.set(INDEXED, str(time.time()))
        finally:
            self._release_lock(keys=[REBUILDING], args=[token])
        return count

    def _copies(self, prefix: str, copy: re.Pattern[str]) -> Iterator[str]:
        """The durable copies under ``prefix`` whose keys ``copy`` matches, in key order."""
        for info in self.volume.objects.list(prefix):
            if copy.fullmatch(info.key) and (raw := self.volume.read_text(info.key)) is not None:
                yield raw

    def _index_status_of(self, job_id: str) -> None:
        """Put a job Redis still holds in the status indexes (for /metrics, and its tenant's),
        from its Redis record, watched so that a transition meanwhile is not overwritten (a
        store that predates an index)."""
        key = redis_key("job", job_id)

        def attempt(pipe: redis.client.Pipeline) -> None:
            raw = pipe.get(key)
            if raw is None:
                return
            record = JobRecord.model_validate_json(raw)
            pipe.multi()
            job_stats.index_status(pipe, record.id, record.kind, record.status)
            self._index_tenant_status(pipe, record)

        self.redis.transaction(attempt, key)

    # ---- internals --------------------------------------------------------------------------

    def _transition(
        self,
        job_id: str,
        allowed: set[JobStatus],
        update: Callable[[JobRecord], JobRecord],
        indexes: Callable[[redis.client.Pipeline, JobRecord], None] | None = None,
        *,
        worker: str | None = None,
    ) -> JobRecord | None:
        """Apply ``update`` to the job if its status is in ``allowed`` (and, with ``worker``,
        it runs under that worker), together with ``indexes`` in one transaction; the new
        record is then copied to the volume. A job Redis lost is taken from the volume first,
        so an outcome is never dropped because Redis restarted empty. A status change is
        reported on the tenant's feed of changes in the same transaction: every status
        transition passes here."""
        key = redis_key("job", job_id)
        if not self.redis.exists(key) and (copy := self._volume_record(job_id)) is not None:
            self.index_jobs([copy])

        def attempt(pipe: redis.client.Pipeline) -> JobRecord | None:
            raw = pipe.get(key)
            if raw is None:
                return None
            record = JobRecord.model_validate_json(raw)
            if record.status not in allowed or (worker is not None and record.worker != worker):
                return None
            new = update(record)
            pipe.multi()
            pipe.set(key, new.model_dump_json())
            if new.status != record.status:
                job_stats.index_status(pipe, job_id, new.kind, new.status)
                self._index_tenant_status(pipe, new)
                queue_change(pipe, "status", new, record.status)
            if indexes is not None:
                indexes(pipe, new)
            return new

        record = self.redis.transaction(attempt, key, value_from_callable=True)
        if record is not None:
            self._write_record(record)
        return record

    def _write_record(self, record: JobRecord) -> None:
        """The job's copy on the volume, which outlives Redis."""
        self.volume.write_text(
            Volume.job_key(record.id, RECORD_COPY), record.model_dump_json(indent=2)
        )


def _given_up(integration: IntegrationRecord, status: JobStatus) -> IntegrationRecord:
    """A pending integration of a job that ended ``status`` without a run to log."""
    if integration.status != IntegrationStatus.PENDING:
        return integration
    return integration.model_copy(
        update={
            "status": IntegrationStatus.FAILED,
            "error": f"not logged: the job ended {status.value}, and a job's run is logged "
            "once it succeeded",
        }
    )
