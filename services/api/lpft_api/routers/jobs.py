"""Creating, listing, watching and cancelling jobs; their metrics, events and artifacts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

import redis
from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from lpft_contract.enqueue import Enqueuer
from lpft_contract.records import ErrorInfo, JobRecord, JobStatus, new_id
from lpft_contract.settings import Settings
from lpft_contract.store import Store
from lpft_contract.tasks import queue_for_device

from lpft_api.deps import EnqueuerDep, JobDep, SettingsDep, StoreDep, TenantDep
from lpft_api.errors import ApiError, Conflict, NotFound, TooManyRequests, Unprocessable
from lpft_api.models import check_model
from lpft_api.schemas import (
    RESOURCE_ID,
    CompareJobCreate,
    DatasetRef,
    EventList,
    FinetuneJobCreate,
    JobCreate,
    JobList,
    JobPublic,
    LiveMetrics,
    Problem,
    RecalibrateRequest,
)
from lpft_core.analysis import AnalysisSpec
from lpft_core.compare import CompareSpec
from lpft_core.config import DataFiles, Hyperparameters, JobSpec
from lpft_core.data import build_splits, read_examples
from lpft_core.kinds import JobKind
from lpft_core.recalibrate import RecalibrateSpec

router = APIRouter(prefix="/jobs", tags=["jobs"])
#: Redis stream ids, the only cursors the event log accepts.
EVENT_ID = r"^\d{1,19}-\d{1,19}$"  # below 2**63: Redis refuses larger ids
PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem},
    409: {"model": Problem},
    422: {"model": Problem},
}


class QueueUnavailable(ApiError):
    """The broker did not take the job."""

    status, code, title = 503, "queue_unavailable", "Service unavailable"


@router.post(
    "", status_code=202, response_model=JobPublic, responses={**PROBLEMS, 429: {"model": Problem}}
)
def create_job(
    body: JobCreate,
    response: Response,
    store: StoreDep,
    enqueuer: EnqueuerDep,
    tenant: TenantDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobPublic:
    """Create a job and queue it: ``finetune`` (the default kind), ``compare`` or
    ``analysis``. A retry with the same ``Idempotency-Key`` and body returns the same job."""
    record = _new_record(new_id("job"), tenant, body, store, settings)  # validates first
    if idempotency_key:
        fingerprint = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
        bound_fingerprint, bound_id = store.remember_idempotency(
            tenant, idempotency_key, fingerprint, record.id
        )
        if bound_fingerprint != fingerprint:
            raise Unprocessable(
                "this Idempotency-Key was used with a different request body; use a new key",
                field="Idempotency-Key",
            )
        if bound_id != record.id:
            existing = _wait_for_job(store, bound_id, tenant)
            response.headers["Location"] = f"/jobs/{existing.id}"
            return JobPublic.from_record(existing)
    try:
        _submit(store, enqueuer, record, settings)
    except Exception:
        if idempotency_key:  # a retry with this key must create the job, not find this one
            store.forget_idempotency(tenant, idempotency_key, record.id)
        raise
    response.headers["Location"] = f"/jobs/{record.id}"
    return JobPublic.from_record(record)


def _submit(store: Store, enqueuer: Enqueuer, record: JobRecord, settings: Settings) -> None:
    """Count the job against its tenant's cap on unfinished jobs (429 above it), store it
    and send its task. If storing or sending fails, the job is failed (it must not sit
    queued, nor run after the client was told it failed) and its place in the cap freed."""
    cap = settings.max_active_jobs_per_tenant
    if not store.admit(record.tenant, record.id, cap):
        raise TooManyRequests(
            f"you have {cap} unfinished jobs, the most allowed at once; wait for one to "
            "finish or cancel one",
            retry_after=30,
        )
    try:
        store.create_job(record)
        enqueuer.train(record.id, record.queue)
    except Exception as exc:
        with contextlib.suppress(Exception):  # best effort: Redis itself may be the fault
            error = ErrorInfo(code="queue_unavailable", message="the job could not be queued")
            store.finish(record.id, JobStatus.FAILED, error)
        with contextlib.suppress(Exception):
            store.release(record.tenant, record.id)
        if isinstance(exc, redis.RedisError):
            raise  # a 503 from the store's handler
        raise QueueUnavailable("the job queue is unreachable; try again shortly") from exc


@router.get("", response_model=JobList)
def list_jobs(
    store: StoreDep,
    tenant: TenantDep,
    after: Annotated[str | None, Query(pattern=RESOURCE_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: JobStatus | None = None,
) -> JobList:
    """The caller's jobs, newest first; ``after`` is the last id of the previous page."""
    records, has_more = store.list_jobs(tenant, after, limit, status)
    data = [JobPublic.from_record(r) for r in records]
    return JobList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )


