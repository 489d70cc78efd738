"""``GET /metrics`` for Prometheus (outside the OpenAPI document: it is not a JSON API)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lpft_api.guard import PROMETHEUS_PATH

router = APIRouter(tags=["prometheus"])


@router.get(PROMETHEUS_PATH, include_in_schema=False)
def metrics(request: Request) -> Response:
    """The service's series in Prometheus' text format (see ``lpft_api.prometheus``)."""
    return Response(
        generate_latest(request.app.state.prometheus_registry), media_type=CONTENT_TYPE_LATEST
    )
