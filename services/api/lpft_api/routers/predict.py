"""Calibrated predictions from a finished job's model."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter
from lpft_contract.records import JobStatus

from lpft_api.deps import ModelsDep, StoreDep, TenantDep
from lpft_api.errors import Conflict, NotFound
from lpft_api.schemas import PredictionOut, PredictRequest, PredictResponse, Problem
from lpft_core.calibration import scaled_softmax

router = APIRouter(tags=["predict"])


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses={404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}},
)
async def predict(
    body: PredictRequest, store: StoreDep, tenant: TenantDep, models: ModelsDep
) -> PredictResponse:
    """Labels and probabilities per label name, calibrated by the job's temperature unless
    ``calibrated`` is false. Concurrent requests are batched together."""
    job = store.get_job(body.job_id, tenant)
    if job is None:
        raise NotFound(f"no job {body.job_id!r}", field="job_id")
    if job.kind != "finetune":
        raise Conflict(f"job {job.id} is a {job.kind} job; predict with a finetune job's id")
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job.id} is {job.status.value}; predict needs a succeeded job")
    model = await models.get(job.id, store.model_dir(job.id))
    rows = [item.model_dump() for item in body.inputs]
    model.predictor.validate(rows)  # a bad request must not fail the batch it would join
    logits = await model.logits(rows)
    temperature = model.predictor.temperature if body.calibrated else 1.0
    probabilities = scaled_softmax(logits, temperature)
    labels = model.predictor.labels
    names = [str(label) for label in labels]
    return PredictResponse(
        job_id=job.id,
        temperature=temperature,
        calibrated=body.calibrated,
        predictions=[
            PredictionOut(
                label=labels[int(np.argmax(p))],
                probabilities=dict(zip(names, map(float, p), strict=True)),
                logits=[float(v) for v in row],
            )
            for p, row in zip(probabilities, logits, strict=True)
        ],
    )
