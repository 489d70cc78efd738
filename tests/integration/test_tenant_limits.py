"""Limits that keep one tenant from crowding out the others, on a real API process of this
module's own (so that the limits can be small), over the session's Redis, artifacts and cpu
worker: the bytes a tenant stores counting its finished jobs' files, the model a job may start
from (checked against a fake hub on loopback, never the network), and the live event streams
a tenant may hold open.

Tenants dave, erin and frank exist only on this module's server, so their counts are its own.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from lpft_api.services.events import StreamSlots
from lpft_contract.stores import Stores

from tests.integration.conftest import KEYS, ApiServer, job_body, upload, wait_for
from tests.integration.test_errors import assert_problem

TENANTS = {"dave": "key-dave", "erin": "key-erin", "frank": "key-frank"}
STORED_BYTES = 1_000_000  # a toy dataset fits; a finished tiny-BERT job (about 5 MB) does not
MODEL_BYTES = 50_000_000
STREAMS = 2
#: Long enough that a disconnect, noticed within a second, is seen well inside it on a busy
#: machine.
KEEPALIVE_S = 4.0
MB = 1_000_000


class FakeHub:
    """Answers the hub's model-info API (``GET /api/models/<org>/<name>``) for the model
    directories under ``root``, with every file's size, as the hub does when asked for files'
    metadata; records every path asked for, so a test sees that nothing was downloaded."""

    def __init__(self, root: Path) -> None:
        self.requested: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server interface
                hub.requested.append(self.path)
                parts = self.path.split("?")[0].strip("/").split("/")
                model = root.joinpath(*parts[2:4]) if parts[:2] == ["api", "models"] else None
                if model is None or len(parts) < 4 or not model.is_dir():
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                siblings = [
                    {"rfilename": path.relative_to(model).as_posix(), "size": path.stat().st_size}
                    for path in sorted(model.rglob("*"))
                    if path.is_file()
                ]
                body = json.dumps(
                    {"id": "/".join(parts[2:4]), "sha": "0" * 40, "siblings": siblings}
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def sparse_file(path: Path, size: int) -> None:
    """A file of ``size`` bytes that takes no room on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tenant-limits")
    hub, models, hf_home = root / "hub", root / "models", root / "hf-home"
    for name, files in {
        "tiny-org/small": {"config.json": 2, "model.safetensors": 1000},
        # Only the safetensors weights count: from_pretrained fetches neither the .bin
        # copy nor a subfolder's export.
        "tiny-org/big": {
            "config.json": 2,
            "model.safetensors": 60 * MB,
            "pytorch_model.bin": 200 * MB,
            "onnx/model.onnx": 300 * MB,
        },
        "other-org/small": {"config.json": 2, "model.safetensors": 1000},
    }.items():
        for file, size in files.items():
            sparse_file(hub / name / file, size)
    shutil.copytree(tiny_model_dir, models / "tiny")
    sparse_file(models / "huge-local" / "model.safetensors", 60 * MB)
    (models / "huge-local" / "config.json").write_text("{}")
    # A model in the Hugging Face cache, as a download leaves it (the hub does not have it).
    cached = hf_home / "hub" / "models--cache-org--cached"
    sparse_file(cached / "snapshots" / ("1" * 40) / "model.safetensors", 500)
    (cached / "snapshots" / ("1" * 40) / "config.json").write_text("{}")
    (cached / "refs").mkdir()
    (cached / "refs" / "main").write_text("1" * 40)
    return {"hub": hub, "models": models, "hf_home": hf_home, "logs": root}


@pytest.fixture(scope="module")
def fake_hub(places: dict[str, Path]) -> Iterator[FakeHub]:
    hub = FakeHub(places["hub"])
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def server(
    service_env: dict[str, str], places: dict[str, Path], fake_hub: FakeHub, cpu_worker: object
) -> Iterator[ApiServer]:
    keys = {**KEYS, **TENANTS}
    env = {
        **service_env,
        "LPFT_API_KEYS": ",".join(f"{t}:{k}" for t, k in keys.items()),
        "LPFT_MODELS_DIR": str(places["models"]),
        "LPFT_MAX_STORED_BYTES_PER_TENANT": str(STORED_BYTES),
        "LPFT_MAX_MODEL_BYTES": str(MODEL_BYTES),
        "LPFT_ALLOWED_MODELS": "tiny-org/*, cache-org/*",
        "LPFT_MAX_EVENT_STREAMS_PER_TENANT": str(STREAMS),
        "LPFT_EVENT_STREAM_KEEPALIVE_SECONDS": str(KEEPALIVE_S),
        "HF_ENDPOINT": fake_hub.url,
        "HF_HOME": str(places["hf_home"]),
        "HF_HUB_OFFLINE": "0",
    }
    api = ApiServer(env, places["logs"] / "api.log")
    yield api
    api.stop()


