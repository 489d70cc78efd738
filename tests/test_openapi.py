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
