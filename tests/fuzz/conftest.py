"""A fuzz-only stack: its own API process, Redis DB and artifact directory, plus real
resources for the fuzzer to aim at.

The server is the service tests' ``api_url`` fixture, imported here with ``service_env``
overridden, so this directory gets its own uvicorn process (a fixture is per conftest
directory). Why not share theirs: a generated ``POST /jobs`` body is often a valid job, and on
their Redis database every ``device: cpu`` one would go to the ``cpu`` queue that their session
worker trains from, so a fuzz run would queue up real training (hundreds of jobs with
``epochs: 100``) in front of the service tests. Here the API has a database of its own on the
run's private Redis, and no worker runs while fuzzing: the jobs it queues are never run, and
vanish with that server at the end of the run. One worker runs before the fuzzing, to train
the single tiny job that makes the succeeded-job paths (predict, recalibrate, report, plots,
artifacts) reachable.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import (
    KEYS,
    Worker,
    api_url,  # noqa: F401 - re-registered here: this directory's own server (see above)
    job_body,
    stack_env,
    toy_dataset_files,  # noqa: F401 - used by fuzz_resources
    upload,
    wait_for,
)
from tests.redis_fixtures import PrivateRedis

#: The tenant the fuzzer authenticates as; the other tenant's ids must look missing to it.
TENANT, OTHER_TENANT = "alice", "bob"


@pytest.fixture(scope="session")
def service_env(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, redis_server: PrivateRedis
) -> dict[str, str]:
    """The service tests' settings, on a Redis database and an artifact directory of its own."""
    artifacts = tmp_path_factory.mktemp("fuzz-artifacts")
    return stack_env(redis_server.new_database(), artifacts, tiny_model_dir.parent)


@dataclass(frozen=True)
class Resources:
    """Ids that exist on the fuzz server, for generated requests to hit."""

    headers: dict[str, str]
    #: The tenant's datasets by split (each a valid split of one toy task).
    datasets: dict[str, str]
    #: A finetune job trained to success (tiny model, or a warning), and one queued forever.
    succeeded_job: str
    queued_job: str
    #: Plot names the succeeded job has (``/jobs/{id}/plots/{name}.png``).
    plot_names: list[str]
    #: The other tenant's dataset and job: the fuzzing tenant must never get them.
    foreign_dataset: str
    foreign_job: str

    @property
    def foreign_ids(self) -> set[str]:
        return {self.foreign_dataset, self.foreign_job}


