"""The paper's head-norm analysis of a sweep (the ``head_norm`` preset, over
``head_norm_scale``): per trial, the feature change Diff(F) beside the accuracy and ECE.

Read from a trial's ``metrics.json`` data alone, with nothing heavy imported, so that the
sweep's summary (in the worker) and the API's list of trials give the very same figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HeadNormFigures:
    """One trial of the paper's head-norm analysis, all on the evaluation split (the test
    rows, ``split``): the feature change Diff(F) = (1/n) Σ ‖phi1_i − phi0_i‖₂ of the trained
    encoder against the pre-trained one, the accuracy and ECE before and after temperature
    scaling, and ‖V‖_F of the head at the end."""

    split: str
    feature_change: float
    accuracy: float
    ece_uncalibrated: float
    ece_calibrated: float
    head_norm: float


def head_norm_figures(metrics: dict[str, Any]) -> HeadNormFigures:
    """The head-norm analysis' figures of one trial, from its ``metrics.json`` data."""
    test = metrics["test"]
    return HeadNormFigures(
        split=test["split"],
        feature_change=float(metrics["features"][test["split"]]["difference"]),
        accuracy=float(test["calibrated"]["accuracy"]),
        ece_uncalibrated=float(test["uncalibrated"]["ece"]),
        ece_calibrated=float(test["calibrated"]["ece"]),
        head_norm=float(metrics["head_norm"]["final"]),
    )
