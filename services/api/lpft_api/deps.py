"""Dependencies: settings, the store, the caller's tenant, a job looked up for it, the page
of a list asked for (an event list's too), and the per-process state of /predict.

Those that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency on its thread
pool, one hop there and back per dependency, in turn, and a /predict took five such hops
before its body was looked at (measured: see benchmarks/RESULTS.md, issue 25's HTTP path).
``get_job`` reads Redis and stays on the pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, get_origin

from fastapi import Depends, Path, Query, Request
from fastapi.dependencies.models import Dependant
from lpft_contract.enqueue import Enqueuer
from lpft_contract.records import JobRecord
from lpft_contract.stores import Stores

from lpft_api.errors import NotFound, Unprocessable
from lpft_api.model_cache import ModelCache
from lpft_api.schemas import RESOURCE_ID
from lpft_api.services.events import EVENT_ID, resume_point
from lpft_api.services.predict import TenantSlots
from lpft_api.settings import ApiSettings


async def app_settings(request: Request) -> ApiSettings:
    """The app's settings (set at creation, so tests can pass their own)."""
    return request.app.state.settings


async def get_stores(request: Request) -> Stores:
    """The job store, created in the app's lifespan."""
    return request.app.state.stores


async def get_enqueuer(request: Request) -> Enqueuer:
    """Sends tasks to the workers."""
    return request.app.state.enqueuer


async def get_models(request: Request) -> ModelCache:
    """Loaded models for /predict."""
    return request.app.state.models


async def get_tenant(request: Request) -> str:
    """The caller's tenant, authenticated by ``RequestGuard`` before the body was read."""
    return request.state.tenant


SettingsDep = Annotated[ApiSettings, Depends(app_settings)]
StoresDep = Annotated[Stores, Depends(get_stores)]
EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]
ModelsDep = Annotated[ModelCache, Depends(get_models)]
TenantDep = Annotated[str, Depends(get_tenant)]


async def get_slots(request: Request, settings: SettingsDep) -> TenantSlots:
    """This process's ``TenantSlots``, made on first use, on the event loop (on the thread
    pool two requests could both make one)."""
    state = request.app.state
    if getattr(state, "predict_slots", None) is None:
        state.predict_slots = TenantSlots(settings.predict_max_in_flight_per_tenant)
    return state.predict_slots


SlotsDep = Annotated[TenantSlots, Depends(get_slots)]


JobId = Annotated[str, Path(pattern=RESOURCE_ID)]
DatasetId = Annotated[str, Path(pattern=RESOURCE_ID)]


def get_job(job_id: JobId, tenant: TenantDep, stores: StoresDep) -> JobRecord:
    """The caller's job ``job_id``; another tenant's job is reported as missing (404)."""
    record = stores.jobs.get_job(job_id, tenant)
    if record is None:
        raise NotFound(f"no job {job_id!r}", field="job_id")
    return record


JobDep = Annotated[JobRecord, Depends(get_job)]


@dataclass(frozen=True)
class Page:
    """A page of the caller's jobs or datasets, newest first: at most ``limit`` of those
    after the one named ``after`` (the last id of the previous page)."""

    after: Annotated[str | None, Query(pattern=RESOURCE_ID)] = None
    limit: Annotated[int, Query(ge=1, le=100)] = 20


PageDep = Annotated[Page, Depends()]


@dataclass(frozen=True)
class EventRead:
    """How the caller reads an event list (a job's events, the feed of job changes): live,
    when it sends ``Accept: text/event-stream``, after ``after`` (its ``Last-Event-ID``
    first, as a reconnecting EventSource sends it); otherwise a JSON page of at most
    ``limit`` after ``after``."""

    live: bool
    after: str | None
    limit: int


async def event_read(
    request: Request,
    after: Annotated[str | None, Query(pattern=EVENT_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventRead:
    """The caller's ``EventRead``.

    Raises:
        Unprocessable: a live read's ``Last-Event-ID`` is not an event id.
    """
    if "text/event-stream" not in request.headers.get("accept", ""):
        return EventRead(live=False, after=after, limit=limit)
    start = resume_point(request.headers.get("last-event-id"), after)
    return EventRead(live=True, after=start, limit=limit)


EventReadDep = Annotated[EventRead, Depends(event_read)]


async def reject_unknown_query_parameters(request: Request) -> None:
    """Refuse a query parameter the route does not take (``limt=5``), or one it takes once
    given several times (``after=a&after=b``): silently ignoring a misspelt option, or all
    but the last copy, gives a careless client an answer to a question it did not ask."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    params = _query_params(dependant) if dependant is not None else {}
    unknown = sorted(set(request.query_params) - set(params))
    if unknown:
        takes = ", ".join(sorted(params)) or "none"
        raise Unprocessable(
            f"unknown query parameter {unknown[0]!r}; this route takes: {takes}",
            field=f"query.{unknown[0]}",
        )
    for name, param in sorted(params.items()):
        given = len(request.query_params.getlist(name))
        if given > 1 and get_origin(param.field_info.annotation) not in (list, set, tuple):
            raise Unprocessable(
                f"query parameter {name!r} is given {given} times; give it once",
                field=f"query.{name}",
            )


def _query_params(dependant: Dependant) -> dict[str, Any]:
    """The route's query parameters by name, its dependencies' included (FastAPI's fields)."""
    params = {param.alias: param for param in dependant.query_params}
    for sub in dependant.dependencies:
        params |= _query_params(sub)
    return params
