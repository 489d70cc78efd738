"""Temperature scaling and calibration metrics against hand-computed values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lpft_core.errors import DataError
from lpft_core.stages.calibration import (
    TEMPERATURE_BOUNDS,
    TemperatureScaler,
    calibration_errors,
    classification_metrics,
    nll_from_logits,
    reliability_bins,
)


def two_class_probs(confidences: list[float], predicted: list[int]) -> np.ndarray:
    probs = np.empty((len(confidences), 2))
    for i, (c, k) in enumerate(zip(confidences, predicted, strict=True)):
        probs[i, k], probs[i, 1 - k] = c, 1 - c
    return probs


def test_ece_and_mce_match_a_hand_computed_fixture() -> None:
    # Bins of width 0.1. (0.9,1]: conf .95, acc 1/2, gap .45 (n=2); (0.5,0.6]: conf .55,
    # acc 2/3, gap 7/60 (n=3); (0.7,0.8]: conf .75, acc 1, gap .25 (n=1).
    probs = two_class_probs([0.95, 0.95, 0.55, 0.55, 0.55, 0.75], [0, 0, 1, 1, 1, 0])
    y = np.array([0, 1, 1, 1, 0, 0])
    ece, mce = calibration_errors(probs, y, n_bins=10)
    assert ece == pytest.approx((2 * 0.45 + 3 * 7 / 60 + 0.25) / 6)
    assert mce == pytest.approx(0.45)


def test_bins_are_left_open_right_closed_and_one_is_in_the_last_bin() -> None:
    probs = two_class_probs([0.6, 1.0, 0.5], [0, 0, 0])
    bins = reliability_bins(probs, np.array([0, 0, 1]), n_bins=10)
    assert [b.count for b in bins] == [0, 0, 0, 0, 1, 1, 0, 0, 0, 1]
    assert bins[5].lower == pytest.approx(0.5) and bins[5].upper == pytest.approx(0.6)
    assert bins[4].accuracy == 0.0 and bins[9].confidence == 1.0
    assert bins[0].confidence is None and bins[0].accuracy is None
    assert sum(b.count for b in bins) == 3


def test_brier_nll_accuracy_and_macro_f1() -> None:
    logits = np.log(np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]))
    y = np.array([0, 1, 1])
    m = classification_metrics(logits, y, n_bins=10)
    assert m.accuracy == pytest.approx(2 / 3)
    assert m.brier == pytest.approx((0.08 + 0.18 + 0.72) / 3)
    assert m.nll == pytest.approx(-(np.log(0.8) + np.log(0.7) + np.log(0.4)) / 3)
    assert m.macro_f1 == pytest.approx((2 / 3 + 2 / 3) / 2)
    # MCC from the confusion matrix [[1, 0], [1, 1]]: (1·1 − 0·1) / sqrt(1·2·2·1)
    assert m.mcc == pytest.approx(1 / 2)


def test_temperature_is_the_nll_minimum_on_a_dense_grid() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=500)
    logits = rng.normal(size=(500, 3))
    logits[np.arange(500), y] += 1.0
    logits *= 6.0  # over-confident: the optimum is far from T = 1
    scaler = TemperatureScaler().fit(logits, y)
    grid = np.exp(np.linspace(np.log(0.05), np.log(100), 20001))
    nlls = np.array([nll_from_logits(logits / t, y) for t in grid])
    best = grid[nlls.argmin()]
    assert scaler.temperature_ > 3
    assert abs(np.log(scaler.temperature_) - np.log(best)) < 1e-3
    assert nll_from_logits(logits / scaler.temperature_, y) <= nlls.min() + 1e-12
    assert np.allclose(scaler.predict_proba(logits).sum(axis=1), 1.0)


def test_temperature_below_one_for_under_confident_logits() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=400)
    logits = np.zeros((400, 2))
    logits[np.arange(400), y] = 0.3 + 0.1 * rng.normal(size=400)
    scaler = TemperatureScaler().fit(logits, y)
    assert scaler.temperature_ < 0.5
    assert classification_metrics(logits, y, temperature=scaler.temperature_).nll < (
        classification_metrics(logits, y).nll
    )


def test_bad_logits_are_rejected() -> None:
    with pytest.raises(DataError, match="shape"):
        TemperatureScaler().fit(np.zeros((3,)), np.zeros(3, dtype=int))
    with pytest.raises(DataError, match="NaN"):
        TemperatureScaler().fit(np.array([[np.nan, 0.0]]), np.array([0]))


def test_a_temperature_at_the_search_edge_is_reported() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=400)
    wrong = np.stack([2 * y - 1.0, -(2 * y - 1.0)], axis=1)  # every logit favours the wrong class
    with pytest.warns(UserWarning, match="flattens every prediction towards uniform"):
        scaler = TemperatureScaler().fit(wrong, y)
    assert scaler.temperature_ == pytest.approx(TEMPERATURE_BOUNDS[1], rel=1e-2)
    informative = np.stack([-(2 * y - 1.0), 2 * y - 1.0], axis=1) * 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TemperatureScaler().fit(informative + rng.normal(size=(400, 2)), y)
