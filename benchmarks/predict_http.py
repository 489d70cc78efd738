"""POST /predict over HTTP on default settings and with one serving lever changed at a time,
against an in-process transformers pipeline on the same model and texts, in one run; and each
API process's memory with three models loaded.

    make up && flock /tmp/lpft-heavy.lock python benchmarks/predict_http.py   # trains 3 jobs

The running stack (``--api-url``, default: the URL `make up` wrote) trains three `lp` jobs on
2,000 SST-2 train rows with SST-2 validation as their test set (seeds 0, 1, 2; or takes
``--jobs``). The texts are ``--requests`` Rotten Tomatoes critic snippets, short and long
interleaved (``_models.mixed_reviews``). Then:
- the baselines, in this process with ``--threads`` torch and onnxruntime threads: the first
  job's saved model loaded with ``AutoModelForSequenceClassification`` (``trust_remote_code``)
  into ``pipeline("text-classification")``, called once per input (p50 of one call) and over
  the whole list at ``batch_size=32``, best of three runs each; and the same model's ONNX
  export (``GET /jobs/{id}/export``) in an onnxruntime session at batch 32, tokenised by the
  fast tokenizer per batch, what optimum's ``ORTModelForSequenceClassification`` runs (optimum
  itself does not install beside transformers 5: optimum-onnx needs transformers<4.58);
- per configuration (``CONFIGS``: the defaults with no ``LPFT_*`` variable set, then one
  lever at a time), a fresh API process on the stack's Redis and artifacts: the first
  /predict of each model (graphs are built then, once per model for the whole run), p50/p99
  latency of single-input requests one at a time, single-input throughput with 1, 8 and 32
  concurrent clients (the server micro-batches them; a 429 is retried after its Retry-After
  and counted), the largest probability difference from the torch fp32 configuration's on the
  first 64 texts, and the resident memory of each serving process before any model and at its
  peak (VmHWM) after all three have answered.
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
import numpy as np
import torch
from _models import DATA, mixed_reviews
from _results import append
from _timing import best_of
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
from transformers.utils import logging

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "runs" / "stack"
#: name -> (environment, uvicorn workers); "defaults" sets nothing, each other row one lever
CONFIGS: dict[str, tuple[dict[str, str], int]] = {
    "defaults": ({}, 1),
    "torch backend (the old default)": ({"LPFT_PREDICT_BACKEND": "torch"}, 1),
    "4 intra-op threads on 2 CPUs (a host-core count)": ({"LPFT_PREDICT_THREADS": "4"}, 1),
    "2 uvicorn workers": ({}, 2),
    "onnx int8": ({"LPFT_PREDICT_PRECISION": "int8"}, 1),
}
REFERENCE = "torch backend (the old default)"
COMPARED = 64


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


def download(http: httpx.Client, route: str, archive: Path, **params: str) -> Path:
    """The archive at ``route``, unpacked beside ``archive``; asked again while it is built
    (202, Retry-After)."""
    while True:
        with http.stream("GET", route, params=params) as response:
            response.raise_for_status()
            if response.status_code == 200:
                with archive.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                break
            retry_after = float(response.headers.get("Retry-After", "1"))
        time.sleep(retry_after)
    folder = archive.with_suffix("").with_suffix("")
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return folder


def pipeline_for(http: httpx.Client, job: str, directory: Path):
    download(http, f"/jobs/{job}/artifacts", directory / "model.tar.gz")
    model_dir = next(p.parent for p in (directory / "model").rglob("config.json"))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    return pipeline("text-classification", model=model.eval(), tokenizer=tokenizer, device="cpu")


def onnx_session_for(http: httpx.Client, job: str, directory: Path, threads: int):
    """The job's ONNX export (calibrated ``probabilities`` inside) in an onnxruntime session on
    the CPU, and its tokenizer."""
    import onnxruntime

    folder = download(http, f"/jobs/{job}/export", directory / "export.tar.gz", format="onnx")
    graph = next(folder.rglob("model.onnx"))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    return session, AutoTokenizer.from_pretrained(graph.parent)


def onnx_batched(session, tokenizer, texts: list[str], batch_size: int = 32) -> None:
    names = {node.name for node in session.get_inputs()}
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=128,
            return_tensors="np",
        )
        session.run(["probabilities"], {k: v for k, v in encoded.items() if k in names})


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@contextmanager
def api_process(env_changes: dict[str, str], workers: int) -> Iterator[tuple[str, list[int]]]:
    """A fresh API process (or ``workers`` of them under one uvicorn) on the stack's Redis and
    artifacts, in open mode on loopback; the pids of the processes that serve."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LPFT_")},
        "LPFT_REDIS_URL": os.environ.get("LPFT_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "LPFT_ARTIFACTS_DIR": os.environ.get("LPFT_ARTIFACTS_DIR", str(ROOT / "runs/service")),
        "LPFT_OPEN_MODE": "true",
        **env_changes,
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "lpft_api.main:create_app"]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        + (["--workers", str(workers)] if workers > 1 else []),
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
        time.sleep(2 if workers > 1 else 0)  # every worker up, not only the first
        yield url, children(server.pid) if workers > 1 else [server.pid]
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure(url: str, pids: list[int], jobs: list[str], texts: list[str]) -> dict:
    """Latency, throughput, probabilities and memory of one configuration (see the module
    docstring)."""
    figures: dict = {"rss_start": [memory_mb(pid, "VmRSS") for pid in pids]}
    with httpx.Client(base_url=url, timeout=600) as http:
        figures["serving"] = http.get("/readyz").json().get("serving")
        started = time.perf_counter()
        first = http.post("/predict", json={"job_id": jobs[0], "inputs": [{"text": "warm"}]})
        first.raise_for_status()
        figures["first_s"] = time.perf_counter() - started
        figures["quantization"] = first.json().get("quantization")
        # every process loads all three (with several workers a request lands on any one)
        for _ in range(4 * len(pids)):
            for job in jobs[1:] + jobs[:1]:  # all three loaded; the first stays the measured one
                http.post("/predict", json={"job_id": job, "inputs": [{"text": "warm"}]})
        body = {"job_id": jobs[0], "inputs": [{"text": t} for t in texts[:COMPARED]]}
        answer = http.post("/predict", json=body)
        answer.raise_for_status()
        figures["probabilities"] = [
            [p["probabilities"][k] for k in sorted(p["probabilities"])]
            for p in answer.json()["predictions"]
        ]
        latencies = []
        for text in texts:
            started = time.perf_counter()
            body = {"job_id": jobs[0], "inputs": [{"text": text}]}
            http.post("/predict", json=body).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    figures["p50"] = statistics.median(latencies)
    figures["p99"] = percentile(latencies, 99)
    runs = {c: asyncio.run(http_throughput(url, jobs[0], texts, c)) for c in (1, 8, 32)}
    figures["rates"] = {c: rate for c, (rate, _) in runs.items()}
    figures["refused"] = sum(refused for _, refused in runs.values())
    figures["rss_peak"] = [memory_mb(pid, "VmHWM") for pid in pids]
    return figures


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """One keep-alive HTTP/1.1 request, sent again after Retry-After while it is refused with
    a 429; the answer must be 200. Returns the 429s it got."""
    refused = 0
    while True:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        headers = dict(
            line.lower().split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line
        )
        body = await reader.readexactly(int(headers[b"content-length"]))
        if status == b"200":
            return refused
        if status != b"429":
            raise RuntimeError(f"POST /predict answered {status.decode()}: {body[:300]!r}")
        refused += 1
        await asyncio.sleep(float(headers.get(b"retry-after", b"0.05")))


