"""A service stack for the benchmarks that run real jobs: a private redis-server, and an API and
a Celery worker as separate processes, each with its own working directory and cache. The
tests have their own launcher (tests/integration/conftest.py); benchmarks do not import tests,
and need less of it: no fault injection, solo workers on the ``cpu`` queue (one unless asked)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

API_KEY = "key-bench"
START_S = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(process: subprocess.Popen, log: Path, ready, what: str) -> None:
    """Until ``ready()``; a process that exits, or a start past START_S, ends the run."""
    deadline = time.monotonic() + START_S
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


@contextmanager
def _process(command: list[str], log: Path, env: dict[str, str] | None, cwd: Path | None):
    """A child process writing to ``log``, terminated (then killed) on the way out."""
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def private_redis(directory: Path) -> Iterator[str]:
    """A redis-server on a free loopback port with no persistence; yields its URL."""
    import redis

    port = free_port()
    command = [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1"]
    command += ["--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(directory)]
    log = directory / "redis.log"
    with _process(command, log, None, None) as process:

        def answers() -> bool:
            try:
                return bool(redis.Redis(port=port).ping())
            except redis.ConnectionError:
                return False

        _wait(process, log, answers, "redis-server")
        yield f"redis://127.0.0.1:{port}"


@dataclass(frozen=True)
class Stack:
    url: str
    root: Path
    worker_pids: tuple[int, ...] = ()
    """The Celery worker processes, in start order (each reaps its own training children)."""

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def _machine(home: Path, env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """A process's own disk: working directory, HOME, TMPDIR and LPFT_CACHE_DIR."""
    for name in ("work", "tmp", "cache"):
        (home / name).mkdir(parents=True, exist_ok=True)
    own = {"HOME": str(home), "TMPDIR": str(home / "tmp"), "LPFT_CACHE_DIR": str(home / "cache")}
    return home / "work", {**env, **own}


@contextmanager
def running_stack(
    root: Path, env: dict[str, str], workers: Sequence[Mapping[str, str]] = ({},)
) -> Iterator[Stack]:
    """An API (ready once /readyz answers 200) and one solo worker on the ``cpu`` queue per
    item of ``workers`` (that worker's variables over the rest), with ``env`` (LPFT_REDIS_URL,
    the store's settings) over this process's environment. The first worker is ``bench@%h``
    in ``worker/``, the next ones ``bench-2@%h`` in ``worker-2/``..."""
    shared = {
        **env,
        "LPFT_API_KEYS": f"bench:{API_KEY}",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = [sys.executable, "-m", "uvicorn", "--factory", "lpft_api.main:create_app"]
    api += ["--host", "127.0.0.1", "--port", str(port)]
    with ExitStack() as stack:
        cwd, api_env = _machine(root / "api", shared)
        api_log = root / "api.log"
        process = stack.enter_context(_process(api, api_log, api_env, cwd))

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        _wait(process, api_log, ready, "the API")
        pids = []
        for number, own in enumerate(workers, 1):
            name = "worker" if number == 1 else f"worker-{number}"
            node = "bench" if number == 1 else f"bench-{number}"
            worker = [sys.executable, "-m", "celery", "-A", "lpft_worker.celery_app", "worker"]
            worker += ["-Q", "cpu", "-P", "solo", "-n", f"{node}@%h", "--without-gossip"]
            worker += ["--without-mingle", "-l", "info"]
            cwd, worker_env = _machine(root / name, {**shared, **own})
            log = root / f"{name}.log"
            process = stack.enter_context(_process(worker, log, worker_env, cwd))
            _wait(process, log, lambda log=log: "ready." in log.read_text(), f"the {name}")
            pids.append(process.pid)
        yield Stack(url, root, tuple(pids))
