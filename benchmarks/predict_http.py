"""POST /predict over HTTP against an in-process transformers pipeline on the same model, in
one run; and the API's memory with three models loaded.

    make up && python benchmarks/predict_http.py     # trains three quick `lp` jobs first

Against the running stack (``--api-url``, default: the URL `make up` wrote), it trains three
`lp` jobs on 2,000 SST-2 rows (seeds 0, 1, 2; or takes ``--jobs``), then measures with SST-2
test sentences:
- the baseline: the first job's saved model loaded with ``AutoModelForSequenceClassification``
  (``trust_remote_code``) into ``pipeline("text-classification")`` in this process, called
  once per input (what an in-process service does per request) and over the whole list at
  ``batch_size=32``, best of three runs each;
- the service: p50/p99 latency of single-input requests one at a time, and single-input
  throughput with 1, 8 and 32 concurrent clients (the server micro-batches them);
- the API process's resident memory before any model, and its peak (VmHWM) after all three
  models have answered (``--api-pid``, default: the pid `make up` wrote).
The load generator runs on the same 2 cores as the server, so its CPU time counts against
the service; the concurrent runs therefore send pre-built requests over raw keep-alive sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import httpx
from _models import DATA, real_examples
from _results import append
from _timing import best_of
from lpft_client import LpftClient
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
from transformers.utils import logging

STACK = Path(__file__).resolve().parents[1] / "runs" / "stack"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def train_lp_jobs(client: LpftClient, seeds: list[int]) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.jsonl"
        lines = (DATA / "sst2" / "train.jsonl").read_text().splitlines()[:2000]
        train.write_text("\n".join(lines) + "\n")
        dataset = client.upload_dataset(train)["id"]
    jobs = [
        client.create_job("lp", dataset, hyperparameters={"device": "cpu"}, seed=seed)["id"]
        for seed in seeds
    ]
    for job in jobs:
        if client.wait(job)["status"] != "succeeded":
            raise RuntimeError(f"job {job} did not succeed")
    return jobs


def pipeline_for(client: LpftClient, job: str, directory: Path):
    archive = client.download_artifacts(job, directory / "model.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(directory / "model", filter="data")
    model_dir = next(p.parent for p in (directory / "model").rglob("config.json"))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    return pipeline("text-classification", model=model.eval(), tokenizer=tokenizer, device="cpu")


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
    parser.add_argument("--api-pid", type=int, default=None)
    parser.add_argument("--jobs", nargs=3, default=None, help="three succeeded finetune jobs")
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    logging.set_verbosity_error()
    url = args.api_url or (STACK / "url").read_text().strip()
    pid = args.api_pid or int((STACK / "api.pid").read_text())
    texts = [e.text for e in real_examples("sst2", "test")][: args.requests]
    client = LpftClient(url)
    rss_start = memory_mb(pid, "VmRSS")
    jobs = args.jobs or train_lp_jobs(client, [0, 1, 2])

    with tempfile.TemporaryDirectory() as tmp:
        classify = pipeline_for(client, jobs[0], Path(tmp))
        classify(texts[:8])  # warm-up
        # best of three runs each, in the baseline's favour
        one_by_one = len(texts) / best_of(3, lambda: [classify(text) for text in texts])[0]
        batched = len(texts) / best_of(3, lambda: classify(texts, batch_size=32))[0]

    for job in jobs:  # load all three models; the first stays the measured one
        client.predict(job, [{"text": "warm up"}])
    client.predict(jobs[0], [{"text": "warm up"}])
    latencies = []
    with httpx.Client(base_url=url, timeout=120) as http:
        for text in texts:
            started = time.perf_counter()
            body = {"job_id": jobs[0], "inputs": [{"text": text}]}
            http.post("/predict", json=body).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    rates = {c: asyncio.run(http_throughput(url, jobs[0], texts, c)) for c in (1, 8, 32)}
    rss_peak = memory_mb(pid, "VmHWM")

    rows = [
        "| measurement | inputs/s | vs pipeline per input | vs pipeline batch 32 |",
        "|---|---|---|---|",
        f"| in-process pipeline, one input per call | {one_by_one:.0f} | 1.00 | – |",
        f"| in-process pipeline, list at batch_size=32 | {batched:.0f} | – | 1.00 |",
    ]
    for clients, rate in rates.items():
        rows.append(
            f"| POST /predict, 1 input per request, {clients} concurrent clients | {rate:.0f} | "
            f"{rate / one_by_one:.2f} | {rate / batched:.2f} |"
        )
    rows += [
        "",
        "| measurement | value |",
        "|---|---|",
        f"| POST /predict, 1 input, sequential: p50 latency | "
        f"{statistics.median(latencies):.1f} ms |",
        f"| POST /predict, 1 input, sequential: p99 latency | {percentile(latencies, 99):.1f} ms |",
        f"| API resident memory before loading models | {rss_start:.0f} MB |",
        f"| API peak resident memory, three models loaded | {rss_peak:.0f} MB |",
    ]
    table = "\n".join(rows)
    print(table)
    append(
        "POST /predict over HTTP vs an in-process pipeline (default model, CPU)",
        table,
        f"{len(texts)} SST-2 test sentences per measurement; `lp` models of the default "
        "all-MiniLM-L6-v2 (22.7M parameters each); the load generator runs on the same 2 "
        "cores (sequential latency: httpx; concurrent runs: raw keep-alive sockets).",
    )


if __name__ == "__main__":
    main()
