"""Split conformal prediction sets on top of temperature-scaled probabilities.

Temperature scaling makes the probabilities honest on average; conformal prediction turns them
into sets of classes that contain the true label with probability at least ``1 - alpha``
(over the draw of calibration and test rows, if they are exchangeable), whatever the model.
Strictly, the guarantee needs scores from rows the model never saw; re-using the split that
fitted the temperature bends that through one scalar, T (common practice, unquantified here): a
split of its own is the safe choice.

Conventions (stated because implementations disagree):
- Inputs are probabilities ``p = softmax(z / T)``, shape (n, C), not logits.
- Scores (larger = less conforming):
  ``"lac"`` (Sadinle, Lei & Wasserman 2019): ``1 - p_y``.
  ``"aps"`` (Romano, Sesia & Candes 2020), NON-randomised: the total probability of the classes
  ranked at or above ``y`` (``y``'s own mass included in full; no uniform draw subtracted).
  Ranking is a stable sort by descending probability, so tied classes rank by class index
  (lower index first).
  ``"aps_randomized"``: the paper's randomised APS, the mass of the classes ranked above ``y``
  plus ``u`` times ``y``'s own, with ``u`` uniform in [0, 1). Non-randomised APS has an atom: a
  misclassified binary row always scores 1, so once the error rate exceeds alpha the threshold
  is 1 and every set holds every class (SST-2, 86 % accuracy, alpha 0.1: coverage 0.9986, mean
  size 1.97). The draw removes the atom and covers ``1 - alpha`` without the excess. ``u`` is
  not drawn from a generator but read off a hash of the row's probabilities
  (``row_uniforms``), so the same input still always gets the same set, and a calibration row
  and an identical test row still score alike.
- Threshold: with n calibration scores, ``q = the k-th smallest score, k = ceil((n+1)(1-alpha))``
  (Angelopoulos & Bates 2021), computed with exact arithmetic on ``alpha`` read as the decimal it
  prints as, so ``n = 9, alpha = 0.7`` gives k = 3 (float arithmetic says 4). When k > n the
  threshold is ``+inf`` and every set holds every class. Note: numpy's
  ``np.quantile(scores, k / n, method="higher")`` is the (k+1)-th smallest for k < n, one order
  statistic too conservative; ``method="lower"`` is the k-th.
- Sets, for every method: every class whose own score is ``<= q``, the split-conformal set
  itself, so a label is in its set exactly when its score would not exceed the threshold and
  coverage is at least ``1 - alpha`` without over-covering. ``"lac"``: ``{k : 1 - p_k <= q}``.
  ``"aps"``: the classes in ranking order while their cumulative mass stays ``<= q``
  (``"aps_randomized"``: while mass above plus ``u`` times their own does). Any of them
  may be EMPTY when even the most likely class is not likely enough (an honest "none of
  these"); nothing is added. (The other common APS rule, which also keeps the class whose mass
  crosses ``q``, covered 0.996 at alpha = 0.1 on calibrated 4-class data, and with 2 classes
  gave both classes almost always: not the set a user asked for.)
- Comparisons are exact (no epsilon): calibration and prediction compute the scores the same way,
  so an input seen in calibration is judged by the very number it contributed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, cast, get_args

import numpy as np

from lpft_core.errors import DataError

ConformalMethod = Literal["lac", "aps", "aps_randomized"]
#: The score functions, in the order ``coverage_table`` reports them.
METHODS: tuple[ConformalMethod, ...] = get_args(ConformalMethod)

#: How far a row of probabilities may sum from 1 before we assume logits were passed by mistake.
_ROW_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ConformalCalibration:
    """What predict time needs from the calibration split: its sorted scores, per method.

    Stored with a model (``to_dict`` is plain JSON), so any ``alpha`` can be served later without
    re-reading data. Scores are float64 and ``json`` writes floats with ``repr``, so a round trip
    reproduces every threshold, and therefore every set, bit for bit.

    Attributes:
        n: number of calibration rows.
        n_classes: number of classes C, checked against the probabilities at predict time.
        lac_scores: the n LAC scores, ascending.
        aps_scores: the n non-randomised APS scores, ascending.
        aps_randomized_scores: the n randomised APS scores, ascending; ``None`` in a record
            saved before lpft had them (re-calibrating the model adds them).
    """

    n: int
    n_classes: int
    lac_scores: tuple[float, ...]
    aps_scores: tuple[float, ...]
    aps_randomized_scores: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise DataError("a conformal calibration needs at least one calibration row")
        if self.n_classes < 2:
            raise DataError(f"need at least 2 classes, got n_classes={self.n_classes}")
        for method in METHODS:
            if method == "aps_randomized" and self.aps_randomized_scores is None:
                continue
            scores = self.scores(method)
            if len(scores) != self.n:
                raise DataError(f"{method}_scores has {len(scores)} values, expected n={self.n}")
            values = np.asarray(scores, dtype=np.float64)
            if not np.isfinite(values).all() or (np.diff(values) < 0).any():
                raise DataError(f"{method}_scores must be finite and sorted ascending")

    def scores(self, method: ConformalMethod) -> tuple[float, ...]:
        """The sorted calibration scores of ``method``.

        Raises:
            DataError: ``aps_randomized`` of a record saved without its scores.
        """
        method = _check_method(method)
        if method == "lac":
            return self.lac_scores
        if method == "aps":
            return self.aps_scores
        if self.aps_randomized_scores is None:
            raise DataError(
                "this model's conformal scores predate aps_randomized; re-calibrate the model "
                "to add them, or ask for lac or aps"
            )
        return self.aps_randomized_scores

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (ints, lists of floats)."""
        record: dict[str, Any] = {
            "n": self.n,
            "n_classes": self.n_classes,
            "lac_scores": list(self.lac_scores),
            "aps_scores": list(self.aps_scores),
        }
        if self.aps_randomized_scores is not None:
            record["aps_randomized_scores"] = list(self.aps_randomized_scores)
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConformalCalibration:
        """Inverse of ``to_dict``; validates, since the dict usually comes from a file."""
        try:
            return cls(
                n=int(data["n"]),
                n_classes=int(data["n_classes"]),
                lac_scores=tuple(float(s) for s in data["lac_scores"]),
                aps_scores=tuple(float(s) for s in data["aps_scores"]),
                aps_randomized_scores=(
                    tuple(float(s) for s in data["aps_randomized_scores"])
                    if "aps_randomized_scores" in data
                    else None
                ),
            )
        except (KeyError, TypeError) as exc:
            raise DataError(f"not a conformal calibration record: {exc!r}") from exc


