"""Redis for the tests: one private ``redis-server`` per pytest run, and a database of its own
for every test module that asks for one (``redis_db``) and for every stack of processes (the
service tests', the client's, the fuzzer's: ``redis_server.new_database()``).

Why private: the tests used to share the Redis at 127.0.0.1:6379 with hard-coded database
numbers, so a module that flushed its database could wipe another's keys (the API and worker
tests reused the service tests' database, which those flush), and a test run could wipe a
developer's own data. Here nothing outlives the run, and no two modules get the same number.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

#: Far more than the modules that ask for a database; ``new_database`` says when they do not.
DATABASES = 64
START_S = 20


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class RedisDatabase:
    """One database of the private server, empty when handed out. ``url`` is what a child
    process gets as ``LPFT_REDIS_URL``."""

    url: str

    def client(self, client_class: type[redis.Redis] = redis.Redis) -> redis.Redis:
        """A client that decodes replies to ``str``, as the store's does."""
        return client_class.from_url(self.url, decode_responses=True)


class PrivateRedis:
    """A ``redis-server`` on a free loopback port with no persistence, for one pytest run."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("the tests that need Redis run their own redis-server: install it")
        self.port = free_port()
        self._log = directory / "redis.log"
        self.process = subprocess.Popen(
            [
                binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--databases", str(DATABASES),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(directory),
            ],
            stdout=self._log.open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._handed_out = 0
        self._wait_until_it_answers()

    def _wait_until_it_answers(self) -> None:
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + START_S
        while True:
            assert self.process.poll() is None, "redis-server exited: " + self._log.read_text()
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def new_database(self) -> RedisDatabase:
        """A database no one else was given in this run."""
        if self._handed_out == DATABASES:
            raise RuntimeError(f"all {DATABASES} test databases are taken: raise DATABASES")
        database = RedisDatabase(f"redis://127.0.0.1:{self.port}/{self._handed_out}")
        self._handed_out += 1
        return database

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_db(redis_server: PrivateRedis) -> RedisDatabase:
    """This test module's own database: the module's tests share it, no other module sees it."""
    return redis_server.new_database()
