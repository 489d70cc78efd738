"""How much training moved the features phi(x), measured on the same inputs.

The paper names CS(F), Diff(F), FDR(F) and Norm(C) without formulas; the definitions below
are ours and are what every lpft report means by those names. Where the paper's numbers pin
the form down (FDR(F): 8e4 to 7e8 at n = 56, about 1.3 at n = 38,905, so it must grow as n
falls below d), the form here is one that does; the scale-free trace ratio that cannot is kept
under its own name, ``scatter_ratio``. Phi0 and Phi1 are the (n, d)
features of the pre-trained and the trained encoder on the same n inputs, y their labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: FDR(F)'s ridge as a fraction of the mean within-class scatter per direction.
FDR_RIDGE = 1e-6


@dataclass(frozen=True)
class FeatureStatistics:
    """Statistics of one set of features (n, d).

    Attributes:
        mean_pairwise_cosine: CS(F) = mean over pairs i ≠ j of cos(phi_i, phi_j): how
            anisotropic the features are (RoBERTa's CLS features give ≈ 0.997; the paper's
            pre-trained and LP rows are equal, so its CS(F) is a property of one feature set,
            not a comparison).
        scatter_ratio: tr(S_B) / tr(S_W) = Σ_k n_k ‖μ_k − μ‖² / Σ_i ‖phi_i − μ_{y_i}‖², the
            between-class over the within-class scatter summed over directions. Scale-free,
            O(1) and defined for any n; not the paper's FDR(F).
        fisher_discriminant_ratio: FDR(F) = tr((S_W + λI)⁻¹ S_B), the multivariate Fisher
            ratio: the between-class scatter in units of the within-class scatter of each
            direction, with the ridge λ = ``FDR_RIDGE`` · tr(S_W) / d (a millionth of the mean
            within-class scatter per direction; scale-free). With n > d it is the classic
            tr(S_W⁻¹ S_B) to within that millionth. With n ≤ d the classes are linearly
            separable along directions of zero within-class scatter and the value is set by
            λ (it scales as 1/``FDR_RIDGE``): the regime of the paper's small-set values
            (8e4 to 7e8 on 56 samples of 768-d features). Compare such values only between
            models on the same set.
        mean_norm: mean ‖phi_i‖₂.
    """

    mean_pairwise_cosine: float
    scatter_ratio: float
    fisher_discriminant_ratio: float
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
    """CS(F), the scatter ratio, FDR(F) and the mean norm of one feature set."""
    phi = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(phi, axis=1)
    unit = phi / np.maximum(norms, 1e-12)[:, None]
    n = len(phi)
    summed = unit.sum(axis=0)
    # Σ_{i≠j} cos = ‖Σ_i u_i‖² − Σ_i ‖u_i‖²
    pairwise = (summed @ summed - (unit * unit).sum()) / (n * (n - 1)) if n > 1 else 1.0
    return FeatureStatistics(
        mean_pairwise_cosine=float(pairwise),
        scatter_ratio=scatter_ratio(phi, labels),
        fisher_discriminant_ratio=fisher_discriminant_ratio(phi, labels),
        mean_norm=float(norms.mean()),
    )


def scatter_ratio(features: np.ndarray, labels: np.ndarray) -> float:
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


def fisher_discriminant_ratio(features: np.ndarray, labels: np.ndarray) -> float:
    """tr((S_W + λI)⁻¹ S_B) = Σ_k n_k (μ_k − μ)ᵀ (S_W + λI)⁻¹ (μ_k − μ) (see
    ``FeatureStatistics``)."""
    phi = np.asarray(features, dtype=np.float64)
    mean = phi.mean(axis=0)
    centred = np.empty_like(phi)
    offsets = []
    for k in np.unique(labels):
        members = labels == k
        centre = phi[members].mean(axis=0)
        centred[members] = phi[members] - centre
        offsets.append(np.sqrt(members.sum()) * (centre - mean))
    within = centred.T @ centred
    ridge = FDR_RIDGE * np.trace(within) / phi.shape[1]
    if ridge <= 0:
        return float("inf")
    eigenvalues, eigenvectors = np.linalg.eigh(within)
    projected = np.stack(offsets) @ eigenvectors
    return float(np.sum(projected**2 / (eigenvalues + ridge)))


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
