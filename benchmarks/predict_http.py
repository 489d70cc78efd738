"""POST /predict over HTTP with each predict backend, against an in-process transformers
pipeline on the same model, in one run; and each API process's memory with three models loaded.

    make up && python benchmarks/predict_http.py     # trains three quick `lp` jobs first

The running stack (``--api-url``, default: the URL `make up` wrote) trains three `lp` jobs on
2,000 SST-2 train rows with SST-2 validation as their test set (seeds 0, 1, 2; or takes
``--jobs``). Then, with SST-2 test sentences:
- the baseline: the first job's saved model loaded with ``AutoModelForSequenceClassification``
  (``trust_remote_code``) into ``pipeline("text-classification")`` in this process, called
  once per input and over the whole list at ``batch_size=32``, best of three runs each;
- per backend (``torch``, ``onnx``, ``onnx`` with int8), a fresh API process of its own on the
  stack's Redis and artifacts: the first /predict of each model (the onnx graphs are built
  then), p50/p99 latency of single-input requests one at a time, single-input throughput with
  1, 8 and 32 concurrent clients (the server micro-batches them), and the process's resident
  memory before any model and at its peak (VmHWM) after all three have answered;
- int8's own report (accuracy, ECE and probability shift against fp32 on the job's test set),
  as /predict returns it.
The load generator runs on the same 2 cores as the server, so its CPU time counts against
the service; the concurrent runs therefore send pre-built requests over raw keep-alive sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from _models import DATA, real_examples
from _results import append
from _timing import best_of
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
from transformers.utils import logging

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "runs" / "stack"
BACKENDS = {
    "torch": {"LPFT_PREDICT_BACKEND": "torch"},
    "onnx": {"LPFT_PREDICT_BACKEND": "onnx"},
    "onnx int8": {"LPFT_PREDICT_BACKEND": "onnx", "LPFT_PREDICT_PRECISION": "int8"},
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def upload(http: httpx.Client, path: Path) -> str:
    with path.open("rb") as handle:
        response = http.post("/datasets", files={"file": (path.name, handle)})
    response.raise_for_status()
    return response.json()["id"]


def train_lp_jobs(http: httpx.Client, seeds: list[int]) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.jsonl"
        lines = (DATA / "sst2" / "train.jsonl").read_text().splitlines()[:2000]
        train.write_text("\n".join(lines) + "\n")
        dataset = {
            "train": upload(http, train),
            "test": upload(http, DATA / "sst2" / "validation.jsonl"),
        }
    jobs = []
    for seed in seeds:
        body = {"method": "lp", "dataset": dataset, "hyperparameters": {"device": "cpu"}}
        response = http.post("/jobs", json={**body, "seed": seed})
        response.raise_for_status()
        jobs.append(response.json()["id"])
    for job in jobs:
        while (status := http.get(f"/jobs/{job}").json()["status"]) in ("queued", "running"):
            time.sleep(2)
        if status != "succeeded":
            raise RuntimeError(f"job {job} is {status}")
    return jobs


def pipeline_for(http: httpx.Client, job: str, directory: Path):
    archive = directory / "model.tar.gz"
    with http.stream("GET", f"/jobs/{job}/artifacts") as response:
        response.raise_for_status()
        with archive.open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
    with tarfile.open(archive) as tar:
        tar.extractall(directory / "model", filter="data")
    model_dir = next(p.parent for p in (directory / "model").rglob("config.json"))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    return pipeline("text-classification", model=model.eval(), tokenizer=tokenizer, device="cpu")


@contextmanager
def api_process(backend_env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """A fresh API process on the stack's Redis and artifacts, in open mode on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "LPFT_ARTIFACTS_DIR": os.environ.get("LPFT_ARTIFACTS_DIR", str(ROOT / "runs/service")),
        "LPFT_OPEN_MODE": "true",
        # one tenant sends every request here: lift the per-tenant cap on requests in flight
        # (a fairness limit, measured by predict_fairness.py) above the 32 clients
        "LPFT_PREDICT_CONCURRENCY_PER_TENANT": "64",
        **backend_env,
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "lpft_api.main:create_app"]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if server.poll() is not None:
                raise RuntimeError(f"the API exited with {server.returncode}")
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure_backend(url: str, pid: int, jobs: list[str], texts: list[str]) -> dict:
    """Latency, throughput and memory of one API process (see the module docstring)."""
    figures: dict = {"rss_start": memory_mb(pid, "VmRSS")}
    with httpx.Client(base_url=url, timeout=600) as http:
        started = time.perf_counter()
        first = http.post("/predict", json={"job_id": jobs[0], "inputs": [{"text": "warm"}]})
        first.raise_for_status()
        figures["first_s"] = time.perf_counter() - started
        figures["quantization"] = first.json().get("quantization")
        for job in jobs[1:] + jobs[:1]:  # all three loaded; the first stays the measured one
            http.post("/predict", json={"job_id": job, "inputs": [{"text": "warm"}]})
        latencies = []
        for text in texts:
            started = time.perf_counter()
            body = {"job_id": jobs[0], "inputs": [{"text": text}]}
            http.post("/predict", json=body).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    figures["p50"] = statistics.median(latencies)
    figures["p99"] = percentile(latencies, 99)
    figures["rates"] = {c: asyncio.run(http_throughput(url, jobs[0], texts, c)) for c in (1, 8, 32)}
    figures["rss_peak"] = memory_mb(pid, "VmHWM")
    return figures


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
    """One keep-alive HTTP/1.1 request whose answer must be 200."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"POST /predict answered {status.decode()}: {body[:300]!r}")


async def http_throughput(url: str, job: str, texts: list[str], clients: int) -> float:
    """Single-input requests from ``clients`` keep-alive connections. The requests are built
    before the clock starts and sent over raw sockets: an HTTP client library costs about as
    much CPU per request as the server does, and here it would run on the server's cores."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    requests = []
    for text in texts:
        body = json.dumps({"job_id": job, "inputs": [{"text": text}]}).encode()
        requests.append(
            b"POST /predict HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body)
        )
    requests.reverse()
    connections = [await asyncio.open_connection(host, port) for _ in range(clients)]

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while requests:
            await post(reader, writer, requests.pop())

    started = time.perf_counter()
    await asyncio.gather(*(client(r, w) for r, w in connections))
    elapsed = time.perf_counter() - started
    for _, writer in connections:
        writer.close()
    return len(texts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-url", default=None)
    parser.add_argument("--jobs", nargs=3, default=None, help="three succeeded finetune jobs")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    logging.set_verbosity_error()
    url = args.api_url or (STACK / "url").read_text().strip()
    texts = [e.text for e in real_examples("sst2", "test")][: args.requests]
    with httpx.Client(base_url=url, timeout=600) as http:
        jobs = args.jobs or train_lp_jobs(http, [0, 1, 2])
        with tempfile.TemporaryDirectory() as tmp:
            classify = pipeline_for(http, jobs[0], Path(tmp))
            classify(texts[:8])  # warm-up
            # best of three runs each, in the baseline's favour
            one_by_one = len(texts) / best_of(3, lambda: [classify(text) for text in texts])[0]
            batched = len(texts) / best_of(3, lambda: classify(texts, batch_size=32))[0]

    results = {}
    for name, env in BACKENDS.items():
        with api_process(env) as (backend_url, pid):
            results[name] = measure_backend(backend_url, pid, jobs, texts)
        print(name, {k: v for k, v in results[name].items() if k != "quantization"})

    rows = [
        "| served by | 1 client | 8 clients | 32 clients | 32 clients vs pipeline batch 32 "
        "| p50 / p99, 1 input | first /predict | RSS before → peak, 3 models |",
        "|---|---|---|---|---|---|---|---|",
        f"| in-process pipeline, one input per call | {one_by_one:.0f} | – | – | – | – | – | – |",
        f"| in-process pipeline, list at batch_size=32 | – | – | {batched:.0f} | 1.00 "
        "| – | – | – |",
    ]
    for name, f in results.items():
        rates = f["rates"]
        rows.append(
            f"| POST /predict, {name} backend | {rates[1]:.0f} | {rates[8]:.0f} | {rates[32]:.0f} "
            f"| {rates[32] / batched:.2f} | {f['p50']:.1f} / {f['p99']:.1f} ms "
            f"| {f['first_s']:.1f} s | {f['rss_start']:.0f} → {f['rss_peak']:.0f} MB |"
        )
    report = results["onnx int8"]["quantization"] or {}
    if report.get("rows"):
        rows += [
            "",
            "| int8 against fp32 (onnx), job's test set | fp32 | int8 |",
            "|---|---|---|",
            f"| accuracy | {report['accuracy_fp32']:.4f} | {report['accuracy_int8']:.4f} |",
            f"| ECE (at the fitted T) | {report['ece_fp32']:.4f} | {report['ece_int8']:.4f} |",
            f"| label agreement | – | {report['label_agreement']:.4f} |",
            f"| probability shift, mean / max | – | {report['probability_shift_mean']:.4f} / "
            f"{report['probability_shift_max']:.4f} |",
        ]
    table = "\n".join(rows)
    print(table)
    append(
        "POST /predict per backend vs an in-process pipeline (default model, CPU)",
        table,
        f"Inputs/s of single-input requests; {len(texts)} SST-2 test sentences per measurement; "
        "`lp` models of the default all-MiniLM-L6-v2 (22.7M parameters each), trained on 2,000 "
        f"SST-2 rows with SST-2 validation ({report.get('rows', '?')} rows) as their test set. "
        "Each backend in a fresh API process; `first /predict` includes loading the model and, "
        "for onnx, building its graph (and for int8, quantising and measuring it). The load "
        "generator runs on the same 2 cores (sequential latency: httpx; concurrent runs: raw "
        "keep-alive sockets).",
    )


if __name__ == "__main__":
    main()
