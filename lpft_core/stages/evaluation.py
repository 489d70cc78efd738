"""Scoring a reported set: the metrics before and after temperature scaling, the reliability
bins, the risk–coverage curve, and the two shares the model-quality checks read (majority
label, top prediction)."""

from __future__ import annotations

import numpy as np

from lpft_core.results import Evaluation, Reliability, SelectivePrediction
from lpft_core.stages.calibration import classification_metrics, reliability_bins, scaled_softmax

#: Points of the stored risk–coverage curve.
CURVE_POINTS = 20


def evaluate(
    split: str, logits: np.ndarray, y: np.ndarray, temperature: float, n_bins: int
) -> Evaluation:
    """Every figure of one reported set from its logits and labels."""
    n_classes = logits.shape[1]
    return Evaluation(
        split=split,
        rows=len(y),
        majority_rate=float(np.bincount(y, minlength=n_classes).max() / len(y)),
        top_prediction_share=float(
            np.bincount(logits.argmax(axis=1), minlength=n_classes).max() / len(y)
        ),
        uncalibrated=classification_metrics(logits, y, n_bins=n_bins),
        calibrated=classification_metrics(logits, y, temperature=temperature, n_bins=n_bins),
        reliability=Reliability(
            uncalibrated=reliability_bins(scaled_softmax(logits, 1.0), y, n_bins),
            calibrated=reliability_bins(scaled_softmax(logits, temperature), y, n_bins),
        ),
        selective=selective_prediction(logits, y),
    )


def selective_prediction(logits: np.ndarray, y: np.ndarray) -> SelectivePrediction:
    """The risk–coverage curve and its area (see ``SelectivePrediction``); inputs of equal
    confidence are answered in input order (a stable sort)."""
    confidence = scaled_softmax(logits, 1.0).max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    correct = (logits.argmax(axis=1) == y)[order]
    accuracy = np.cumsum(correct) / np.arange(1, len(y) + 1)
    shares = np.arange(1, CURVE_POINTS + 1) / CURVE_POINTS
    answered = np.unique(np.ceil(shares * len(y)).astype(int))
    return SelectivePrediction(
        aurc=float(np.mean(1.0 - accuracy)),
        coverage=[float(k / len(y)) for k in answered],
        accuracy=[float(accuracy[k - 1]) for k in answered],
    )
