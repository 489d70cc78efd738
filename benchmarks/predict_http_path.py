"""Where POST /predict's time goes over HTTP, and the HTTP-side levers one at a time (issue 25).

    flock /tmp/lpft-heavy.lock python benchmarks/predict_http_path.py --jobs JOB
    PYTHONPATH=<worktree>/services/api python benchmarks/predict_http_path.py ...  # another tree

Per configuration (``CONFIGS``: the defaults, then one lever a row), a fresh API process on the
stack's Redis and artifacts (``predict_http.api_process``), measured on ``--requests`` mixed
Rotten Tomatoes snippets (``_models.mixed_reviews``):
- p50 / p99 of one single-input request at a time (httpx);
- 32 keep-alive clients of single-input requests (raw sockets, ``--runs`` runs, median), and
  meanwhile a 33rd client's one-input requests one at a time: its p50, the wait of a small
  request beside its own tenant's 32 clients (about two passes: what the max batch trades);
- CPU per input during the 32-client runs, from /proc: the event loop's thread (HTTP, routing,
  validation, the batcher, logging), every other thread of the API process together (the model
  threads: tokenising and the forward passes), and the load generator's.
The load generator runs on the same cores as the server, as in the issue's rules.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from pathlib import Path

import httpx
from _models import mixed_reviews
from _results import append
from predict_http import api_process, http_throughput, percentile

#: name -> the API's environment changes (uvicorn reads UVICORN_* as its options)
CONFIGS: dict[str, dict[str, str]] = {
    "defaults": {},
    "asyncio loop and h11 (uvicorn without [standard])": {
        "UVICORN_LOOP": "asyncio",
        "UVICORN_HTTP": "h11",
    },
    "LPFT_LOG_LEVEL=WARNING (no line per request)": {"LPFT_LOG_LEVEL": "WARNING"},
    "LPFT_PREDICT_MAX_BATCH=32": {"LPFT_PREDICT_MAX_BATCH": "32"},
}
CLIENTS = 32


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of ``pid``'s main thread (the event loop) and of its other threads."""
    tick = os.sysconf("SC_CLK_TCK")
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if task.name == str(pid):
            main += seconds
        else:
            other += seconds
    return main, other


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def beside(url: str, job: str, texts: list[str]) -> tuple[float, list[float]]:
    """Inputs/s of ``CLIENTS`` clients, and a further client's one-input latencies (ms)
    meanwhile."""
    load = asyncio.create_task(http_throughput(url, job, texts, CLIENTS))
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        await asyncio.sleep(0.2)  # the clients are connected and sending
        while not load.done():
            started = time.perf_counter()
            answer = await http.post("/predict", json={"job_id": job, "inputs": [{"text": "ok"}]})
            answer.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    rate, refused = await load
    if refused:
        raise RuntimeError(f"{refused} answers of 429")
    return rate, latencies


def measure(url: str, pid: int, job: str, texts: list[str], runs: int) -> dict[str, float]:
    with httpx.Client(base_url=url, timeout=600) as http:
        for _ in range(20):
            http.post("/predict", json={"job_id": job, "inputs": [{"text": "warm"}]})
        lone = []
        for text in texts:
            started = time.perf_counter()
            answer = http.post("/predict", json={"job_id": job, "inputs": [{"text": text}]})
            answer.raise_for_status()
            lone.append((time.perf_counter() - started) * 1000)
    rates, waits, loop_cpu, model_cpu, client_cpu, inputs = [], [], 0.0, 0.0, 0.0, 0
    for _ in range(runs):
        (main0, other0), own0 = thread_cpu(pid), own_cpu()
        rate, latencies = asyncio.run(beside(url, job, texts))
        (main1, other1), own1 = thread_cpu(pid), own_cpu()
        rates.append(rate)
        waits += latencies
        loop_cpu, model_cpu = loop_cpu + main1 - main0, model_cpu + other1 - other0
        client_cpu += own1 - own0
        inputs += len(texts) + len(latencies)
    return {
        "p50": statistics.median(lone),
        "p99": percentile(lone, 99),
        "rate": statistics.median(rates),
        "rates": rates,
        "beside_p50": statistics.median(waits),
        "loop_ms": 1000 * loop_cpu / inputs,
        "model_ms": 1000 * model_cpu / inputs,
        "client_ms": 1000 * client_cpu / inputs,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", nargs=1, required=True, help="a succeeded finetune job")
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--label", default="", help="what tree this is, for the table")
    args = parser.parse_args()
    texts = mixed_reviews(args.requests)
    rows = [
        "| served by | lone p50 / p99 | 32 clients, inputs/s (median; runs) | one input beside "
        "them, p50 | CPU per input: event loop / model threads / load generator |",
        "|---|---|---|---|---|",
    ]
    for name in args.configs:
        with api_process(CONFIGS[name], 1) as (url, pids):
            f = measure(url, pids[0], args.jobs[0], texts, args.runs)
        print(name, f, flush=True)
        runs = ", ".join(f"{r:.0f}" for r in f["rates"])
        rows.append(
            f"| {args.label}{name} | {f['p50']:.2f} / {f['p99']:.1f} ms | {f['rate']:.0f} "
            f"({runs}) | {f['beside_p50']:.0f} ms | {f['loop_ms']:.2f} / {f['model_ms']:.2f} / "
            f"{f['client_ms']:.2f} ms |"
        )
    table = "\n".join(rows)
    print(table)
    append(
        "Issue 25: the HTTP path of POST /predict, lever by lever (predict_http_path.py)",
        table,
        f"Single-input requests, {len(texts)} mixed-length Rotten Tomatoes snippets per run, one "
        "tenant (open mode), a fresh API process per row with the default onnx backend and 2 "
        "intra-op threads (the CPUs this process may use), only the row's variables changed. "
        "CPU per input from /proc over the 32-client runs (the 33rd client's inputs counted).",
    )


if __name__ == "__main__":
    main()
