"""docker-compose.yml and the Dockerfiles, checked statically.

No Docker engine runs here (nor in CI), so these tests stand in for ``docker compose up``:
the YAML parses, every build context, Dockerfile, copied path, command module and volume it
names exists, and the reliability settings (healthchecks, persistence, GPU reservation, CPU
profile, pinned torch) are in place.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_compose_has_the_stack_and_shared_volumes() -> None:
    assert {"redis", "api", "worker", "worker-cpu"} <= set(SERVICES)
    assert {"redis-data", "artifacts"} <= set(COMPOSE["volumes"])
    for name in ("api", "worker", "worker-cpu"):
        assert "artifacts:/artifacts" in SERVICES[name]["volumes"]
        assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert SERVICES[name]["environment"]["LPFT_REDIS_URL"] == "redis://redis:6379/0"
    for name, service in SERVICES.items():
        assert "healthcheck" in service, name
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in COMPOSE["volumes"], volume


def test_redis_persists_and_never_evicts() -> None:
    command = SERVICES["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert SERVICES["redis"]["volumes"] == ["redis-data:/data"]


def test_gpu_worker_reserves_a_gpu_and_cpu_worker_is_a_profile() -> None:
    devices = SERVICES["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert SERVICES["worker"]["environment"]["LPFT_WORKER_QUEUE"] == "gpu"
    assert SERVICES["worker-cpu"]["profiles"] == ["cpu"]
    assert SERVICES["worker-cpu"]["environment"]["LPFT_WORKER_QUEUE"] == "cpu"
    assert "whl/cpu" in SERVICES["worker-cpu"]["build"]["args"]["TORCH_INDEX_URL"]
    assert "cu" in SERVICES["worker"]["build"]["args"]["TORCH_INDEX_URL"]


@pytest.mark.parametrize("name", ["api", "worker", "worker-cpu"])
def test_build_context_dockerfile_and_copied_paths_exist(name: str) -> None:
    build = SERVICES[name]["build"]
    context = ROOT / build["context"]
    dockerfile = context / build["dockerfile"]
    assert dockerfile.is_file()
    text = dockerfile.read_text()
    assert re.search(r"pip install torch==2\.13\.0 --index-url", text), "torch must be pinned"
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (context / source).exists(), f"{dockerfile.name} copies missing {source}"
        if line.startswith("ARG ") and "=" in line:
            arg = line.split()[1].split("=")[0]
            assert arg in build.get("args", {arg: None}) or name == "api"


def test_commands_name_importable_modules() -> None:
    api = (ROOT / "services/api/Dockerfile").read_text()
    worker = (ROOT / "services/worker/Dockerfile").read_text()
    module, _, factory = re.search(r"--factory (\S+)", api).group(1).partition(":")
    assert callable(getattr(importlib.import_module(module), factory))
    celery_module = re.search(r"celery -A (\S+) worker", worker).group(1)
    assert importlib.import_module(celery_module).app.main == "lpft"
    for queue in ("gpu", "cpu"):
        assert f"LPFT_WORKER_QUEUE: {queue}" in (ROOT / "docker-compose.yml").read_text()


def test_compose_never_serves_without_keys_and_publishes_on_loopback() -> None:
    api = SERVICES["api"]
    assert api["environment"]["LPFT_API_KEYS"].startswith("${LPFT_API_KEYS:?")
    assert "LPFT_OPEN_MODE" not in api["environment"]
    assert api["ports"] == ["${LPFT_API_BIND:-127.0.0.1}:${LPFT_API_PORT:-8000}:8000"]
