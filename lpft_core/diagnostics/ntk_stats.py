"""What the paper reads off the NTK components: rank, norm, spectrum, FT ratio and how well
each kernel alone classifies (kernel logistic regression)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import GroupKFold

from lpft_core.diagnostics.ntk import NtkKernels

#: The paper's C grid: ``LogisticRegressionCV(Cs=10)``, 10 values log-spaced over [1e-4, 1e4].
PAPER_CS = np.logspace(-4, 4, 10)


@dataclass(frozen=True)
class KernelAccuracy:
    """Kernel logistic regression fitted on train kernel rows, scored two ways.

    ``*_sample``: per sample, the class with the highest decision value (what a classifier
    does). ``*_pair``: per (sample, class) row, the binary "is this the label?" decision, the
    unit the paper's Tables 2 and 9 report (their values are k/(n·C)). Test values are
    ``None`` when no test samples were given. ``chosen_C``: the grid value cross-validation
    picked; ``converged``: False when lbfgs stopped at ``max_iter`` for some fit (the paper's
    solver would have too).
    """

    train_sample: float
    test_sample: float | None
    train_pair: float
    test_pair: float | None
    chosen_C: float
    converged: bool


@dataclass(frozen=True)
class KernelStatistics:
    """One kernel on the train samples.

    Attributes:
        rank: numerical rank: singular values above σ_max · n·C · ε, with ε the machine epsilon
            of the dtype the kernel was computed in (float32 for a float32 model: smaller
            singular values are rounding noise).
        frobenius_norm: ‖K_train,train‖_F of the (n·C)×(n·C) matrix.
        spectrum: singular values divided by the largest, in decreasing order.
        accuracy: kernel logistic-regression accuracy.
    """

    rank: int
    frobenius_norm: float
    spectrum: list[float]
    accuracy: KernelAccuracy


@dataclass(frozen=True)
class NtkStatistics:
    """The paper's kernel table for one method at the start of its FT stage.

    Attributes:
        ft_ratio: mean over train samples x of ‖Σ_i F(x,x_i)·δ_i‖ / ‖Σ_i Theta(x,x_i)·δ_i‖,
            δ_i = e_{y_i} − softmax(f_0(x_i)): the share of the first gradient step's function
            change that comes from the FT-effective part (the paper's definition).
        trace_ratio: tr(F)/tr(P) on the train block: the components' balance.
        parameters: trainable encoder parameters F runs over.
    """

    samples_train: int
    samples_test: int
    num_classes: int
    parameters: int
    pretrain_effective: KernelStatistics
    ft_effective: KernelStatistics
    ntk: KernelStatistics
    ft_ratio: float
    trace_ratio: float


def ntk_statistics(
    kernels: NtkKernels,
    logits: np.ndarray,
    y_train: np.ndarray,
    y_test: np.ndarray,
    *,
    epsilon: float,
    seed: int = 0,
) -> NtkStatistics:
    """Statistics of P, F and Theta.

    Args:
        logits: f_0 on the train samples, shape (n, C) (for δ in the FT ratio).
        y_train, y_test: class indices of the row and test samples.
        epsilon: machine epsilon of the dtype the kernels were computed in.
        seed: seed of the kernel regression's folds.
    """
    c = kernels.num_classes
    n = kernels.n_rows
    stats = {}
    for name, kernel in (
        ("pretrain_effective", kernels.pretrain_effective),
        ("ft_effective", kernels.ft_effective),
        ("ntk", kernels.ntk),
    ):
        train = kernels.train_block(kernel)
        stats[name] = KernelStatistics(
            rank=numerical_rank(train, epsilon),
            frobenius_norm=float(np.linalg.norm(train)),
            spectrum=normalised_spectrum(train),
            accuracy=kernel_regression_accuracy(
                train, kernels.test_block(kernel), y_train, y_test, c, seed
            ),
        )
    p_train = kernels.train_block(kernels.pretrain_effective)
    f_train = kernels.train_block(kernels.ft_effective)
    return NtkStatistics(
        samples_train=n,
        samples_test=kernels.ft_effective.shape[1] // c - n,
        num_classes=c,
        parameters=kernels.parameter_count,
        ft_ratio=ft_ratio(p_train, f_train, logits, y_train),
        trace_ratio=float(np.trace(f_train) / np.trace(p_train)),
        **stats,
    )


def numerical_rank(kernel: np.ndarray, epsilon: float) -> int:
    """Singular values above σ_max · max(shape) · ``epsilon``."""
    singular = np.linalg.svd(kernel, compute_uv=False)
    if singular.size == 0 or singular[0] == 0:
        return 0
    return int((singular > singular[0] * max(kernel.shape) * epsilon).sum())


def normalised_spectrum(kernel: np.ndarray) -> list[float]:
    """Singular values over the largest, decreasing."""
    singular = np.linalg.svd(kernel, compute_uv=False)
    top = singular[0] if singular.size and singular[0] > 0 else 1.0
    return [float(s) for s in singular / top]


def ft_ratio(pretrain: np.ndarray, ft: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean over samples of ‖F·δ‖ / ‖(P + F)·δ‖ per sample block (see ``NtkStatistics``)."""
    n, c = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    delta = (np.eye(c)[labels] - probs).reshape(-1)
    f_step = (ft @ delta).reshape(n, c)
    total = ((pretrain + ft) @ delta).reshape(n, c)
    norms = np.linalg.norm(total, axis=1)
    keep = norms > 0
    return float(np.mean(np.linalg.norm(f_step, axis=1)[keep] / norms[keep]))


def sample_folds(
    num_samples: int, num_classes: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Five (fit, score) splits of the num_samples·C kernel rows that keep each sample's C
    rows together."""
    samples = np.repeat(np.arange(num_samples), num_classes)
    folds = GroupKFold(n_splits=5, shuffle=True, random_state=seed)
    return list(folds.split(samples, groups=samples))


def kernel_regression_accuracy(
    train: np.ndarray,
    test: np.ndarray,
    y_train: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
    seed: int,
) -> KernelAccuracy:
    """Logistic regression on the raw kernel rows with one 0/1 target per (sample, class)
    row, as the paper's solver (``LogisticKernelSolver``): ``LogisticRegressionCV``, L2,
    accuracy scoring, 5 folds, ``max_iter`` 10,000, C from ``PAPER_CS``.

    C weighs the summed log-loss against ½‖w‖², w the weights on the train kernel rows, and
    is applied to the kernel as computed, so each grid value means what it means in the
    paper. (A kernel divided by s would need the grid multiplied by s² to describe the same
    models, and the optimisation is the same problem either way, so nothing is gained by
    rescaling.) Folds are grouped by sample: a sample's C rows are never split between
    fitting and scoring; each sample gives exactly one positive row, so the folds are
    stratified by construction.
    """
    targets = np.eye(num_classes)[y_train].reshape(-1).astype(int)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = LogisticRegressionCV(
            Cs=PAPER_CS,
            cv=sample_folds(len(y_train), num_classes, seed),
            l1_ratios=(0.0,),
            scoring="accuracy",
            max_iter=10_000,
            use_legacy_attributes=False,
        ).fit(train, targets)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)

    def scores(kernel: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        decision = model.decision_function(kernel)
        per_sample = decision.reshape(-1, num_classes).argmax(axis=1)
        pair_targets = np.eye(num_classes)[labels].reshape(-1).astype(int)
        pair = float(((decision > 0).astype(int) == pair_targets).mean())
        return float((per_sample == labels).mean()), pair

    train_sample, train_pair = scores(train, y_train)
    test_sample = test_pair = None
    if test.shape[0]:
        test_sample, test_pair = scores(test, y_test)
    return KernelAccuracy(
        train_sample, test_sample, train_pair, test_pair, float(model.C_), converged
    )
