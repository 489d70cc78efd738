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
- Mondrian (class-conditional) sets (Vovk et al. 2003): class k is in a set when its score is
  within ``q_k``, the same order statistic of the calibration scores of the rows labelled k
  alone, so each class is covered at ``1 - alpha`` by itself. Marginal coverage can hide a
  rare class that is always missed; Mondrian sets cannot. A class with ``n_k`` calibration rows
  can have a finite ``q_k`` only when ``n_k >= ceil(1/alpha) - 1`` (``rows_needed``); below that
  Mondrian sets are refused rather than silently given every class.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, cast, get_args

import numpy as np

from lpft_core.errors import DataError

ConformalMethod = Literal["lac", "aps", "aps_randomized"]
#: The score functions, in the order ``coverage_table`` reports them.
METHODS: tuple[ConformalMethod, ...] = get_args(ConformalMethod)
#: The method served when none is asked for, chosen from benchmarks/conformal_methods.py
#: (RESULTS.md): ``lp`` of the default model, 700-1,000 calibration rows, coverage and mean set
#: size on 867-5,000 held-out rows of SST-2, CoLA, RTE (binary) and 3-class tweets, at alpha
#: 0.05 / 0.1 / 0.2 (12 cells). lac: coverage within 0.03 of 1 - alpha in 12 of 12 (largest gap
#: 0.029), the smallest mean set in 10, 1.53 labels a set on average. aps_randomized: on target
#: in 12, smallest in 2 (RTE and CoLA at 0.2, by 0.024 and 0.015 labels), 1.61 on average. aps: on
#: target in 3 (both labels for nearly every binary row at 0.05 and 0.1), 1.94. At alpha 0.1
#: (coverage / mean size; lac, aps_randomized, aps): SST-2 0.902/1.18, 0.903/1.30, 0.999/1.98;
#: CoLA 0.885/1.57, 0.902/1.68, 1.000/2.00; RTE 0.900/1.76, 0.912/1.81, 1.000/2.00; tweets
#: 0.905/1.70, 0.900/1.81, 0.888/1.89.
DEFAULT_METHOD: ConformalMethod = "lac"

#: The miscoverage levels a job reports coverage at.
REPORTED_ALPHAS = (0.05, 0.1, 0.2)

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
        class_scores: per method, each class's calibration scores ascending (index k: the
            rows labelled k), what Mondrian sets need; ``None`` in a record saved before lpft
            had them (re-calibrating the model adds them).
    """

    n: int
    n_classes: int
    lac_scores: tuple[float, ...]
    aps_scores: tuple[float, ...]
    aps_randomized_scores: tuple[float, ...] | None = None
    class_scores: Mapping[ConformalMethod, tuple[tuple[float, ...], ...]] | None = None

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
            _check_sorted(scores, f"{method}_scores")
        if self.class_scores is not None:
            self._check_class_scores(self.class_scores)

    def _check_class_scores(
        self, class_scores: Mapping[ConformalMethod, tuple[tuple[float, ...], ...]]
    ) -> None:
        """Each method's per-class scores must be the marginal scores split by class."""
        if set(class_scores) != set(METHODS):
            raise DataError(f"class_scores must hold every method {list(METHODS)}")
        for method, per_class in class_scores.items():
            if len(per_class) != self.n_classes:
                raise DataError(
                    f"class_scores[{method!r}] has {len(per_class)} classes, expected "
                    f"n_classes={self.n_classes}"
                )
            for k, scores in enumerate(per_class):
                _check_sorted(scores, f"class_scores[{method!r}][{k}]")
            merged = np.sort(np.concatenate([np.asarray(s, dtype=np.float64) for s in per_class]))
            if not np.array_equal(merged, np.asarray(self.scores(method), dtype=np.float64)):
                raise DataError(f"class_scores[{method!r}] are not {method}_scores split by class")

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

    def scores_by_class(self, method: ConformalMethod) -> tuple[tuple[float, ...], ...]:
        """Each class's sorted calibration scores of ``method`` (index k: class k's rows).

        Raises:
            DataError: a record saved before lpft had Mondrian sets.
        """
        method = _check_method(method)
        if self.class_scores is None:
            raise DataError(
                "this model's conformal scores predate Mondrian sets; re-calibrate the model "
                "to add them, or ask for marginal sets"
            )
        return self.class_scores[method]

    def class_rows(self) -> tuple[int, ...]:
        """How many calibration rows each class has (needs the per-class scores)."""
        return tuple(len(scores) for scores in self.scores_by_class("lac"))

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
        if self.class_scores is not None:
            record["class_scores"] = {
                method: [list(scores) for scores in per_class]
                for method, per_class in self.class_scores.items()
            }
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
                class_scores=(
                    {
                        cast(ConformalMethod, method): tuple(
                            tuple(float(s) for s in scores) for scores in per_class
                        )
                        for method, per_class in data["class_scores"].items()
                    }
                    if "class_scores" in data
                    else None
                ),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"not a conformal calibration record: {exc!r}") from exc


