"""Calibrated predictions from a saved artifact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lpft_core.data.batching import encode
from lpft_core.data.datasets import Example, Label
from lpft_core.errors import DataError
from lpft_core.model.artifacts import (
    CALIBRATION,
    load_model,
    read_calibration,
    read_labels,
    read_manifest,
    read_run_seeds,
    read_warning_codes,
)
from lpft_core.model.classifier import load_tokenizer, resolve_device
from lpft_core.serving.inference import forward_all
from lpft_core.stages.calibration import scaled_softmax


@dataclass(frozen=True)
class Prediction:
    """One input's label, its probabilities per label name, and the raw logits."""

    label: Label
    probabilities: dict[str, float]
    logits: list[float]


class Predictor:
    """A loaded model that returns calibrated probabilities.

    Args:
        directory: an artifact directory written by ``finetune``.
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: rows per forward pass.
    """

    def __init__(self, directory: str | Path, device: str = "auto", batch_size: int = 64) -> None:
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        self.labels = read_labels(self.directory)
        self._calibration_stamp = self._calibration_file().stat().st_mtime_ns
        self.temperature = read_calibration(self.directory).temperature
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(str(self.directory))
        self.model = load_model(self.directory, self.manifest).to(self.device)
        self.warnings = read_warning_codes(self.directory)
        #: the job's seeds; the model is the first one's run
        self.seeds = read_run_seeds(self.directory)

    def refresh_calibration(self) -> None:
        """Take up a temperature re-fitted since loading (``recalibrate``); a stat when
        nothing changed."""
        stamp = self._calibration_file().stat().st_mtime_ns
        if stamp != self._calibration_stamp:
            self.temperature = read_calibration(self.directory).temperature
            self._calibration_stamp = stamp

    def _calibration_file(self) -> Path:
        return self.directory / CALIBRATION

    def logits(self, inputs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Raw logits of shape (n, C) for ``{"text", "text_pair"?}`` inputs."""
        examples = self.validate(inputs)
        if not examples:
            return np.empty((0, len(self.labels)), dtype=np.float32)
        encoded = encode(self.tokenizer, examples, self.manifest.max_length)
        return forward_all(self.model, encoded, batch_size=self.batch_size, device=self.device)

    def predict(
        self, inputs: Sequence[Mapping[str, Any]], calibrated: bool = True
    ) -> list[Prediction]:
        """Label, probabilities (softmax(logits / T) with the fitted T unless
        ``calibrated=False``) and logits per input."""
        return self.predictions(self.logits(inputs), calibrated)

    def predictions(self, logits: np.ndarray, calibrated: bool = True) -> list[Prediction]:
        """What ``predict`` returns, from logits of shape (n, C) that ``logits`` computed: a
        server that batches the forward passes of several requests together answers each
        exactly as ``predict`` would."""
        temperature = self.temperature if calibrated else 1.0
        probs = scaled_softmax(logits, temperature)
        names = [str(label) for label in self.labels]
        return [
            Prediction(
                label=self.labels[int(row.argmax())],
                probabilities=dict(zip(names, map(float, row), strict=True)),
                logits=[float(v) for v in logit_row],
            )
            for row, logit_row in zip(probs, logits, strict=True)
        ]

    def validate(self, inputs: Sequence[Mapping[str, Any]]) -> list[Example]:
        """Check every input against the model (non-empty text; text_pair exactly when the
        model was trained on pairs) before any of them is computed.

        Raises:
            DataError: naming ``inputs[i].text`` or ``inputs[i].text_pair``.
        """
        return [self._example(i, item) for i, item in enumerate(inputs)]

    def _example(self, index: int, item: Mapping[str, Any]) -> Example:
        text, pair = item.get("text"), item.get("text_pair")
        if not isinstance(text, str) or not text.strip():
            raise DataError("text must be a non-empty string", field=f"inputs[{index}].text")
        if self.manifest.pair and not (isinstance(pair, str) and pair.strip()):
            raise DataError(
                "this model was trained on sentence pairs; give a non-empty text_pair",
                field=f"inputs[{index}].text_pair",
            )
        if not self.manifest.pair and pair is not None:
            raise DataError(
                "this model was trained on single texts; remove text_pair",
                field=f"inputs[{index}].text_pair",
            )
        return Example(text=text, label=self.labels[0], text_pair=pair)
