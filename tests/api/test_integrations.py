"""The ``integrations`` of a job create, refused in process before any work: a tenant never
names a tracking server (an extra field is a 422, the request-forgery door stays shut), every
field has a limit, and mlflow where the deployment configured no server is a 422 naming the
setting. Logging itself is tested against a real server in tests/integration/test_mlflow.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from lpft_api.settings import ApiSettings
from lpft_contract.integrations import (
    MAX_TAGS,
    IntegrationRequest,
    integration_record,
    registered_name,
    tenant_experiment,
)

from tests.api.conftest import KEY, untouched_client
from tests.api.test_requests import problem

#: One job body of each kind POST /jobs takes.
BODIES = {
    "finetune": {"method": "lp_ft", "dataset": {"train": "ds-a"}},
    "compare": {"kind": "compare", "dataset": {"train": "ds-a"}},
    "analysis": {"kind": "analysis", "dataset": {"train": "ds-a"}},
}


def with_mlflow(body: dict, **options: object) -> dict:
    return {**body, "integrations": [{"type": "mlflow", "mlflow": options}]}


@pytest.fixture()
def tracked() -> TestClient:
    """The app of a deployment with a tracking server, every store untouchable."""
    return untouched_client(
        ApiSettings(api_keys=f"alice:{KEY}", mlflow_tracking_uri="http://127.0.0.1:9")
    )


@pytest.mark.parametrize(
    ("integrations", "field"),
    [
        # A tenant naming a server, anywhere: refused, never fetched.
        (
            [{"type": "mlflow", "mlflow": {"tracking_uri": "http://169.254.169.254/"}}],
            "integrations[0].mlflow.tracking_uri",
        ),
        (
            [{"type": "mlflow", "tracking_uri": "http://10.0.0.1:5000"}],
            "integrations[0].tracking_uri",
        ),
        ([{"type": "wandb"}], "integrations[0].type"),
        ([{"type": "mlflow"}, {"type": "mlflow"}], "integrations"),
        ([{"type": "mlflow", "mlflow": {"experiment": "x" * 201}}], "integrations[0].mlflow"),
        ([{"type": "mlflow", "mlflow": {"experiment": "../bob/runs"}}], "integrations[0].mlflow"),
        ([{"type": "mlflow", "mlflow": {"experiment": "/bob"}}], "integrations[0].mlflow"),
        ([{"type": "mlflow", "mlflow": {"experiment": "a\nb"}}], "integrations[0].mlflow"),
        ([{"type": "mlflow", "mlflow": {"run_name": "r" * 251}}], "integrations[0].mlflow"),
        (
            [{"type": "mlflow", "mlflow": {"tags": {f"t{i}": "v" for i in range(MAX_TAGS + 1)}}}],
            "integrations[0].mlflow.tags",
        ),
        (
            [{"type": "mlflow", "mlflow": {"tags": {"lpft.tenant": "bob"}}}],
            "integrations[0].mlflow.tags",
        ),
        (
            [{"type": "mlflow", "mlflow": {"tags": {"mlflow.user": "root"}}}],
            "integrations[0].mlflow.tags",
        ),
        ([{"type": "mlflow", "mlflow": {"tags": {"k": "v" * 5001}}}], "integrations[0].mlflow"),
        (
            [{"type": "mlflow", "mlflow": {"register_as": "models/../x"}}],
            "integrations[0].mlflow.register_as",
        ),
        (
            [{"type": "mlflow", "mlflow": {"register_as": "bob.sentiment"}}],
            "integrations[0].mlflow.register_as",
        ),
        (
            [{"type": "mlflow", "mlflow": {"register_as": "m" * 201}}],
            "integrations[0].mlflow.register_as",
        ),
    ],
)
def test_a_bad_integration_is_a_422_naming_the_field(
    tracked: TestClient, integrations: list, field: str
) -> None:
    response = tracked.post("/jobs", json={**BODIES["finetune"], "integrations": integrations})
    body = problem(response, 422)
    fields = [e["field"] for e in body["errors"]]
    assert any(f.startswith(field) for f in fields), fields


@pytest.mark.parametrize("kind", BODIES)
def test_mlflow_without_a_tracking_server_is_a_422_naming_the_setting(
    client: TestClient, kind: str
) -> None:
    body = problem(client.post("/jobs", json=with_mlflow(BODIES[kind])), 422)
    assert "LPFT_MLFLOW_TRACKING_URI" in body["detail"]
    assert body["errors"][0]["field"] == "integrations[0].type"


@pytest.mark.parametrize("kind", ["compare", "analysis"])
def test_register_as_on_a_kind_that_serves_no_model_is_a_422(
    tracked: TestClient, kind: str
) -> None:
    body = with_mlflow(BODIES[kind], register_as="sentiment")
    detail = problem(tracked.post("/jobs", json=body), 422, "integrations[0].mlflow.register_as")
    assert "finetune" in detail["detail"]


def test_register_as_passes_on_a_finetune_job(tracked: TestClient) -> None:
    with pytest.raises(AssertionError, match="job store"):
        tracked.post("/jobs", json=with_mlflow(BODIES["finetune"], register_as="sentiment"))


def test_registered_models_are_kept_under_the_tenants_prefix() -> None:
    request = IntegrationRequest.model_validate(
        {"type": "mlflow", "mlflow": {"register_as": "sentiment"}}
    )
    assert integration_record("alice", request).registered_model == "lpft.alice.sentiment"
    # What MLflow refuses in a name ('/', ':') is encoded; a tenant's dots cannot make it
    # another tenant's name since register_as, after the last dot, holds none (above).
    assert registered_name("team/a", "m") == "lpft.team%2Fa.m"


@pytest.mark.parametrize("kind", BODIES)
def test_a_good_integration_passes_on_every_kind(tracked: TestClient, kind: str) -> None:
    """Past its checks, the request goes on to look its datasets up."""
    options = {"experiment": "sentiment/v2", "run_name": "a run", "tags": {"team": "nlp"}}
    with pytest.raises(AssertionError, match="job store"):
        tracked.post("/jobs", json=with_mlflow(BODIES[kind], **options))


def test_experiments_are_kept_under_the_tenants_prefix() -> None:
    request = IntegrationRequest.model_validate({"type": "mlflow", "mlflow": {}})
    assert request.mlflow.experiment == "jobs"
    assert tenant_experiment("alice", "sentiment/v2") == "lpft/alice/sentiment/v2"
    assert tenant_experiment("bob", "sentiment/v2") != tenant_experiment("alice", "sentiment/v2")


def test_the_clients_typed_integration_declares_every_field_the_record_shows() -> None:
    from lpft_client.types import Integration
    from lpft_contract.integrations import IntegrationRecord

    assert set(Integration.model_fields) == set(IntegrationRecord.model_fields)


def test_mlflow_on_a_sweep_is_taken_with_register_as_for_its_best_trial() -> None:
    from lpft_api.services.integrations import checked_integrations

    settings = ApiSettings(api_keys=f"alice:{KEY}", mlflow_tracking_uri="http://127.0.0.1:9")
    request = IntegrationRequest.model_validate(
        {"type": "mlflow", "mlflow": {"register_as": "best"}}
    )
    (record,) = checked_integrations([request], "alice", "sweep", settings)
    assert record.status == "pending"
    assert record.registered_model == registered_name("alice", "best")
