"""Temperature scaling and the calibration metrics reported for every job.

Conventions (stated because implementations disagree; see shared research notes):
- ECE/MCE are top-label: confidence is the largest probability, correctness is whether its
  class is the label. Bins are equal-width on [0, 1] with membership ``lo < conf <= hi``
  (Guo et al. 2017; the paper's code), so confidence 1.0 falls in the last bin.
- Brier score is the multi-class sum ``mean_i sum_k (p_ik - 1[y_i = k])**2``, range [0, 2].
- NLL is the mean negative log-likelihood computed from logits (log-softmax, no clipping).
All values are fractions (ECE 0.052, not 5.2).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator
from sklearn.metrics import f1_score, matthews_corrcoef
from sklearn.utils.validation import check_is_fitted

from lpft_core.errors import DataError

#: Search interval for T, as the job contract promises (T in [0.05, 100]).
TEMPERATURE_BOUNDS = (0.05, 100.0)


@dataclass(frozen=True)
class ClassificationMetrics:
    """Quality of one set of probabilities against labels; all values are fractions except
    ``mcc``, Matthews' correlation in [-1, 1] (0 for a constant predictor; CoLA's metric)."""

    accuracy: float
    macro_f1: float
    mcc: float
    nll: float
    brier: float
    ece: float
    mce: float


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-width confidence bin ``(lower, upper]`` of a reliability diagram.

    ``confidence`` and ``accuracy`` are ``None`` for an empty bin.
    """

    lower: float
    upper: float
    confidence: float | None
    accuracy: float | None
    count: int


class TemperatureAtBoundWarning(UserWarning):
    """The fitted temperature sits at the end of its search interval."""


class TemperatureScaler(BaseEstimator):
    """Fit one temperature T so that ``softmax(logits / T)`` minimises held-out NLL.

    NLL as a function of 1/T is convex, so it is unimodal in log T; a bounded Brent search on
    log T in float64 therefore finds the optimum to ``xatol``. (A few LBFGS steps from T=1.5,
    the common recipe, stop far from the optimum when T* is large.)

    Args:
        bounds: the interval searched for T.
        xatol: absolute tolerance on log T.
    """

    def __init__(
        self, bounds: tuple[float, float] = TEMPERATURE_BOUNDS, xatol: float = 1e-9
    ) -> None:
        self.bounds = bounds
        self.xatol = xatol

    def fit(self, logits: np.ndarray, y: np.ndarray) -> TemperatureScaler:
        """Fit T on logits of shape (n, C) and integer labels of shape (n,)."""
        logits, y = _check_logits_labels(logits, y)
        low, high = np.log(self.bounds[0]), np.log(self.bounds[1])
        result = minimize_scalar(
            lambda log_t: nll_from_logits(logits / np.exp(log_t), y),
            bounds=(low, high),
            method="bounded",
            options={"xatol": self.xatol},
        )
        self.temperature_ = float(np.exp(result.x))
        if min(result.x - low, high - result.x) < 1e-3:
            warnings.warn(
                TemperatureAtBoundWarning(
                    f"the fitted temperature {self.temperature_:.3g} sits at the edge of the "
                    f"search interval {self.bounds}: on the fitting set the logits carry no usable "
                    "information about the labels, so temperature scaling "
                    + (
                        "flattens every prediction towards uniform"
                        if result.x > 0
                        else "sharpens every prediction as far as it may"
                    )
                    + "; the model itself has not learned the task"
                ),
                stacklevel=2,
            )
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, shape (n, C)."""
        check_is_fitted(self, "temperature_")
        return scaled_softmax(logits, self.temperature_)


def scaled_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) in float64, shape (n, C)."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def nll_from_logits(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of labels ``y`` under ``softmax(logits)``."""
    log_p = log_softmax(np.asarray(logits, dtype=np.float64), axis=1)
    return float(-log_p[np.arange(len(y)), y].mean())


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> list[ReliabilityBin]:
    """Top-label reliability diagram over ``n_bins`` equal-width bins ``(lo, hi]``."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted(side="left") maps conf in (edges[i], edges[i+1]] to i+1; conf == 0 cannot
    # occur for a probability vector's maximum, so clipping only guards rounding.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        bins.append(
            ReliabilityBin(
                lower=float(edges[b]),
                upper=float(edges[b + 1]),
                confidence=float(confidence[members].mean()) if count else None,
                accuracy=float(correct[members].mean()) if count else None,
                count=count,
            )
        )
    return bins


def calibration_errors(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> tuple[float, float]:
    """(ECE, MCE): the count-weighted mean and the maximum of |accuracy - confidence| over
    non-empty bins."""
    n = len(y)
    gaps = [
        (b.count, abs(b.accuracy - b.confidence))
        for b in reliability_bins(probs, y, n_bins)
        if b.count
    ]
    ece = sum(count * gap for count, gap in gaps) / n
    mce = max(gap for _, gap in gaps)
    return float(ece), float(mce)


def classification_metrics(
    logits: np.ndarray, y: np.ndarray, *, temperature: float = 1.0, n_bins: int = 15
) -> ClassificationMetrics:
    """Accuracy, macro-F1, MCC, NLL, Brier, ECE and MCE of ``softmax(logits / temperature)``."""
    logits, y = _check_logits_labels(logits, y)
    scaled = logits / temperature
    probs = scaled_softmax(scaled)
    n_classes = logits.shape[1]
    onehot = np.eye(n_classes)[y]
    predicted = probs.argmax(axis=1)
    ece, mce = calibration_errors(probs, y, n_bins)
    return ClassificationMetrics(
        accuracy=float((predicted == y).mean()),
        macro_f1=float(
            f1_score(y, predicted, labels=list(range(n_classes)), average="macro", zero_division=0)
        ),
        mcc=float(matthews_corrcoef(y, predicted)),
        nll=nll_from_logits(scaled, y),
        brier=float(((probs - onehot) ** 2).sum(axis=1).mean()),
        ece=ece,
        mce=mce,
    )


def _check_logits_labels(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise DataError(f"logits must have shape (n, C) with C >= 2, got {logits.shape}")
    if y.shape != (logits.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"labels must be integers of shape ({logits.shape[0]},), got {y.shape}")
    if len(y) == 0:
        raise DataError("need at least one example to calibrate or evaluate")
    if not np.isfinite(logits).all():
        raise DataError("logits contain NaN or infinity; the model diverged")
    return logits, y
