"""``python -m lpft_api``, the API image's command, binds where ``LPFT_API_HOST`` and
``LPFT_API_PORT`` say: on 127.0.0.2 it answers there and not on 127.0.0.1 (both loopback on
Linux, so a server bound to 0.0.0.0 would answer on both); the image's health check
(``python -m lpft_api.health``) finds it there."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from lpft_api.health import probe_url
from lpft_api.settings import ApiSettings

from tests.redis_fixtures import RedisDatabase

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
def test_the_api_binds_the_host_and_port_its_settings_name(
    tmp_path: Path, redis_db: RedisDatabase
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        port = sock.getsockname()[1]
    env = os.environ | {
        "LPFT_API_HOST": "127.0.0.2",
        "LPFT_API_PORT": str(port),
        "LPFT_API_KEYS": "alice:key-alice",
        "LPFT_ARTIFACTS_DIR": str(tmp_path),
        "LPFT_REDIS_URL": redis_db.url,  # /readyz, which the health check asks, pings it
    }
    server = subprocess.Popen([sys.executable, "-m", "lpft_api"], env=env, cwd=tmp_path)
    try:
        wait_for_health(f"http://127.0.0.2:{port}/healthz", server)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        health = [sys.executable, "-m", "lpft_api.health"]
        checked = subprocess.run(health, env=env, cwd=tmp_path, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout == f"ok: http://127.0.0.2:{port}/readyz answered 200\n"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize(
    ("host", "open_mode", "url"),
    [
        ("0.0.0.0", False, "http://127.0.0.1:8000/readyz"),
        ("::", False, "http://[::1]:8000/readyz"),
        ("10.1.2.3", False, "http://10.1.2.3:8000/readyz"),
        ("10.1.2.3", True, "http://127.0.0.1:8000/readyz"),
    ],
)
def test_the_health_check_asks_where_the_api_listens(host: str, open_mode: bool, url: str) -> None:
    settings = ApiSettings(api_host=host, api_port=8000, open_mode=open_mode)
    assert probe_url(settings) == url
