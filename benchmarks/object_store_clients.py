"""Which S3 client the object store uses: boto3, s3fs (fsspec) and obstore side by side against
a moto server on loopback, each in its own process so its memory is its own.

    python benchmarks/object_store_clients.py                 # 256 MB object, 100 x 10 KB
    python benchmarks/object_store_clients.py --size-mb 64

Per client: a streamed multipart put of one big object from a file and a streamed get of it
back to a file (MB/s; the baseline is a plain local file copy of the same file in the same run),
the median latency of 100 puts and 100 gets of 10 KB objects, the process's peak RSS rise while
streaming (over its RSS once the client is built), the installed size of the client and every
package it pulls in, whether a second create-only put is refused (conditional write), whether a
head gives the ETag, and which standard AWS settings it takes with no code: each probe builds
the client from the environment alone and does a put and a get. moto accepts any credentials
here, so a probe shows that a setting is read, not that the server checked it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _moto import aws_environment, running_moto
from _results import append

CLIENTS = ("boto3", "s3fs", "obstore")
BUCKET = "bench"
CHUNK = 8 * 1024 * 1024
#: The environment each settings probe runs under, on top of the bare credentials.
PROBES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE")


def rss_mb() -> float:
    """This process's resident memory now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


class Boto3:
    def __init__(self) -> None:
        import boto3

        self.client = boto3.client("s3")

    def put_file(self, key: str, path: Path) -> None:
        with path.open("rb") as source:
            self.client.upload_fileobj(source, BUCKET, key)

    def get_file(self, key: str, path: Path) -> None:
        with path.open("wb") as target:
            self.client.download_fileobj(BUCKET, key, target)

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def create(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data, IfNoneMatch="*")

    def etag(self, key: str) -> str | None:
        return self.client.head_object(Bucket=BUCKET, Key=key).get("ETag")


