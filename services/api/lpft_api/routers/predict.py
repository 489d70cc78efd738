"""``POST /predict``: calibrated predictions from a finished job's model."""

from __future__ import annotations

from fastapi import APIRouter, Request

from lpft_api.deps import ModelsDep, SettingsDep, SlotsDep, StoresDep, TenantDep
from lpft_api.schemas import PredictRequest, PredictResponse, Problem
from lpft_api.services import predict as service

router = APIRouter(tags=["predict"])


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
async def create_predictions(
    body: PredictRequest,
    request: Request,
    stores: StoresDep,
    tenant: TenantDep,
    models: ModelsDep,
    settings: SettingsDep,
    slots: SlotsDep,
) -> PredictResponse:
    """Labels and probabilities per label name, calibrated by the job's temperature unless
    ``calibrated`` is false.

    At most ``LPFT_MAX_PREDICT_INPUTS`` inputs of at most ``LPFT_MAX_TEXT_CHARS`` characters
    (422 above). Concurrent requests share forward passes fairly, tenants in turn and then a
    tenant's requests, so a small request is not held up by large ones, nor by another
    tenant's many; at most ``LPFT_PREDICT_MAX_IN_FLIGHT_PER_TENANT`` requests of a tenant in
    flight per API process, against abuse (429 with ``Retry-After`` above)."""
    return await service.predict(
        body,
        tenant,
        stores=stores,
        models=models,
        settings=settings,
        slots=slots,
        receive=request.receive,
    )
