"""A trained model for any runtime, with its calibration inside.

lpft's probabilities are softmax(logits / T), with T in calibration.json and, for LoRA, the
adapters in a peft checkpoint: a model directory loaded elsewhere gives uncalibrated
probabilities or does not load. An export merges LoRA into the weights and carries T:

* ``hf``: a directory ``AutoModelForSequenceClassification.from_pretrained`` loads, with T
  folded into the head (V/T, b/T: exact, the head being linear), so its plain softmax is
  lpft's calibrated probability. It needs ``trust_remote_code=True``: the classifier is one
  linear layer on pooled features (mean pooling for sentence-transformers encoders), which no
  stock transformers class computes (their heads add a dense + tanh layer on the first token).
* ``onnx``: ``model.onnx`` with inputs ``input_ids``, ``attention_mask`` (and
  ``token_type_ids`` when the encoder takes them), int64, and outputs ``probabilities``
  (calibrated, T inside the graph) and ``logits`` (T = 1), plus the tokenizer.

Both come with ``labels.json`` and a model card ``README.md``, packed as a ``.tar.gz``.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lpft_core.data.datasets import Label
from lpft_core.model.artifacts import (
    METRICS,
    load_model,
    read_calibration,
    read_labels,
    read_manifest,
)
from lpft_core.model.classifier import classifier_head, load_tokenizer

ExportFormat = Literal["onnx", "hf"]
FORMATS: tuple[ExportFormat, ...] = ("onnx", "hf")


class CalibratedOutputs(nn.Module):
    """The classifier with T inside: (probabilities = softmax(logits / T), logits)."""

    def __init__(self, model: nn.Module, temperature: float, token_types: bool) -> None:
        super().__init__()
        self.model = model
        self.temperature = temperature
        self.token_types = token_types

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        extra = {"token_type_ids": token_type_ids} if self.token_types else {}
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits
        return torch.softmax(logits / self.temperature, dim=-1), logits


def export_model(model_dir: str | Path, out: str | Path, fmt: ExportFormat) -> Path:
    """Write the export of ``model_dir`` in format ``fmt`` as the archive ``out``
    (``.tar.gz``) and return its path."""
    with tempfile.TemporaryDirectory() as scratch:
        staging = write_export(model_dir, Path(scratch) / "export", fmt)
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(target, "w:gz") as archive:
            archive.add(staging, arcname=".")
    return target


@dataclass(frozen=True)
class ServingFacts:
    """What code serving an ``onnx`` export needs beside the graph to give lpft's calibrated
    probabilities: the labels (class i is ``labels[i]``), the temperature, the truncation
    length and whether inputs are pairs."""

    labels: list[Label]
    temperature: float
    max_length: int
    pair: bool


def serving_facts(model_dir: str | Path) -> ServingFacts:
    """The ``ServingFacts`` of the model in ``model_dir``, from its own records."""
    directory = Path(model_dir)
    manifest = read_manifest(directory)
    return ServingFacts(
        labels=read_labels(directory),
        temperature=read_calibration(directory).temperature,
        max_length=manifest.max_length,
        pair=manifest.pair,
    )


def write_export(model_dir: str | Path, out: Path, fmt: ExportFormat) -> Path:
    """The export of ``model_dir`` unpacked in the new directory ``out`` (what the archive
    holds; a registered MLflow model holds it too) and return ``out``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    directory = Path(model_dir)
    out.mkdir(parents=True)
    if fmt == "hf":
        write_hf(directory, out)
    else:
        write_onnx(directory, out)
    (out / "labels.json").write_text(json.dumps(read_labels(directory)))
    (out / "README.md").write_text(model_card(directory, fmt), encoding="utf-8")
    return out


def write_hf(model_dir: Path, out: Path) -> None:
    """A transformers directory whose softmax is the calibrated probability."""
    model = load_model(model_dir, read_manifest(model_dir))
    temperature = read_calibration(model_dir).temperature
    head = classifier_head(model)
    with torch.no_grad():
        head.weight.div_(temperature)
        head.bias.div_(temperature)
    model.save_pretrained(out, safe_serialization=True)
    load_tokenizer(str(model_dir)).save_pretrained(out)


def write_onnx(model_dir: Path, out: Path) -> None:
    """``model.onnx`` (opset from the exporter's default) and the tokenizer."""
    write_onnx_graph(model_dir, out / "model.onnx")
    load_tokenizer(str(model_dir)).save_pretrained(out)


