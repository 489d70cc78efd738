"""Liveness and readiness."""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from lpft_api.deps import SettingsDep, StoreDep
from lpft_api.schemas import Health

router = APIRouter(tags=["health"])
logger = logging.getLogger("lpft.api")


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(store: StoreDep, settings: SettingsDep) -> JSONResponse:
    """Redis answers and the artifact store is writable."""
    checks = {}
    try:
        store.redis.ping()
        checks["redis"] = "ok"
    except Exception:  # noqa: BLE001 - any failure means not ready
        logger.exception("readiness: Redis unreachable")  # the details are the operator's
        checks["redis"] = "unreachable"
    probe = settings.artifacts_dir / f".ready-{uuid.uuid4().hex}"
    try:
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
        checks["artifacts"] = "ok"
    except OSError:
        logger.exception("readiness: artifact volume not writable")
        checks["artifacts"] = "not writable"
    ready = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
