"""A job's integrations with the tools a team already uses: what a tenant asks for at job
create, and where each one stands, as the job record keeps it.

The only one is MLflow: each job becomes a run on the deployment's tracking server
(``LPFT_MLFLOW_TRACKING_URI``). A tenant never names a server, only what to call the run and
where it goes inside the tenant's own namespace: an experiment name is always stored under the
tenant's prefix (``tenant_experiment``), so one tenant never logs into, or reads, another's.
"""

from __future__ import annotations

import urllib.parse
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

#: Where a tenant's experiments live on the tracking server: ``lpft/<tenant>/<experiment>``.
EXPERIMENT_PREFIX = "lpft"
#: The experiment of a job that names none.
DEFAULT_EXPERIMENT = "jobs"
#: Tags the worker sets itself; a tenant's tags may not start with these.
RESERVED_TAG_PREFIXES = ("lpft.", "mlflow.")
MAX_TAGS = 20

#: MLflow's names: letters, digits and ``_ - . /`` and spaces (its own rule for keys).
_NAME = r"^[A-Za-z0-9_.\- /]+$"
ExperimentName = Annotated[
    str, StringConstraints(pattern=_NAME, min_length=1, max_length=200, strip_whitespace=True)
]
RunName = Annotated[str, StringConstraints(min_length=1, max_length=250)]
TagKey = Annotated[str, StringConstraints(pattern=_NAME, min_length=1, max_length=250)]
TagValue = Annotated[str, StringConstraints(max_length=5000)]
#: No ``.``: the registered model's name on the server ends in ``.<name>`` (``registered_name``).
ModelName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]+$", min_length=1, max_length=200)
]


class MlflowOptions(BaseModel):
    """What a tenant may choose of its MLflow run; the server is the deployment's."""

    model_config = ConfigDict(extra="forbid")

    experiment: ExperimentName = Field(
        DEFAULT_EXPERIMENT,
        description="the experiment, kept under the tenant's namespace on the server "
        f"({EXPERIMENT_PREFIX}/<tenant>/<experiment>); letters, digits, '_-./' and spaces",
    )
    run_name: RunName | None = Field(None, description="default: the job id")
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict,
        max_length=MAX_TAGS,
        description=f"at most {MAX_TAGS}; keys may not start with 'lpft.' or 'mlflow.'",
        # The whole key rule in the schema, so that a client generated from it sends only
        # what is accepted: pydantic writes the key pattern as patternProperties alone, which
        # lets any other key through with any value.
        json_schema_extra={
            "maxProperties": MAX_TAGS,
            "additionalProperties": False,
            "propertyNames": {
                "minLength": 1,
                "maxLength": 250,
                "pattern": _NAME,
                "not": {"pattern": r"^(lpft|mlflow)\."},
            },
        },
    )
    register_as: ModelName | None = Field(
        None,
        description="a registered model to add the job's calibrated model to as a new version "
        "(an MLflow pyfunc model), kept under the tenant's prefix on the server "
        "(lpft.<tenant>.<name>); jobs that serve (finetune) and their re-calibrations, each "
        "a new version; letters, digits, '_' and '-'",
    )

    @field_validator("experiment")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or "//" in value or ".." in value.split("/"):
            raise ValueError("name the experiment without a leading '/', '//' or '..'")
        return value

    @field_validator("tags")
    @classmethod
    def _own_tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith(RESERVED_TAG_PREFIXES):
                raise ValueError(
                    f"tag {key!r}: keys starting with 'lpft.' or 'mlflow.' are set "
                    "by the service; rename it"
                )
        return value


class IntegrationRequest(BaseModel):
    """One integration of a job create: ``{"type": "mlflow", "mlflow": {...}}``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["mlflow"]
    mlflow: MlflowOptions = Field(default_factory=MlflowOptions)


class IntegrationStatus(StrEnum):
    """``pending`` until the job's run is logged (``logged``) or given up on (``failed``)."""

    PENDING = "pending"
    LOGGED = "logged"
    FAILED = "failed"


class IntegrationRecord(BaseModel):
    """An integration of a job and where it stands, as the job record keeps and shows it."""

    type: Literal["mlflow"]
    mlflow: MlflowOptions
    experiment: str = Field(description="the experiment's full name on the tracking server")
    status: IntegrationStatus = IntegrationStatus.PENDING
    run_id: str | None = None
    registered_model: str | None = Field(
        None, description="with register_as, the registered model's full name on the server"
    )
    model_version: str | None = Field(None, description="with register_as, the version made")
    error: str | None = Field(None, description="why it failed, when it did")


def tenant_experiment(tenant: str, experiment: str) -> str:
    """The experiment's name on the server: under the tenant's prefix, whatever it asked."""
    return f"{EXPERIMENT_PREFIX}/{tenant}/{experiment}"


def registered_name(tenant: str, name: str) -> str:
    """The registered model's name on the server: under the tenant's prefix, like its
    experiments, so that one tenant never adds versions to another's model. The tenant is
    percent-encoded (MLflow refuses ``/`` and ``:`` in a name) and ``name`` holds no ``.``,
    so the last ``.`` always separates the two."""
    return f"{EXPERIMENT_PREFIX}.{urllib.parse.quote(tenant, safe='')}.{name}"


def integration_record(tenant: str, request: IntegrationRequest) -> IntegrationRecord:
    """The pending integration of a new job of ``tenant``."""
    name = request.mlflow.register_as
    return IntegrationRecord(
        type=request.type,
        mlflow=request.mlflow,
        experiment=tenant_experiment(tenant, request.mlflow.experiment),
        registered_model=registered_name(tenant, name) if name is not None else None,
    )
