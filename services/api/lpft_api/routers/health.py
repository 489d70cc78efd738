"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lpft_api.deps import SettingsDep, StoresDep
from lpft_api.schemas import Health
from lpft_api.services import health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(stores: StoresDep, settings: SettingsDep, request: Request) -> JSONResponse:
    """Redis answers and the artifact store is writable; ``serving`` says what runs /predict."""
    checks = health.readiness(stores, settings)
    ready = all(v == "ok" for v in checks.values())
    serving = getattr(request.app.state, "serving", None)
    body = Health(
        status="ok" if ready else "unavailable",
        checks=checks,
        serving=serving.describe() if serving is not None else None,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
