"""A real MLflow tracking server on loopback, for the tracking tests and the tracking
benchmark: ``mlflow server`` with a sqlite store and served artifacts in a directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.redis_fixtures import free_port

#: The tracking server imports its whole stack first: about 30 s on a loaded 2-core machine.
SERVER_START_S = 180


class TrackingServer:
    """``mlflow server`` on a free loopback port, its store and artifacts under ``root``."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "mlflow-server.log"
        self.command = [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        self.start()

    def start(self) -> None:
        """Start the server (again, after ``stop``: same port, store and artifacts) and wait
        until it answers."""
        # A session of its own: stop() ends the server and the workers it forks.
        self.process = subprocess.Popen(
            self.command,
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"mlflow server exited with {self.process.returncode}: {self.log.read_text()}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(
                    f"mlflow server not ready after {SERVER_START_S} s: {self.log.read_text()}"
                )
            time.sleep(0.5)

    @property
    def running(self) -> bool:
        """Whether the server process is up (``stop`` not called since it started)."""
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
