"""Feature-change metrics against independent formulas and their invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lpft_core.diagnostics.features import (
    FDR_RIDGE,
    feature_change,
    feature_statistics,
    fisher_discriminant_ratio,
    linear_cka,
    scatter_ratio,
)


@pytest.fixture()
def features() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    phi0 = rng.normal(size=(60, 8)) + 2.0 * np.eye(8)[y]
    phi1 = phi0 @ rng.normal(size=(8, 8)) + rng.normal(size=(60, 8))
    return phi0, phi1, y


def test_cka_feature_form_equals_gram_form(features) -> None:
    phi0, phi1, _ = features
    n = len(phi0)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = h @ phi0 @ phi0.T @ h, h @ phi1 @ phi1.T @ h
    gram_form = np.sum(k * l_) / np.sqrt(np.sum(k * k) * np.sum(l_ * l_))
    assert linear_cka(phi0, phi1) == pytest.approx(gram_form, rel=1e-10)


def test_cka_invariances(features) -> None:
    phi0, _, _ = features
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(8, 8)))
    assert linear_cka(phi0, phi0) == pytest.approx(1.0)
    assert linear_cka(phi0, 3.0 * phi0 @ q) == pytest.approx(1.0)


def test_scatter_ratio_splits_total_scatter_and_ignores_scale(features) -> None:
    phi0, _, y = features
    mean = phi0.mean(axis=0)
    between = sum((y == k).sum() * np.sum((phi0[y == k].mean(0) - mean) ** 2) for k in range(3))
    within = sum(np.sum((phi0[y == k] - phi0[y == k].mean(0)) ** 2) for k in range(3))
    assert between + within == pytest.approx(np.sum((phi0 - mean) ** 2))
    assert scatter_ratio(phi0, y) == pytest.approx(between / within)
    assert scatter_ratio(5.0 * phi0, y) == pytest.approx(scatter_ratio(phi0, y))


def scatter_matrices(phi: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = phi.mean(axis=0)
    s_b = sum(
        (y == k).sum() * np.outer(phi[y == k].mean(0) - mean, phi[y == k].mean(0) - mean)
        for k in np.unique(y)
    )
    s_w = sum(
        (phi[y == k] - phi[y == k].mean(0)).T @ (phi[y == k] - phi[y == k].mean(0))
        for k in np.unique(y)
    )
    return s_b, s_w


def test_fdr_is_the_ridged_fisher_ratio(features) -> None:
    phi0, _, y = features
    s_b, s_w = scatter_matrices(phi0, y)
    ridge = FDR_RIDGE * np.trace(s_w) / s_w.shape[0]
    oracle = np.trace(np.linalg.solve(s_w + ridge * np.eye(len(s_w)), s_b))
    assert fisher_discriminant_ratio(phi0, y) == pytest.approx(oracle, rel=1e-9)
    assert fisher_discriminant_ratio(5.0 * phi0, y) == pytest.approx(oracle, rel=1e-9)


def test_fdr_explodes_below_the_feature_dimension_as_the_papers_values_do() -> None:
    """The paper's FDR(F) is 8e4 to 7e8 on 56 samples and O(1) on 38,905: same features,
    fewer samples than dimensions, a far larger ratio; the trace ratio barely moves."""
    rng = np.random.default_rng(3)
    d = 64
    y = rng.integers(0, 2, 4000)
    phi = rng.normal(size=(4000, d)) + 0.5 * np.eye(d)[y]
    few = slice(0, 40)
    assert fisher_discriminant_ratio(phi[few], y[few]) > 1e4 * fisher_discriminant_ratio(phi, y)
    assert scatter_ratio(phi[few], y[few]) < 100 * scatter_ratio(phi, y)


def test_change_against_torch_oracles(features) -> None:
    phi0, phi1, y = features
    change = feature_change(phi0, phi1, y)
    t0, t1 = torch.as_tensor(phi0), torch.as_tensor(phi1)
    cosine = torch.nn.functional.cosine_similarity(t0, t1, dim=1).mean().item()
    assert change.cosine_to_pretrained == pytest.approx(cosine)
    assert change.difference == pytest.approx(torch.linalg.vector_norm(t1 - t0, dim=1).mean())
    pairwise = torch.nn.functional.cosine_similarity(t1[:, None], t1[None], dim=2)
    off_diagonal = (pairwise.sum() - pairwise.diagonal().sum()) / (60 * 59)
    assert change.trained.mean_pairwise_cosine == pytest.approx(off_diagonal.item())


def test_nothing_moved(features) -> None:
    phi0, _, y = features
    change = feature_change(phi0, phi0.copy(), y)
    assert change.difference == 0.0
    assert change.cosine_to_pretrained == pytest.approx(1.0)
    assert change.cka == pytest.approx(1.0)
    assert change.pretrained == feature_statistics(phi0, y) == change.trained
