"""How much training moved the features phi(x), measured on the same inputs.

The paper names CS(F), Diff(F), FDR(F) and Norm(C) without formulas; the definitions below
are ours and are what every lpft report means by those names. Phi0 and Phi1 are the (n, d)
features of the pre-trained and the trained encoder on the same n inputs, y their labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureStatistics:
    """Statistics of one set of features (n, d).

    Attributes:
        mean_pairwise_cosine: CS(F) = mean over pairs i ≠ j of cos(phi_i, phi_j): how
            anisotropic the features are (RoBERTa's CLS features give ≈ 0.997; the paper's
            pre-trained and LP rows are equal, so its CS(F) is a property of one feature set,
            not a comparison).
        fisher_ratio: FDR(F) = tr(S_B) / tr(S_W) = Σ_k n_k ‖μ_k − μ‖² / Σ_i ‖phi_i − μ_{y_i}‖²,
            the between-class over the within-class scatter. Scale-free and defined for any n
            (the inverse-matrix form tr(S_W⁻¹ S_B) is not when n < d).
        mean_norm: mean ‖phi_i‖₂.
    """

    mean_pairwise_cosine: float
    fisher_ratio: float
    mean_norm: float


@dataclass(frozen=True)
class FeatureChange:
    """The trained features against the pre-trained ones on one evaluation set.

    Attributes:
        rows: n.
        pretrained, trained: ``FeatureStatistics`` of Phi0 and Phi1.
        difference: Diff(F) = (1/n) Σ_i ‖phi1_i − phi0_i‖₂.
        relative_difference: Diff(F) / ((1/n) Σ_i ‖phi0_i‖₂).
        cosine_to_pretrained: (1/n) Σ_i cos(phi1_i, phi0_i); 1 when nothing moved.
        cka: linear CKA (Kornblith et al. 2019) of Phi0 and Phi1 with column-centred X, Y:
            ‖Yᵀ X‖_F² / (‖Xᵀ X‖_F · ‖Yᵀ Y‖_F); 1 when Phi1 is Phi0 up to rotation and scale.
    """

    rows: int
    pretrained: FeatureStatistics
    trained: FeatureStatistics
    difference: float
    relative_difference: float
    cosine_to_pretrained: float
    cka: float


def feature_statistics(features: np.ndarray, labels: np.ndarray) -> FeatureStatistics:
    """CS(F), FDR(F) and the mean norm of one feature set."""
    phi = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(phi, axis=1)
    unit = phi / np.maximum(norms, 1e-12)[:, None]
    n = len(phi)
    summed = unit.sum(axis=0)
    # Σ_{i≠j} cos = ‖Σ_i u_i‖² − Σ_i ‖u_i‖²
    pairwise = (summed @ summed - (unit * unit).sum()) / (n * (n - 1)) if n > 1 else 1.0
    return FeatureStatistics(
        mean_pairwise_cosine=float(pairwise),
        fisher_ratio=fisher_ratio(phi, labels),
        mean_norm=float(norms.mean()),
    )


def fisher_ratio(features: np.ndarray, labels: np.ndarray) -> float:
    """tr(S_B) / tr(S_W) (see ``FeatureStatistics``)."""
    phi = np.asarray(features, dtype=np.float64)
    mean = phi.mean(axis=0)
    between = within = 0.0
    for k in np.unique(labels):
        members = phi[labels == k]
        centre = members.mean(axis=0)
        between += len(members) * float(np.sum((centre - mean) ** 2))
        within += float(np.sum((members - centre) ** 2))
    return between / within if within > 0 else float("inf")


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA in its feature-space form (see ``FeatureChange.cka``)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denominator) if denominator > 0 else 0.0


def feature_change(
    pretrained: np.ndarray, trained: np.ndarray, labels: np.ndarray
) -> FeatureChange:
    """Compare Phi1 with Phi0 row by row (the same inputs in the same order)."""
    phi0 = np.asarray(pretrained, dtype=np.float64)
    phi1 = np.asarray(trained, dtype=np.float64)
    if phi0.shape != phi1.shape:
        raise ValueError(f"feature shapes differ: {phi0.shape} vs {phi1.shape}")
    norms0 = np.linalg.norm(phi0, axis=1)
    norms1 = np.linalg.norm(phi1, axis=1)
    difference = float(np.linalg.norm(phi1 - phi0, axis=1).mean())
    cosine = (phi0 * phi1).sum(axis=1) / np.maximum(norms0 * norms1, 1e-12)
    return FeatureChange(
        rows=len(phi0),
        pretrained=feature_statistics(phi0, labels),
        trained=feature_statistics(phi1, labels),
        difference=difference,
        relative_difference=difference / float(norms0.mean()) if norms0.mean() > 0 else 0.0,
        cosine_to_pretrained=float(cosine.mean()),
        cka=linear_cka(phi0, phi1),
    )
