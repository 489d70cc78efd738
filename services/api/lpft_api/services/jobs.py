"""Submitting, cancelling and deleting jobs; reading a job's own log.

A job is checked in full (``specs``) before anything is stored, then counted against its
tenant's cap on unfinished jobs, stored and sent to its queue. A retry that carries the same
``Idempotency-Key`` and body gets the job the first request made, never a second one.
"""

from __future__ import annotations

import contextlib
import hashlib
import time

import redis
from lpft_contract.enqueue import Enqueuer
from lpft_contract.logs import JOB_LOG, read_job_log
from lpft_contract.records import ErrorInfo, JobRecord, JobStatus, new_id
from lpft_contract.stores import Stores
from lpft_contract.volume import Volume

from lpft_api.errors import (
    Conflict,
    QueueUnavailable,
    TooManyRequests,
    Unprocessable,
)
from lpft_api.schemas import JobCreate, JobLog, LogRecord, RecalibrateRequest
from lpft_api.services import sweeps
from lpft_api.services.specs import check_job_model, job_record, recalibration_record
from lpft_api.services.storage import check_room
from lpft_api.settings import ApiSettings
from lpft_core import JobKind

#: How long a retry waits for the job a concurrent request with its key is still creating.
IDEMPOTENCY_WAIT_S = 10


def create_job(
    body: JobCreate,
    tenant: str,
    idempotency_key: str | None,
    *,
    stores: Stores,
    enqueuer: Enqueuer,
    settings: ApiSettings,
) -> JobRecord:
    """A new queued job for ``body``; or, for a retry with the same ``idempotency_key`` and
    body, the job the first request made. The body is checked before the key is bound, so
    a rejected request does not use the key up.

    Raises:
        Unprocessable: the key was used with another body (or see ``specs.job_record`` and
            ``specs.check_job_model``).
        HubUnavailable: the hub did not answer how large the model is.
        QuotaExceeded: the tenant stores as many bytes as its quota allows.
        TooManyRequests: the tenant is at its cap on unfinished jobs.
        QueueUnavailable: the broker did not take the job.
    """
    record = job_record(new_id("job"), tenant, body, stores, settings)
    if not idempotency_key:
        check_job_model(body, settings)
        _submit(record, stores, enqueuer, settings)
        return record
    bound_id = _bind_key(tenant, idempotency_key, body, record.id, stores)
    if bound_id != record.id:
        return _wait_for_job(stores, bound_id, tenant)
    try:
        check_job_model(body, settings)
        _submit(record, stores, enqueuer, settings)
    except Exception:
        # A retry with this key must create the job, not find this failed one.
        stores.jobs.forget_idempotency(tenant, idempotency_key, record.id)
        raise
    return record


def recalibrate(
    job: JobRecord,
    body: RecalibrateRequest,
    *,
    stores: Stores,
    enqueuer: Enqueuer,
    settings: ApiSettings,
) -> JobRecord:
    """A new queued job that fits a new temperature for ``job``'s model on a dataset.

    Raises:
        Conflict: ``job`` is not a succeeded finetune job.
        Unprocessable: no such dataset.
        QuotaExceeded, TooManyRequests, QueueUnavailable: as for ``create_job``.
    """
    record = recalibration_record(new_id("job"), job, body, stores, settings)
    _submit(record, stores, enqueuer, settings)
    return record


def cancel_job(job: JobRecord, stores: Stores) -> JobRecord:
    """The job cancelled (a queued one) or asked to stop (a running one).

    Raises:
        Conflict: the job has already finished.
    """
    if job.status.is_terminal:
        raise Conflict(f"job {job.id} is already {job.status.value}; nothing to cancel")
    cancelled = stores.jobs.request_cancel(job.id) or job
    if job.kind == JobKind.SWEEP:
        sweeps.cancel_trials(job, stores)
    return cancelled


