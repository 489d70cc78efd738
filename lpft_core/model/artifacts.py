"""The on-disk model artifact: one self-describing directory per trained model.

Full-FT and LP models are saved with ``save_pretrained`` (safetensors) together with the model
code, so ``AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)``
loads them without lpft. LoRA models are saved as the peft adapter (LoRA matrices plus the
head) and a reference to the base model, which keeps them a few hundred kB.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from lpft_core.data.datasets import Label
from lpft_core.errors import ModelError
from lpft_core.model.classifier import load_encoder, resolve_model
from lpft_core.model.modeling_lpft import LpftConfig, LpftForSequenceClassification

MANIFEST = "lpft_artifact.json"
LABELS = "labels.json"
CALIBRATION = "calibration.json"
METRICS = "metrics.json"
SPEC = "spec.json"
LORA_CLASSIFIER_CONFIG = "lpft_config.json"


@dataclass(frozen=True)
class ArtifactManifest:
    """What a loader needs to know before touching the weights.

    Attributes:
        format: ``"full"`` (all weights here) or ``"lora"`` (adapter + ``base_model``).
        base_model: the encoder the job started from, as the user named it.
        method: the training method.
        pair: whether inputs are sentence pairs.
        max_length: the tokenizer truncation length used in training.
    """

    format: str
    base_model: str
    method: str
    pair: bool
    max_length: int


@dataclass(frozen=True)
class CalibrationRecord:
    """``calibration.json``: the temperature applied by default at prediction time, the
    conformal scores of the rows it was fitted on at that temperature
    (``lpft_core.stages.conformal.ConformalCalibration.to_dict``; ``None`` for models saved
    before), and the records it replaced (newest first) when the model was re-calibrated.
    The scores live beside T because they are of T-scaled probabilities: a new T needs new
    scores."""

    temperature: float
    fitted_on: str
    rows: int
    ece_bins: int
    previous: list[dict[str, Any]] = field(default_factory=list)
    conformal: dict[str, Any] | None = None


def save_artifact(
    out: Path,
    model: torch.nn.Module,
    tokenizer: Any,
    manifest: ArtifactManifest,
    labels: list[Label],
    calibration: CalibrationRecord,
    metrics: dict[str, Any],
    spec: dict[str, Any],
) -> None:
    """Write the whole artifact directory ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu()
    if isinstance(model, PeftModel):
        model.save_pretrained(out)
        model.get_base_model().config.to_json_file(out / LORA_CLASSIFIER_CONFIG)
    else:
        model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    write_json(out / MANIFEST, asdict(manifest))
    write_json(out / LABELS, labels)
    write_json(out / CALIBRATION, asdict(calibration))
    write_json(out / METRICS, metrics)
    write_json(out / SPEC, spec)


def read_manifest(directory: Path) -> ArtifactManifest:
    """The manifest of an artifact directory."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ModelError(f"{directory} is not an lpft model directory (no {MANIFEST})")
    return ArtifactManifest(**json.loads(path.read_text()))


def read_labels(directory: Path) -> list[Label]:
    """``labels.json``: class ``i`` is ``labels[i]``."""
    return json.loads((directory / LABELS).read_text())


def read_warning_codes(directory: Path) -> list[str]:
    """The codes of the model's warnings (``lpft_core.stages.checks``) in its ``metrics.json``."""
    path = directory / METRICS
    if not path.is_file():
        return []
    return [w["code"] for w in json.loads(path.read_text()).get("warnings", [])]


def read_run_seeds(directory: Path) -> list[int]:
    """The seeds of the job's runs in its ``metrics.json``, the saved model's first (see
    ``lpft_core.jobs.seeds``); empty for a model saved before runs were recorded."""
    path = directory / METRICS
    if not path.is_file():
        return []
    return [run["seed"] for run in json.loads(path.read_text()).get("runs", [])]


def read_calibration(directory: Path) -> CalibrationRecord:
    """``calibration.json``."""
    return CalibrationRecord(**json.loads((directory / CALIBRATION).read_text()))


def write_calibration(directory: Path, record: CalibrationRecord) -> None:
    """Replace ``calibration.json`` atomically (a predictor never reads half a file)."""
    partial = directory / f".{CALIBRATION}.partial"
    write_json(partial, asdict(record))
    partial.replace(directory / CALIBRATION)


def load_model(directory: Path, manifest: ArtifactManifest) -> LpftForSequenceClassification:
    """The trained classifier in eval mode on the CPU; LoRA weights are merged in, since a
    merged model predicts faster and identically."""
    if manifest.format == "full":
        return LpftForSequenceClassification.from_pretrained(directory).eval()
    config = LpftConfig.from_json_file(directory / LORA_CLASSIFIER_CONFIG)
    model = LpftForSequenceClassification(config)
    model.encoder = load_encoder(resolve_model(manifest.base_model))
    peft_model = PeftModel.from_pretrained(model, directory)
    return peft_model.merge_and_unload().eval()


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as strict JSON. A non-finite number (an infinite scatter ratio when a
    class has no within-class spread, say) becomes ``null`` and is named in a top-level
    ``non_finite`` list, because NaN and Infinity are not JSON and break every client."""
    notes: list[str] = []
    clean = _finite(value, "", notes)
    if notes and isinstance(clean, dict):
        clean["non_finite"] = notes
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _finite(value: Any, where: str, notes: list[str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        notes.append(f"{where or 'value'} was {value}, written as null")
        return None
    if isinstance(value, dict):
        return {k: _finite(v, f"{where}.{k}" if where else str(k), notes) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v, f"{where}[{i}]", notes) for i, v in enumerate(value)]
    return value
