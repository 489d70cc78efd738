"""Latency and throughput of POST /predict over HTTP against a running lpft service.

    python benchmarks/predict_http.py --api-url http://127.0.0.1:8000 --job JOB_ID

Measures, in one run: p50/p99 latency of single-input requests sent one at a time; throughput
(inputs/s) of 32-input requests; and single-input throughput with 1, 8 and 32 concurrent
clients (requests are micro-batched server-side). Appends the table to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx
from _results import append

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def texts(n: int) -> list[str]:
    lines = (SST2 / "test.jsonl").read_text().splitlines()
    return [json.loads(lines[i % len(lines)])["text"] for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def concurrent_throughput(
    url: str, job: str, clients: int, total: int, headers: dict[str, str]
) -> float:
    sample = texts(total)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        queue = list(range(total))

        async def client() -> None:
            while queue:
                i = queue.pop()
                body = {"job_id": job, "inputs": [{"text": sample[i]}]}
                (await http.post("/predict", json=body)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return total / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--api-key")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    with httpx.Client(base_url=args.api_url, headers=headers, timeout=120) as http:
        sample = texts(max(args.requests, 32 * 20))
        warm = {"job_id": args.job, "inputs": [{"text": "warm up"}]}
        for _ in range(5):
            http.post("/predict", json=warm).raise_for_status()
        latencies = []
        for i in range(args.requests):
            body = {"job_id": args.job, "inputs": [{"text": sample[i]}]}
            started = time.perf_counter()
            http.post("/predict", json=body).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
        batch_started = time.perf_counter()
        for i in range(20):
            inputs = [{"text": t} for t in sample[i * 32 : (i + 1) * 32]]
            http.post("/predict", json={"job_id": args.job, "inputs": inputs}).raise_for_status()
        batch_rate = 20 * 32 / (time.perf_counter() - batch_started)
    rows = [
        "| measurement | value |",
        "|---|---|",
        f"| single input, sequential: p50 latency | {statistics.median(latencies):.1f} ms |",
        f"| single input, sequential: p99 latency | {percentile(latencies, 99):.1f} ms |",
        f"| 32 inputs per request, sequential: throughput | {batch_rate:.0f} inputs/s |",
    ]
    for clients in (1, 8, 32):
        rate = asyncio.run(concurrent_throughput(args.api_url, args.job, clients, 256, headers))
        rows.append(
            f"| single input, {clients} concurrent clients: throughput | {rate:.0f} inputs/s |"
        )
    table = "\n".join(rows)
    print(table)
    append(
        "POST /predict over HTTP (default model, CPU)",
        table,
        f"{args.requests} sequential single-input requests; SST-2 test sentences.",
    )


if __name__ == "__main__":
    main()
