"""A job's integrations checked against the deployment: a tracker a tenant asks for must be
one the operator configured, since a tenant never names a server itself."""

from __future__ import annotations

from lpft_contract.integrations import IntegrationRecord, IntegrationRequest, integration_record

from lpft_api.errors import Unprocessable
from lpft_api.settings import ApiSettings


def checked_integrations(
    requests: list[IntegrationRequest], tenant: str, settings: ApiSettings
) -> list[IntegrationRecord]:
    """The pending integrations of a new job of ``tenant``.

    Raises:
        Unprocessable: mlflow is asked for where the deployment has no tracking server, or
            with ``register_as``, which is not built yet: refused rather than silently
            ignored, so that no tenant waits for a model version that never comes.
    """
    for index, request in enumerate(requests):
        if request.type == "mlflow" and not settings.mlflow_tracking_uri:
            raise Unprocessable(
                "this deployment has no MLflow tracking server: the operator sets "
                "LPFT_MLFLOW_TRACKING_URI to enable the mlflow integration; submit the job "
                "without it meanwhile",
                field=f"integrations[{index}].type",
            )
        if request.mlflow.register_as is not None:
            raise Unprocessable(
                "registering the calibrated model (register_as) is not available yet; leave "
                "it out: the run is logged without a model version",
                field=f"integrations[{index}].mlflow.register_as",
            )
    return [integration_record(tenant, request) for request in requests]