class S3fs:
    def __init__(self) -> None:
        import s3fs

        self.fs = s3fs.S3FileSystem()

    def put_file(self, key: str, path: Path) -> None:
        self.fs.put_file(str(path), f"{BUCKET}/{key}")

    def get_file(self, key: str, path: Path) -> None:
        self.fs.get_file(f"{BUCKET}/{key}", str(path))

    def put(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(f"{BUCKET}/{key}", data)

    def get(self, key: str) -> bytes:
        return self.fs.cat_file(f"{BUCKET}/{key}")

    def create(self, key: str, data: bytes) -> None:
        with self.fs.open(f"{BUCKET}/{key}", "xb") as target:
            target.write(data)

    def etag(self, key: str) -> str | None:
        self.fs.invalidate_cache()
        return self.fs.info(f"{BUCKET}/{key}").get("ETag")


class Obstore:
    def __init__(self) -> None:
        from obstore.store import S3Store

        self.store = S3Store(BUCKET)

    def put_file(self, key: str, path: Path) -> None:
        import obstore

        with path.open("rb") as source:
            obstore.put(self.store, key, source)

    def get_file(self, key: str, path: Path) -> None:
        import obstore

        with path.open("wb") as target:
            for chunk in obstore.get(self.store, key).stream(min_chunk_size=CHUNK):
                target.write(chunk)

    def put(self, key: str, data: bytes) -> None:
        import obstore

        obstore.put(self.store, key, data)

    def get(self, key: str) -> bytes:
        import obstore

        return obstore.get(self.store, key).bytes().to_bytes()

    def create(self, key: str, data: bytes) -> None:
        import obstore

        obstore.put(self.store, key, data, mode="create")

    def etag(self, key: str) -> str | None:
        import obstore

        return obstore.head(self.store, key).get("e_tag")


ADAPTERS = {"boto3": Boto3, "s3fs": S3fs, "obstore": Obstore}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def measure(name: str, big: Path, small: int) -> dict:
    """One client's figures, in this (child) process."""
    client = ADAPTERS[name]()
    payload = os.urandom(10 * 1024)
    put_ms, get_ms = [], []
    for n in range(small):
        started = time.perf_counter()
        client.put(f"{name}/small/{n}", payload)
        put_ms.append((time.perf_counter() - started) * 1000)
    for n in range(small):
        started = time.perf_counter()
        assert client.get(f"{name}/small/{n}") == payload
        get_ms.append((time.perf_counter() - started) * 1000)
    before = rss_mb()
    started = time.perf_counter()
    client.put_file(f"{name}/big", big)
    put_s = time.perf_counter() - started
    copy = big.with_name(f"{name}.download")
    started = time.perf_counter()
    client.get_file(f"{name}/big", copy)
    get_s = time.perf_counter() - started
    rise = peak_rss_mb() - before
    intact = sha256(copy) == sha256(big)
    copy.unlink()
    client.create(f"{name}/once", b"1")
    try:
        client.create(f"{name}/once", b"2")
        conditional = "no (overwrote)"
    except Exception as refused:  # each client raises its own type; the name says which
        conditional = f"yes ({type(refused).__name__})"
    return {
        "put_s": put_s,
        "get_s": get_s,
        "small_put_ms": statistics.median(put_ms),
        "small_get_ms": statistics.median(get_ms),
        "rss_rise_mb": rise,
        "intact": intact,
        "conditional": conditional,
        "etag": bool(client.etag(f"{name}/once")),
    }


def probe(name: str) -> str:
    """Build the client from the environment alone; a put and a get through it."""
    try:
        client = ADAPTERS[name]()
        client.put(f"{name}/probe", b"probe")
        return "yes" if client.get(f"{name}/probe") == b"probe" else "wrong data"
    except Exception as failed:  # reported as the outcome of the probe
        return f"no ({type(failed).__name__})"


def child(args: list[str], env: dict[str, str], timeout_s: float = 900) -> dict | str:
    try:
        completed = subprocess.run(
            [sys.executable, __file__, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return f"no (no answer in {timeout_s:.0f} s)"
    if completed.returncode:
        raise RuntimeError(completed.stderr[-3000:])
    return json.loads(completed.stdout.splitlines()[-1])


def probe_environments(endpoint: str, scratch: Path) -> dict[str, dict[str, str]]:
    """The environment of each settings probe: the endpoint under one name or the other, or
    the credentials from a named profile instead of the key variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    plain = {**base, **aws_environment(endpoint)}
    endpoint_s3 = {k: v for k, v in plain.items() if k != "AWS_ENDPOINT_URL"}
    endpoint_s3["AWS_ENDPOINT_URL_S3"] = endpoint
    credentials = scratch / "credentials"
    credentials.write_text(
        "[bench]\naws_access_key_id = profile-key\naws_secret_access_key = profile-secret\n"
    )
    profile = {
        k: v for k, v in plain.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    profile |= {
        "AWS_PROFILE": "bench",
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "AWS_CONFIG_FILE": str(scratch / "no-config"),
    }
    return {"AWS_ENDPOINT_URL": plain, "AWS_ENDPOINT_URL_S3": endpoint_s3, "AWS_PROFILE": profile}


def installed_mb(root: str) -> float:
    """The size on disk of ``root`` and every distribution it requires (its default
    dependencies, transitively), counted once each."""
    seen: set[str] = set()
    pending = [root]
    total = 0
    while pending:
        name = re.sub(r"[-_.]+", "-", pending.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        total += sum(f.size or 0 for f in distribution.files or [] if f.size)
        for requirement in distribution.requires or []:
            if "extra ==" in requirement:
                continue
            pending.append(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0])
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--child", choices=CLIENTS)
    parser.add_argument("--probe", choices=CLIENTS)
    parser.add_argument("--file", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.file, args.small)))
        return
    if args.probe:
        print(json.dumps(probe(args.probe)))
        return

    with tempfile.TemporaryDirectory(prefix="lpft-s3-clients-") as scratch_name:
        scratch = Path(scratch_name)
        big = scratch / "big.bin"
        with big.open("wb") as target:
            for _ in range(args.size_mb // 8):
                target.write(os.urandom(CHUNK))
        started = time.perf_counter()
        shutil.copyfile(big, scratch / "copy.bin")
        copy_s = time.perf_counter() - started
        (scratch / "copy.bin").unlink()

        with running_moto(scratch / "moto.log") as endpoint:
            env = probe_environments(endpoint, scratch)
            import boto3

            boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id="x",
                aws_secret_access_key="x",
                region_name="us-east-1",
            ).create_bucket(Bucket=BUCKET)
            results = {}
            for name in CLIENTS:
                common = ["--file", str(big), "--small", str(args.small)]
                results[name] = child(["--child", name, *common], env["AWS_ENDPOINT_URL"])
                results[name]["settings"] = {
                    setting: child(["--probe", name], env[setting], timeout_s=30)
                    for setting in PROBES
                }
                results[name]["installed_mb"] = installed_mb(name)
                print(name, json.dumps(results[name]), flush=True)

    size = args.size_mb
    rows = [
        "| client | put MB/s (x copy) | get MB/s (x copy) | 10 KB put / get ms (median) "
        "| peak RSS rise MB | installed MB | create-only put refused | ETag | "
        + " | ".join(PROBES)
        + " |",
        "|---|---|---|---|---|---|---|---|" + "---|" * len(PROBES),
        f"| local file copy (baseline) | {size / copy_s:.0f} | {size / copy_s:.0f} | – | – "
        "| – | – | – |" + " – |" * len(PROBES),
    ]
    for name, r in results.items():
        put, get = size / r["put_s"], size / r["get_s"]
        settings = " | ".join(r["settings"][p] for p in PROBES)
        rows.append(
            f"| {name} | {put:.0f} ({put * copy_s / size:.2f}) | {get:.0f} "
            f"({get * copy_s / size:.2f}) | {r['small_put_ms']:.1f} / {r['small_get_ms']:.1f} "
            f"| {r['rss_rise_mb']:.0f} | {r['installed_mb']:.1f} | {r['conditional']} "
            f"| {'yes' if r['etag'] else 'no'} | {settings} |"
            + ("" if r["intact"] else " (download differed!)")
        )
    table = "\n".join(rows)
    print(table)
    append(
        f"S3 clients against moto: {size} MB streamed, {args.small} x 10 KB",
        table,
        "Each client in its own process, default settings (boto3 upload_fileobj / "
        "download_fileobj; s3fs put_file / get_file; obstore put from a file / get stream). "
        "moto_server on loopback keeps objects in memory, so throughput is bounded by moto, "
        "the same for all three. The AWS_* columns: a client built from the environment alone "
        "does a put and a get (moto accepts any key, so AWS_PROFILE shows the profile was read "
        "only if the key variables were absent, as they are in that probe).",
    )


if __name__ == "__main__":
    main()
