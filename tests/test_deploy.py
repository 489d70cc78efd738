"""docker-compose.yml, docker/Dockerfile and .dockerignore, checked statically.

No Docker engine runs here (nor in CI), so these tests stand in for ``docker compose up``:
the YAML parses, every build context, Dockerfile target, copied path, command module and
volume it names exists, and the production settings are in place: healthchecks (a worker's
answers while it trains), restart policies, stop grace periods that cover the service's own
shutdown, persistence, the GPU reservation, the CPU profile, the S3 profile's MinIO and the
bucket its one-shot makes, images that share one base stage, run as a non-root user and build
their dependency layer before the source is copied, pinned torch, and a build context that
leaves local state out.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from lpft_contract.objects import object_store_from_url
from lpft_worker.settings import WorkerSettings
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
WORKERS = ("worker", "worker-cpu")
BUILT = ("api", *WORKERS)
# Services that do one thing and exit (nothing to check the health of while they run).
ONE_SHOT = ("minio-setup",)
MINIO_ENV = ROOT / "docker" / "minio.env"
HEALTH_COMMAND = ["python", "-m", "lpft_worker.health"]
TORCH_PIN = "torch==2.13.0"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword, its text (continuation lines joined) and the
    body of its here-document, if it has one."""

    keyword: str
    text: str
    heredoc: str = ""


