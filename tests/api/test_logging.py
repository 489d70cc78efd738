"""The API's logs are JSON lines carrying the request's ids, and its answers carry the
request id, refusals and failures included (``lpft_contract.logs``, the request gate)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from lpft_api import deps
from lpft_api.main import create_app
from lpft_api.settings import ApiSettings
from lpft_contract.logs import configure_logging

from tests.api.conftest import KEY, Untouchable


class Api:
    """The app under TestClient, with what it logs."""

    def __init__(self, client: TestClient, output: io.StringIO) -> None:
        self.client = client
        self.output = output

    def records(self) -> list[dict]:
        """Every line the app logged so far, each parsed as a JSON object (failing on any
        other); the test client's own lines (``httpx``) are left out."""
        lines = self.output.getvalue().splitlines()
        records = [json.loads(line) for line in lines]
        assert all(isinstance(r, dict) for r in records), lines
        return [r for r in records if not r["logger"].startswith("httpx")]


@pytest.fixture()
def api() -> Iterator[Api]:
    app = create_app(ApiSettings(api_keys=f"alice:{KEY}", max_request_bytes=1024))
    app.dependency_overrides[deps.get_stores] = lambda: Untouchable("job store")
    output = io.StringIO()
    configure_logging(stream=output)  # after create_app, which set up stderr
    client = TestClient(
        app, headers={"Authorization": f"Bearer {KEY}"}, raise_server_exceptions=False
    )
    yield Api(client, output)
    configure_logging()


def test_every_line_logged_during_a_request_is_json_with_its_ids(api: Api) -> None:
    answers = [
        api.client.get("/jobs", params={"limt": 5}),  # 422 from a dependency
        api.client.get("/nowhere"),  # 404 from the router
        api.client.get("/healthz"),
    ]
    records = api.records()
    assert len(records) == len(answers)
    for answer, record in zip(answers, records, strict=True):
        assert record["request_id"] == answer.headers["X-Request-ID"]
        assert record["tenant"] == "alice"
        assert record["status"] == answer.status_code
        assert record["level"] == "INFO" and record["logger"] == "lpft.api"
        assert record["duration_ms"] >= 0 and record["time"].endswith("Z")
    assert records[0]["message"] == "GET /jobs 422"


def test_a_sane_request_id_is_echoed_and_any_other_replaced(api: Api) -> None:
    sent = "req-42.a:b_C"
    assert (
        api.client.get("/healthz", headers={"X-Request-ID": sent}).headers["X-Request-ID"] == sent
    )
    made = api.client.get("/healthz").headers["X-Request-ID"]
    assert len(made) == 32 and int(made, 16) >= 0
    for insane in ("x" * 129, "a b", "<script>", "id;drop=1", ""):
        answer = api.client.get("/healthz", headers={"X-Request-ID": insane})
        returned = answer.headers["X-Request-ID"]
        assert returned != insane and len(returned) == 32, insane
    assert [r["request_id"] for r in api.records()][:2] == [sent, made]


def test_refusals_of_the_gate_carry_the_request_id(api: Api) -> None:
    anonymous = api.client.get("/jobs", headers={"Authorization": "", "X-Request-ID": "r-401"})
    assert anonymous.status_code == 401 and anonymous.headers["X-Request-ID"] == "r-401"
    too_large = api.client.post("/jobs", content=b"x" * 2048, headers={"X-Request-ID": "r-413"})
    assert too_large.status_code == 413 and too_large.headers["X-Request-ID"] == "r-413"
    statuses = {r["request_id"]: (r["status"], r.get("tenant")) for r in api.records()}
    assert statuses == {"r-401": (401, None), "r-413": (413, "alice")}


def test_a_500_has_the_same_error_id_in_its_body_and_its_log(api: Api) -> None:
    def broken_store() -> None:
        raise RuntimeError("the disk is on fire")

    api.client.app.dependency_overrides[deps.get_stores] = broken_store  # type: ignore[attr-defined]
    answer = api.client.get("/jobs/job-1", headers={"X-Request-ID": "r-500"})
    assert answer.status_code == 500 and answer.headers["X-Request-ID"] == "r-500"
    body = answer.json()
    assert body["error_id"].startswith("err-") and body["error_id"] in body["detail"]
    assert "fire" not in answer.text  # the cause stays in the log
    records = api.records()
    assert all(r["request_id"] == "r-500" and r["tenant"] == "alice" for r in records)
    [failure] = [r for r in records if r["level"] == "ERROR"]
    assert failure["error_id"] == body["error_id"]
    assert "RuntimeError: the disk is on fire" in failure["traceback"]
