"""Limits and quotas on the real server: refused before the work, with a problem document
that names the field; never a 5xx, a hang or a job that fails later for a reason known now.

Tenant ``carol`` is used only here, so that her quota counts are this module's alone.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.integration.conftest import KEYS, job_body, tenant_client, upload
from tests.integration.test_errors import assert_problem

MIB = 1024 * 1024


@pytest.fixture
def carol(api_url: str) -> Iterator[httpx.Client]:
    with tenant_client(api_url, "carol") as client:
        yield client


def raw_exchange(api_url: str, head: str, body_part: bytes) -> tuple[int, dict]:
    """Send a request head and only the first part of its body, then read the answer: the
    server must answer without waiting for the rest."""
    url = urlparse(api_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body_part)
        received = b""
        while b"\r\n\r\n" not in received or not _complete(received):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    header, _, content = received.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    return status, json.loads(content)


def _complete(received: bytes) -> bool:
    header, _, content = received.partition(b"\r\n\r\n")
    for line in header.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(content) >= int(line.split(b":")[1])
    return False


def test_a_missing_or_wrong_key_is_refused_before_the_body_is_read(api_url: str) -> None:
    for auth in ("", f"Authorization: Bearer {KEYS['alice']}x\r\n"):
        head = (
            "POST /datasets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100 * MIB}\r\n{auth}"
        )
        status, body = raw_exchange(api_url, head, b'{"records": [')
        assert status == 401 and body["code"] == "unauthorized", body


def test_bodies_over_the_limit_get_413_chunked_or_not(api_url: str) -> None:
    auth = f"Authorization: Bearer {KEYS['alice']}\r\n"
    declared = (
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {2 * MIB}\r\n{auth}"
    )
    status, body = raw_exchange(api_url, declared, b"")
    assert status == 413 and body["code"] == "payload_too_large", body
    chunk = b"x" * 65536
    chunked = (
        "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Transfer-Encoding: chunked\r\n{auth}"
    )
    stream = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20))  # 1.25 MiB
    status, body = raw_exchange(api_url, chunked, stream)
    assert status == 413 and "limit of 1048576 bytes" in body["detail"], body


def test_malformed_inputs_name_the_line_or_field(
    carol: httpx.Client, toy_dataset_files: dict[str, Path], tiny_model_dir: Path
) -> None:
    deep = b"[" * 50_000 + b"]" * 50_000
    detail = assert_problem(
        carol.post("/datasets", files={"file": ("d.jsonl", b'{"text": "a", "label": 1}\n' + deep)}),
        422,
    )["detail"]
    assert "d.jsonl, line 2" in detail and "nested" in detail
    body = assert_problem(
        carol.post("/jobs", content=deep, headers={"content-type": "application/json"}),
        422,
        "body",
    )
    assert "nested too deeply" in body["detail"]
    # A long run of escaped quotes costs no more than any other body of its size.
    quotes = b'"' + b'\\"' * 300_000
    assert_problem(
        carol.post("/jobs", content=quotes, headers={"content-type": "application/json"}), 422
    )
    surrogate = b'{"text": "fine", "label": "a"}\n{"text": "bad \\ud800", "label": "b"}\n'
    detail = assert_problem(
        carol.post("/datasets", files={"file": ("s.jsonl", surrogate)}), 422, "text"
    )["detail"]
    assert "s.jsonl, line 2" in detail and "surrogate" in detail
    nul = {"job_id": "job-x", "inputs": [{"text": "a\u0000b"}]}
    assert_problem(carol.post("/predict", json=nul), 422, "inputs[0].text")
    lone = b'{"job_id": "job-x", "inputs": [{"text": "a\\udc00"}]}'
    assert_problem(
        carol.post("/predict", content=lone, headers={"content-type": "application/json"}),
        422,
        "inputs[0].text",
    )
    datasets = {"train": upload(carol, toy_dataset_files["train"])}
    job = job_body(datasets, tiny_model_dir)
    assert_problem(carol.post("/jobs", json={**job, "seed": 2**32}), 422, "seed")
    eval_sets = {f"set{i}": datasets["train"] for i in range(9)}
    assert_problem(carol.post("/jobs", json={**job, "eval_sets": eval_sets}), 422, "eval_sets")
    detail = assert_problem(carol.post("/jobs", json={**job, "model": "/etc"}), 422, "model")
    assert "models directory" in detail["detail"]
    long_name = {"name": "n" * 201, "records": [{"text": "a", "label": "x"}]}
    assert_problem(carol.post("/datasets", json=long_name), 422, "name")
    assert_problem(carol.get("/jobs", params={"after": "job x"}), 422, "query.after")
    assert_problem(carol.get("/jobs", params={"limt": 5}), 422, "query.limt")
    # Ids are ids: a suffix cannot reach the job's other keys in the store.
    assert_problem(carol.get(f"/datasets/{datasets['train']}:x"), 422, "path.dataset_id")
    assert_problem(carol.get("/jobs/job-1:events"), 422, "path.job_id")


def test_quotas_retention_and_deletion(
    carol: httpx.Client, toy_dataset_files: dict[str, Path], tiny_model_dir: Path
) -> None:
    datasets = {"train": upload(carol, toy_dataset_files["train"])}
    # device "cuda" goes to the gpu queue, which no worker of this module consumes: the jobs
    # stay queued and count against carol's cap of 8 unfinished jobs.
    body = job_body(datasets, tiny_model_dir, device="cuda")
    queued = [carol.post("/jobs", json=body) for _ in range(8)]
    assert all(r.status_code == 202 for r in queued), [r.text for r in queued]
    refused = carol.post("/jobs", json=body)
    assert_problem(refused, 429)
    assert int(refused.headers["retry-after"]) > 0

    in_use = carol.delete(f"/datasets/{datasets['train']}")
    assert "use this dataset" in assert_problem(in_use, 409)["detail"]
    first = queued[0].json()["id"]
    assert_problem(carol.delete(f"/jobs/{first}"), 409)
    for response in queued:
        assert carol.post(f"/jobs/{response.json()['id']}/cancel").status_code == 200
    again = carol.post("/jobs", json=body)
    assert again.status_code == 202, again.text  # room again
    assert carol.post(f"/jobs/{again.json()['id']}/cancel").status_code == 200
    assert carol.delete(f"/jobs/{first}").status_code == 204
    assert_problem(carol.get(f"/jobs/{first}"), 404)
    assert_problem(carol.get(f"/jobs/{first}/events"), 404)