@dataclass(frozen=True)
class ConformalResult:
    """Empirical behaviour of one (method, alpha) on a labelled test split.

    ``coverage`` is the share of rows whose label is in their set (target: at least
    ``1 - alpha``), ``mean_set_size`` the mean number of classes per set, and ``empty_sets`` the
    share of empty sets (0 for non-randomised APS). All shares are fractions.
    """

    method: ConformalMethod
    alpha: float
    coverage: float
    mean_set_size: float
    empty_sets: float


def conformal_scores(
    probabilities: np.ndarray, labels: np.ndarray, method: ConformalMethod
) -> np.ndarray:
    """Nonconformity score of each row's true label, shape (n,), float64 (larger = worse)."""
    method = _check_method(method)
    probs = _check_probabilities(probabilities)
    labels = _check_labels(labels, probs)
    rows = np.arange(len(labels))
    if method == "lac":
        return 1.0 - probs[rows, labels]
    # The same cumulative sums that prediction_sets compares with the threshold, so a calibration
    # row and an identical test row agree to the last bit.
    order, cumulative = _ranked_cumulative_mass(probs)
    if method == "aps_randomized":
        cumulative = _randomized(cumulative, probs, order)
    rank = np.argsort(order, axis=1, kind="stable")[rows, labels]
    return cumulative[rows, rank]


def fit_conformal(probabilities: np.ndarray, labels: np.ndarray) -> ConformalCalibration:
    """Score the calibration split with every method and keep the sorted scores."""
    probs = _check_probabilities(probabilities)
    labels = _check_labels(labels, probs)
    if len(labels) == 0:
        raise DataError("need at least one calibration row to fit conformal prediction")
    sorted_scores = {
        method: tuple(float(s) for s in np.sort(conformal_scores(probs, labels, method)))
        for method in METHODS
    }
    return ConformalCalibration(
        n=len(labels),
        n_classes=probs.shape[1],
        lac_scores=sorted_scores["lac"],
        aps_scores=sorted_scores["aps"],
        aps_randomized_scores=sorted_scores["aps_randomized"],
    )


def threshold(calibration: ConformalCalibration, alpha: float, method: ConformalMethod) -> float:
    """The split-conformal threshold q: the ceil((n+1)(1-alpha))-th smallest calibration score,
    or ``inf`` when that rank exceeds n (too few calibration rows for this alpha)."""
    method = _check_method(method)
    rank = conformal_rank(calibration.n, alpha)
    if rank > calibration.n:
        return math.inf
    return calibration.scores(method)[rank - 1]


