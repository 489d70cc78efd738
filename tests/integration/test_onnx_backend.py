"""The predict backend setting on a real server: one pair-task job served by API processes
with torch, onnx, onnx int8, the default and the default where onnxruntime does not import,
over the same Redis and artifacts. onnx answers as torch does to 1e-4, sets for pair inputs
included; int8 says so and carries its measured cost; the default serves onnx, and falls back
to torch saying why in /readyz and the log."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import toy_rows, write_jsonl
from tests.integration.conftest import KEYS, ApiServer, job_body, upload, wait_for

INPUTS = [
    {"text": row["text"], "text_pair": row["text_pair"]} for row in toy_rows(6, seed=11, pair=True)
]
BODY = {"inputs": INPUTS, "conformal": {"alpha": 0.05, "method": "aps"}}


@pytest.fixture(scope="module")
def pair_job(
    api_url: str,
    cpu_worker: object,
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    started: dict[str, ApiServer],
) -> str:
    """The module's job; ``started`` first, so that its servers import while it trains."""
    root = tmp_path_factory.mktemp("pairs")
    headers = {"Authorization": f"Bearer {KEYS['alice']}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=60) as alice:
        dataset = {
            split: upload(alice, write_jsonl(root / f"{split}.jsonl", toy_rows(n, seed, pair=True)))
            for split, n, seed in (("train", 90, 1), ("validation", 30, 2), ("test", 30, 3))
        }
        job = alice.post("/jobs", json=job_body(dataset, tiny_model_dir)).json()
        wait_for(alice, job["id"], {"succeeded"}, timeout=300)
    return job["id"]


@dataclass(frozen=True)
class Served:
    """An API process of this module: where it answers and where it logs."""

    url: str
    log: Path


@pytest.fixture(scope="module")
def started(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ApiServer]]:
    """The module's API processes, started side by side and perhaps still importing."""
    logs = tmp_path_factory.mktemp("backend-logs")
    default = {k: v for k, v in service_env.items() if k != "LPFT_PREDICT_BACKEND"}
    shadow = tmp_path_factory.mktemp("no-onnxruntime")
    (shadow / "onnxruntime").mkdir()
    (shadow / "onnxruntime" / "__init__.py").write_text(
        'raise ImportError("onnxruntime hidden by the test")\n'
    )
    hidden = {"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    servers = {
        name: ApiServer(env, logs / f"{name}.log", wait=False)
        for name, env in (
            ("onnx", {**service_env, "LPFT_PREDICT_BACKEND": "onnx"}),
            (
                "onnx-int8",
                {**service_env, "LPFT_PREDICT_BACKEND": "onnx", "LPFT_PREDICT_PRECISION": "int8"},
            ),
            ("default", default),
            ("default-without-onnxruntime", {**default, **hidden}),
        )
    }
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def servers(started: dict[str, ApiServer]) -> dict[str, Served]:
    """The module's API processes, each answering /readyz."""
    for server in started.values():
        server.wait_until_ready()
    return {name: Served(server.url, server.log) for name, server in started.items()}


def predict(url: str, job_id: str) -> dict:
    headers = {"Authorization": f"Bearer {KEYS['alice']}"}
    response = httpx.post(
        f"{url}/predict", json={"job_id": job_id, **BODY}, headers=headers, timeout=300
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_backends_serve_the_same_calibrated_answers(
    api_url: str, pair_job: str, servers: dict[str, Served]
) -> None:
    by_torch = predict(api_url, pair_job)
    by_onnx = predict(servers["onnx"].url, pair_job)
    assert (by_torch["serving"], by_onnx["serving"]) == ("torch", "onnx")
    assert by_torch["quantization"] is None and by_onnx["quantization"] is None
    assert any(p["prediction_set"] for p in by_torch["predictions"])  # sets to compare
    for a, b in zip(by_torch["predictions"], by_onnx["predictions"], strict=True):
        assert a["prediction_set"] == b["prediction_set"] and a["label"] == b["label"]
        for name, p in a["probabilities"].items():
            assert b["probabilities"][name] == pytest.approx(p, abs=1e-4)

    by_int8 = predict(servers["onnx-int8"].url, pair_job)
    assert by_int8["serving"] == "onnx-int8"
    report = by_int8["quantization"]
    assert report["split"] == "test" and report["rows"] == 30 and report["unmeasured"] is None
    assert report["temperature"] == pytest.approx(by_torch["temperature"])
    assert 0 <= report["probability_shift_mean"] <= report["probability_shift_max"] <= 1
    for p in by_int8["predictions"]:
        assert p["prediction_set"] is not None
        assert sum(p["probabilities"].values()) == pytest.approx(1.0)


def test_single_text_to_a_pair_model_is_a_422_on_every_backend(
    pair_job: str, servers: dict[str, Served]
) -> None:
    headers = {"Authorization": f"Bearer {KEYS['alice']}"}
    response = httpx.post(
        f"{servers['onnx'].url}/predict",
        json={"job_id": pair_job, "inputs": [{"text": "no pair here"}]},
        headers=headers,
        timeout=60,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "inputs[0].text_pair"


def test_the_default_serves_onnx_and_falls_back_to_torch_saying_why(
    api_url: str, pair_job: str, servers: dict[str, Served]
) -> None:
    by_torch = predict(api_url, pair_job)
    default, fallback = servers["default"], servers["default-without-onnxruntime"]
    assert httpx.get(f"{default.url}/readyz").json()["serving"].startswith("onnx on cpu, ")
    by_default = predict(default.url, pair_job)
    assert by_default["serving"] == "onnx"
    for a, b in zip(by_torch["predictions"], by_default["predictions"], strict=True):
        for name, p in a["probabilities"].items():
            assert b["probabilities"][name] == pytest.approx(p, abs=1e-4)

    ready = httpx.get(f"{fallback.url}/readyz")
    assert ready.status_code == 200, ready.text
    said = ready.json()["serving"]
    assert said.startswith("torch on cpu, ") and "fallback" in said, said
    assert "onnxruntime hidden by the test" in said
    assert predict(fallback.url, pair_job)["serving"] == "torch"
    warnings = [
        record
        for line in fallback.log.read_text().splitlines()
        if line.startswith("{") and (record := json.loads(line))
        if record.get("level") == "WARNING" and "/predict is served by torch" in record["message"]
    ]
    assert len(warnings) == 1 and "onnxruntime hidden by the test" in warnings[0]["message"]
