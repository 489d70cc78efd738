"""The request gate's parts, without a server: key lookup, model names, the
refusal to start open by accident, and strict JSON for metrics."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import httpx
import pytest
from lpft_api.errors import ApiError
from lpft_api.guard import Keys
from lpft_api.main import create_app
from lpft_api.model_policy import check_model
from lpft_api.settings import ApiSettings

from lpft_core.model.artifacts import write_json


def test_keys_map_each_key_to_its_tenant_only() -> None:
    keys = Keys({"key-a": "alice", "key-b": "bob"})
    assert keys.tenant("key-a") == "alice" and keys.tenant("key-b") == "bob"
    assert keys.tenant("key-") is None and keys.tenant("") is None
    assert not Keys({})


def test_the_api_refuses_to_start_without_keys_unless_open_mode_is_asked_for() -> None:
    with pytest.raises(RuntimeError, match="LPFT_API_KEYS"):
        create_app(ApiSettings(api_keys="", open_mode=False))
    create_app(ApiSettings(api_keys="", open_mode=True))
    create_app(ApiSettings(api_keys="alice:secret"))


def test_models_are_hub_ids_or_directories_under_the_models_dir(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "mine").mkdir(parents=True)
    assert check_model(None, None) is None
    assert check_model("roberta-base", None) == "roberta-base"
    assert check_model("FacebookAI/roberta-base", None) == "FacebookAI/roberta-base"
    assert check_model("mine", models) == str((models / "mine").resolve())
    assert check_model(str(models / "mine"), models) == str((models / "mine").resolve())
    for outside in ("/etc", "../models/../../etc", str(tmp_path), "mine/../../"):
        with pytest.raises(ApiError) as info:
            check_model(outside, models)
        assert info.value.field == "model" and str(models) not in info.value.detail
    with pytest.raises(ApiError, match="takes no model paths"):
        check_model("/etc", None)


def test_non_finite_metrics_are_written_as_null_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_json(path, {"features": {"test": {"scatter_ratio": math.inf}}, "ok": [1.0, math.nan]})
    value = json.loads(path.read_text())  # strict JSON: no NaN or Infinity tokens
    assert value["features"]["test"]["scatter_ratio"] is None and value["ok"] == [1.0, None]
    assert value["non_finite"] == [
        "features.test.scatter_ratio was inf, written as null",
        "ok[1] was nan, written as null",
    ]


def test_open_mode_serves_loopback_clients_only() -> None:
    app = create_app(ApiSettings(api_keys="", open_mode=True))

    async def status_from(client_host: str) -> int:
        transport = httpx.ASGITransport(app=app, client=(client_host, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://lpft") as client:
            # Refused by the gate, before any route (and so without Redis) is reached.
            response = await client.get("/jobs/job-x")
            return response.status_code

    assert asyncio.run(status_from("10.1.2.3")) == 401
    assert asyncio.run(status_from("192.168.0.9")) == 401
