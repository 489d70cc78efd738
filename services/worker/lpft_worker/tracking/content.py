"""What a job's tracker run holds, read from what the job left: its record, its metrics
document and report in its model directory, and the datasets it read.

Names, so that a run reads like ``GET /jobs/{id}/metrics``:

- every number of the metrics document outside a list is a metric named by its path, joined
  by dots (``test.calibrated.ece``, ``eval_sets.ood.uncalibrated.accuracy``, ``temperature``,
  ``features.test.difference``, ``ntk.…``), with exactly the document's value; a number under
  a name MLflow cannot take (a label's, in the label counts) is left out;
- each entry of a ``history`` list (one per optimisation step) gives ``step/<field>``
  (``step/loss``, ``step/learning_rate``) at its ``step``, and each entry of an ``epochs``
  list ``epoch/<field>`` (``epoch/validation_loss``) at its ``epoch``, prefixed by the path
  of the list when it is not at the top (a comparison's methods);
- params: the kind, method(s), model, seed(s), every resolved hyperparameter, and each
  dataset's id with its SHA-256 (``dataset.train``, ``dataset.train.sha256``,
  ``eval_sets.<name>``…);
- tags: ``lpft.job_id``, ``lpft.tenant``, ``lpft.kind``, ``lpft.version`` and the tenant's own.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from lpft_contract.records import JobRecord

METRICS_FILE = "metrics.json"
#: The report's files, logged as artifacts when the job wrote them.
REPORT_FILES = ("report.html", "report.md")
#: A name MLflow takes as a metric, param or tag key.
_KEY = re.compile(r"^[A-Za-z0-9_.\- /]{1,250}$")
#: MLflow's longest param value.
MAX_PARAM_CHARS = 6000


@dataclass(frozen=True)
class Point:
    """One metric value: ``key`` at ``step``."""

    key: str
    value: float
    step: int = 0


@dataclass
class RunContent:
    """Everything one run of a job holds; ``artifacts`` maps each file to its folder in the
    run (``""`` for the top)."""

    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[Point] = field(default_factory=list)
    artifacts: dict[Path, str] = field(default_factory=dict)


def job_content(
    record: JobRecord, model_dir: Path, tenant_tags: dict[str, str], root: Path = Path()
) -> RunContent:
    """The run of a finished ``record`` whose outputs are in ``model_dir`` (its datasets'
    paths relative to ``root``, see ``job_params``)."""
    document = _metrics_document(model_dir)
    return RunContent(
        tags={**tenant_tags, **job_tags(record)},
        params=job_params(record, root),
        metrics=list(document_points(document)),
        artifacts=job_artifacts(model_dir),
    )


def job_tags(record: JobRecord) -> dict[str, str]:
    """The tags that tie a run to its job."""
    return {
        "lpft.job_id": record.id,
        "lpft.tenant": record.tenant,
        "lpft.kind": record.kind,
        "lpft.version": metadata.version("lpft"),
    }


def job_params(record: JobRecord, root: Path = Path()) -> dict[str, str]:
    """The job's settings as params: what it ran on what, with which hyperparameters. The
    spec's dataset paths are relative to ``root``: the training process works inside its
    copy of the store (the default, its working directory); another process names it."""
    params: dict[str, Any] = {"kind": record.kind}
    if record.method is not None:
        params["method"] = record.method
    if record.methods is not None:
        params["methods"] = ",".join(record.methods)
    if record.source_job is not None:
        params["source_job"] = record.source_job
    params["model"] = record.model or "default"
    hyper = record.spec.get("hyperparameters") or {}
    params.update(hyper)
    seeds = record.spec.get("seeds")
    if seeds:
        params["seeds"] = ",".join(map(str, seeds))
    for name, (dataset_id, path) in _datasets(record, root).items():
        params[name] = dataset_id
        params[f"{name}.sha256"] = file_sha256(path)
    return {key: str(value)[:MAX_PARAM_CHARS] for key, value in params.items() if _KEY.match(key)}


def document_points(document: dict[str, Any], prefix: str = "") -> Iterator[Point]:
    """The metrics of a metrics document, named as the module says."""
    for key, value in document.items():
        name = f"{prefix}{key}"
        if key == "history" and isinstance(value, list):
            yield from _curve(value, f"{prefix}step/", "step")
        elif key == "epochs" and isinstance(value, list):
            yield from _curve(value, f"{prefix}epoch/", "epoch")
        elif isinstance(value, dict):
            yield from document_points(value, f"{name}.")
        elif _number(value) and _KEY.match(name):
            yield Point(name, float(value))


def is_job_artifact(path: str) -> bool:
    """Whether ``path``, relative to a job's outputs, is one of its ``job_artifacts`` (so a
    run that logs no model fetches only these from a bucket)."""
    return path in (METRICS_FILE, *REPORT_FILES) or (
        path.startswith("plots/") and path.endswith(".png") and path.count("/") == 1
    )


def job_artifacts(model_dir: Path) -> dict[Path, str]:
    """The metrics document, the report and its plots, as far as the job wrote them."""
    files = {model_dir / name: "" for name in (METRICS_FILE, *REPORT_FILES)}
    files.update(dict.fromkeys(sorted((model_dir / "plots").glob("*.png")), "plots"))
    return {path: folder for path, folder in files.items() if path.is_file()}


def file_sha256(path: Path) -> str:
    """The file's SHA-256, read in chunks (a dataset may be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _metrics_document(model_dir: Path) -> dict[str, Any]:
    path = model_dir / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _curve(entries: list[Any], prefix: str, axis: str) -> Iterator[Point]:
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get(axis), int):
            continue
        for key, value in entry.items():
            if key != axis and _number(value) and _KEY.match(f"{prefix}{key}"):
                yield Point(f"{prefix}{key}", float(value), entry[axis])


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _datasets(record: JobRecord, root: Path) -> dict[str, tuple[str, Path]]:
    """Each dataset the job read, by param name: its id and its local copy (the spec's keys
    are paths under ``root``, the process's copy of the store)."""
    data = record.spec.get("data")
    if isinstance(data, str):  # a re-calibration reads one file
        data = {"train": data}
    if not isinstance(data, dict):
        return {}
    found = {}
    for split, dataset_id in record.dataset.items():
        if dataset_id and data.get(split):
            found[f"dataset.{split}"] = (dataset_id, root / data[split])
    eval_paths = data.get("eval_sets") or {}
    for name, dataset_id in record.eval_sets.items():
        if name in eval_paths:
            found[f"eval_sets.{name}"] = (dataset_id, root / eval_paths[name])
    return {name: entry for name, entry in found.items() if entry[1].is_file()}