def conformal_rank(n: int, alpha: float) -> int:
    """``ceil((n+1)(1-alpha))``, exactly: alpha is taken as the decimal it prints as (0.1 is
    1/10), because float rounding moves the ceiling when the product is a whole number."""
    alpha = _check_alpha(alpha)
    return math.ceil((n + 1) * (1 - Fraction(repr(alpha))))


def prediction_sets(
    probabilities: np.ndarray,
    calibration: ConformalCalibration,
    alpha: float,
    method: ConformalMethod,
) -> list[list[int]]:
    """The conformal set of each row: class indices in ascending order (may be empty)."""
    masks = _set_masks(probabilities, calibration, alpha, method)
    return [np.flatnonzero(row).tolist() for row in masks]


def coverage_table(
    calibration: ConformalCalibration,
    probabilities: np.ndarray,
    labels: np.ndarray,
    alphas: Iterable[float] = (0.05, 0.1, 0.2),
) -> list[ConformalResult]:
    """Coverage and set sizes on a labelled test split, one row per method and alpha
    (grouped by method in ``METHODS`` order, alphas in the order given)."""
    probs = _check_probabilities(probabilities)
    labels = _check_labels(labels, probs)
    if len(labels) == 0:
        raise DataError("need at least one test row to measure coverage")
    alphas = [_check_alpha(alpha) for alpha in alphas]
    rows = np.arange(len(labels))
    results = []
    for method in METHODS:
        for alpha in alphas:
            masks = _set_masks(probs, calibration, alpha, method)
            sizes = masks.sum(axis=1)
            results.append(
                ConformalResult(
                    method=method,
                    alpha=alpha,
                    coverage=float(masks[rows, labels].mean()),
                    mean_set_size=float(sizes.mean()),
                    empty_sets=float((sizes == 0).mean()),
                )
            )
    return results


def _set_masks(
    probabilities: np.ndarray,
    calibration: ConformalCalibration,
    alpha: float,
    method: ConformalMethod,
) -> np.ndarray:
    """Boolean (n, C) membership of each class in each row's set."""
    method = _check_method(method)
    probs = _check_probabilities(probabilities)
    if probs.shape[1] != calibration.n_classes:
        raise DataError(
            f"probabilities have {probs.shape[1]} classes but the conformal calibration was "
            f"fitted on {calibration.n_classes}"
        )
    q = threshold(calibration, alpha, method)
    if method == "lac":
        return 1.0 - probs <= q
    order, cumulative = _ranked_cumulative_mass(probs)
    if method == "aps_randomized":
        cumulative = _randomized(cumulative, probs, order)
    ranked_mask = cumulative <= q
    mask = np.empty_like(ranked_mask)
    np.put_along_axis(mask, order, ranked_mask, axis=1)
    return mask


def _ranked_cumulative_mass(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, cumulative): classes by descending probability, ties by lower class index
    (a stable sort of -p), and the running sum of their probabilities in that order."""
    order = np.argsort(-probs, axis=1, kind="stable")
    return order, np.cumsum(np.take_along_axis(probs, order, axis=1), axis=1)


def _randomized(cumulative: np.ndarray, probs: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Randomised APS scores in ranking order: the mass ranked above plus ``u`` times the
    class's own (still increasing along the ranking, so a set is a prefix of it)."""
    own = np.take_along_axis(probs, order, axis=1)
    above = np.concatenate([np.zeros((len(probs), 1)), cumulative[:, :-1]], axis=1)
    return above + row_uniforms(probs)[:, None] * own


def row_uniforms(probabilities: np.ndarray) -> np.ndarray:
    """One number in [0, 1) per row, read off a hash of the row's float64 probabilities:
    uniform across rows as a draw would be, yet the same for the same row every time."""
    rows = np.ascontiguousarray(probabilities, dtype=np.float64)
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "big") / 2**64
            for row in rows
        ],
        dtype=np.float64,
    )


def _check_method(method: str) -> ConformalMethod:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    return cast(ConformalMethod, method)


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1) (the allowed miscoverage), got {alpha!r}")
    return alpha


def _check_probabilities(probabilities: np.ndarray) -> np.ndarray:
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise DataError(f"probabilities must have shape (n, C) with C >= 2, got {probs.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise DataError("probabilities must be finite and non-negative")
    if len(probs) and (np.abs(probs.sum(axis=1) - 1.0) > _ROW_SUM_TOLERANCE).any():
        raise DataError(
            "each row of probabilities must sum to 1: pass softmax(logits / T), not logits"
        )
    return probs


def _check_labels(labels: Sequence[int] | np.ndarray, probs: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (len(probs),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be integers of shape ({len(probs)},), got {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise DataError(f"labels must be class indices in [0, {probs.shape[1]})")
    return labels