@dataclass(frozen=True)
class ConformalResult:
    """Empirical behaviour of one (method, alpha, mode) on a labelled test split.

    ``coverage`` is the share of rows whose label is in their set (target: at least
    ``1 - alpha``), ``mean_set_size`` the mean number of classes per set, and ``empty_sets`` the
    share of empty sets (0 for non-randomised APS). ``mondrian``: per-class thresholds rather
    than one. ``class_coverage`` is coverage per class name on each split:
    ``"test"`` (the labelled split measured; ``None`` for a class it has no row of) and
    ``"calibration"`` (the calibration rows' own scores against the thresholds they gave; absent
    for a record without per-class scores). Marginal coverage can hide a class that is always
    missed; these show it. All shares are fractions.
    """

    method: ConformalMethod
    alpha: float
    coverage: float
    mean_set_size: float
    empty_sets: float
    mondrian: bool = False
    class_coverage: dict[str, dict[str, float | None]] = field(default_factory=dict)


def conformal_scores(
    probabilities: np.ndarray, labels: np.ndarray, method: ConformalMethod
) -> np.ndarray:
    """Nonconformity score of each row's true label, shape (n,), float64 (larger = worse)."""
    method = _check_method(method)
    probs = _check_probabilities(probabilities)
    labels = _check_labels(labels, probs)
    # The very scores that prediction_sets compares with the threshold, so a calibration row and
    # an identical test row agree to the last bit.
    return _every_class_score(probs, method)[np.arange(len(labels)), labels]


def fit_conformal(probabilities: np.ndarray, labels: np.ndarray) -> ConformalCalibration:
    """Score the calibration split with every method and keep the sorted scores, all rows
    together and per class (for Mondrian sets)."""
    probs = _check_probabilities(probabilities)
    labels = _check_labels(labels, probs)
    if len(labels) == 0:
        raise DataError("need at least one calibration row to fit conformal prediction")
    row_scores = {method: conformal_scores(probs, labels, method) for method in METHODS}
    return ConformalCalibration(
        n=len(labels),
        n_classes=probs.shape[1],
        lac_scores=_sorted_tuple(row_scores["lac"]),
        aps_scores=_sorted_tuple(row_scores["aps"]),
        aps_randomized_scores=_sorted_tuple(row_scores["aps_randomized"]),
        class_scores={
            method: tuple(_sorted_tuple(scores[labels == k]) for k in range(probs.shape[1]))
            for method, scores in row_scores.items()
        },
    )


def threshold(calibration: ConformalCalibration, alpha: float, method: ConformalMethod) -> float:
    """The split-conformal threshold q: the ceil((n+1)(1-alpha))-th smallest calibration score,
    or ``inf`` when that rank exceeds n (too few calibration rows for this alpha)."""
    method = _check_method(method)
    return _order_statistic(calibration.scores(method), alpha)


def class_thresholds(
    calibration: ConformalCalibration, alpha: float, method: ConformalMethod
) -> np.ndarray:
    """Mondrian thresholds, shape (C,): ``q_k`` from class k's calibration scores alone.

    Raises:
        DataError: a class has fewer than ``rows_needed(alpha)`` calibration rows (its
            threshold would be infinite), or the record has no per-class scores.
    """
    per_class = calibration.scores_by_class(method)
    short = mondrian_shortfall(calibration, alpha)
    if short:
        k, rows = next(iter(short.items()))
        raise DataError(
            f"class {k} has {rows} calibration rows; Mondrian sets at alpha {alpha} need at "
            f"least {rows_needed(alpha)} per class"
        )
    return np.array([_order_statistic(scores, alpha) for scores in per_class])


def rows_needed(alpha: float) -> int:
    """The fewest calibration rows whose threshold at ``alpha`` is finite: the least n with
    ``ceil((n+1)(1-alpha)) <= n``, which is ``ceil(1/alpha) - 1`` (alpha read exactly)."""
    alpha = _check_alpha(alpha)
    return math.ceil(1 / Fraction(repr(alpha))) - 1


def mondrian_shortfall(calibration: ConformalCalibration, alpha: float) -> dict[int, int]:
    """The classes with too few calibration rows for Mondrian sets at ``alpha``, each with its
    row count (empty when every class has enough)."""
    needed = rows_needed(alpha)
    return {k: rows for k, rows in enumerate(calibration.class_rows()) if rows < needed}


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
    *,
    mondrian: bool = False,
) -> list[list[int]]:
    """The conformal set of each row: class indices in ascending order (may be empty);
    ``mondrian``: each class judged by its own threshold (``class_thresholds``)."""
    masks = _set_masks(probabilities, calibration, alpha, method, mondrian)
    return [np.flatnonzero(row).tolist() for row in masks]


