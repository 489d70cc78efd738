"""The committed OpenAPI document matches the app (regenerate with ``make openapi``)."""

from __future__ import annotations

from pathlib import Path

from lpft_api.openapi import render

ROOT = Path(__file__).resolve().parents[1]


def test_committed_openapi_is_current() -> None:
    committed = (ROOT / "openapi" / "openapi.json").read_text()
    assert committed == render(), "openapi/openapi.json is stale: run `make openapi`"


def test_operations_are_described_and_uploads_accept_json() -> None:
    import json

    document = json.loads(render())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary") or operation.get("description"), (method, path)
    assert "application/json" in (document["paths"]["/datasets"]["post"]["requestBody"]["content"])


def test_operation_ids_read_as_method_names() -> None:
    import json

    document = json.loads(render())
    ids = {
        operation["operationId"]
        for operations in document["paths"].values()
        for operation in operations.values()
    }
    assert {"createJob", "getJobMetrics", "listDatasets", "createPredictions"} <= ids
    assert all(i.isidentifier() and "_" not in i for i in ids), ids


def test_bearer_scheme_is_declared_and_applied_to_every_non_public_operation() -> None:
    import json

    from lpft_api.guard import PUBLIC_PATHS

    document = json.loads(render())
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "security" not in document  # nothing is secured by default: public routes exist
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path in PUBLIC_PATHS:
                assert "security" not in operation, (method, path)
                assert "401" not in operation["responses"], (method, path)
            else:
                assert operation["security"] == [{"bearer": []}], (method, path)
                assert {"401", "422", "500"} <= set(operation["responses"]), (method, path)
    assert {"/healthz", "/readyz"} <= set(document["paths"])


def test_every_error_answer_is_a_problem_document() -> None:
    import json

    from lpft_api.guard import PUBLIC_PATHS

    document = json.loads(render())
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and path not in PUBLIC_PATHS:
                    assert response.get("content") == problem, (method, path, status)