def write_onnx_graph(model_dir: Path, path: Path) -> None:
    """The graph alone (the exporter may put the weights beside it, in ``path``'s folder)."""
    model = load_model(model_dir, read_manifest(model_dir))
    export_classifier_graph(
        model, load_tokenizer(str(model_dir)), read_calibration(model_dir).temperature, path
    )


def export_classifier_graph(
    model: nn.Module, tokenizer: Any, temperature: float, path: Path
) -> None:
    """``model`` (an lpft classifier) as the export's graph at ``path``, with ``temperature``
    inside its ``probabilities`` output; what ``write_onnx_graph`` does for a saved model, and
    what the benchmarks export from models built in code."""
    sample = tokenizer(
        ["an example", "a second, longer example"], padding=True, return_tensors="pt"
    )
    token_types = "token_type_ids" in sample
    names = ["input_ids", "attention_mask", *(["token_type_ids"] if token_types else [])]
    wrapped = CalibratedOutputs(model, temperature, token_types).eval()
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    torch.onnx.export(
        wrapped,
        tuple(sample[name].long() for name in names),
        str(path),
        input_names=names,
        output_names=["probabilities", "logits"],
        dynamic_shapes=tuple({0: batch, 1: sequence} for _ in names),
        dynamo=True,
    )


def model_card(model_dir: Path, fmt: ExportFormat) -> str:
    """What a user of the export needs to know, from the job's own records."""
    manifest = read_manifest(model_dir)
    calibration = read_calibration(model_dir)
    metrics_path = model_dir / METRICS
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    test = metrics.get("test", {})
    lines = [
        f"# lpft classifier ({manifest.method})",
        "",
        f"- Base model: `{manifest.base_model}`; method `{manifest.method}` "
        f"({'LoRA merged into the weights' if manifest.format == 'lora' else 'full weights'}).",
        f"- Labels (class i is labels[i]): {read_labels(model_dir)}; "
        f"{'sentence pairs' if manifest.pair else 'single texts'}, "
        f"at most {manifest.max_length} tokens.",
        f"- Data: {metrics.get('splits', 'see the job')} rows per split.",
        f"- Temperature T = {calibration.temperature:.4g}, fitted on {calibration.fitted_on} "
        f"({calibration.rows} rows); "
        + (
            "folded into the head (weights and bias divided by T): softmax of the logits is "
            "the calibrated probability."
            if fmt == "hf"
            else "applied inside the graph: output `probabilities` is calibrated, `logits` "
            "is T = 1."
        ),
    ]
    for name in ("uncalibrated", "calibrated"):
        figures = test.get(name)
        if figures:
            lines.append(
                f"- Test ({test.get('split')}, {test.get('rows')} rows), {name}: accuracy "
                f"{figures['accuracy']:.4f}, ECE {figures['ece']:.4f}, NLL {figures['nll']:.4f}."
            )
    for row in metrics.get("conformal", []):
        sets = "Mondrian " if row.get("mondrian") else ""
        lines.append(
            f"- Conformal {sets}{row['method']} sets at alpha {row['alpha']}: coverage "
            f"{row['coverage']:.3f}, mean size {row['mean_set_size']:.2f} (test split)."
        )
    lines += [
        "",
        "## Loading",
        "",
        (
            "`AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)`: "
            "remote code is needed because the classifier is one linear layer on pooled "
            "features, which no stock transformers head computes."
            if fmt == "hf"
            else "`onnxruntime.InferenceSession('model.onnx')` with the tokenizer in this "
            "directory (`AutoTokenizer.from_pretrained`), int64 inputs."
        ),
        "",
        "## Intended use and limits",
        "",
        "Text classification on data like the training data. The calibration and coverage "
        "figures hold for data drawn like the validation and test splits; under a shift, "
        "re-calibrate on labelled data from the new distribution. Check the job's warnings "
        f"({[w.get('code') for w in metrics.get('warnings', [])] or 'none'}) before use.",
    ]
    return "\n".join(lines) + "\n"


def unpack(archive: str | Path, out: str | Path) -> Path:
    """Extract an export archive (what a user of the archive does)."""
    target = Path(out)
    if target.exists():
        shutil.rmtree(target)
    with tarfile.open(archive) as packed:
        packed.extractall(target, filter="data")
    return target