@pytest.fixture(scope="session")
def fuzz_resources(
    api_url: str,  # noqa: F811 - the fixture imported above
    service_env: dict[str, str],
    toy_dataset_files: dict[str, Path],  # noqa: F811
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Resources:
    """Upload the toy datasets, train one tiny job to success, queue one more; as the other
    tenant, upload a dataset and queue a job. No worker runs after this fixture."""
    headers = {"Authorization": f"Bearer {KEYS[TENANT]}"}
    other = {"Authorization": f"Bearer {KEYS[OTHER_TENANT]}"}
    with (
        httpx.Client(base_url=api_url, headers=headers, timeout=60) as client,
        httpx.Client(base_url=api_url, headers=other, timeout=60) as foreign,
    ):
        datasets = {split: upload(client, path) for split, path in toy_dataset_files.items()}
        log = tmp_path_factory.mktemp("fuzz-logs") / "worker.log"
        worker = Worker(service_env, "cpu", "fuzz-worker", log)
        try:
            response = client.post("/jobs", json=job_body(datasets, tiny_model_dir))
            assert response.status_code == 202, response.text
            succeeded = response.json()["id"]
            job = wait_for(client, succeeded, {"succeeded", "failed", "cancelled"})
        finally:
            worker.stop()
        if job["status"] != "succeeded":  # the worker's own tests say why; fuzz on regardless
            warnings.warn(
                f"the tiny job {job['status']} ({job['error']}), so the fuzzer cannot reach "
                "the succeeded-job paths (predict, recalibrate, report, plots, artifacts)",
                stacklevel=1,
            )
        response = client.post("/jobs", json=job_body(datasets, tiny_model_dir))
        assert response.status_code == 202, response.text
        queued = response.json()["id"]

        foreign_datasets = {s: upload(foreign, p) for s, p in toy_dataset_files.items()}
        response = foreign.post("/jobs", json=job_body(foreign_datasets, tiny_model_dir))
        assert response.status_code == 202, response.text
        foreign_job = response.json()["id"]

    plots = Path(service_env["LPFT_ARTIFACTS_DIR"]) / "jobs" / succeeded / "model" / "plots"
    return Resources(
        headers=headers,
        datasets=datasets,
        succeeded_job=succeeded,
        queued_job=queued,
        plot_names=sorted(p.stem for p in plots.glob("*.png")),
        foreign_dataset=foreign_datasets["train"],
        foreign_job=foreign_job,
    )


@pytest.fixture(scope="session")
def api_log(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The log of this directory's API process (uvicorn names its port at startup)."""
    port = api_url.rsplit(":", 1)[1]
    for log in tmp_path_factory.getbasetemp().glob("logs*/api.log"):
        if f"127.0.0.1:{port}" in log.read_text(errors="replace"):
            return log
    raise AssertionError(f"no API log names port {port}")


@dataclass
class Finding:
    """One distinct failure of one operation, and the shortest request that shows it."""

    check: str
    status: int
    message: str
    repro: str
    response: str
    server_error: str | None = None
    count: int = 0

    def render(self) -> str:
        lines = [f"{self.check} (HTTP {self.status}, {self.count} requests)", self.message]
        if self.server_error:
            lines.append(f"Server log: {self.server_error}")
        lines.append(f"Shortest reproduction:\n    {self.repro}\n    -> {self.response}")
        return "\n".join(lines)


@dataclass
class FuzzStats:
    """Requests the fuzzer sent (one per generated case) by operation and status, and the
    distinct failures by operation; reported at the end of the session."""

    seed: str = ""
    started: float | None = None
    finished: float | None = None
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    findings: dict[str, dict[tuple[str, ...], Finding]] = field(
        default_factory=lambda: defaultdict(dict)
    )

    def record(self, operation: str, status: int) -> None:
        now = time.monotonic()
        self.started = self.started or now
        self.finished = now
        self.statuses[operation][status] += 1

    def add(self, operation: str, key: tuple[str, ...], finding: Finding) -> None:
        """Count ``finding`` under ``key``, keeping the shortest reproduction seen."""
        known = self.findings[operation].setdefault(key, finding)
        known.count += 1
        if len(finding.repro) < len(known.repro):
            finding.count = known.count
            self.findings[operation][key] = finding

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.statuses.values())


STATS = FuzzStats()


def _operation(item: pytest.Item) -> str | None:
    """``GET /jobs`` for a ``test_…[GET /jobs]`` item of the fuzz module."""
    module = getattr(item, "module", None)
    if module is None or not module.__name__.endswith("test_openapi_fuzz"):
        return None
    return item.name.partition("[")[2].removesuffix("]") or None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """The fuzz test records failures and carries on, so that one early failure does not end
    an operation's run; here an operation with findings is reported as failed, listing them."""
    report = yield
    operation = _operation(item)
    findings = STATS.findings.get(operation or "")
    if report.when == "call" and report.passed and findings:
        report.outcome = "failed"
        report.longrepr = f"{len(findings)} distinct failure(s) of {operation}:\n\n" + (
            "\n\n".join(f.render() for f in findings.values())
        )
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not STATS.total:
        return
    assert STATS.started is not None and STATS.finished is not None
    write = terminalreporter.write_line
    terminalreporter.section("OpenAPI fuzzing")
    for operation in sorted(STATS.statuses):
        counts = STATS.statuses[operation]
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(counts.items()))
        write(f"{operation:<36} {sum(counts.values()):>6}  ({by_status})")
    findings = [(op, f) for op, found in sorted(STATS.findings.items()) for f in found.values()]
    for operation, finding in findings:
        if finding.server_error:
            first = finding.server_error.rpartition("raised: ")[2]
        else:
            first = finding.message.rpartition("Rejected: ")[2].split("\n", 1)[0][:70]
        write(f"FAILED {operation}: {finding.check}, HTTP {finding.status}: {first}")
    write(
        f"{STATS.total} generated requests over {len(STATS.statuses)} operations in "
        f"{STATS.finished - STATS.started:.0f} s, {len(findings)} distinct failures; {STATS.seed}"
    )