def coverage_table(
    calibration: ConformalCalibration,
    probabilities: np.ndarray,
    labels: np.ndarray,
    alphas: Iterable[float] = REPORTED_ALPHAS,
    *,
    mondrian: bool = False,
    class_names: Sequence[str] | None = None,
) -> list[ConformalResult]:
    """Coverage and set sizes on a labelled test split, one row per method and alpha
    (grouped by method in ``METHODS`` order, alphas in the order given), of marginal sets or,
    with ``mondrian``, of Mondrian ones; per-class figures are keyed by ``class_names``
    (default: the class indices).

    Raises:
        DataError: ``mondrian`` at an alpha some class has too few calibration rows for.
    """
    probs = _check_probabilities(probabilities)
    labels = _check_labels(labels, probs)
    if len(labels) == 0:
        raise DataError("need at least one test row to measure coverage")
    alphas = [_check_alpha(alpha) for alpha in alphas]
    names = [str(k) for k in range(probs.shape[1])] if class_names is None else class_names
    if len(names) != probs.shape[1]:
        raise DataError(f"{len(names)} class names for {probs.shape[1]} classes")
    rows = np.arange(len(labels))
    results = []
    for method in METHODS:
        for alpha in alphas:
            masks = _set_masks(probs, calibration, alpha, method, mondrian)
            sizes = masks.sum(axis=1)
            covered = masks[rows, labels]
            class_coverage: dict[str, dict[str, float | None]] = {
                "test": {
                    name: float(covered[labels == k].mean()) if (labels == k).any() else None
                    for k, name in enumerate(names)
                }
            }
            if calibration.class_scores is not None:
                on_calibration = _calibration_class_coverage(calibration, alpha, method, mondrian)
                class_coverage["calibration"] = dict(zip(names, on_calibration, strict=True))
            results.append(
                ConformalResult(
                    method=method,
                    alpha=alpha,
                    coverage=float(covered.mean()),
                    mean_set_size=float(sizes.mean()),
                    empty_sets=float((sizes == 0).mean()),
                    mondrian=mondrian,
                    class_coverage=class_coverage,
                )
            )
    return results


def reported_coverage(
    calibration: ConformalCalibration,
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
) -> list[ConformalResult]:
    """A job's coverage table: marginal sets at every ``REPORTED_ALPHAS``, then Mondrian sets
    at those every class has enough calibration rows for (the others would be refused when
    asked for, so they have no figures)."""
    marginal = coverage_table(calibration, probabilities, labels, class_names=class_names)
    servable = [alpha for alpha in REPORTED_ALPHAS if not mondrian_shortfall(calibration, alpha)]
    by_class = coverage_table(
        calibration, probabilities, labels, servable, mondrian=True, class_names=class_names
    )
    return [*marginal, *by_class]


def _calibration_class_coverage(
    calibration: ConformalCalibration, alpha: float, method: ConformalMethod, mondrian: bool
) -> list[float | None]:
    """Each class's share of calibration rows whose score is within its threshold: a row's
    label is in its set exactly then, so the stored scores alone give it (``None`` for a class
    without calibration rows)."""
    q = _thresholds(calibration, alpha, method, mondrian)
    limits = np.broadcast_to(q, (calibration.n_classes,))
    return [
        float((np.asarray(scores) <= limit).mean()) if scores else None
        for scores, limit in zip(calibration.scores_by_class(method), limits, strict=True)
    ]


def _thresholds(
    calibration: ConformalCalibration, alpha: float, method: ConformalMethod, mondrian: bool
) -> float | np.ndarray:
    if mondrian:
        return class_thresholds(calibration, alpha, method)
    return threshold(calibration, alpha, method)


def _order_statistic(sorted_scores: Sequence[float], alpha: float) -> float:
    """The ``conformal_rank``-th smallest of ``sorted_scores``, ``inf`` beyond their count."""
    rank = conformal_rank(len(sorted_scores), alpha)
    return math.inf if rank > len(sorted_scores) else sorted_scores[rank - 1]


def _set_masks(
    probabilities: np.ndarray,
    calibration: ConformalCalibration,
    alpha: float,
    method: ConformalMethod,
    mondrian: bool,
) -> np.ndarray:
    """Boolean (n, C) membership of each class in each row's set: its score within its
    threshold (one for all classes, or its class's own)."""
    method = _check_method(method)
    probs = _check_probabilities(probabilities)
    if probs.shape[1] != calibration.n_classes:
        raise DataError(
            f"probabilities have {probs.shape[1]} classes but the conformal calibration was "
            f"fitted on {calibration.n_classes}"
        )
    return _every_class_score(probs, method) <= _thresholds(calibration, alpha, method, mondrian)


def _every_class_score(probs: np.ndarray, method: ConformalMethod) -> np.ndarray:
    """(n, C): the score each class would have as a row's label, in class order."""
    if method == "lac":
        return 1.0 - probs
    order, cumulative = _ranked_cumulative_mass(probs)
    if method == "aps_randomized":
        cumulative = _randomized(cumulative, probs, order)
    scores = np.empty_like(cumulative)
    np.put_along_axis(scores, order, cumulative, axis=1)
    return scores


def _sorted_tuple(scores: np.ndarray) -> tuple[float, ...]:
    return tuple(float(s) for s in np.sort(scores))


def _check_sorted(scores: Sequence[float], name: str) -> None:
    values = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(values).all() or (np.diff(values) < 0).any():
        raise DataError(f"{name} must be finite and sorted ascending")


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