def delete_job(job: JobRecord, stores: Stores, settings: ApiSettings) -> None:
    """Remove a finished job: its record, events, model and reports.

    Raises:
        Conflict: the job is unfinished, is a trial of a sweep that still exists (trials go
            with their sweep, which serves its best one), or an unfinished job reads its
            model.
        StudyDatabaseUnavailable: a sweep's study could not be deleted; nothing was.
    """
    if not job.status.is_terminal:
        raise Conflict(f"job {job.id} is {job.status.value}; cancel it before deleting it")
    if job.sweep is not None and stores.jobs.get_job(job.sweep) is not None:
        raise Conflict(
            f"job {job.id} is trial {job.trial} of sweep {job.sweep}; its trials are deleted "
            f"with it (DELETE /jobs/{job.sweep})"
        )
    users = stores.jobs.jobs_using_job(job.tenant, job.id)
    if users:
        raise Conflict(
            f"unfinished jobs {', '.join(sorted(users))} use this job's model; wait for them or "
            "cancel them first"
        )
    if job.kind == JobKind.SWEEP:
        sweeps.delete_trials(job, stores, settings.sweep_storage_url)
    stores.jobs.delete_job(job)


def _submit(record: JobRecord, stores: Stores, enqueuer: Enqueuer, settings: ApiSettings) -> None:
    """Refuse the job if its tenant has used up its storage (the job's files would add to
    it), count it against the tenant's cap on unfinished jobs (429 above it), store it and
    send its task. If storing or sending fails, the job is failed (it must not sit queued,
    nor run after the client was told it failed) and its place in the cap freed."""
    check_room(stores, record.tenant, settings.max_stored_bytes_per_tenant, "a job's files")
    cap = settings.max_active_jobs_per_tenant
    if not stores.quotas.admit(record.tenant, record.id, cap):
        raise TooManyRequests(
            f"you have {cap} unfinished jobs, the most allowed at once; wait for one to "
            "finish or cancel one",
            retry_after=30,
        )
    try:
        stores.jobs.create_job(record)
        enqueuer.run_job(record.id, record.queue)
    except Exception as exc:
        with contextlib.suppress(Exception):  # best effort: Redis itself may be the fault
            error = ErrorInfo(code="queue_unavailable", message="the job could not be queued")
            stores.jobs.finish(record.id, JobStatus.FAILED, error)
        with contextlib.suppress(Exception):
            stores.quotas.release(record.tenant, record.id)
        if isinstance(exc, redis.RedisError):
            raise  # a 503 from the store's handler
        raise QueueUnavailable("the job queue is unreachable; try again shortly") from exc


def job_log(job: JobRecord, limit: int, stores: Stores) -> JobLog:
    """The newest ``limit`` records of the job's log (its worker's and training process's,
    every run of it), oldest first; empty until the job has started."""
    path = stores.copies.file(Volume.job_key(job.id, JOB_LOG))
    records, has_more = read_job_log(path, limit) if path is not None else ([], False)
    return JobLog(data=[LogRecord.model_validate(r) for r in records], has_more=has_more)


def _bind_key(tenant: str, key: str, body: JobCreate, job_id: str, stores: Stores) -> str:
    """The job ``key`` stands for: ``job_id``, unless an earlier request bound it first.

    Raises:
        Unprocessable: the earlier request had another body.
    """
    fingerprint = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    bound_fingerprint, bound_id = stores.jobs.remember_idempotency(tenant, key, fingerprint, job_id)
    if bound_fingerprint != fingerprint:
        raise Unprocessable(
            "this Idempotency-Key was used with a different request body; use a new key",
            field="Idempotency-Key",
        )
    return bound_id


def _wait_for_job(stores: Stores, job_id: str, tenant: str) -> JobRecord:
    """The job a concurrent request with the same Idempotency-Key is creating."""
    deadline = time.monotonic() + IDEMPOTENCY_WAIT_S
    while time.monotonic() < deadline:
        record = stores.jobs.get_job(job_id, tenant)
        if record is not None:
            return record
        time.sleep(0.05)
    raise Conflict("a request with this Idempotency-Key is still being processed; retry")
