"""The FastAPI application factory: ``uvicorn --factory lpft_api.main:create_app``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import Depends, FastAPI, Security
from fastapi.openapi.constants import REF_TEMPLATE
from fastapi.routing import APIRoute
from lpft_contract.enqueue import Enqueuer
from lpft_contract.logs import configure_logging
from lpft_contract.recovery import Recovery
from lpft_contract.store_checks import check_at_startup
from lpft_contract.stores import stores_from
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from lpft_api.deps import reject_unknown_query_parameters
from lpft_api.errors import describe_problems, install_error_handlers
from lpft_api.guard import BEARER, PROMETHEUS_PATH, PUBLIC_PATHS, Keys, Limits, RequestGuard
from lpft_api.model_cache import ModelCache, serving_choice
from lpft_api.prometheus import registry_for
from lpft_api.prometheus.http import HttpMetrics
from lpft_api.routers import console, datasets, health, job_changes, jobs, predict, prometheus
from lpft_api.settings import ApiSettings, get_api_settings

logger = logging.getLogger("lpft.api")


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the app; ``settings`` default to the ``LPFT_*`` environment. Logging is set up
    here (JSON lines), so that every way of serving the app gets it."""
    settings = settings or get_api_settings()
    configure_logging(settings.log_level)
    app = FastAPI(
        title="lpft",
        version="0.1.0",
        summary="Calibrated LP-FT fine-tuning of transformer text classifiers, as a job API.",
        lifespan=_lifespan(settings),
        dependencies=[Depends(reject_unknown_query_parameters)],
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    keys = Keys(settings.tenant_keys())
    if not keys:
        if not settings.open_mode:
            raise RuntimeError(
                "no API keys: set LPFT_API_KEYS=tenant:key,... (or LPFT_API_KEYS_FILE); for "
                "local use only, LPFT_OPEN_MODE=true serves everyone as tenant 'default'"
            )
        logger.warning("OPEN MODE: no API keys, every caller is tenant 'default'. Local use only.")
    app.add_middleware(
        RequestGuard,
        keys=keys,
        limits=Limits(
            upload_bytes=settings.max_upload_bytes, request_bytes=settings.max_request_bytes
        ),
        public_paths=PUBLIC_PATHS | {PROMETHEUS_PATH} if settings.metrics_public else PUBLIC_PATHS,
    )
    app.add_middleware(HttpMetrics)  # outside the guard, so that refusals count too
    app.state.prometheus_registry = registry_for(app.state, settings.worker_stale_seconds)
    install_error_handlers(app)
    document = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe_problems(document(), PUBLIC_PATHS)
            declare_schemas(app.openapi_schema, datasets.SELF_PARSED_BODIES)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    for router in (health.router, prometheus.router):
        app.include_router(router)
    for router in (datasets.router, jobs.router, job_changes.router, predict.router):
        app.include_router(router, dependencies=[Security(BEARER)])
    console.mount(app, keys_required=bool(keys), max_upload_bytes=settings.max_upload_bytes)
    return app


def _lifespan(settings: ApiSettings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """What the app holds while it serves: the store, the enqueuer, the model cache and the
    recovery loop."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(check_at_startup, settings)
        app.state.stores = stores = stores_from(settings)
        app.state.enqueuer = Enqueuer(settings.redis_url, settings.visibility_timeout_seconds)
        app.state.serving = serving = serving_choice(settings)
        app.state.models = ModelCache(
            settings.model_cache_size,
            settings.predict_max_batch,
            serving.device,
            serving.backend,
            settings.predict_precision,
            data_root=stores.volume.root,
            threads=serving.threads,
        )
        recovery = Recovery(
            stores,
            app.state.enqueuer,
            settings.lease_seconds,
            settings.max_job_attempts,
            settings.lost_message_seconds,
        )
        loop = asyncio.create_task(_recover_forever(recovery, settings.heartbeat_seconds))
        yield
        loop.cancel()
        app.state.models.close()

    return lifespan


def declare_schemas(document: dict[str, Any], models: Iterable[type[BaseModel]]) -> None:
    """Put the schemas of ``models`` (and of the models they use) under
    ``components/schemas``, for the ``$ref``s that name them from ``openapi_extra``: a
    reference that resolves nowhere makes client generators drop the whole operation."""
    _, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=REF_TEMPLATE
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(definitions.get("$defs", {}))


def operation_id(route: APIRoute) -> str:
    """``createJob``, ``getJobMetrics``: the handler's name in camel case, what client
    generators turn into method names."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


async def _recover_forever(recovery: Recovery, interval_s: float) -> None:
    """Run the recovery pass (lost workers, lost messages, a Redis that lost its data)."""
    while True:
        try:
            for line in await asyncio.to_thread(recovery.run_once):
                logger.warning("recovery: %s", line)
        except Exception:  # noqa: BLE001 - the loop must survive a Redis outage
            logger.exception("recovery pass failed; trying again in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