@router.get("/{job_id}", response_model=JobPublic, responses=PROBLEMS)
def get_job(job: JobDep) -> JobPublic:
    """One job."""
    return JobPublic.from_record(job)


@router.delete("/{job_id}", status_code=204, responses=PROBLEMS)
def delete_job(job: JobDep, store: StoreDep) -> Response:
    """Delete a finished job: its record, events, model and reports. A queued or running job
    must be cancelled first (409)."""
    if not job.status.is_terminal:
        raise Conflict(f"job {job.id} is {job.status.value}; cancel it before deleting it")
    users = store.jobs_using_job(job.tenant, job.id)
    if users:
        raise Conflict(
            f"unfinished jobs {', '.join(sorted(users))} use this job's model; wait for them or "
            "cancel them first"
        )
    store.delete_job(job)
    return Response(status_code=204)


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=PROBLEMS)
def cancel_job(job: JobDep, store: StoreDep) -> JobPublic:
    """Cancel a queued job at once, or stop a running one within seconds."""
    if job.status.is_terminal:
        raise Conflict(f"job {job.id} is already {job.status.value}; nothing to cancel")
    record = store.request_cancel(job.id) or job
    return JobPublic.from_record(record)


@router.get(
    "/{job_id}/events",
    response_model=EventList,
    responses={
        **PROBLEMS,
        200: {"content": {"text/event-stream": {}}, "description": "JSON page or SSE stream"},
    },
)
async def job_events(
    request: Request,
    job: JobDep,
    store: StoreDep,
    after: Annotated[str | None, Query(pattern=EVENT_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """The job's event log as JSON pages, or live as Server-Sent Events when the client sends
    ``Accept: text/event-stream`` (resumable with ``Last-Event-ID``)."""
    if "text/event-stream" in request.headers.get("accept", ""):
        start = request.headers.get("last-event-id") or after
        if start is not None and not re.fullmatch(EVENT_ID, start):
            raise Unprocessable(
                f"{start!r} is not an event id (like 1700000000000-0); resume from the id of "
                "the last event received",
                field="Last-Event-ID",
            )
        return StreamingResponse(
            _event_stream(request, store, job.id, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    events, has_more = await asyncio.to_thread(store.events, job.id, after, limit)
    return EventList(data=events, last_id=events[-1]["id"] if events else after, has_more=has_more)


@router.get(
    "/{job_id}/metrics",
    response_model=dict[str, Any] | LiveMetrics,
    responses=PROBLEMS,
)
def job_metrics(job: JobDep, store: StoreDep) -> Any:
    """The job's metrics: the full lpft_core metrics object once it succeeded, the live
    per-step history and per-epoch validation while it runs (``partial: true``)."""
    path = store.model_dir(job.id) / "metrics.json"
    if job.status == JobStatus.SUCCEEDED and path.is_file():
        return JSONResponse(json.loads(path.read_text()))
    events, _ = store.events(job.id, after=None, limit=1_000_000)
    stages = [e["data"]["stage"] for e in events if e["type"] == "stage"]
    return LiveMetrics(
        status=job.status,
        kind=job.kind,
        method=job.method,
        stage=stages[-1] if stages else None,
        history=[e["data"] for e in events if e["type"] == "step"],
        epochs=[e["data"] for e in events if e["type"] == "epoch"],
    )


@router.get(
    "/{job_id}/artifacts",
    response_class=FileResponse,
    responses={**PROBLEMS, 200: {"content": {"application/gzip": {}}}},
)
def job_artifacts(job: JobDep, store: StoreDep) -> FileResponse:
    """The trained model directory as a ``.tar.gz`` archive."""
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job.id} is {job.status.value}; artifacts exist once it succeeded")
    archive = store.job_dir(job.id) / f"model-{_content_version(store.model_dir(job.id))}.tar.gz"
    if not archive.is_file():
        # Built under a unique name, then renamed: a concurrent download never sees a
        # half-written archive. Archives of earlier versions (before a re-calibration) go.
        for stale in store.job_dir(job.id).glob("model-*.tar.gz"):
            if stale != archive:  # a concurrent download may have just built this one
                stale.unlink(missing_ok=True)
        base = store.job_dir(job.id) / f".model-{uuid.uuid4().hex}"
        partial = FsPath(f"{base}.tar.gz")  # what make_archive writes
        try:
            shutil.make_archive(
                str(base),
                "gztar",
                root_dir=store.job_dir(job.id),
                base_dir="model",
            )
            partial.replace(archive)
        finally:
            partial.unlink(missing_ok=True)
    return FileResponse(archive, media_type="application/gzip", filename=f"{job.id}.tar.gz")


def _content_version(directory: FsPath) -> str:
    """A digest of the names, sizes and modification times of the directory's files: any
    change to the model (a new temperature, say) makes a new archive."""
    stats = sorted(
        (str(path.relative_to(directory)), path.stat().st_size, path.stat().st_mtime_ns)
        for path in directory.rglob("*")
        if path.is_file()
    )
    return hashlib.sha256(repr(stats).encode()).hexdigest()[:16]


@router.get(
    "/{job_id}/report",
    response_class=FileResponse,
    responses={**PROBLEMS, 200: {"content": {"text/html": {}, "text/markdown": {}}}},
)
def job_report(
    job: JobDep, store: StoreDep, format: Literal["html", "md"] = "html"
) -> FileResponse:
    """The job's report: one self-contained HTML page with its pictures embedded, or its
    markdown twin (``?format=md``, pictures linked as ``plots/<name>.png``)."""
    path = _finished_file(job, store, f"report.{format}")
    media_type = "text/html" if format == "html" else "text/markdown"
    return FileResponse(path, media_type=f"{media_type}; charset=utf-8")


@router.get(
    "/{job_id}/plots/{name}.png",
    response_class=FileResponse,
    responses={**PROBLEMS, 200: {"content": {"image/png": {}}}},
)
def job_plot(
    job: JobDep, store: StoreDep, name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]+$")]
) -> FileResponse:
    """One picture of the report (``reliability``, ``training``, ``ntk-spectra``,
    ``comparison``; ``<method>-reliability`` in a comparison)."""
    return FileResponse(_finished_file(job, store, f"plots/{name}.png"), media_type="image/png")


@router.post(
    "/{job_id}/recalibrate",
    status_code=202,
    response_model=JobPublic,
    responses={**PROBLEMS, 429: {"model": Problem}},
)
def recalibrate_job(
    job: JobDep,
    body: RecalibrateRequest,
    response: Response,
    store: StoreDep,
    enqueuer: EnqueuerDep,
    tenant: TenantDep,
    settings: SettingsDep,
) -> JobPublic:
    """Fit a new temperature for the job's model on a labelled dataset, without retraining,
    as a job of kind ``recalibrate`` (202 + ``Location``; its metrics hold T and the metrics
    before and after). Predictions use the new T once it succeeds; ``calibration.json`` keeps
    the old one on record."""
    if job.kind != JobKind.FINETUNE or job.status != JobStatus.SUCCEEDED:
        raise Conflict(
            f"job {job.id} is a {job.status.value} {job.kind} job; recalibrate a succeeded "
            "finetune job"
        )
    dataset = store.get_dataset(tenant, body.dataset)
    if dataset is None:
        raise Unprocessable(f"no dataset {body.dataset!r}", field="dataset")
    job_id = new_id("job")
    spec = RecalibrateSpec(
        model_dir=str(store.model_dir(job.id)),
        data=dataset.path,
        output_dir=str(store.model_dir(job_id)),
        name=dataset.id,
        max_text_chars=settings.max_text_chars,
    )
    record = JobRecord(
        id=job_id,
        tenant=tenant,
        kind=JobKind.RECALIBRATE,
        method=None,
        source_job=job.id,
        model=job.model,
        dataset={"train": dataset.id},
        hyperparameters={},
        queue=job.queue,
        spec=spec.to_dict(),
    )
    _submit(store, enqueuer, record, settings)
    response.headers["Location"] = f"/jobs/{job_id}"
    return JobPublic.from_record(record)


def _finished_file(job: JobRecord, store: Store, relative: str) -> FsPath:
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job.id} is {job.status.value}; its report exists once it succeeded")
    path = store.model_dir(job.id) / relative
    if not path.is_file():
        raise NotFound(f"job {job.id} has no {relative}")
    return path


async def _event_stream(
    request: Request, store: Store, job_id: str, after: str | None
) -> AsyncIterator[str]:
    cursor = after
    while not await request.is_disconnected():
        events, _ = await asyncio.to_thread(store.events, job_id, cursor, 200, 1000)
        for event in events:
            cursor = event["id"]
            yield f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
        if not events:
            record = await asyncio.to_thread(store.get_job, job_id)
            if record is None or record.status.is_terminal:
                return
            yield ": keep-alive\n\n"


def _new_record(
    job_id: str, tenant: str, body: JobCreate, store: Store, settings: Settings
) -> JobRecord:
    """Resolve dataset ids to files, check the splits together, and build the job's spec."""
    output_dir = str(store.model_dir(job_id))
    hyper = body.hyperparameters.model_dump()
    seeds: list[int] = getattr(body, "seeds", None) or []
    if seeds and "seed" in body.model_fields_set and body.seed != seeds[0]:
        raise Unprocessable(
            f"seed {body.seed} is not the first of seeds {seeds}; leave seed out or make it "
            "the first seed (its run is the model that is kept)",
            field="seed",
        )
    seed = seeds[0] if seeds else body.seed
    hyperparameters = Hyperparameters(**hyper, seed=seed)
    source_job = getattr(body, "source_job", None)
    model_dir = None
    dataset = body.dataset
    if source_job is None and dataset is None:
        raise Unprocessable(
            "give a dataset, or a source_job whose dataset is used", field="dataset"
        )
    if source_job is not None:
        source = store.get_job(source_job, tenant)
        if source is None:
            raise Unprocessable(f"no job {source_job!r}", field="source_job")
        if source.kind != JobKind.FINETUNE or source.status != JobStatus.SUCCEEDED:
            raise Unprocessable(
                f"job {source_job} is a {source.status.value} {source.kind} job; analyse a "
                "succeeded finetune job",
                field="source_job",
            )
        model_dir = str(store.model_dir(source_job))
        dataset = dataset or DatasetRef(**source.dataset)
    if len(body.eval_sets) > settings.max_eval_sets:
        raise Unprocessable(
            f"{len(body.eval_sets)} eval sets; the limit is {settings.max_eval_sets} per job",
            field="eval_sets",
        )
    model = check_model(body.model, settings.models_dir)
    data = _data_files(tenant, dataset, body.eval_sets, seed, store, settings)
    if isinstance(body, FinetuneJobCreate):
        spec: Any = JobSpec(
            method=body.method,
            data=data,
            output_dir=output_dir,
            model=model,
            hyperparameters=hyperparameters,
            max_text_chars=settings.max_text_chars,
            checkpoint_dir=str(store.checkpoint_dir(job_id)),
            seeds=seeds,
        )
    elif isinstance(body, CompareJobCreate):
        spec = CompareSpec(
            data=data,
            output_dir=output_dir,
            model=model,
            methods=body.methods,
            hyperparameters=hyperparameters,
            ntk_samples=body.ntk_samples,
            max_text_chars=settings.max_text_chars,
            seeds=seeds,
        )
    else:
        spec = AnalysisSpec(
            data=data,
            output_dir=output_dir,
            model=model,
            model_dir=model_dir,
            ntk="ntk" in body.analyses,
            features="features" in body.analyses,
            methods=body.methods,
            ntk_samples=body.ntk_samples,
            hyperparameters=hyperparameters,
            max_text_chars=settings.max_text_chars,
        )
    methods = getattr(body, "methods", None)
    return JobRecord(
        id=job_id,
        tenant=tenant,
        kind=body.kind,
        method=body.method.value if isinstance(body, FinetuneJobCreate) else None,
        methods=[m.value for m in methods] if methods is not None else None,
        source_job=source_job,
        model=body.model,
        dataset=dataset.model_dump(),
        eval_sets=body.eval_sets,
        hyperparameters={**hyper, "seed": seed, **({"seeds": seeds} if seeds else {})},
        queue=queue_for_device(hyper["device"], settings.auto_queue).value,
        spec=spec.to_dict(),
    )


def _data_files(
    tenant: str,
    dataset: DatasetRef,
    eval_sets: dict[str, str],
    seed: int,
    store: Store,
    settings: Settings,
) -> DataFiles:
    """The files behind the dataset ids, checked against each other as the job will."""

    def path_of(dataset_id: str, field: str) -> str:
        record = store.get_dataset(tenant, dataset_id)
        if record is None:
            raise Unprocessable(f"no dataset {dataset_id!r}", field=field)
        return record.path

    paths = {
        split: path_of(dataset_id, f"dataset.{split}") if dataset_id else None
        for split, dataset_id in dataset.model_dump().items()
    }
    extra = {name: path_of(i, f"eval_sets.{name}") for name, i in eval_sets.items()}
    read = lambda path: read_examples(path, max_text_chars=settings.max_text_chars)  # noqa: E731
    build_splits(
        read(paths["train"]),
        read(paths["validation"]) if paths["validation"] else None,
        read(paths["test"]) if paths["test"] else None,
        seed=seed,
        names={
            **{k: v for k, v in dataset.model_dump().items() if v},
            **{name: f"eval_sets.{name}" for name in eval_sets},
        },
        eval_sets={name: read(path) for name, path in extra.items()},
    )
    return DataFiles(
        train=paths["train"],
        validation=paths["validation"],
        test=paths["test"],
        eval_sets=extra,
    )


def _wait_for_job(store: Store, job_id: str, tenant: str) -> JobRecord:
    """The job a concurrent request with the same Idempotency-Key is creating."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        record = store.get_job(job_id, tenant)
        if record is not None:
            return record
        time.sleep(0.05)
    raise Conflict("a request with this Idempotency-Key is still being processed; retry")