def client_of(server: ApiServer, tenant: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {TENANTS[tenant]}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def redis_of(service_env: dict[str, str]) -> redis.Redis:
    return redis.Redis.from_url(service_env["LPFT_REDIS_URL"], decode_responses=True)


def test_a_finished_jobs_files_count_toward_the_stored_bytes_quota(
    server: ApiServer,
    service_env: dict[str, str],
    places: dict[str, Path],
    toy_dataset_files: dict[str, Path],
) -> None:
    stores = Stores.over(redis_of(service_env), Path(service_env["LPFT_ARTIFACTS_DIR"]))
    with client_of(server, "dave") as dave:
        datasets = {"train": upload(dave, toy_dataset_files["train"])}
        before = stores.quotas.stored_bytes("dave")
        assert before < STORED_BYTES
        job = dave.post("/jobs", json=job_body(datasets, places["models"] / "tiny"))
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        wait_for(dave, job_id, {"succeeded"}, timeout=300)
        job_dir = stores.volume.job_dir(job_id)
        on_disk = sum(p.stat().st_size for p in job_dir.rglob("*") if p.is_file())
        assert stores.quotas.stored_bytes("dave") == before + on_disk > STORED_BYTES

        refused = dave.post(
            "/datasets", files={"file": ("t.jsonl", b'{"text": "a", "label": 1}\n')}
        )
        detail = assert_problem(refused, 409)["detail"]
        assert "finished jobs" in detail and "LPFT_MAX_STORED_BYTES_PER_TENANT" in detail
        body = job_body(datasets, places["models"] / "tiny")
        detail = assert_problem(dave.post("/jobs", json=body), 409)["detail"]
        assert "quota" in detail and "DELETE /jobs/{id}" in detail

        # An archive or an export would add about a model's size: refused like an upload.
        for route in ("artifacts", "export?format=hf"):
            refused = assert_problem(dave.get(f"/jobs/{job_id}/{route}"), 409)
            assert refused["code"] == "quota_exceeded", refused
            assert "LPFT_MAX_STORED_BYTES_PER_TENANT" in refused["detail"]

        assert dave.delete(f"/jobs/{job_id}").status_code == 204
        assert stores.quotas.stored_bytes("dave") == before
        again = dave.post("/datasets", files={"file": ("t.jsonl", b'{"text": "a", "label": 1}\n')})
        assert again.status_code == 201, again.text


def test_a_hub_model_is_checked_before_anything_is_queued_or_downloaded(
    server: ApiServer,
    fake_hub: FakeHub,
    places: dict[str, Path],
    toy_dataset_files: dict[str, Path],
) -> None:
    with client_of(server, "erin") as erin:
        datasets = {"train": upload(erin, toy_dataset_files["train"])}
        body = job_body(datasets, places["models"] / "tiny", device="cuda")  # never trained

        def submit(model: str, key: str | None = None) -> httpx.Response:
            headers = {"Idempotency-Key": key} if key else {}
            return erin.post("/jobs", json={**body, "model": model}, headers=headers)

        detail = assert_problem(submit("tiny-org/big"), 422, "model")["detail"]
        assert f"{60 * MB + 2:,} bytes on the hub" in detail, detail
        assert f"LPFT_MAX_MODEL_BYTES = {MODEL_BYTES:,}" in detail
        detail = assert_problem(submit("other-org/small"), 422, "model")["detail"]
        assert "LPFT_ALLOWED_MODELS" in detail and "tiny-org/*" in detail
        assert_problem(submit("tiny-org/missing"), 422, "model")
        # A directory under the models directory is sized from disk (and not matched
        # against the allow-list, which is about the hub).
        detail = assert_problem(submit("huge-local"), 422, "model")["detail"]
        assert f"{60 * MB + 2:,} bytes on disk" in detail
        assert erin.get("/jobs").json()["data"] == []  # nothing was queued
        asked = [path.split("?")[0] for path in fake_hub.requested]
        # Model metadata only (huggingface_hub also fetches a registry of its own); no file.
        models = [path for path in asked if path.startswith("/api/models/")]
        assert models == ["/api/models/tiny-org/big", "/api/models/tiny-org/missing"], asked
        assert not [path for path in asked if "/resolve/" in path], asked
        assert not list(places["hf_home"].glob("hub/models--tiny-org--*"))  # nor downloaded

        small = submit("tiny-org/small", key="small-1")
        assert small.status_code == 202, small.text
        assert erin.post(f"/jobs/{small.json()['id']}/cancel").status_code == 200

        # The hub down: a model in the local cache is sized there; any other is a 503 that
        # says to retry, never a 500.
        fake_hub.stop()
        cached = submit("cache-org/cached")
        assert cached.status_code == 202, cached.text
        assert erin.post(f"/jobs/{cached.json()['id']}/cancel").status_code == 200
        down = submit("tiny-org/small")
        assert down.status_code == 503 and down.json()["code"] == "hub_unavailable", down.text
        assert int(down.headers["retry-after"]) > 0 and "did not answer" in down.json()["detail"]
        # A retry of a job already created needs no hub: it is the same job.
        retried = submit("tiny-org/small", key="small-1")
        assert retried.status_code == 202 and retried.json()["id"] == small.json()["id"], retried


def open_stream(client: httpx.Client, job_id: str, stack: ExitStack) -> httpx.Response:
    response = stack.enter_context(
        client.stream("GET", f"/jobs/{job_id}/events", headers={"Accept": "text/event-stream"})
    )
    return response


def wait_for_slots(slots: StreamSlots, tenant: str, count: int, within_s: float) -> float:
    """Seconds until the tenant holds ``count`` slots; fails after ``within_s``."""
    start = time.monotonic()
    while (held := slots.held(tenant)) != count:
        elapsed = time.monotonic() - start
        assert elapsed < within_s, f"{held} slots still held after {elapsed:.1f} s"
        time.sleep(0.05)
    return time.monotonic() - start


def test_event_streams_are_capped_per_tenant_and_freed_when_the_client_goes(
    server: ApiServer,
    service_env: dict[str, str],
    places: dict[str, Path],
    toy_dataset_files: dict[str, Path],
) -> None:
    slots = StreamSlots(redis_of(service_env), STREAMS, KEEPALIVE_S)
    with client_of(server, "frank") as frank, ExitStack() as stack:
        datasets = {"train": upload(frank, toy_dataset_files["train"])}
        body = job_body(datasets, places["models"] / "tiny", device="cuda")  # stays queued
        job_id = frank.post("/jobs", json=body).json()["id"]
        streams = [open_stream(frank, job_id, stack) for _ in range(STREAMS)]
        assert [s.status_code for s in streams] == [200] * STREAMS
        lines = streams[0].iter_lines()
        assert next(lines).startswith("id: ")  # the job's first event
        assert slots.held("frank") == STREAMS

        refused = frank.get(f"/jobs/{job_id}/events", headers={"Accept": "text/event-stream"})
        detail = assert_problem(refused, 429)["detail"]
        assert f"{STREAMS} live event streams" in detail
        assert "LPFT_MAX_EVENT_STREAMS_PER_TENANT" in detail
        assert int(refused.headers["retry-after"]) > 0

        # An idle stream sends keep-alives at the interval.
        started = time.monotonic()
        while next(lines) != ": keep-alive":
            assert time.monotonic() - started < 2 * KEEPALIVE_S + 5, "no keep-alive"

        streams[1].close()
        wait_for_slots(slots, "frank", STREAMS - 1, within_s=KEEPALIVE_S)
        replacement = open_stream(frank, job_id, stack)
        assert replacement.status_code == 200
        assert slots.held("frank") == STREAMS

        # A client that simply goes away: its socket closed, no request finished.
        streams[0].close()
        replacement.close()
        wait_for_slots(slots, "frank", 0, within_s=KEEPALIVE_S)
        abandoned = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        abandoned.sendall(
            f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {TENANTS['frank']}\r\n\r\n".encode()
        )
        assert abandoned.recv(65536).startswith(b"HTTP/1.1 200")
        assert slots.held("frank") == 1
        abandoned.close()
        wait_for_slots(slots, "frank", 0, within_s=KEEPALIVE_S)
        assert frank.post(f"/jobs/{job_id}/cancel").status_code == 200


def test_a_slot_its_api_process_no_longer_renews_lapses(service_env: dict[str, str]) -> None:
    # What an API process killed mid-stream leaves: a slot nobody renews or releases.
    client = redis_of(service_env)
    slots = StreamSlots(client, cap=1, lease_s=0.5)
    client.delete(slots.key("lapse"))
    assert slots.acquire("lapse") is not None
    assert slots.acquire("lapse") is None
    time.sleep(0.6)
    assert slots.acquire("lapse") is not None


def test_a_stream_whose_slot_was_lost_takes_it_again_only_under_the_cap(
    service_env: dict[str, str],
) -> None:
    # Redis restarted without its data, or the slot lapsed while its stream stalled on a
    # client that stopped reading: renewing must not keep an uncounted stream alive.
    client = redis_of(service_env)
    slots = StreamSlots(client, cap=1, lease_s=30)
    client.delete(slots.key("lost"))
    first = slots.acquire("lost")
    assert first is not None and slots.renew("lost", first)
    client.delete(slots.key("lost"))  # what a Redis restart leaves
    assert slots.renew("lost", first)  # counted again
    assert slots.acquire("lost") is None
    client.delete(slots.key("lost"))
    second = slots.acquire("lost")
    assert second is not None
    assert not slots.renew("lost", first)  # the cap is taken: that stream must end
    assert slots.held("lost") == 1
