"""Kernel logistic regression as the paper's solver runs it: raw kernel, its C grid, folds
that keep a sample's rows together; checked against a hand-written cross-validation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from lpft_core.diagnostics.ntk_stats import PAPER_CS, kernel_regression_accuracy, sample_folds


def test_folds_keep_each_samples_rows_together() -> None:
    folds = sample_folds(23, 3, seed=0)
    assert len(folds) == 5
    scored = np.concatenate([score for _, score in folds])
    assert sorted(scored) == list(range(23 * 3))
    for fit, score in folds:
        assert not set(fit // 3) & set(score // 3)
        assert set(fit) | set(score) == set(range(69))


@pytest.fixture()
def kernel() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A linear kernel of noisy features whose cross-validation picks a C inside the grid."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    phi = 0.2 * (rng.normal(size=(60, 6)) + 1.2 * np.eye(6)[y])
    k = np.kron(phi @ phi[:40].T + 1.0, np.eye(2))  # rows: 60 samples · 2, columns: 40 · 2
    return k[:80], k[80:], y[:40], y[40:]


def test_matches_a_hand_written_cross_validation_on_the_raw_kernel(kernel) -> None:
    train, test, y_train, y_test = kernel
    targets = np.eye(2)[y_train].reshape(-1)
    folds = sample_folds(len(y_train), 2, seed=0)
    mean_accuracy = [
        np.mean(
            [
                LogisticRegression(C=c, max_iter=10_000)
                .fit(train[fit], targets[fit])
                .score(train[score], targets[score])
                for fit, score in folds
            ]
        )
        for c in PAPER_CS
    ]
    best = PAPER_CS[int(np.argmax(mean_accuracy))]
    refit = LogisticRegression(C=best, max_iter=10_000).fit(train, targets)
    expected_pair = float(refit.score(test, np.eye(2)[y_test].reshape(-1)))
    expected_sample = float(
        (refit.decision_function(test).reshape(-1, 2).argmax(axis=1) == y_test).mean()
    )

    accuracy = kernel_regression_accuracy(train, test, y_train, y_test, 2, seed=0)

    assert PAPER_CS[0] < best < PAPER_CS[-1]  # the selection is exercised, not an edge
    assert accuracy.chosen_C == pytest.approx(best)
    assert accuracy.test_pair == pytest.approx(expected_pair)
    assert accuracy.test_sample == pytest.approx(expected_sample)


def test_grid_is_the_papers() -> None:
    assert PAPER_CS[0] == pytest.approx(1e-4)
    assert PAPER_CS[-1] == pytest.approx(1e4)
    assert len(PAPER_CS) == 10
