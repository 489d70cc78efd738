"""Calibrated predictions from a finished job's model, with per-request limits and a
per-tenant cap on requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Iterator
from typing import Annotated, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Request
from lpft_contract.records import JobStatus
from lpft_contract.settings import Settings

from lpft_api.deps import ModelsDep, SettingsDep, StoreDep, TenantDep
from lpft_api.errors import ApiError, Conflict, NotFound, TooManyRequests, Unprocessable
from lpft_api.schemas import PredictionOut, PredictRequest, PredictResponse, Problem
from lpft_core import Predictor
from lpft_core.calibration import scaled_softmax

T = TypeVar("T")

router = APIRouter(tags=["predict"])


class ClientClosedRequest(ApiError):
    """The client left before its predictions were ready (nginx's 499); nobody reads it."""

    status, code, title = 499, "client_closed_request", "Client closed request"


class TenantSlots:
    """How many ``/predict`` requests each tenant has in flight, capped at ``limit``.

    Counted in this API process's memory, so with N processes a tenant may have N × limit in
    flight. That is enough for what the cap is for: no tenant can fill the queue of this
    process's one torch thread, and a count in memory needs no expiry when a process dies.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, tenant: str) -> Iterator[None]:
        """One of ``tenant``'s slots while the block runs.

        Raises:
            TooManyRequests: the tenant already has ``limit`` requests in flight.
        """
        if self.in_flight[tenant] >= self.limit:
            raise TooManyRequests(
                f"{self.limit} /predict requests per tenant may be in flight at once; "
                "retry when one of yours has finished",
                retry_after=1,
            )
        self.in_flight[tenant] += 1
        try:
            yield
        finally:
            self.in_flight[tenant] -= 1
            if not self.in_flight[tenant]:
                del self.in_flight[tenant]  # tenants come and go; keep the counter small


async def get_slots(request: Request, settings: SettingsDep) -> TenantSlots:
    """This process's ``TenantSlots``, made on first use. Async so that it runs on the event
    loop: sync dependencies run on a thread pool, where two requests could both make one."""
    state = request.app.state
    if getattr(state, "predict_slots", None) is None:
        state.predict_slots = TenantSlots(settings.predict_concurrency_per_tenant)
    return state.predict_slots


SlotsDep = Annotated[TenantSlots, Depends(get_slots)]


def check_limits(body: PredictRequest, settings: Settings) -> None:
    """Reject a request too large to serve before it costs any model work.

    Raises:
        Unprocessable: too many inputs (field ``inputs``) or a text too long (field
            ``inputs[i].text`` or ``inputs[i].text_pair``).
    """
    count, limit = len(body.inputs), settings.max_predict_inputs
    if count > limit:
        raise Unprocessable(
            f"{count} inputs; the limit is {limit} per request: split the request",
            field="inputs",
        )
    for i, item in enumerate(body.inputs):
        for name, text in (("text", item.text), ("text_pair", item.text_pair)):
            if text is not None and len(text) > settings.max_text_chars:
                raise Unprocessable(
                    f"inputs[{i}].{name} has {len(text)} characters; "
                    f"the limit is {settings.max_text_chars}",
                    field=f"inputs[{i}].{name}",
                )


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result, unless the client closes the connection first: then ``work`` is
    cancelled, so the batcher spends no more passes on it.

    Raises:
        ClientClosedRequest: the client left first.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task.cancel()  # a no-op once it is done
    if task.done():
        return task.result()
    raise ClientClosedRequest("the client closed the connection before the predictions were ready")


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects: the body has been read, so the next ASGI message
    is ``http.disconnect``."""
    while (await request.receive())["type"] != "http.disconnect":
        continue


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses={
        404: {"model": Problem},
        409: {"model": Problem},
        422: {"model": Problem},
        429: {"model": Problem},
    },
)
async def predict(
    body: PredictRequest,
    request: Request,
    store: StoreDep,
    tenant: TenantDep,
    models: ModelsDep,
    settings: SettingsDep,
    slots: SlotsDep,
) -> PredictResponse:
    """Labels and probabilities per label name, calibrated by the job's temperature unless
    ``calibrated`` is false.

    At most ``LPFT_MAX_PREDICT_INPUTS`` inputs of at most ``LPFT_MAX_TEXT_CHARS`` characters
    (422 above), and at most ``LPFT_PREDICT_CONCURRENCY_PER_TENANT`` requests of a tenant in
    flight per API process (429 with ``Retry-After`` above). Concurrent requests share forward
    passes fairly, so a small request is not held up by large ones."""
    check_limits(body, settings)
    with slots.hold(tenant):
        job = store.get_job(body.job_id, tenant)
        if job is None:
            raise NotFound(f"no job {body.job_id!r}", field="job_id")
        if job.kind != "finetune":
            raise Conflict(f"job {job.id} is a {job.kind} job; predict with a finetune job's id")
        if job.status != JobStatus.SUCCEEDED:
            raise Conflict(f"job {job.id} is {job.status.value}; predict needs a succeeded job")
        model = await models.get(job.id, store.model_dir(job.id))
        rows = [item.model_dump() for item in body.inputs]
        model.predictor.validate(rows)  # a bad request must not fail the pass it would join
        logits = await unless_client_leaves(request, model.logits(rows))
        temperature = model.predictor.temperature if body.calibrated else 1.0
    return _response(job.id, model.predictor, logits, temperature, body.calibrated)


def _response(
    job_id: str,
    predictor: Predictor,
    logits: np.ndarray,
    temperature: float,
    calibrated: bool,
) -> PredictResponse:
    """Predictions in input order from the logits, with the model's warning codes."""
    probabilities = scaled_softmax(logits, temperature)
    labels = predictor.labels
    names = [str(label) for label in labels]
    return PredictResponse(
        job_id=job_id,
        temperature=temperature,
        calibrated=calibrated,
        warnings=predictor.warnings,
        seed=predictor.seeds[0] if predictor.seeds else None,
        seeds=predictor.seeds,
        predictions=[
            PredictionOut(
                label=labels[int(np.argmax(p))],
                probabilities=dict(zip(names, map(float, p), strict=True)),
                logits=[float(v) for v in row],
            )
            for p, row in zip(probabilities, logits, strict=True)
        ],
    )
