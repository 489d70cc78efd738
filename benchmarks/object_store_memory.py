"""Issue 24's memory bound: a 1 GB artifact written to and read back from the object store
raises the client process's peak memory by less than 200 MB.

    python benchmarks/object_store_memory.py              # 1024 MB, S3 (moto) and local
    python benchmarks/object_store_memory.py --size-mb 256

For each backend, in a child process of its own so that its peak memory is its own: publish a
model directory holding one file of the size (hashed, then a streamed multipart upload, then
the manifest) and fetch it back (a streamed download checked against the manifest's SHA-256).
The figure is the peak RSS during those two steps over the RSS once the store is built (the
kernel's high-water mark, reset first where /proc allows it, else getrusage's). moto keeps the
objects in its own memory, in its own process: that memory is not the client's and is not
counted. Throughput over moto is bounded by moto; a plain file copy of the same file is the
baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _moto import aws_environment, running_moto
from _results import append

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "contract"))

from lpft_contract.objects import LocalObjectStore, S3ObjectStore, fetch, publish  # noqa: E402

BUCKET = "bench"
CHUNK = 8 * 1024 * 1024
TARGET_MB = 200
BACKENDS = ("s3", "local")


def status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MB, or None without /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float:
    return status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(backend: str, source: Path, scratch: Path) -> dict:
    """One backend's figures, in this (child) process."""
    store = (
        S3ObjectStore(BUCKET, "memory") if backend == "s3" else LocalObjectStore(scratch / "store")
    )
    store.check()
    reset = reset_peak()
    before = status_mb("VmRSS") or peak_mb()
    started = time.perf_counter()
    manifest = publish(store, "jobs/job-bench/model", source)
    write_s = time.perf_counter() - started
    destination = scratch / f"fetched-{backend}"
    started = time.perf_counter()
    fetch(store, "jobs/job-bench/model", destination)
    read_s = time.perf_counter() - started
    rise = peak_mb() - before
    shutil.rmtree(destination)
    store.delete_prefix("jobs/job-bench")
    return {
        "write_s": write_s,
        "read_s": read_s,
        "rss_before_mb": before,
        "rise_mb": rise,
        "peak_reset": reset,
        "bytes": manifest.total_bytes,
    }


def child(backend: str, source: Path, scratch: Path, env: dict[str, str]) -> dict:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", backend, "--source", str(source)]
        + ["--scratch", str(scratch)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if completed.returncode:
        raise RuntimeError(completed.stderr[-3000:])
    return json.loads(completed.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--child", choices=BACKENDS)
    parser.add_argument("--source", type=Path)
    parser.add_argument("--scratch", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.source, args.scratch)))
        return

    with tempfile.TemporaryDirectory(prefix="lpft-store-memory-") as scratch_name:
        scratch = Path(scratch_name)
        source = scratch / "model"
        source.mkdir()
        artifact = source / "model.safetensors"
        with artifact.open("wb") as target:
            for _ in range(args.size_mb * 1024 * 1024 // CHUNK):
                target.write(os.urandom(CHUNK))
        (source / "config.json").write_text('{"labels": ["neg", "pos"]}')
        started = time.perf_counter()
        shutil.copyfile(artifact, scratch / "copy.bin")
        copy_s = time.perf_counter() - started
        (scratch / "copy.bin").unlink()

        results = {}
        with running_moto(scratch / "moto.log") as endpoint:
            import boto3

            boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id="x",
                aws_secret_access_key="x",
                region_name="us-east-1",
            ).create_bucket(Bucket=BUCKET)
            base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            for backend in BACKENDS:
                env = {**base, **aws_environment(endpoint)} if backend == "s3" else base
                results[backend] = child(backend, source, scratch, env)
                print(backend, json.dumps(results[backend]), flush=True)

    size = args.size_mb
    rows = [
        "| backend | publish MB/s (hash + upload) | fetch MB/s (download + verify) "
        f"| client RSS before MB | peak RSS rise MB (target < {TARGET_MB}) |",
        "|---|---|---|---|---|",
        f"| plain file copy (baseline) | {size / copy_s:.0f} | {size / copy_s:.0f} | – | – |",
    ]
    for backend, r in results.items():
        name = "S3ObjectStore over moto" if backend == "s3" else "LocalObjectStore"
        verdict = "" if r["rise_mb"] < TARGET_MB else " (over target!)"
        rows.append(
            f"| {name} | {size / r['write_s']:.0f} | {size / r['read_s']:.0f} "
            f"| {r['rss_before_mb']:.0f} | {r['rise_mb']:.0f}{verdict} |"
        )
    table = "\n".join(rows)
    print(table)
    append(
        f"Object store memory: a {size} MB artifact published and fetched",
        table,
        "Each backend in its own process: publish (SHA-256 pass, streamed upload: 8 MiB parts, "
        "8 in flight, then the manifest) and fetch (streamed download, checked against the "
        "manifest) of a model directory holding one file of that size. The rise is the "
        "client's peak RSS over its RSS once the store is built (peak mark reset via "
        f"/proc/self/clear_refs: {results['s3']['peak_reset']}); moto's own memory, which "
        "holds the objects, is not counted.",
    )


if __name__ == "__main__":
    main()