def parse_dockerfile(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile, comments dropped, here-documents kept whole."""
    lines = iter(path.read_text().splitlines())
    instructions = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        text = line
        while text.endswith("\\"):
            text = text[:-1] + " " + next(lines).strip()
        body = []
        if marker := re.search(r"<<-?'?(\w+)'?", text):
            body = list(iter(lines.__next__, marker.group(1)))
        keyword, _, rest = text.strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), rest.strip(), "\n".join(body)))
    return instructions


@dataclass(frozen=True)
class Stage:
    """One build stage: what it is built ``FROM`` (an image, or an earlier stage's name) and
    its own instructions after that line."""

    parent: str
    instructions: list[Instruction]


def stages_of(instructions: list[Instruction]) -> dict[str, Stage]:
    """A multi-stage Dockerfile's stages by name (``FROM parent AS name``)."""
    stages: dict[str, Stage] = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            parent, _, name = re.sub(r"(?i) as ", " AS ", instruction.text).partition(" AS ")
            stage = stages[name.strip()] = Stage(parent.strip(), [])
        else:
            stage.instructions.append(instruction)
    return stages


def dockerfile_of(name: str) -> Path:
    build = SERVICES[name]["build"]
    return ROOT / build["context"] / build["dockerfile"]


DOCKERFILE = ROOT / "docker" / "Dockerfile"
STAGES = stages_of(parse_dockerfile(DOCKERFILE))
BASE = "base"
TARGETS = ("api", "worker")


def image_of(target: str) -> list[Instruction]:
    """Every instruction that builds ``target``: its ancestor stages' first, then its own."""
    stage = STAGES[target]
    inherited = image_of(stage.parent) if stage.parent in STAGES else []
    return inherited + stage.instructions


def instruction_of(target: str, keyword: str) -> Instruction:
    """The image's last ``keyword`` instruction (``CMD``, ``HEALTHCHECK``): the one in force."""
    return [i for i in image_of(target) if i.keyword == keyword][-1]


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    """The image's ENV, from ``ENV KEY=value ...`` instructions."""
    pairs = (
        pair.split("=", 1) for i in instructions if i.keyword == "ENV" for pair in i.text.split()
    )
    return dict(pairs)


def seconds(duration: str) -> float:
    """A compose duration (``1m30s``, ``60s``, ``500ms``) in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def named_volumes(service: dict) -> dict[str, str]:
    """Named volume → mount point, for a service's ``volume:path`` entries (bind mounts,
    whose source is a path, left out)."""
    pairs = (entry.split(":")[:2] for entry in service.get("volumes", []))
    return {source: target for source, target in pairs if not source.startswith((".", "/", "~"))}


def test_compose_has_the_stack_and_shared_volumes() -> None:
    assert {"redis", "api", "worker", "worker-cpu"} <= set(SERVICES)
    assert {"redis-data", "artifacts", "hf-cache"} <= set(COMPOSE["volumes"])
    for name in BUILT:
        assert "artifacts:/artifacts" in SERVICES[name]["volumes"]
        assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert SERVICES[name]["environment"]["LPFT_REDIS_URL"] == "redis://redis:6379/0"


def test_compose_references_resolve() -> None:
    """Every named volume and dependency exists, conditions are the spec's, a dependency
    awaited as healthy has a healthcheck, and no always-on service waits on a profiled one."""
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in SERVICES.items():
        for volume in named_volumes(service):
            assert volume in COMPOSE["volumes"], f"{name} mounts undeclared volume {volume}"
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            assert spec["condition"] in conditions, (name, spec)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], dependency
            if "profiles" not in service:
                assert "profiles" not in SERVICES[dependency], (name, dependency)


@pytest.mark.parametrize("name", sorted(set(SERVICES) - set(ONE_SHOT)))
def test_every_service_checks_its_health_and_restarts(name: str) -> None:
    service = SERVICES[name]
    healthcheck = service["healthcheck"]
    assert healthcheck["test"][0] in {"CMD", "CMD-SHELL"}, healthcheck
    assert seconds(healthcheck["timeout"]) < seconds(healthcheck["interval"])
    assert service["restart"] in {"unless-stopped", "always", "on-failure"}
    assert service.get("user", "") not in {"root", "0"}


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


@pytest.mark.parametrize("name", BUILT)
def test_build_context_dockerfile_target_and_copied_paths_exist(name: str) -> None:
    """Every service builds a target of the one Dockerfile, is given each build argument
    that has no default, and copies only paths that exist."""
    build = SERVICES[name]["build"]
    context = ROOT / build["context"]
    assert dockerfile_of(name) == DOCKERFILE
    assert build["target"] in TARGETS
    for instruction in image_of(build["target"]):
        if instruction.keyword == "COPY":
            sources = [word for word in instruction.text.split()[:-1] if not word.startswith("--")]
            for source in sources:
                assert (context / source).exists(), f"{DOCKERFILE.name} copies missing {source}"
        if instruction.keyword == "ARG" and "=" not in instruction.text:
            assert instruction.text in build["args"], f"{name} does not pass {instruction.text}"
    extras = build["args"]["EXTRA"].split(",")
    # Workers log to MLflow (the API only checks that a server is configured); both run or
    # delete sweeps' studies in PostgreSQL where LPFT_SWEEP_STORAGE_URL is set.
    mlflow = ["mlflow"] if build["target"] == "worker" else []
    wanted = [build["target"], "s3", *mlflow, "postgres"]
    assert extras == wanted, "the image installs another extra, no S3, MLflow or Postgres client"


def test_the_targets_share_one_base_that_installs_everything() -> None:
    """The API and worker images differ only in what they run: each target is built on the
    base stage and adds no layer of its own, so the user, the pinned torch and the layer
    order are written once."""
    assert STAGES[BASE].parent.startswith("python:3.11")
    for target in TARGETS:
        assert STAGES[target].parent == BASE
        own = {i.keyword for i in STAGES[target].instructions}
        assert own <= {"ENV", "EXPOSE", "HEALTHCHECK", "CMD"}, (target, own)
        assert {"HEALTHCHECK", "CMD"} <= own, target
    assert {SERVICES[name]["build"]["target"] for name in BUILT} == set(TARGETS)


def test_commands_name_importable_modules() -> None:
    assert instruction_of("api", "CMD").text == '["python", "-m", "lpft_api"]'
    worker = instruction_of("worker", "CMD").text
    celery_module = re.search(r"celery -A (\S+) worker", worker).group(1)
    assert importlib.import_module(celery_module).app.main == "lpft"
    for queue in ("gpu", "cpu"):
        assert f"LPFT_WORKER_QUEUE: {queue}" in (ROOT / "docker-compose.yml").read_text()


def test_the_api_image_serves_where_its_settings_say() -> None:
    """The API image runs ``python -m lpft_api``, which binds ``LPFT_API_HOST`` and
    ``LPFT_API_PORT`` (tests/integration/test_serve.py starts it); a host or port written into
    the command would ignore them. The image's and compose's health checks ask where the API
    listens (``python -m lpft_api.health``, proven in test_serve.py)."""
    cmd = instruction_of("api", "CMD").text
    assert "--host" not in cmd and "--port" not in cmd, cmd
    port = env_of(image_of("api"))["LPFT_API_PORT"]
    assert instruction_of("api", "EXPOSE").text == port
    health = ["python", "-m", "lpft_api.health"]
    assert instruction_of("api", "HEALTHCHECK").text.endswith(f"CMD {json.dumps(health)}")
    assert SERVICES["api"]["healthcheck"]["test"] == ["CMD", *health]
    assert callable(importlib.import_module(health[-1]).main)


def test_worker_health_is_its_heartbeat_not_a_celery_ping() -> None:
    """``inspect ping`` is answered by the worker's one (solo) thread, which a training job
    holds for hours; the heartbeat is written by a thread of its own."""
    for name in WORKERS:
        assert SERVICES[name]["healthcheck"]["test"] == ["CMD", *HEALTH_COMMAND]
    healthcheck = instruction_of("worker", "HEALTHCHECK")
    assert healthcheck.text.endswith('CMD ["python", "-m", "lpft_worker.health"]')
    health = importlib.import_module(HEALTH_COMMAND[-1])
    assert callable(health.main)


def test_worker_stop_grace_covers_a_cancel_in_flight() -> None:
    """On SIGTERM the worker's task keeps watching its training child: a cancel is seen at
    the next poll (the heartbeat period) and enforced after the cancel grace; the period must
    leave time for both and for the outcome to be written."""
    fields = WorkerSettings.model_fields
    cancel_s = fields["cancel_grace_seconds"].default + fields["heartbeat_seconds"].default
    for name in WORKERS:
        assert seconds(SERVICES[name]["stop_grace_period"]) >= 2 * cancel_s, name


def test_api_stop_grace_covers_uvicorns_graceful_shutdown() -> None:
    graceful_s = importlib.import_module("lpft_api.__main__").GRACEFUL_SHUTDOWN_S
    assert seconds(SERVICES["api"]["stop_grace_period"]) >= graceful_s + 5


@pytest.mark.parametrize("name", BUILT)
def test_hf_cache_is_a_named_volume_at_the_images_hf_home(name: str) -> None:
    hf_home = env_of(image_of(SERVICES[name]["build"]["target"]))["HF_HOME"]
    assert named_volumes(SERVICES[name])["hf-cache"] == hf_home


@pytest.mark.parametrize("target", TARGETS)
def test_images_run_as_a_fixed_non_root_user_owning_what_it_writes(target: str) -> None:
    """The last USER, set after every install, is a user with a fixed uid (so that shared
    storage can grant it access) that owns the mount points of its volumes: a named volume
    takes the ownership of the image's directory when it is first created."""
    instructions = image_of(target)
    keywords = [i.keyword for i in instructions]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    last_run = len(keywords) - 1 - keywords[::-1].index("RUN")
    assert last_run < last_user, "the image must not switch back to root after its installs"
    user = instructions[last_user].text
    assert user not in {"root", "0"}
    (setup,) = [i.text for i in instructions if "useradd" in i.text]
    assert re.search(rf"useradd --uid 10001 .*\b{user}\b", setup)
    env = env_of(instructions)
    commands = {cmd.split()[0]: cmd.split()[1:] for cmd in map(str.strip, setup.split("&&"))}
    created = {expand(word, env) for word in commands["mkdir"] if not word.startswith("-")}
    owned = {expand(word, env) for word in commands["chown"][1:]}
    assert commands["chown"][0] == f"{user}:{user}"
    assert {"/artifacts", env["HF_HOME"]} <= created & owned


def expand(word: str, env: dict[str, str]) -> str:
    """A shell word with its quotes dropped and ``$NAME`` taken from the image's ENV."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], word.strip('"'))


@pytest.mark.parametrize("target", TARGETS)
def test_dependencies_install_in_a_layer_before_the_source(target: str) -> None:
    """Editing the source must not reinstall the dependencies: the only files copied before
    they are installed are the ones that declare them, and the project goes in last."""
    instructions = image_of(target)
    copies = [(n, i.text.split()[:-1]) for n, i in enumerate(instructions) if i.keyword == "COPY"]
    install = next(n for n, i in enumerate(instructions) if "-r /tmp/requirements.txt" in i.text)
    first_source = min(n for n, sources in copies if {"lpft_core", "services"} & set(sources))
    assert install < first_source
    copied_before = {source for n, sources in copies if n < install for source in sources}
    assert copied_before == {"pyproject.toml", "constraints.txt", "docker/requirements_of.py"}
    (project,) = [n for n, i in enumerate(instructions) if "pip install --no-deps ." in i.text]
    assert project > max(n for n, _ in copies)


@pytest.mark.parametrize("name", BUILT)
def test_the_dependency_layer_installs_the_whole_extra(name: str, tmp_path: Path) -> None:
    """The Dockerfile's own RUN, run by the shell on the real pyproject.toml with the build
    arguments compose passes, lists every requirement of the service's extra and of the
    extras it names (``lpft[client,ml]``), not the project."""
    build = SERVICES[name]["build"]
    extra = build["args"]["EXTRA"]
    instructions = image_of(build["target"])
    (script,) = [i for i in instructions if "requirements_of.py" in i.text and i.keyword == "RUN"]
    assert script.text == "python requirements_of.py ${EXTRA} > /tmp/requirements.txt"
    listing = tmp_path / "requirements.txt"
    shell = script.text.replace("/tmp/requirements.txt", str(listing)).replace(
        "requirements_of.py", str(ROOT / "docker" / "requirements_of.py")
    )
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, **build["args"]}
    subprocess.run(["sh", "-c", shell], cwd=ROOT, env=env, check=True)
    listed = listing.read_text().splitlines()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    expected, pending = set(), extra.split(",")
    while pending:
        for requirement in map(Requirement, extras[pending.pop()]):
            if requirement.name == "lpft":
                pending += requirement.extras
            else:
                expected.add(str(requirement))
    assert {str(Requirement(line)) for line in listed} == expected
    assert "torch" in listed and any(line.startswith("obstore") for line in listed)


def test_every_pip_install_keeps_torch_pinned() -> None:
    """torch is named with its pin, and every other install goes through constraints.txt
    (which pins it) or installs no dependencies at all."""
    assert TORCH_PIN in (ROOT / "constraints.txt").read_text().splitlines()
    runs = [i.text for i in parse_dockerfile(DOCKERFILE) if i.keyword == "RUN"]
    installs = [cmd for text in runs for cmd in text.split("&&") if "pip install" in cmd]
    assert installs
    for install in installs:
        if "torch" in install:
            assert re.search(rf"pip install {re.escape(TORCH_PIN)} --index-url", install)
        else:
            assert "-c constraints.txt" in install or "--no-deps" in install, install


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception, pattern) for each .dockerignore line, as Docker reads them: ``**``
    spans directories, ``*`` and ``?`` stay within one, the last matching line decides."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern)
        regex = regex.replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = re.sub(r"\\\[(.*?)\\?\]", r"[\1]", regex)
        rules.append((negate, re.compile(regex)))
    return rules


def ignored(path: str) -> bool:
    """Whether Docker leaves ``path`` (or a folder above it) out of the build context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for negate, regex in dockerignore_rules():
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            verdict = not negate
    return verdict


def test_dockerignore_sends_what_the_images_copy_and_nothing_local() -> None:
    copied = {
        word
        for i in parse_dockerfile(DOCKERFILE)
        if i.keyword == "COPY"
        for word in i.text.split()[:-1]
    }
    assert {"lpft_core", "services", "pyproject.toml"} <= copied
    for source in copied:
        assert not ignored(source), source
    for source in (
        "lpft_core/__init__.py",
        "services/worker/lpft_worker/health.py",
        "docker/requirements_of.py",
    ):
        assert not ignored(source), source
    left_out = [
        ".venv/bin/python",
        ".git/HEAD",
        "runs/service/jobs/x.json",
        "benchmarks/RESULTS.md",
        "tests/test_deploy.py",
        ".env",
        "lpft_core/__pycache__/config.cpython-311.pyc",
        "lpft.egg-info/PKG-INFO",
        ".pytest_cache/v/cache",
    ]
    for path in left_out:
        assert ignored(path), path


def compose_command() -> list[str] | None:
    """The Compose CLI here: the docker plugin, else the standalone ``docker-compose``."""
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(
    compose_command() is None,
    reason="needs Docker Compose (the docker plugin or docker-compose), which the development "
    "machines and CI do not install; the tests above check the same file statically",
)
def test_docker_compose_accepts_the_file() -> None:
    """Compose's own schema and interpolation: the file is valid with keys, and refused
    without them."""
    command = [*compose_command(), "--profile", "cpu", "config", "-q"]
    keyed = {**os.environ, "LPFT_API_KEYS": "tenant:key"}
    result = subprocess.run(command, cwd=ROOT, env=keyed, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    keyless = {name: value for name, value in keyed.items() if name != "LPFT_API_KEYS"}
    result = subprocess.run(command, cwd=ROOT, env=keyless, capture_output=True, text=True)
    assert result.returncode != 0 and "LPFT_API_KEYS" in result.stderr
    s3 = [*compose_command(), "--env-file", str(MINIO_ENV), "--profile", "s3", "config", "-q"]
    result = subprocess.run(s3, cwd=ROOT, env=keyed, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_compose_never_serves_without_keys_and_publishes_on_loopback() -> None:
    api = SERVICES["api"]
    assert api["environment"]["LPFT_API_KEYS"].startswith("${LPFT_API_KEYS:?")
    assert "LPFT_OPEN_MODE" not in api["environment"]
    assert api["ports"] == ["${LPFT_API_BIND:-127.0.0.1}:${LPFT_API_PORT:-8000}:8000"]


def env_file(path: Path) -> dict[str, str]:
    """An env file's ``KEY=value`` lines, as Compose reads them (comments and blanks left out)."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_s3_profile_is_a_pinned_minio_and_a_one_shot_bucket_maker() -> None:
    minio, setup = SERVICES["minio"], SERVICES["minio-setup"]
    assert minio["profiles"] == setup["profiles"] == ["s3"]
    for service in (minio, setup):
        assert service["image"].partition(":")[2].startswith("RELEASE."), "pin a MinIO release"
    assert "ports" not in minio, "MinIO is for the compose network only"
    assert named_volumes(minio) == {"minio-data": "/data"}
    assert minio["command"] == ["server", "/data"]  # its S3 API on the default :9000
    assert setup["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert setup["restart"] == "on-failure" and "healthcheck" not in setup


def test_the_tracking_server_and_its_auth_reach_the_api_and_workers_unset_by_default() -> None:
    """The operator's MLflow server (never a tenant's) and sweeps' study database are
    pass-throughs like the bucket: unset, the API refuses mlflow integrations with a 422
    naming the setting, and studies are journals on the stack's Redis."""
    names = (
        "LPFT_MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "LPFT_SWEEP_STORAGE_URL",
    )
    for name in BUILT:
        environment = SERVICES[name]["environment"]
        for key in names:
            assert key in environment and environment[key] is None, (name, key)


def test_minio_env_points_the_api_and_workers_at_the_profiles_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every variable of docker/minio.env reaches the API and the workers (passed through:
    no value in the compose file, so the local volume stays the default without it), its
    endpoint is the minio service, its keys are MinIO's root user, and the product reads its
    URL as an S3 store."""
    env = env_file(MINIO_ENV)
    for name in BUILT:
        environment = SERVICES[name]["environment"]
        for key in env:
            assert key in environment and environment[key] is None, (name, key)
    endpoint = urlsplit(env["AWS_ENDPOINT_URL"])
    assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", "minio", 9000)
    assert SERVICES["minio"]["environment"] == {
        "MINIO_ROOT_USER": "${AWS_ACCESS_KEY_ID:-}",
        "MINIO_ROOT_PASSWORD": "${AWS_SECRET_ACCESS_KEY:-}",
    }
    assert len(env["AWS_SECRET_ACCESS_KEY"]) >= 8, "MinIO refuses a shorter root password"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    store = object_store_from_url(env["LPFT_ARTIFACTS_URL"])
    assert (store.bucket, store.settings.endpoint) == ("lpft", env["AWS_ENDPOINT_URL"])


@pytest.mark.parametrize(
    ("url", "bucket"), [("s3://lpft/artifacts", "lpft"), ("s3://other", "other")]
)
def test_minio_setup_makes_the_bucket_the_url_names(tmp_path: Path, url: str, bucket: str) -> None:
    """The one shot's own script, run by the shell with docker/minio.env's keys. A stub ``mc``
    (no MinIO client or Docker engine here) stands in for MinIO's client and records what it
    is asked to do."""
    command = SERVICES["minio-setup"]["entrypoint"]
    assert command[:2] == ["sh", "-c"]
    script = command[2].replace("$$", "$")  # Compose's escape for a literal $
    calls = tmp_path / "calls"
    stub = tmp_path / "mc"
    stub.write_text('#!/bin/sh\necho "$@" >> "$MC_CALLS"\n')
    stub.chmod(0o755)
    env = env_file(MINIO_ENV)
    passed = {key: env[key] for key in SERVICES["minio-setup"]["environment"] if key in env}
    shell_env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "MC_CALLS": str(calls)}
    run_env = {**shell_env, **passed, "LPFT_ARTIFACTS_URL": url}
    subprocess.run(["sh", "-c", script], env=run_env, check=True)
    key, secret = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    assert calls.read_text().splitlines() == [
        f"alias set lpft {env['AWS_ENDPOINT_URL']} {key} {secret}",
        f"mb --ignore-existing lpft/{bucket}",
    ]
