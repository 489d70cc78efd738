"""A client generated from the committed ``openapi/openapi.json`` with openapi-python-client,
as a team that generates its SDK would, then used against the real stack. A reference that
resolves nowhere or an answer without a schema makes the generator leave pieces out; it
only warns, so the test fails on any line of output beyond the one that names the package."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import KEYS, Worker, job_body, wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "openapi" / "openapi.json"
GENERATOR_CONFIG = ROOT / "openapi" / "openapi-python-client.json"
#: The generator's templates with the fix for a body of several content types (see the file).
GENERATOR_TEMPLATES = ROOT / "openapi" / "client-templates"
#: ``package_name_override`` in the config: the title's default, lpft_client, is our own client.
PACKAGE = "lpft_api_client"
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Generated:
    package: Path
    output: str


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    """The generated package, importable while the module's tests run. The generator's
    ruff hooks find ruff beside this interpreter (the dev extra installs both)."""
    directory = tmp_path_factory.mktemp("generated")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    command = [
        *(sys.executable, "-m", "openapi_python_client", "generate"),
        *("--path", str(DOCUMENT), "--config", str(GENERATOR_CONFIG), "--meta", "none"),
        *("--custom-template-path", str(GENERATOR_TEMPLATES)),
        *("--output-path", str(directory / PACKAGE), "--fail-on-warning"),
    ]
    result = subprocess.run(
        command,
        cwd=directory,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the generator failed ({result.returncode}):\n{output}"
    sys.path.insert(0, str(directory))
    try:
        yield Generated(directory / PACKAGE, output)
    finally:
        sys.path.remove(str(directory))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def test_generator_keeps_every_operation_and_answer_without_a_warning(
    generated: Generated,
) -> None:
    assert "Could not find reference" not in generated.output, generated.output
    assert "warning" not in generated.output.lower(), generated.output
    lines = [line for line in generated.output.splitlines() if line.strip()]
    assert lines == [f"Generating {generated.package}"], generated.output
    names = subprocess.run(
        [Path(sys.executable).parent / "ruff", "check", "--isolated", "--select", "F", "."],
        cwd=generated.package,
        capture_output=True,
        text=True,
    )
    assert names.returncode == 0, f"the generated code does not import:\n{names.stdout}"
    document = json.loads(DOCUMENT.read_text())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            snake = re.sub(r"(?<!^)(?=[A-Z])", "_", operation["operationId"]).lower()
            module = generated.package / "api" / operation["tags"][0] / f"{snake}.py"
            assert module.is_file(), f"{method.upper()} {path} has no module {module.name}"
            source = module.read_text()
            for status in operation["responses"]:
                parsed = f"response.status_code == {status}"
                assert parsed in source, f"{method.upper()} {path} drops its {status} answer"


def test_generated_client_uploads_trains_reads_and_lists(
    generated: Generated,
    api_url: str,
    cpu_worker: Worker,
    toy_dataset_files: dict[str, Path],
    tiny_model_dir: Path,
) -> None:
    from lpft_api_client import AuthenticatedClient
    from lpft_api_client.api.datasets import create_dataset
    from lpft_api_client.api.jobs import (
        create_job,
        get_job,
        get_job_plot,
        get_job_report,
        list_jobs,
    )
    from lpft_api_client.models import (
        CreateDatasetFilesBody,
        DatasetPublic,
        DatasetRecordsIn,
        DatasetRecordsInRecordsItem,
        FinetuneJobCreate,
        JobPublic,
    )
    from lpft_api_client.types import File

    client = AuthenticatedClient(
        base_url=api_url, token=KEYS["alice"], raise_on_unexpected_status=True
    )
    lines = toy_dataset_files["train"].read_text().splitlines()
    records = [DatasetRecordsInRecordsItem.from_dict(json.loads(line)) for line in lines]
    train = create_dataset.sync_detailed(
        client=client, body=DatasetRecordsIn(name="train", records=records)
    )
    assert train.status_code == 201, train.content
    assert isinstance(train.parsed, DatasetPublic) and train.parsed.rows == len(lines)
    with toy_dataset_files["validation"].open("rb") as handle:
        upload = CreateDatasetFilesBody(file=File(payload=handle, file_name="validation.jsonl"))
        validation = create_dataset.sync_detailed(client=client, body=upload)
    assert validation.status_code == 201, validation.content
    assert isinstance(validation.parsed, DatasetPublic)
    assert validation.parsed.name == "validation.jsonl" and validation.parsed.rows == 30

    splits = {"train": train.parsed.id, "validation": validation.parsed.id}
    body = FinetuneJobCreate.from_dict(job_body(splits, tiny_model_dir, epochs=1))
    created = create_job.sync_detailed(client=client, body=body)
    assert created.status_code == 202, created.content
    assert isinstance(created.parsed, JobPublic)
    job_id = created.parsed.id
    assert created.headers["location"] == f"/jobs/{job_id}"
    read = get_job.sync(job_id, client=client)
    assert isinstance(read, JobPublic) and read.id == job_id
    assert read.dataset.to_dict()["train"] == train.parsed.id
    listed = list_jobs.sync(client=client, limit=100)
    assert job_id in [job.id for job in listed.data]

    wait_for(client.get_httpx_client(), job_id, {"succeeded"})
    plot = get_job_plot.sync(job_id, "reliability", client=client)
    assert isinstance(plot, File) and plot.payload.read().startswith(PNG)
    report = get_job_report.sync(job_id, client=client)
    assert isinstance(report, str) and "<html" in report.lower()
