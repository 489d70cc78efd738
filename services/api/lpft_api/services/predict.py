"""Calibrated predictions from a finished job's model, with per-request limits and a
per-tenant cap on requests in flight against abuse.

The answer is ``Predictor``'s: it checks and encodes the rows, runs the forward pass and turns
logits into labels and probabilities. The API adds only what one process serving many clients
needs: forward passes shared fairly by tenant, then by request (``lpft_api.batcher``), and
giving up the rows of a client that has left.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

from lpft_contract.records import JobRecord, JobStatus
from lpft_contract.stores import Stores
from lpft_contract.volume import Volume
from starlette.types import Receive

from lpft_api.errors import ClientClosedRequest, Conflict, NotFound, TooManyRequests, Unprocessable
from lpft_api.model_cache import ModelCache
from lpft_api.prometheus.serving import PREDICT_LATENCY
from lpft_api.schemas import PredictionOut, PredictRequest, PredictResponse, QuantizationOut
from lpft_api.services.sweeps import serving
from lpft_api.settings import ApiSettings
from lpft_core import ConformalRequest, ModelError, Predictor, job_kind

T = TypeVar("T")


class TenantSlots:
    """How many ``/predict`` requests each tenant has in flight, capped at ``limit``.

    Fairness does not rest on this cap: the batcher shares passes by tenant, so a tenant with
    many requests in flight delays another's only by its turns. The cap is against abuse: each
    request in flight holds its parsed body (up to ``LPFT_MAX_REQUEST_BYTES``) and a
    connection, and one tenant must not pin this process's memory with thousands of them.
    Counted in this API process's memory, so with N processes a tenant may have N × limit in
    flight; a count in memory needs no expiry when a process dies.
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
                f"{self.limit} /predict requests per tenant may be in flight at once "
                "(LPFT_PREDICT_MAX_IN_FLIGHT_PER_TENANT); retry when one of yours has finished",
                retry_after=1,
            )
        self.in_flight[tenant] += 1
        try:
            yield
        finally:
            self.in_flight[tenant] -= 1
            if not self.in_flight[tenant]:
                del self.in_flight[tenant]  # tenants come and go; keep the counter small


async def predict(
    body: PredictRequest,
    tenant: str,
    *,
    stores: Stores,
    models: ModelCache,
    settings: ApiSettings,
    slots: TenantSlots,
    receive: Receive,
) -> PredictResponse:
    """Predictions for ``body``'s inputs in input order, with the model's warning codes and
    seeds; ``receive`` is the request's ASGI channel, where the client's leaving shows.

    Raises:
        Unprocessable: too many inputs, a text too long, or inputs the model cannot take.
        TooManyRequests: the tenant has its abuse cap of requests in flight.
        NotFound, Conflict: no such job, or not a succeeded finetune job.
        ClientClosedRequest: the client left before the predictions were ready.
    """
    started = time.perf_counter()
    _check_limits(body, settings)
    with slots.hold(tenant):
        job = _servable_job(body.job_id, tenant, stores)
        model = await models.get(job.id, await _model_dir(job, stores, models))
        predictor = model.predictor
        rows = [item.model_dump() for item in body.inputs]
        predictor.validate(rows)  # a bad request must not fail the pass it would join
        conformal = _conformal_request(body, predictor)
        logits = await _unless_client_leaves(receive, model.logits(rows, tenant))
        predictions = predictor.predictions(
            logits, body.calibrated, conformal=conformal, min_confidence=body.min_confidence
        )
        temperature = predictor.temperature if body.calibrated else 1.0
    PREDICT_LATENCY.observe(time.perf_counter() - started)
    return PredictResponse(
        job_id=job.id,
        temperature=temperature,
        calibrated=body.calibrated,
        warnings=predictor.warnings,
        seed=predictor.seeds[0] if predictor.seeds else None,
        seeds=predictor.seeds,
        serving=predictor.serving,
        quantization=(
            QuantizationOut(**predictor.quantization.to_dict()) if predictor.quantization else None
        ),
        predictions=[
            PredictionOut(
                label=p.label,
                probabilities=p.probabilities,
                logits=p.logits,
                prediction_set=p.prediction_set,
                abstained=p.abstained,
            )
            for p in predictions
        ],
    )


def _conformal_request(body: PredictRequest, predictor: Predictor) -> ConformalRequest | None:
    """The sets asked for, refused before any model work when the model cannot serve them.

    Raises:
        Conflict: the model has no stored scores for these sets (re-calibrating adds them).
        DataError: Mondrian sets at an alpha a label has too few calibration rows for (422).
    """
    if body.conformal is None:
        return None
    request = ConformalRequest(
        alpha=body.conformal.alpha, method=body.conformal.method, mondrian=body.conformal.mondrian
    )
    try:
        predictor.check_conformal(request)
    except ModelError as exc:
        raise Conflict(f"job {body.job_id}: {exc}") from exc
    return request


def _check_limits(body: PredictRequest, settings: ApiSettings) -> None:
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


async def _unless_client_leaves(receive: Receive, work: Awaitable[T]) -> T:
    """``work``'s result, unless the client closes the connection first: then ``work`` is
    cancelled, so the batcher spends no more passes on it.

    Raises:
        ClientClosedRequest: the client left first.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_client_gone(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task.cancel()  # a no-op once it is done
    if task.done():
        return task.result()
    raise ClientClosedRequest("the client closed the connection before the predictions were ready")


async def _client_gone(receive: Receive) -> None:
    """Returns when the client disconnects: the body has been read, so the next ASGI message
    is ``http.disconnect``."""
    while (await receive())["type"] != "http.disconnect":
        continue


async def _model_dir(job: JobRecord, stores: Stores, models: ModelCache) -> Path:
    """This replica's copy of the job's model: at hand, or (first use, a new version in the
    store) fetched off the event loop, with the datasets an int8 model's report is measured
    on."""
    key = Volume.model_key(job.id)
    if (directory := stores.copies.current(key)) is not None:
        return directory

    def fetch() -> Path:
        if models.precision == "int8":
            for dataset_id in {*job.dataset.values(), *job.eval_sets.values()} - {None}:
                stores.copies.file(Volume.dataset_key(dataset_id))
        return stores.copies.directory(key)

    return await asyncio.to_thread(fetch)


def _servable_job(job_id: str, tenant: str, stores: Stores) -> JobRecord:
    """The tenant's job ``job_id``, if its model can serve predictions."""
    job = stores.jobs.get_job(job_id, tenant)
    if job is None:
        raise NotFound(f"no job {job_id!r}", field="job_id")
    if not job_kind(job.kind).serves:
        raise Conflict(f"job {job.id} is a {job.kind} job; predict with a finetune job's id")
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job.id} is {job.status.value}; predict needs a succeeded job")
    return serving(job, stores)  # a sweep's best trial