async def http_throughput(url: str, job: str, texts: list[str], clients: int) -> tuple[float, int]:
    """Single-input requests from ``clients`` keep-alive connections: inputs/s and 429s. The
    requests are built before the clock starts and sent over raw sockets: an HTTP client
    library costs about as much CPU per request as the server does, and here it would run on
    the server's cores."""
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
    refused = 0

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal refused
        while requests:
            refused += await post(reader, writer, requests.pop())

    started = time.perf_counter()
    await asyncio.gather(*(client(r, w) for r, w in connections))
    elapsed = time.perf_counter() - started
    for _, writer in connections:
        writer.close()
    return len(texts) / elapsed, refused


def baselines(http: httpx.Client, job: str, texts: list[str], threads: int) -> dict[str, float]:
    """The in-process figures: pipeline one call per input (p50 ms and inputs/s), pipeline at
    batch 32, onnxruntime on the export at batch 32 (inputs/s), best of three each."""
    with tempfile.TemporaryDirectory() as tmp:
        classify = pipeline_for(http, job, Path(tmp))
        classify(texts[:8])  # warm-up
        single = []
        for text in texts:
            started = time.perf_counter()
            classify(text)
            single.append((time.perf_counter() - started) * 1000)
        batched = len(texts) / best_of(3, lambda: classify(texts, batch_size=32))[0]
        session, tokenizer = onnx_session_for(http, job, Path(tmp), threads)
        onnx_batched(session, tokenizer, texts[:32])
        onnx = len(texts) / best_of(3, lambda: onnx_batched(session, tokenizer, texts))[0]
    return {
        "single_p50": statistics.median(single),
        "single_rate": 1000 * len(single) / sum(single),
        "batched": batched,
        "onnx": onnx,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-url", default=None)
    parser.add_argument("--jobs", nargs=3, default=None, help="three succeeded finetune jobs")
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2, help="the in-process baselines' threads")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    url = args.api_url or (STACK / "url").read_text().strip()
    texts = mixed_reviews(args.requests)
    with httpx.Client(base_url=url, timeout=600) as http:
        jobs = args.jobs or train_lp_jobs(http, [0, 1, 2])
        base = baselines(http, jobs[0], texts, args.threads)
    print(base)

    results = {}
    for name in args.configs:
        env, workers = CONFIGS[name]
        with api_process(env, workers) as (config_url, pids):
            results[name] = measure(config_url, pids, jobs, texts)
        print(
            name,
            {k: v for k, v in results[name].items() if k not in ("quantization", "probabilities")},
        )
    reference = np.array(results[REFERENCE]["probabilities"]) if REFERENCE in results else None
    batched = base["batched"]
    rows = [
        "| served by | 1 client | 8 clients | 32 clients | 32 clients vs pipeline batch 32 "
        "| vs onnxruntime batch 32 | p50 / p99, 1 input | p50 vs pipeline's own call "
        "| max prob. diff vs torch | 429s | first /predict | RSS before → peak, 3 models |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| in-process pipeline, one input per call | {base['single_rate']:.0f} | – | – | – | – "
        f"| {base['single_p50']:.1f} ms (p50) | 1.00 | – | – | – | – |",
        f"| in-process pipeline, list at batch_size=32 | – | – | {batched:.0f} | 1.00 | – | – "
        "| – | – | – | – | – |",
        f"| in-process onnxruntime on the export, batch 32 | – | – | {base['onnx']:.0f} "
        f"| {base['onnx'] / batched:.2f} | 1.00 | – | – | – | – | – | – |",
    ]
    for name, f in results.items():
        rates = f["rates"]
        diff = (
            f"{np.abs(np.array(f['probabilities']) - reference).max():.1e}"
            if reference is not None
            else "–"
        )
        memory = ", ".join(
            f"{a:.0f} → {b:.0f}" for a, b in zip(f["rss_start"], f["rss_peak"], strict=True)
        )
        rows.append(
            f"| POST /predict, {name} | {rates[1]:.0f} | {rates[8]:.0f} | {rates[32]:.0f} "
            f"| {rates[32] / batched:.2f} | {rates[32] / base['onnx']:.2f} "
            f"| {f['p50']:.1f} / {f['p99']:.1f} ms | {f['p50'] / base['single_p50']:.2f} "
            f"| {diff} | {f['refused']} | {f['first_s']:.1f} s | {memory} MB |"
        )
    serving = [f"- {name}: {f['serving']}" for name, f in results.items()]
    report = (results.get("onnx int8") or {}).get("quantization") or {}
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
    table = "\n".join(
        rows + ["", "What each configuration's /readyz said it serves with:", *serving]
    )
    print(table)
    words = [len(t.split()) for t in texts]
    append(
        "POST /predict on defaults and one lever at a time vs in-process baselines (default "
        "model, CPU, mixed-length reviews)",
        table,
        f"Inputs/s of single-input requests; {len(texts)} Rotten Tomatoes critic snippets, short "
        f"and long interleaved (median {statistics.median(words):.0f} words, longest "
        f"{max(words)}), per measurement; `lp` models of the default all-MiniLM-L6-v2, trained "
        "on 2,000 SST-2 rows. The in-process baselines run with "
        f"{args.threads} torch / onnxruntime intra-op threads; the API's defaults resolve to "
        "the CPUs the process may use (2 here). Each configuration in a fresh API process with "
        "no LPFT_* variable but the ones its row names (and the stack's Redis and artifacts); "
        "`first /predict` includes loading the model and building its graphs when no earlier "
        "row built them. The load generator runs on the same 2 cores (sequential latency: "
        "httpx; concurrent runs: raw keep-alive sockets).",
    )


if __name__ == "__main__":
    main()