def recalibration_content(record: JobRecord, model_dir: Path, step: int) -> RunContent:
    """What a re-calibration adds to its source job's run: the new ``temperature`` at
    ``step`` (after the source's), its metrics document's numbers under ``recalibration.``
    at that step, and the document itself under ``recalibration/<job id>/``."""
    points = list(document_points(_metrics_document(model_dir), "recalibration."))
    temperature = [p for p in points if p.key == "recalibration.temperature"]
    return RunContent(
        tags={"lpft.recalibrated_by": record.id},
        metrics=[
            *(Point("temperature", p.value, step) for p in temperature),
            *(Point(p.key, p.value, step) for p in points),
        ],
        artifacts={
            path: f"recalibration/{record.id}"
            for path in [model_dir / METRICS_FILE]
            if path.is_file()
        },
    )


def child_content(record: JobRecord, directory: Path, keys: dict[str, str]) -> RunContent:
    """A child run: one method of a comparison, one seed, or one seed of a comparison's
    method (``keys``: ``lpft.method``, ``lpft.seed`` or both, also its params without the
    prefix), its metrics document in ``directory`` named as in a finetune job's run."""
    tags = {key: value for key, value in job_tags(record).items() if key != "lpft.job_id"}
    params = {key.removeprefix("lpft."): value for key, value in keys.items()}
    return RunContent(
        tags={**tags, **keys},
        params={**params, "model": record.model or "default"},
        metrics=list(document_points(_metrics_document(directory))),
        artifacts=job_artifacts(directory),
    )
