"""Creating, listing, watching and cancelling jobs; their metrics, events and artifacts."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from lpft_contract.records import JobStatus

from lpft_api.deps import EnqueuerDep, JobDep, PageDep, SettingsDep, StoresDep, TenantDep
from lpft_api.errors import Conflict
from lpft_api.schemas import (
    RESOURCE_ID,
    Building,
    EventList,
    JobCreate,
    JobList,
    JobLog,
    JobPublic,
    LiveMetrics,
    Problem,
    RecalibrateRequest,
    TrialList,
)
from lpft_api.services import artifacts, events, jobs, sweeps

router = APIRouter(prefix="/jobs", tags=["jobs"])
PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem},
    409: {"model": Problem},
    422: {"model": Problem},
}
#: Bodies that are not JSON, each with the schema client generators need to keep the answer
#: (without one, openapi-python-client drops it): bytes for the archives and pictures, text
#: for the report and the event stream.
BINARY = {"schema": {"type": "string", "format": "binary"}}
TEXT = {"schema": {"type": "string"}}
#: An archive not built yet: 202, with ``Location`` and ``Retry-After``.
BUILDING: dict[int | str, dict[str, Any]] = {
    202: {"model": Building, "description": "Being built: ask again at Location"}
}


@router.post(
    "", status_code=202, response_model=JobPublic, responses={**PROBLEMS, 429: {"model": Problem}}
)
def create_job(
    body: JobCreate,
    response: Response,
    stores: StoresDep,
    enqueuer: EnqueuerDep,
    tenant: TenantDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobPublic:
    """Create a job and queue it: ``finetune`` (the default kind), ``compare`` or
    ``analysis``. A retry with the same ``Idempotency-Key`` and body returns the same job."""
    record = jobs.create_job(
        body, tenant, idempotency_key, stores=stores, enqueuer=enqueuer, settings=settings
    )
    response.headers["Location"] = f"/jobs/{record.id}"
    return JobPublic.from_record(record)


@router.get("", response_model=JobList, responses={422: {"model": Problem}})
def list_jobs(
    stores: StoresDep,
    tenant: TenantDep,
    page: PageDep,
    status: JobStatus | None = None,
    sweep: Annotated[str | None, Query(pattern=RESOURCE_ID)] = None,
) -> JobList:
    """The caller's jobs, newest first; ``after`` is the last id of the previous page.
    A sweep's trials (finetune jobs of their own, with ``sweep`` and ``trial`` set) are left
    out, so that a sweep shows as one job; ``sweep=<id>`` lists that sweep's trials instead,
    highest number first (``GET /jobs/{id}/trials`` has their parameters and values). A page
    that reads past many trials may hold fewer jobs than ``limit`` with ``has_more`` true."""
    return sweeps.jobs_page(tenant, page.after, page.limit, status, sweep, stores)


@router.get("/{job_id}", response_model=JobPublic, responses=PROBLEMS)
def get_job(job: JobDep) -> JobPublic:
    """One job."""
    return JobPublic.from_record(job)


@router.delete("/{job_id}", status_code=204, responses=PROBLEMS)
def delete_job(job: JobDep, stores: StoresDep, settings: SettingsDep) -> Response:
    """Delete a finished job: its record, events, model and reports (a sweep's: every
    trial's too, and its study). A queued or running job must be cancelled first (409)."""
    jobs.delete_job(job, stores, settings)
    return Response(status_code=204)


@router.post("/{job_id}/cancel", response_model=JobPublic, responses=PROBLEMS)
def cancel_job(job: JobDep, stores: StoresDep) -> JobPublic:
    """Cancel a queued job at once, or stop a running one within seconds."""
    return JobPublic.from_record(jobs.cancel_job(job, stores))


@router.get(
    "/{job_id}/events",
    response_model=EventList,
    responses={
        **PROBLEMS,
        200: {"content": {"text/event-stream": TEXT}, "description": "JSON page or SSE stream"},
        429: {"model": Problem},
    },
)
async def get_job_events(
    request: Request,
    job: JobDep,
    stores: StoresDep,
    tenant: TenantDep,
    settings: SettingsDep,
    after: Annotated[str | None, Query(pattern=events.EVENT_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """The job's event log as JSON pages, or live as Server-Sent Events when the client sends
    ``Accept: text/event-stream`` (resumable with ``Last-Event-ID``; at most
    ``LPFT_MAX_EVENT_STREAMS_PER_TENANT`` open at once, 429 above)."""
    if "text/event-stream" not in request.headers.get("accept", ""):
        return await events.page(job.id, after, limit, stores)
    start = events.resume_point(request.headers.get("last-event-id"), after)
    return await events.live(job.id, start, tenant, stores, settings, request.is_disconnected)


@router.get("/{job_id}/logs", response_model=JobLog, responses=PROBLEMS)
def get_job_logs(
    job: JobDep, stores: StoresDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> JobLog:
    """The job's own log, the newest ``limit`` records: what its worker and training process
    logged (an internal error with its ``error_id``; its traceback stays in the operator's
    log), over every run of it.
    Kept up to 5 MB a job; later records are dropped after one that says so."""
    return jobs.job_log(job, limit, stores)


@router.get(
    "/{job_id}/metrics",
    response_model=dict[str, Any] | LiveMetrics,
    responses=PROBLEMS,
)
def get_job_metrics(job: JobDep, stores: StoresDep) -> Any:
    """The job's metrics: the full lpft_core metrics object once it succeeded, the live
    per-step history and per-epoch validation while it runs (``partial: true``)."""
    metrics = events.metrics(job, stores)
    return JSONResponse(metrics) if isinstance(metrics, dict) else metrics


@router.get(
    "/{job_id}/artifacts",
    response_class=FileResponse,
    responses={**PROBLEMS, 200: {"content": {"application/gzip": BINARY}}, **BUILDING},
)
def get_job_artifacts(
    request: Request, job: JobDep, stores: StoresDep, settings: SettingsDep
) -> Response:
    """The job's output as a ``.tar.gz``: a finetune job's model directory; a comparison's
    models (``model/<method>/``), metrics and report; an analysis's metrics and report. A
    recalibrate job has none (409: its temperature is in its source job's archive). Built
    off the request, at the first download and after a re-calibration: until then 202, with
    ``Location`` and ``Retry-After``."""
    path = artifacts.archive(job, stores, settings.max_stored_bytes_per_tenant)
    return _archive_or_building(request, path, f"{job.id}.tar.gz")


@router.get(
    "/{job_id}/export",
    response_class=FileResponse,
    responses={**PROBLEMS, 200: {"content": {"application/gzip": BINARY}}, **BUILDING},
)
def get_job_export(
    request: Request,
    job: JobDep,
    stores: StoresDep,
    settings: SettingsDep,
    format: Literal["onnx", "hf"] = "onnx",
) -> Response:
    """The model for any runtime, as a ``.tar.gz``: LoRA merged, the temperature inside
    (``hf``: folded into the head, so a plain softmax is calibrated; ``onnx``: outputs
    ``probabilities`` (calibrated) and ``logits``), with the tokenizer, ``labels.json`` and a
    model card. Built off the request at the first one (seconds to a minute): until then
    202, with ``Location`` and ``Retry-After``."""
    path = artifacts.export(job, stores, format, settings.max_stored_bytes_per_tenant)
    return _archive_or_building(request, path, f"{job.id}-{format}.tar.gz")


def _archive_or_building(request: Request, path: FilePath | None, filename: str) -> Response:
    """The archive, streamed from disk; or, while it is built, where and when to ask again."""
    if path is not None:
        return FileResponse(path, media_type="application/gzip", filename=filename)
    retry_after = artifacts.BUILD_RETRY_AFTER_S
    location = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return JSONResponse(
        Building(detail=f"the archive is being built; ask again in {retry_after} s").model_dump(),
        status_code=202,
        headers={"Location": location, "Retry-After": str(retry_after)},
    )


@router.get(
    "/{job_id}/report",
    response_class=FileResponse,
    responses={**PROBLEMS, 200: {"content": {"text/html": TEXT, "text/markdown": TEXT}}},
)
def get_job_report(
    job: JobDep, stores: StoresDep, format: Literal["html", "md"] = "html"
) -> FileResponse:
    """The job's report: one self-contained HTML page with its pictures embedded, or its
    markdown twin (``?format=md``, pictures linked as ``plots/<name>.png``)."""
    media_type = "text/html" if format == "html" else "text/markdown"
    return FileResponse(
        artifacts.report(job, stores, format), media_type=f"{media_type}; charset=utf-8"
    )


@router.get(
    "/{job_id}/plots/{name}.png",
    response_class=FileResponse,
    responses={**PROBLEMS, 200: {"content": {"image/png": BINARY}}},
)
def get_job_plot(
    job: JobDep, stores: StoresDep, name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]+$")]
) -> FileResponse:
    """One picture of the report (``reliability``, ``training``, ``ntk-spectra``,
    ``comparison``; ``<method>-reliability`` in a comparison; a sweep's
    ``optimization-history``, ``param-importances`` and ``parallel-coordinates``)."""
    return FileResponse(artifacts.plot(job, stores, name), media_type="image/png")


@router.get("/{job_id}/trials", response_model=TrialList, responses=PROBLEMS)
def list_trials(
    job: JobDep,
    stores: StoresDep,
    after: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
) -> TrialList:
    """A sweep's trials in number order: each one's parameters, state (queued, running,
    complete, pruned, failed, cancelled), objective value, per-epoch validation values,
    worker and times; ``after`` is the last number of the previous page. 409 for a job that
    is not a sweep."""
    if job.kind != "sweep":
        raise Conflict(f"job {job.id} is a {job.kind} job; trials belong to sweep jobs")
    return sweeps.trials(job, after, limit, stores)


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
    stores: StoresDep,
    enqueuer: EnqueuerDep,
    settings: SettingsDep,
) -> JobPublic:
    """Fit a new temperature for the job's model on a labelled dataset, without retraining,
    as a job of kind ``recalibrate`` (202 + ``Location``; its metrics hold T and the metrics
    before and after). Predictions use the new T once it succeeds; ``calibration.json`` keeps
    the old one on record."""
    record = jobs.recalibrate(job, body, stores=stores, enqueuer=enqueuer, settings=settings)
    response.headers["Location"] = f"/jobs/{record.id}"
    return JobPublic.from_record(record)
