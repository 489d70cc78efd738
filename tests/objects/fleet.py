"""A fleet that shares no disk, for the tests: an API and workers as separate processes, each
with its own working directory, HOME, TMPDIR and LPFT_CACHE_DIR, sharing only a Redis
database and a prefix of a bucket on a real S3 server (moto, or a proxy in front of it)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from lpft_contract.objects import S3ObjectStore

from tests.integration.conftest import KEYS, ApiServer, Worker, stack_env
from tests.objects.conftest import BUCKET
from tests.objects.moto_server import aws_environment
from tests.redis_fixtures import RedisDatabase


@dataclass(frozen=True)
class Machine:
    """One process's own disk."""

    home: Path

    @property
    def work(self) -> Path:
        """Its working directory, which it must leave empty."""
        return self.home / "work"

    @property
    def cache(self) -> Path:
        return self.home / "cache"

    def env(self, shared: dict[str, str]) -> dict[str, str]:
        for directory in (self.work, self.home / "tmp", self.cache):
            directory.mkdir(parents=True, exist_ok=True)
        return {
            **shared,
            "HOME": str(self.home),
            "TMPDIR": str(self.home / "tmp"),
            "LPFT_CACHE_DIR": str(self.cache),
        }


@dataclass
class Fleet:
    shared: dict[str, str]
    #: the fleet's prefix of the bucket, reached directly (not through a proxy)
    store: S3ObjectStore
    root: Path
    api: ApiServer
    workers: list[Worker] = field(default_factory=list)

    def machine(self, name: str) -> Machine:
        return Machine(self.root / name)

    def start_worker(self, name: str) -> Worker:
        machine = self.machine(name)
        worker = Worker(
            machine.env(self.shared), "cpu", name, self.root / f"{name}.log", machine.work
        )
        self.workers.append(worker)
        return worker

    def client(self, tenant: str = "alice", base_url: str | None = None) -> httpx.Client:
        """A tenant's client of the fleet's API (or of another replica, at ``base_url``)."""
        headers = {"Authorization": f"Bearer {KEYS[tenant]}"}
        return httpx.Client(base_url=base_url or self.api.url, headers=headers, timeout=60)

    def keys(self, prefix: str) -> list[str]:
        return [info.key for info in self.store.list(prefix)]


@contextmanager
def running_fleet(
    root: Path, database: RedisDatabase, models_dir: Path, moto: str, endpoint: str | None = None
) -> Iterator[Fleet]:
    """An API and one worker (``worker-1``) whose store is the bucket on ``moto``, reached at
    ``endpoint`` (default: ``moto`` itself). On the way out, every process is stopped and
    each machine's working directory, and the shared LPFT_ARTIFACTS_DIR, must be untouched."""
    prefix = f"fleet-{uuid.uuid4().hex[:8]}"
    never = root / "no-shared-directory"  # LPFT_ARTIFACTS_DIR: set, and never to be used
    shared = {
        **stack_env(database, never, models_dir),
        **aws_environment(endpoint or moto),
        "LPFT_ARTIFACTS_URL": f"s3://{BUCKET}/{prefix}",
    }
    store = S3ObjectStore(BUCKET, prefix, environ=aws_environment(moto))
    api_machine = Machine(root / "api")
    # The API imports the ML stack while the worker starts.
    api = ApiServer(api_machine.env(shared), root / "api.log", cwd=api_machine.work, wait=False)
    fleet = Fleet(shared, store, root, api)
    try:
        fleet.start_worker("worker-1")
        api.wait_until_ready()
        yield fleet
    finally:
        for worker in fleet.workers:
            worker.stop()
        api.stop()
    assert not never.exists(), "a process wrote to LPFT_ARTIFACTS_DIR instead of the bucket"
    for name in ("api", *(f"worker-{n}" for n in range(1, len(fleet.workers) + 1))):
        work = fleet.machine(name).work
        assert not any(work.iterdir()), f"{name} wrote into its working directory"


def events(client: httpx.Client, job_id: str) -> list[dict]:
    return client.get(f"/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]


def wait_for_an_epoch(client: httpx.Client, job_id: str, deadline_s: float = 180) -> None:
    """Until the job has finished an epoch; it must still be running then."""
    deadline = time.monotonic() + deadline_s
    while not any(e["type"] == "epoch" for e in events(client, job_id)):
        status = client.get(f"/jobs/{job_id}").json()["status"]
        assert status in ("queued", "running"), f"the job ended {status} before an epoch"
        assert time.monotonic() < deadline, "the job never finished an epoch"
        time.sleep(0.1)
