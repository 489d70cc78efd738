"""A job's integrations checked against the deployment: a tracker a tenant asks for must be
one the operator configured, since a tenant never names a server itself."""

from __future__ import annotations

from lpft_contract.integrations import IntegrationRecord, IntegrationRequest, integration_record

from lpft_api.errors import Unprocessable
from lpft_api.settings import ApiSettings
from lpft_core import job_kind


def checked_integrations(
    requests: list[IntegrationRequest], tenant: str, kind: str, settings: ApiSettings
) -> list[IntegrationRecord]:
    """The pending integrations of a new job of ``tenant`` of ``kind``.

    Raises:
        Unprocessable: mlflow is asked for where the deployment has no tracking server, or
            with ``register_as`` on a kind that leaves no model to serve (a sweep serves its
            best trial's): refused rather than ignored, so that no tenant waits for a run or
            a model version that never comes.
    """
    for index, request in enumerate(requests):
        if request.type == "mlflow" and not settings.mlflow_tracking_uri:
            raise Unprocessable(
                "this deployment has no MLflow tracking server: the operator sets "
                "LPFT_MLFLOW_TRACKING_URI to enable the mlflow integration; submit the job "
                "without it meanwhile",
                field=f"integrations[{index}].type",
            )
        if request.mlflow.register_as is not None and not job_kind(kind).serves:
            raise Unprocessable(
                f"a {kind} job leaves no model to serve, so none to register; leave "
                "register_as out here, or set it on a finetune job",
                field=f"integrations[{index}].mlflow.register_as",
            )
    return [integration_record(tenant, request) for request in requests]
