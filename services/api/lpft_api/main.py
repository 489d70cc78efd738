"""The FastAPI application factory: ``uvicorn --factory lpft_api.main:create_app``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from lpft_contract.settings import Settings, get_settings
from lpft_contract.store import Store, connect

from lpft_api.enqueue import Enqueuer
from lpft_api.errors import install_error_handlers
from lpft_api.predictions import ModelCache
from lpft_api.routers import datasets, health, jobs, predict

logger = logging.getLogger("lpft.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``settings`` default to the ``LPFT_*`` environment."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = Store(connect(settings.redis_url), settings.artifacts_dir)
        app.state.enqueuer = Enqueuer(settings.redis_url, settings.visibility_timeout_seconds)
        app.state.models = ModelCache(
            settings.model_cache_size, settings.predict_max_batch, settings.predict_device
        )
        reaper = asyncio.create_task(_reap_forever(app.state.store, settings.heartbeat_seconds))
        yield
        reaper.cancel()
        app.state.models.torch_thread.close()

    app = FastAPI(
        title="lpft",
        version="0.1.0",
        summary="Calibrated LP-FT fine-tuning of transformer text classifiers, as a job API.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tenant_keys = settings.tenant_keys()
    if not app.state.tenant_keys:
        logger.warning(
            "NO API KEYS CONFIGURED: the API is open to anyone who can reach it (tenant "
            "'default'). Set LPFT_API_KEYS=tenant:key,... for anything but local use."
        )
    install_error_handlers(app)
    for router in (health.router, datasets.router, jobs.router, predict.router):
        app.include_router(router)
    return app


async def _reap_forever(store: Store, interval_s: float) -> None:
    """Fail running jobs whose worker stopped renewing the lease (killed, lost)."""
    while True:
        try:
            for job_id in await asyncio.to_thread(store.reap_lost_jobs):
                logger.warning("job %s failed: its worker was lost", job_id)
        except Exception:  # noqa: BLE001 - the reaper must survive a Redis hiccup
            logger.exception("reaper pass failed")
        await asyncio.sleep(interval_s)
