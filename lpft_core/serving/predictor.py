"""Calibrated predictions from a saved artifact."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lpft_core.data.batching import EncodedTexts, encode
from lpft_core.data.datasets import Example, Label
from lpft_core.errors import DataError, ModelError
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
from lpft_core.model.inference import forward_all
from lpft_core.serving.onnx_runtime import OnnxLogits, Precision, serving_graph
from lpft_core.serving.quantization import QuantizationReport, quantization_report
from lpft_core.stages.calibration import scaled_softmax
from lpft_core.stages.conformal import (
    DEFAULT_METHOD,
    ConformalCalibration,
    ConformalMethod,
    mondrian_shortfall,
    prediction_sets,
    rows_needed,
)

Backend = Literal["torch", "onnx"]
BACKENDS: tuple[Backend, ...] = ("torch", "onnx")


@dataclass(frozen=True)
class Prediction:
    """One input's label, its probabilities per label name, and the raw logits.

    ``prediction_set``: the conformal set of labels when one was asked for (may be empty).
    ``abstained``: the top probability was below the ``min_confidence`` asked for; ``label``
    is then ``None``.
    """

    label: Label | None
    probabilities: dict[str, float]
    logits: list[float]
    prediction_set: list[Label] | None = None
    abstained: bool = False


@dataclass(frozen=True)
class ConformalRequest:
    """Conformal sets at miscoverage ``alpha`` with the score ``method``: sets that hold the
    true label with probability at least ``1 - alpha``; with ``mondrian``, at least that for
    each label on its own (per-label thresholds).

    The default method is ``DEFAULT_METHOD``, chosen from measurements (beside it).
    """

    alpha: float
    method: ConformalMethod = DEFAULT_METHOD
    mondrian: bool = False


class Predictor:
    """A loaded model that returns calibrated probabilities.

    Args:
        directory: an artifact directory written by ``finetune``.
        device: ``auto``, ``cpu`` or ``cuda`` (the ``torch`` backend's).
        batch_size: rows per forward pass.
        backend: ``torch``, or ``onnx``: the model's ONNX graph in onnxruntime on the CPU
            (``lpft_core.serving.onnx_runtime``; built into the model directory on first use).
        precision: ``fp32``, or ``int8`` (``onnx`` only): dynamic int8 quantisation, whose
            effect on the job's held-out rows is measured first (``quantization``).
        threads: the ``onnx`` backend's intra-op threads (``cpu_quota.usable_cpus`` gives the
            CPUs the process really has); ``None``: onnxruntime's default, the host's cores.
            torch's are the process's (``torch.set_num_threads``), its owner's to set.
    """

    def __init__(
        self,
        directory: str | Path,
        device: str = "auto",
        batch_size: int = 64,
        *,
        backend: Backend = "torch",
        precision: Precision = "fp32",
        data_root: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ModelError(f"backend must be one of {BACKENDS}, not {backend!r}")
        if precision != "fp32" and backend != "onnx":
            raise ModelError("int8 precision is an onnx backend option; use backend='onnx'")
        self.directory = Path(directory)
        self.threads = threads
        #: where relative data paths of the model's spec are found (the int8 report's rows)
        self.data_root = data_root
        self.manifest = read_manifest(self.directory)
        self.labels = read_labels(self.directory)
        self._calibration_stamp = self._calibration_file().stat().st_mtime_ns
        self._take_calibration()
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(str(self.directory))
        self.warnings = read_warning_codes(self.directory)
        #: the job's seeds; the model is the first one's run
        self.seeds = read_run_seeds(self.directory)
        #: how int8 serving differs from fp32 (``None`` unless ``precision`` is ``int8``)
        self.quantization: QuantizationReport | None = None
        #: what computes the logits: ``torch``, ``onnx`` or ``onnx-int8``
        self.serving = backend if precision == "fp32" else f"{backend}-{precision}"
        if backend == "torch":
            self.device = resolve_device(device)
            model = load_model(self.directory, self.manifest).to(self.device)
            self._forward: Callable[[EncodedTexts], np.ndarray] = lambda encoded: forward_all(
                model, encoded, batch_size=self.batch_size, device=self.device
            )
        else:
            self.device = torch.device("cpu")
            self._forward = self._onnx_forward(precision)

    def _onnx_forward(self, precision: Precision) -> Callable[[EncodedTexts], np.ndarray]:
        graph = OnnxLogits(serving_graph(self.directory, precision, self.threads), self.threads)
        if precision == "int8":
            self._int8 = graph
            self._measure_quantization()
        return lambda encoded: graph(encoded, self.batch_size)

    def _measure_quantization(self) -> None:
        """The int8 report at the current T; the fp32 graph is loaded only while it is
        compared (read back from onnx/quantization.json, without loading, once measured)."""
        self.quantization = quantization_report(
            self.directory,
            lambda: OnnxLogits(serving_graph(self.directory, "fp32", self.threads), self.threads),
            self._int8,
            self.tokenizer,
            self.labels,
            self.temperature,
            data_root=self.data_root,
        )

    def calibration_is_current(self) -> bool:
        """Whether no re-calibration has written a new T since it was read (a stat)."""
        return self._calibration_file().stat().st_mtime_ns == self._calibration_stamp

    def refresh_calibration(self) -> None:
        """Take up a temperature re-fitted since loading (``recalibrate``); a stat when
        nothing changed. An int8 model's report is measured again at the new T (seconds of
        inference)."""
        stamp = self._calibration_file().stat().st_mtime_ns
        if stamp != self._calibration_stamp:
            self._take_calibration()
            self._calibration_stamp = stamp
            if self.quantization is not None:
                self._measure_quantization()

    def _take_calibration(self) -> None:
        record = read_calibration(self.directory)
        self.temperature = record.temperature
        #: the conformal scores at ``temperature``; ``None`` for a model saved without them
        self.conformal = (
            ConformalCalibration.from_dict(record.conformal) if record.conformal else None
        )

    def _calibration_file(self) -> Path:
        return self.directory / CALIBRATION

    def logits(self, inputs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Raw logits of shape (n, C) for ``{"text", "text_pair"?}`` inputs."""
        examples = self.validate(inputs)
        if not examples:
            return np.empty((0, len(self.labels)), dtype=np.float32)
        return self._forward(encode(self.tokenizer, examples, self.manifest.max_length))

    def predict(
        self,
        inputs: Sequence[Mapping[str, Any]],
        calibrated: bool = True,
        *,
        conformal: ConformalRequest | None = None,
        min_confidence: float | None = None,
    ) -> list[Prediction]:
        """Label, probabilities (softmax(logits / T) with the fitted T unless
        ``calibrated=False``) and logits per input; see ``predictions`` for the options."""
        return self.predictions(
            self.logits(inputs), calibrated, conformal=conformal, min_confidence=min_confidence
        )

    def predictions(
        self,
        logits: np.ndarray,
        calibrated: bool = True,
        *,
        conformal: ConformalRequest | None = None,
        min_confidence: float | None = None,
    ) -> list[Prediction]:
        """What ``predict`` returns, from logits of shape (n, C) that ``logits`` computed: a
        server that batches the forward passes of several requests together answers each
        exactly as ``predict`` would.

        Args:
            conformal: add each input's conformal set (always of the calibrated
                probabilities: the scores were fitted on them).
            min_confidence: abstain (``label`` ``None``, ``abstained`` true) where the top
                probability is below it.

        Raises:
            ModelError, DataError: conformal sets this model cannot serve
                (``check_conformal``).
        """
        temperature = self.temperature if calibrated else 1.0
        probs = scaled_softmax(logits, temperature)
        sets: list[list[Label]] | list[None] = [None] * len(probs)
        if conformal is not None:
            sets = self._conformal_sets(logits, conformal)
        names = [str(label) for label in self.labels]
        predictions = []
        for row, logit_row, members in zip(probs, logits, sets, strict=True):
            abstained = min_confidence is not None and float(row.max()) < min_confidence
            predictions.append(
                Prediction(
                    label=None if abstained else self.labels[int(row.argmax())],
                    probabilities=dict(zip(names, map(float, row), strict=True)),
                    logits=[float(v) for v in logit_row],
                    prediction_set=members,
                    abstained=abstained,
                )
            )
        return predictions

    def check_conformal(self, request: ConformalRequest) -> ConformalCalibration:
        """The stored scores that serve ``request``, checked before any model work.

        Raises:
            ModelError: the model was saved without the scores ``request`` needs (none, none
                for ``aps_randomized``, or none per label for Mondrian sets).
            DataError: Mondrian sets at an ``alpha`` some label has too few calibration rows
                for (field ``conformal.alpha``, naming the label and the rows needed).
        """
        stored = self.conformal
        if (
            stored is None
            or (request.method == "aps_randomized" and stored.aps_randomized_scores is None)
            or (request.mondrian and stored.class_scores is None)
        ):
            sets = "Mondrian " if request.mondrian else ""
            raise ModelError(
                f"this model was saved without conformal scores for {sets}{request.method} "
                "sets; re-calibrate it (POST /jobs/{id}/recalibrate), or train it again, "
                "to get these prediction sets"
            )
        if request.mondrian:
            short = mondrian_shortfall(stored, request.alpha)
            if short:
                k, rows = min(short.items(), key=lambda item: item[1])
                allowed = f"alpha 1/{rows + 1} or larger" if rows else "no alpha"
                raise DataError(
                    f"label {self.labels[k]!r} has {rows} calibration rows; Mondrian sets at "
                    f"alpha {request.alpha} need at least {rows_needed(request.alpha)} per "
                    f"label ({rows} rows allow {allowed}): ask for a larger alpha, marginal "
                    "sets, or re-calibrate on more rows of that label",
                    field="conformal.alpha",
                )
        return stored

    def _conformal_sets(self, logits: np.ndarray, request: ConformalRequest) -> list[list[Label]]:
        stored = self.check_conformal(request)
        calibrated = scaled_softmax(logits, self.temperature)
        indices = prediction_sets(
            calibrated, stored, request.alpha, request.method, mondrian=request.mondrian
        )
        return [[self.labels[k] for k in members] for members in indices]

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
