"""``python -m lpft_api``, the API image's command, binds where ``LPFT_API_HOST`` and
``LPFT_API_PORT`` say: on 127.0.0.2 it answers there and not on 127.0.0.1 (both loopback on
Linux, so a server bound to 0.0.0.0 would answer on both)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

START_S = 60


def wait_for_health(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        assert server.poll() is None, "python -m lpft_api exited"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"no answer at {url} within {START_S} s")


@pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.2 is loopback on Linux only")
def test_the_api_binds_the_host_and_port_its_settings_name(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        port = sock.getsockname()[1]
    env = os.environ | {
        "LPFT_API_HOST": "127.0.0.2",
        "LPFT_API_PORT": str(port),
        "LPFT_API_KEYS": "alice:key-alice",
        "LPFT_ARTIFACTS_DIR": str(tmp_path),
        # /healthz needs no Redis; nothing listens on port 1, so nothing is written anywhere.
        "LPFT_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    server = subprocess.Popen([sys.executable, "-m", "lpft_api"], env=env, cwd=tmp_path)
    try:
        wait_for_health(f"http://127.0.0.2:{port}/healthz", server)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    finally:
        server.terminate()
        server.wait(timeout=30)
