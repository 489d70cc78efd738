"""A real S3 HTTP server on loopback: moto's standalone server in its own process.

The code under test talks the S3 protocol to it through the client production uses; nothing is
patched in process. moto keeps its objects in its own memory, so they live only while it runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: moto accepts any key unless IAM checks are on; these are the keys the fixtures sign with.
ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(url: str, deadline_s: float = 30.0) -> None:
    """Block until an HTTP server answers at ``url``."""
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.1)


@contextmanager
def running_moto(log: Path, *, iam_checks: bool = False) -> Iterator[str]:
    """Start ``moto_server`` on a free loopback port and yield its endpoint URL.

    With ``iam_checks`` moto verifies every request's access key against its IAM users (the
    ``INITIAL_NO_AUTH_ACTION_COUNT`` switch), which is the only way it rejects credentials.
    """
    port = free_port()
    env = dict(os.environ)
    if iam_checks:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    server = Path(sys.executable).with_name("moto_server")
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_listening(f"{endpoint}/moto-api/")
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def aws_environment(endpoint: str) -> dict[str, str]:
    """The standard AWS settings that point a client at ``endpoint``."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_ALLOW_HTTP": "true",
    }
