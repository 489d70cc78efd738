"""The job store: Redis for live state, the artifact volume for what must outlive Redis.

Redis holds job and dataset records, per-job event streams, cancel flags, worker leases and
idempotency keys. Finished jobs (record, metrics, events) and uploaded datasets are also
written to the artifact volume, so they survive a Redis flush. Celery's own result backend is
never used for state: its entries expire.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from lpft_contract import job_stats
from lpft_contract.records import DatasetRecord, ErrorInfo, JobRecord, JobStatus, worker_lost
from lpft_contract.settings import Settings

PREFIX = "lpft"
EVENTS_MAXLEN = 200_000
#: Marks Redis as holding the indexes rebuilt from the volume; gone after Redis lost its data.
#: Set once the indexes are built; its version moves when a new index needs building from
#: the records (v2: jobs by status and kind, for /metrics; v3: the bytes of finished jobs'
#: files, for the storage quota; v4: each tenant's jobs by status, for ``GET /jobs?status=``),
#: so an upgraded store backfills it.
INDEXED = f"{PREFIX}:indexed:v4"
#: Held by the one API replica rebuilding the indexes, so the others do not repeat its walk of
#: every job directory. It expires in case that replica dies mid-rebuild; long, since a second
#: replica joining a long rebuild is the very load the lock is there to spare, while until it
#: expires a job is still read from its copy on the volume.
REBUILDING = f"{PREFIX}:rebuilding"
REBUILD_LOCK_S = 600
#: How long a deleted job's marker stays: far longer than a finish takes to write the job's
#: copies (even one riding out a Redis restart), which is all it must outlast.
DELETED_MARKER_S = 86_400

#: The job's bytes are counted only while its record is in Redis: checked and written in one
#: step, so a delete (which drops the record and the count in one transaction) either comes
#: after the write and drops it, or before and the write is skipped.
_MEASURE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
"""
#: Frees a lock only for the holder that took it, not one that took it after it expired.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
end
"""


class Store:
    """All persistent state of the service.

    Args:
        client: a Redis client created with ``decode_responses=True``.
        artifacts_dir: the shared artifact volume.
    """

    def __init__(
        self, client: redis.Redis, artifacts_dir: Path, event_retention_s: int = 7 * 86_400
    ) -> None:
        self.redis = client
        self.artifacts_dir = Path(artifacts_dir)
        self.event_retention_s = event_retention_s
        self._measure = client.register_script(_MEASURE)
        self._release_lock = client.register_script(_RELEASE)

    # ---- paths on the artifact volume -------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        """Where a job's model and durable copies live."""
        return self.artifacts_dir / "jobs" / job_id

    def model_dir(self, job_id: str) -> Path:
        """The artifact directory a job's model is written to."""
        return self.job_dir(job_id) / "model"

    def checkpoint_dir(self, job_id: str) -> Path:
        """Where a finetune job keeps its last completed epoch, to resume a lost run."""
        return self.job_dir(job_id) / "checkpoint"

    def dataset_path(self, dataset_id: str) -> Path:
        """The JSONL file of an uploaded dataset."""
        return self.artifacts_dir / "datasets" / f"{dataset_id}.jsonl"

    # ---- datasets ---------------------------------------------------------------------------

    def save_dataset(self, record: DatasetRecord, rows: list[dict[str, Any]]) -> DatasetRecord:
        """Write the rows and the record to the volume, then index the record in Redis."""
        path = Path(record.path)
        _write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))
        record = record.model_copy(update={"bytes": path.stat().st_size})
        _write_atomic(path.with_suffix(".json"), record.model_dump_json(indent=2))
        self._index_dataset(record)
        return record

    def _index_dataset(self, record: DatasetRecord) -> None:
        pipe = self.redis.pipeline()
        pipe.set(self._key("dataset", record.id), record.model_dump_json())
        pipe.zadd(self._key("datasets", record.tenant), {record.id: record.created_at})
        pipe.hset(self._key("dataset-bytes", record.tenant), record.id, record.bytes)
        pipe.execute()

    def dataset_usage(self, tenant: str) -> tuple[int, int]:
        """The tenant's stored datasets: how many, and their bytes on the volume."""
        sizes = self.redis.hvals(self._key("dataset-bytes", tenant))
        return len(sizes), sum(int(size) for size in sizes)

    def stored_bytes(self, tenant: str) -> int:
        """The bytes the tenant keeps on the volume: its datasets and its finished jobs'
        directories (as ``measure_job`` last found them)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hvals(self._key("dataset-bytes", tenant))
        pipe.hvals(self._key("job-bytes", tenant))
        return sum(int(size) for sizes in pipe.execute() for size in sizes)

    def measure_job(self, record: JobRecord) -> None:
        """Count the job's directory (model, reports, archives, its log and records) toward
        its tenant's stored bytes; called whenever the service has written to it after the
        job finished, since the files are then the tenant's to keep until it deletes them.
        A job deleted meanwhile (an archive built, or a finish recorded, as the client deleted
        it) is not counted: the count is written only while the job's record exists."""
        size = _tree_bytes(self.job_dir(record.id))
        keys = [self._key("job", record.id), self._key("job-bytes", record.tenant)]
        self._measure(keys=keys, args=[record.id, size])

    def delete_dataset(self, record: DatasetRecord) -> None:
        """Remove the dataset's rows, record and index entries."""
        pipe = self.redis.pipeline()
        pipe.delete(self._key("dataset", record.id))
        pipe.zrem(self._key("datasets", record.tenant), record.id)
        pipe.hdel(self._key("dataset-bytes", record.tenant), record.id)
        pipe.execute()
        for path in (Path(record.path), Path(record.path).with_suffix(".json")):
            path.unlink(missing_ok=True)

    def jobs_using_job(self, tenant: str, job_id: str) -> list[str]:
        """The tenant's unfinished jobs that will read ``job_id``'s model (an analysis of it,
        a re-calibration)."""
        return [
            other
            for other in self.redis.smembers(self._key("active", tenant))
            if (record := self.get_job(other)) is not None and record.source_job == job_id
        ]

    def jobs_using_dataset(self, tenant: str, dataset_id: str) -> list[str]:
        """The tenant's unfinished jobs that will read ``dataset_id``."""
        return [
            job_id
            for job_id in self.redis.smembers(self._key("active", tenant))
            if (record := self.get_job(job_id)) is not None
            and (dataset_id in record.dataset.values() or dataset_id in record.eval_sets.values())
        ]

    def get_dataset(self, tenant: str, dataset_id: str) -> DatasetRecord | None:
        """The dataset, if it exists and belongs to ``tenant``."""
        raw = self.redis.get(self._key("dataset", dataset_id))
        if raw is None:
            copy = self.dataset_path(dataset_id).with_suffix(".json")
            raw = copy.read_text() if _safe_id(dataset_id) and copy.is_file() else None
        record = DatasetRecord.model_validate_json(raw) if raw else None
        return record if record and record.tenant == tenant else None

    def list_datasets(self, tenant: str, after: str | None, limit: int) -> list[DatasetRecord]:
        """A page of the tenant's datasets, newest first, after the id ``after``."""
        ids = self._page(self._key("datasets", tenant), after, limit)
        return [r for r in (self.get_dataset(tenant, i) for i in ids) if r is not None]

    # ---- jobs -------------------------------------------------------------------------------

    def admit(self, tenant: str, job_id: str, cap: int) -> bool:
        """Count ``job_id`` among the tenant's unfinished jobs unless ``cap`` are already
        there (the add and the count are one transaction, so concurrent requests cannot
        overshoot)."""
        key = self._key("active", tenant)
        pipe = self.redis.pipeline()
        pipe.sadd(key, job_id)
        pipe.scard(key)
        _, count = pipe.execute()
        if count > cap:
            self.redis.srem(key, job_id)
            return False
        return True

    def release(self, tenant: str, job_id: str) -> None:
        """Stop counting ``job_id`` among the tenant's unfinished jobs."""
        self.redis.srem(self._key("active", tenant), job_id)

    def create_job(self, record: JobRecord) -> JobRecord:
        """Store a new queued job and its first event (and its copy on the volume)."""
        self._write_record(record)
        self.index_jobs([record])
        self.append_event(record.id, "status", {"status": record.status.value})
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
        pipe.set(self._key("job", record.id), record.model_dump_json())
        pipe.zadd(self._key("jobs", record.tenant), {record.id: record.created_at})
        if record.status == JobStatus.QUEUED:
            pipe.zadd(self._key("queued"), {record.id: time.time()})
        if record.status == JobStatus.RUNNING:
            pipe.sadd(self._key("running"), record.id)
        if not record.status.is_terminal:
            pipe.sadd(self._key("active", record.tenant), record.id)
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
        return self._key("jobs-with-status", status.value, tenant)

    def get_job(self, job_id: str, tenant: str | None = None) -> JobRecord | None:
        """The job (from Redis, else its durable copy), if it belongs to ``tenant``."""
        raw = self.redis.get(self._key("job", job_id))
        record = JobRecord.model_validate_json(raw) if raw else self._volume_record(job_id)
        if record is None or (tenant is not None and record.tenant != tenant):
            return None
        return record

    def _volume_record(self, job_id: str) -> JobRecord | None:
        """The job's copy on the volume, for a job Redis lost; never a deleted job's (files
        a finish wrote as the job was deleted, had it died before removing them)."""
        copy = self.job_dir(job_id) / "record.json"
        if not _safe_id(job_id) or not copy.is_file() or self._deleted(job_id):
            return None
        return JobRecord.model_validate_json(copy.read_text())

    def list_jobs(
        self, tenant: str, after: str | None, limit: int, status: JobStatus | None = None
    ) -> tuple[list[JobRecord], bool]:
        """A page of the tenant's jobs (with ``status``: from that status's index, so it costs
        the page's records however long the tenant's history), newest first, after the id
        ``after`` (any of the tenant's jobs), and whether more follow."""
        every_job = self._key("jobs", tenant)
        key = every_job if status is None else self._tenant_status_key(tenant, status)
        ids = self._page(key, after, limit + 1, order=every_job)
        raw = self.redis.mget([self._key("job", job_id) for job_id in ids]) if ids else []
        jobs = []
        for job_id, text in zip(ids[:limit], raw[:limit], strict=True):
            record = JobRecord.model_validate_json(text) if text else self._volume_record(job_id)
            # skips a job deleted, or moved to another status, since the index was read
            if record is not None and record.tenant == tenant:
                if status is None or record.status == status:
                    jobs.append(record)
        return jobs, len(ids) > limit

    def claim(self, job_id: str, worker: str, lease_s: float) -> JobRecord | None:
        """Move a queued job to running for ``worker``; ``None`` if it is not queued (another
        worker has it, or it was cancelled). The atomic step that keeps two workers from
        running one job; its lease and index entries change in the same transaction."""

        def indexes(pipe: redis.client.Pipeline, record: JobRecord) -> None:
            pipe.set(self._key("job", job_id, "lease"), worker, px=int(lease_s * 1000))
            pipe.sadd(self._key("running"), job_id)
            pipe.zrem(self._key("queued"), job_id)

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
            self.append_event(job_id, "status", data)
        return record

    def requeue(self, job_id: str, worker: str | None, reason: str) -> JobRecord | None:
        """Put a running job whose run was lost back in the queue, to resume from its last
        checkpoint; ``None`` if it is not running under ``worker`` any more (finished, or
        already handed to another worker). The caller sends the task."""

        def indexes(pipe: redis.client.Pipeline, record: JobRecord) -> None:
            pipe.delete(self._key("job", job_id, "lease"))
            pipe.srem(self._key("running"), job_id)
            pipe.zadd(self._key("queued"), {job_id: time.time()})

        record = self._transition(
            job_id,
            {JobStatus.RUNNING},
            lambda r: r.model_copy(update={"status": JobStatus.QUEUED, "worker": None}),
            indexes,
            worker=worker,
        )
        if record is not None:
            data = {"status": "queued", "retry": record.attempts + 1, "reason": reason}
            self.append_event(job_id, "status", data)
        return record

    def requeue_or_fail(self, record: JobRecord, reason: str, max_attempts: int) -> bool:
        """After a lost run: queue the job again (True: the caller sends its task), or fail
        it with ``worker_lost`` when that was its last allowed run (False)."""
        if record.attempts < max_attempts:
            return self.requeue(record.id, record.worker, reason) is not None
        error = worker_lost(record.worker, record.attempts)
        self.finish(record.id, JobStatus.FAILED, error, worker=record.worker)
        return False

    def queued_since(self, older_than_s: float) -> list[str]:
        """Jobs queued (or re-queued) more than ``older_than_s`` seconds ago."""
        return self.redis.zrangebyscore(self._key("queued"), 0, time.time() - older_than_s)

    def touch_queued(self, job_id: str) -> None:
        """Restart the clock of a queued job (its message was just sent again)."""
        self.redis.zadd(self._key("queued"), {job_id: time.time()}, xx=True)

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
            pipe.delete(self._key("job", job_id, "lease"), self._key("job", job_id, "cancel"))
            pipe.srem(self._key("running"), job_id)
            pipe.zrem(self._key("queued"), job_id)
            pipe.srem(self._key("active", record.tenant), job_id)
            job_stats.record_duration(pipe, record)

        record = self._transition(
            job_id,
            {JobStatus.QUEUED, JobStatus.RUNNING},
            lambda r: r.model_copy(
                update={"status": status, "error": error, "finished_at": time.time()}
            ),
            indexes,
            worker=worker,
        )
        if record is None:
            return None
        data: dict[str, Any] = {"status": status.value}
        if error is not None:
            data["error"] = error.model_dump()
        self.append_event(job_id, "status", data)
        events, _ = self.events(job_id, after=None, limit=EVENTS_MAXLEN)
        _write_atomic(
            self.job_dir(job_id) / "events.jsonl",
            "".join(json.dumps(event) + "\n" for event in events),
        )
        # The volume holds the whole log now; Redis keeps it only for a while.
        self.redis.expire(self._key("job", job_id, "events"), self.event_retention_s)
        shutil.rmtree(self.checkpoint_dir(job_id), ignore_errors=True)  # nothing will resume
        self.measure_job(record)
        # A re-calibration rewrote its source's calibration record.
        source = self.get_job(record.source_job) if record.source_job else None
        if source is not None and source.status.is_terminal:
            self.measure_job(source)
        self._drop_if_deleted(job_id)
        return record

    def _drop_if_deleted(self, job_id: str) -> None:
        """Remove the volume copies and event stream a finish wrote for a job deleted while it
        wrote them. Checked after the last write, and ``delete_job`` drops the Redis record
        before the directory: either the delete's transaction came first and is seen here,
        or its directory removal comes after every write. No lock, so a finish that died
        between (its files left behind) cannot keep the job from being deleted, and those
        files are not read back (``_deleted``)."""
        if self._deleted(job_id):
            self.redis.delete(self._key("job", job_id, "events"))
            shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def _deleted(self, job_id: str) -> bool:
        """Whether the job was deleted: its delete marker is there. Only the marker proves it:
        a record missing from Redis is also what a Redis that lost keys leaves of a finished
        job, which its volume copy must then serve."""
        return bool(self.redis.exists(self._key("job", job_id, "deleted")))

    def delete_job(self, record: JobRecord) -> None:
        """Remove a finished job: its record, events, model and every index entry. The Redis
        entries go first, in one transaction that also marks the job deleted, and the
        directory after: a finish or an archive build still writing relies on that order to
        notice the delete."""
        pipe = self.redis.pipeline()
        pipe.set(self._key("job", record.id, "deleted"), "1", ex=DELETED_MARKER_S)
        pipe.delete(self._key("job", record.id), self._key("job", record.id, "events"))
        pipe.zrem(self._key("jobs", record.tenant), record.id)
        pipe.hdel(self._key("job-bytes", record.tenant), record.id)
        for status in JobStatus:
            pipe.zrem(self._tenant_status_key(record.tenant, status), record.id)
        job_stats.unindex_status(pipe, record)
        pipe.execute()
        shutil.rmtree(self.job_dir(record.id), ignore_errors=True)

    def request_cancel(self, job_id: str) -> JobRecord | None:
        """Flag a running job for cancellation (a queued one is cancelled at once)."""
        self.redis.set(self._key("job", job_id, "cancel"), "1")
        record = self.get_job(job_id)
        if record is None or record.status.is_terminal:
            return record
        if record.status == JobStatus.QUEUED:
            return self.finish(job_id, JobStatus.CANCELLED) or self.get_job(job_id)
        updated = self._transition(
            job_id, {JobStatus.RUNNING}, lambda r: r.model_copy(update={"cancel_requested": True})
        )
        self.append_event(job_id, "message", {"message": "cancel requested"})
        return updated or self.get_job(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked this job to stop."""
        return bool(self.redis.exists(self._key("job", job_id, "cancel")))

    # ---- leases: how a lost worker is noticed ----------------------------------------------

    def heartbeat(self, job_id: str, worker: str, ttl: float) -> None:
        """Renew the worker's lease on a running job for ``ttl`` seconds."""
        self.redis.set(self._key("job", job_id, "lease"), worker, px=int(ttl * 1000))

    def lease_alive(self, job_id: str) -> bool:
        """Whether a worker has renewed the job's lease recently."""
        return bool(self.redis.exists(self._key("job", job_id, "lease")))

    def running_jobs(self) -> list[JobRecord]:
        """Every running job (stale index entries are dropped on the way)."""
        records = []
        for job_id in self.redis.smembers(self._key("running")):
            record = self.get_job(job_id)
            if record is None or record.status != JobStatus.RUNNING:
                self.redis.srem(self._key("running"), job_id)
            else:
                records.append(record)
        return records

    # ---- events -----------------------------------------------------------------------------

    def append_event(self, job_id: str, kind: str, data: dict[str, Any]) -> str:
        """Append an event (``status``, ``stage``, ``step``, ``epoch``, ``message``,
        ``warning``) to the job's log and return its id."""
        payload = json.dumps({"type": kind, "created_at": time.time(), "data": data})
        return self.redis.xadd(
            self._key("job", job_id, "events"),
            {"event": payload},
            maxlen=EVENTS_MAXLEN,
            approximate=True,
        )

    def events(
        self, job_id: str, after: str | None, limit: int, block_ms: int | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` events after the event id ``after``, and whether more follow.

        With ``block_ms`` the call waits that long for a first new event.
        """
        key = self._key("job", job_id, "events")
        if not self.redis.exists(key):
            return self._events_from_volume(job_id, after, limit)
        if block_ms is not None:
            found = self.redis.xread({key: after or "0-0"}, count=limit + 1, block=block_ms)
            entries = found[0][1] if found else []
        else:
            start = f"({after}" if after else "-"
            entries = self.redis.xrange(key, min=start, max="+", count=limit + 1)
        events = [{"id": entry_id, **json.loads(f["event"])} for entry_id, f in entries]
        return events[:limit], len(events) > limit

    def _events_from_volume(
        self, job_id: str, after: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """The copy written when the job finished (its Redis stream may be gone)."""
        path = self.job_dir(job_id) / "events.jsonl"
        if not _safe_id(job_id) or not path.is_file():
            return [], False
        events = [json.loads(line) for line in path.read_text().splitlines() if line]
        if after is not None:
            events = [e for e in events if _stream_order(e["id"]) > _stream_order(after)]
        return events[:limit], len(events) > limit

    # ---- idempotency ------------------------------------------------------------------------

    def remember_idempotency(
        self, tenant: str, key: str, fingerprint: str, job_id: str, ttl_s: int = 86_400
    ) -> tuple[str, str]:
        """Bind ``key`` to ``(fingerprint, job_id)`` unless already bound; return the binding
        that holds (the earlier one on a retry)."""
        redis_key = self._key("idempotency", tenant, key)
        value = json.dumps({"fingerprint": fingerprint, "job_id": job_id})
        if not self.redis.set(redis_key, value, nx=True, ex=ttl_s):
            value = self.redis.get(redis_key) or value
        bound = json.loads(value)
        return bound["fingerprint"], bound["job_id"]

    def forget_idempotency(self, tenant: str, key: str, job_id: str) -> None:
        """Unbind ``key`` if it is bound to ``job_id`` (whose creation failed), so a retry
        with the same key creates the job instead of returning the failed one."""
        redis_key = self._key("idempotency", tenant, key)
        value = self.redis.get(redis_key)
        if value is not None and json.loads(value)["job_id"] == job_id:
            self.redis.delete(redis_key)

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
            for path in sorted((self.artifacts_dir / "datasets").glob("*.json")):
                self._index_dataset(DatasetRecord.model_validate_json(path.read_text()))
                count += 1
            for path in sorted((self.artifacts_dir / "jobs").glob("*/record.json")):
                record = JobRecord.model_validate_json(path.read_text())
                if not self.redis.exists(self._key("job", record.id)):
                    self.index_jobs([record])
                else:
                    self._index_status_of(record.id)
                if record.status.is_terminal:
                    self.measure_job(record)
                count += 1
            self._drop_bytes_of_missing_jobs()
            self.redis.set(INDEXED, str(time.time()))
        finally:
            self._release_lock(keys=[REBUILDING], args=[token])
        return count

    def _drop_bytes_of_missing_jobs(self) -> None:
        """Heal the stored-bytes counts: each finished job was just measured again, and this
        drops the counts of jobs Redis does not hold (every job on the volume is indexed by
        now), which an older release could leave behind. Entry by entry rather than
        replacing each tenant's hash, so a job that finished during the rebuild keeps the
        count its finish wrote."""
        for key in self.redis.scan_iter(match=self._key("job-bytes", "*"), count=1000):
            job_ids = self.redis.hkeys(key)
            pipe = self.redis.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.exists(self._key("job", job_id))
            missing = [i for i, held in zip(job_ids, pipe.execute(), strict=True) if not held]
            if missing:
                self.redis.hdel(key, *missing)

    def _index_status_of(self, job_id: str) -> None:
        """Put a job Redis still holds in the status indexes (for /metrics, and its tenant's),
        from its Redis record, watched so that a transition meanwhile is not overwritten (a
        store that predates an index)."""
        key = self._key("job", job_id)

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
        so an outcome is never dropped because Redis restarted empty."""
        key = self._key("job", job_id)
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
            if indexes is not None:
                indexes(pipe, new)
            return new

        record = self.redis.transaction(attempt, key, value_from_callable=True)
        if record is not None:
            self._write_record(record)
        return record

    def _write_record(self, record: JobRecord) -> None:
        """The job's copy on the volume, which outlives Redis."""
        _write_atomic(self.job_dir(record.id) / "record.json", record.model_dump_json(indent=2))

    def _page(self, key: str, after: str | None, limit: int, order: str | None = None) -> list[str]:
        """Up to ``limit`` ids of the sorted set ``key``, highest score first, after the id
        ``after``, which is looked up in ``order`` (default ``key``): a set holding part of
        ``order``'s ids with their scores pages after an id it lacks. Equal scores keep
        Redis's order, descending ids, as ``ZREVRANGE`` does."""
        if after is None:
            return self.redis.zrevrange(key, 0, limit - 1)
        score = self.redis.zscore(order or key, after)
        if score is None:
            return []
        tied = [i for i in self.redis.zrevrangebyscore(key, score, score) if i < after]
        rest = self.redis.zrevrangebyscore(key, f"({score}", "-inf", start=0, num=limit)
        return (tied + rest)[:limit]

    @staticmethod
    def _key(*parts: str) -> str:
        return ":".join((PREFIX, *parts))


def _safe_id(value: str) -> bool:
    """Ids become file names; refuse anything that could leave the artifact directory."""
    return value.replace("-", "").isalnum()


def _tree_bytes(directory: Path) -> int:
    """The bytes of the files under ``directory``; one removed meanwhile (a stale archive, a
    partial file renamed) counts nothing."""
    total = 0
    for path in directory.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size if path.is_file() else 0
    return total


def _stream_order(entry_id: str) -> tuple[int, int]:
    """Redis stream ids ("<ms>-<seq>") in their numeric order."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def connect(url: str, *, patient: bool = False) -> redis.Redis:
    """A Redis client for the store (string responses, short connect timeout).

    Connection errors are retried with exponential back-off: briefly, with short timeouts,
    for the API and for the calls a worker makes while training runs (a request should fail
    fast, and a blocked call must not delay a worker's fencing); for about two minutes with
    ``patient`` (recording outcomes, which must ride out a Redis restart).
    """
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=5 if patient else 2,
        socket_timeout=30 if patient else 5,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=4.0, base=0.1), 40 if patient else 2),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def store_from(settings: Settings, *, patient: bool = False) -> Store:
    """The store the settings describe (see ``connect`` for ``patient``)."""
    return Store(
        connect(settings.redis_url, patient=patient),
        settings.artifacts_dir,
        settings.event_retention_seconds,
    )
