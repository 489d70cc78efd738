"""The committed OpenAPI document matches the app (regenerate with ``make openapi``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lpft_api.main import create_app
from lpft_api.openapi import render
from lpft_api.settings import ApiSettings

ROOT = Path(__file__).resolve().parents[1]


def test_committed_openapi_is_current() -> None:
    committed = (ROOT / "openapi" / "openapi.json").read_text()
    assert committed == render(), "openapi/openapi.json is stale: run `make openapi`"


def test_operations_are_described_and_uploads_accept_json() -> None:

    document = json.loads(render())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary") or operation.get("description"), (method, path)
    assert "application/json" in (document["paths"]["/datasets"]["post"]["requestBody"]["content"])


def test_operation_ids_read_as_method_names() -> None:

    document = json.loads(render())
    ids = {
        operation["operationId"]
        for operations in document["paths"].values()
        for operation in operations.values()
    }
    assert {"createJob", "getJobMetrics", "listDatasets", "createPredictions"} <= ids
    assert all(i.isidentifier() and "_" not in i for i in ids), ids


def test_bearer_scheme_is_declared_and_applied_to_every_non_public_operation() -> None:

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

    from lpft_api.guard import PUBLIC_PATHS

    document = json.loads(render())
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and path not in PUBLIC_PATHS:
                    assert response.get("content") == problem, (method, path, status)


def references(node: Any) -> Iterator[str]:
    """Every ``$ref`` in a JSON document, wherever it sits."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def resolve(document: dict[str, Any], reference: str) -> Any:
    """The node a local JSON pointer (``#/a/b~1c``) names; KeyError if there is none, so that
    a document that points outside itself fails too."""
    if not reference.startswith("#/"):
        raise KeyError(f"{reference} is not a reference inside the document")
    node: Any = document
    for token in reference[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def served_document() -> dict[str, Any]:
    """``GET /openapi.json`` as a keyed deployment serves it."""
    app = create_app(ApiSettings(api_keys="alice:key-alice"))
    response = TestClient(app).get("/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("source", ["committed", "served"])
def test_every_reference_resolves(source: str) -> None:
    committed = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    document = committed if source == "committed" else served_document()
    assert document == committed
    found = set(references(document))
    assert "#/components/schemas/Problem" in found  # the walk does reach the references
    dangling = []
    for reference in sorted(found):
        try:
            resolve(document, reference)
        except (KeyError, IndexError, ValueError, TypeError):
            dangling.append(reference)
    assert not dangling, f"references that resolve nowhere: {dangling}"


def test_every_answer_declares_a_schema_and_binary_ones_say_so() -> None:
    """Without a schema, client generators drop the answer (openapi-python-client does, with
    a warning); a gzip archive or a PNG is a binary string, so a client gets bytes."""
    document = json.loads(render())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                for media_type, content in response.get("content", {}).items():
                    where = (method, path, status, media_type)
                    assert content.get("schema"), where
                    if media_type.startswith(("image/", "application/gzip")):
                        assert content["schema"] == {"type": "string", "format": "binary"}, where
                    elif media_type.startswith("text/"):
                        assert content["schema"] == {"type": "string"}, where
