"""Fit a new temperature for a trained model on new labelled data, without retraining.

Calibration drifts when the data a model serves moves away from its validation split; one
temperature is cheap to refit and changes no prediction, only the confidence. The replaced
temperature stays on record in ``calibration.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from lpft_core.data.datasets import read_examples
from lpft_core.model.artifacts import CalibrationRecord, read_calibration, write_calibration
from lpft_core.results import Reliability
from lpft_core.serving.predictor import Predictor
from lpft_core.stages.calibration import (
    ClassificationMetrics,
    ReliabilityBin,
    TemperatureScaler,
    classification_metrics,
    reliability_bins,
    scaled_softmax,
)
from lpft_core.stages.conformal import fit_conformal
from lpft_core.stages.prepare import label_indices


@dataclass(frozen=True)
class Recalibration:
    """The new temperature and what it does on the data it was fitted on.

    Every figure is in-sample (``in_sample`` says so): T was fitted on these very rows, so
    ``calibrated`` flatters it; judge it on other labelled data.

    Attributes:
        previous_temperature: the temperature in use before.
        previous: metrics on the new data with the previous temperature.
        calibrated: metrics with the new temperature (accuracy is unchanged).
        uncalibrated: metrics with T = 1.
        reliability: bins at T = 1 (``uncalibrated``) and at the new T (``calibrated``).
        previous_reliability: bins at the previous temperature.
    """

    temperature: float
    previous_temperature: float
    fitted_on: str
    rows: int
    ece_bins: int
    uncalibrated: ClassificationMetrics
    previous: ClassificationMetrics
    calibrated: ClassificationMetrics
    reliability: Reliability
    previous_reliability: list[ReliabilityBin]
    in_sample: bool = True

    def to_dict(self) -> dict:
        """JSON-ready data."""
        return dataclasses.asdict(self)


def recalibrate(
    model_dir: str | Path,
    data: str | Path,
    *,
    name: str | None = None,
    ece_bins: int | None = None,
    max_text_chars: int = 20_000,
) -> Recalibration:
    """Fit T on the labelled file ``data`` and make it the model's default temperature.

    Args:
        name: what ``fitted_on`` records (default: the file name).
        ece_bins: bins for ECE/MCE (default: those of the current calibration).

    Raises:
        DataError: a row is invalid or has a label the model does not know.
    """
    directory = Path(model_dir)
    source = name or Path(data).name
    predictor = Predictor(directory)
    examples = read_examples(data, max_text_chars=max_text_chars)
    labels = label_indices(examples, predictor.labels, source)
    logits = predictor.logits([{"text": e.text, "text_pair": e.text_pair} for e in examples])
    old = read_calibration(directory)
    bins = ece_bins or old.ece_bins
    temperature = TemperatureScaler().fit(logits, labels).temperature_
    result = Recalibration(
        temperature=temperature,
        previous_temperature=old.temperature,
        fitted_on=source,
        rows=len(examples),
        ece_bins=bins,
        uncalibrated=classification_metrics(logits, labels, n_bins=bins),
        previous=classification_metrics(logits, labels, temperature=old.temperature, n_bins=bins),
        calibrated=classification_metrics(logits, labels, temperature=temperature, n_bins=bins),
        reliability=Reliability(
            uncalibrated=reliability_bins(scaled_softmax(logits, 1.0), labels, bins),
            calibrated=reliability_bins(scaled_softmax(logits, temperature), labels, bins),
        ),
        previous_reliability=reliability_bins(
            scaled_softmax(logits, old.temperature), labels, bins
        ),
    )
    # The replaced record keeps its T and where it came from; its conformal scores were of the
    # old T's probabilities and are replaced by scores on this data at the new T.
    replaced = {
        k: v for k, v in dataclasses.asdict(old).items() if k not in ("previous", "conformal")
    }
    write_calibration(
        directory,
        CalibrationRecord(
            temperature=temperature,
            fitted_on=source,
            rows=len(examples),
            ece_bins=bins,
            previous=[replaced, *old.previous],
            conformal=fit_conformal(scaled_softmax(logits, temperature), labels).to_dict(),
        ),
    )
    return result
