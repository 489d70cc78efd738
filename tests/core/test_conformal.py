"""Split conformal prediction sets, against MAPIE (1.6), a hand computation and the coverage
guarantee. Every random draw has a fixed seed: these tests never flake."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from lpft_core.errors import DataError
from lpft_core.serving.predictor import ConformalRequest
from lpft_core.stages.conformal import (
    METHODS,
    ConformalCalibration,
    class_thresholds,
    conformal_rank,
    conformal_scores,
    coverage_table,
    fit_conformal,
    mondrian_shortfall,
    prediction_sets,
    reported_coverage,
    rows_needed,
    threshold,
)


def calibrated_data(
    rng: np.random.Generator, n: int, n_classes: int, concentration: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Dirichlet probabilities, and labels drawn from those very probabilities (so the model is
    calibrated by construction)."""
    probs = rng.dirichlet(np.full(n_classes, concentration), size=n)
    labels = (rng.random((n, 1)) > probs.cumsum(axis=1)).sum(axis=1)
    return probs, np.minimum(labels, n_classes - 1)


# --- hand computation: loops over Python floats, written from the definitions -----------------


def hand_ranking(row: np.ndarray) -> list[int]:
    return sorted(range(len(row)), key=lambda k: (-row[k], k))


def hand_uniform(row: np.ndarray) -> float:
    """The randomised APS draw of a row: its probabilities' hash as a number in [0, 1)."""
    digest = hashlib.blake2b(np.asarray(row, dtype=np.float64).tobytes(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64


def hand_class_score(row: np.ndarray, k: int, mass_above: float, method: str) -> float:
    if method == "aps_randomized":
        return mass_above + hand_uniform(row) * float(row[k])
    return mass_above + float(row[k])


def hand_scores(probs: np.ndarray, labels: np.ndarray, method: str) -> list[float]:
    scores = []
    for row, label in zip(probs, labels, strict=True):
        if method == "lac":
            scores.append(1.0 - float(row[label]))
            continue
        mass = 0.0
        for k in hand_ranking(row):
            if k == label:
                scores.append(hand_class_score(row, k, mass, method))
                break
            mass += float(row[k])
    return scores


def hand_threshold(scores: list[float], alpha: float) -> float:
    k = math.ceil((len(scores) + 1) * (1 - alpha) - 1e-9)  # fine for these small n
    return sorted(scores)[k - 1] if k <= len(scores) else math.inf


def hand_sets(probs: np.ndarray, q: float | list[float], method: str) -> list[list[int]]:
    """Each row's classes scoring within ``q`` (one threshold, or one per class)."""
    limit = q if isinstance(q, list) else [q] * probs.shape[1]
    sets = []
    for row in probs:
        if method == "lac":
            sets.append([k for k in range(len(row)) if 1.0 - float(row[k]) <= limit[k]])
            continue
        members, mass = [], 0.0
        for k in hand_ranking(row):
            if hand_class_score(row, k, mass, method) <= limit[k]:  # the class's own score
                members.append(k)
            mass += float(row[k])
        sets.append(sorted(members))
    return sets


@pytest.mark.parametrize("n_classes", [2, 3, 4, 5])
@pytest.mark.parametrize("method", METHODS)
def test_scores_thresholds_and_sets_match_a_hand_computation(n_classes: int, method: str) -> None:
    rng = np.random.default_rng(100 + n_classes)
    for n in (5, 19, 60):
        cal_probs, cal_labels = calibrated_data(rng, n, n_classes)
        test_probs, _ = calibrated_data(rng, 50, n_classes)
        calibration = fit_conformal(cal_probs, cal_labels)
        scores = hand_scores(cal_probs, cal_labels, method)
        assert conformal_scores(cal_probs, cal_labels, method).tolist() == scores
        for alpha in (0.05, 0.1, 0.2, 0.5):
            q = hand_threshold(scores, alpha)
            assert threshold(calibration, alpha, method) == q
            assert prediction_sets(test_probs, calibration, alpha, method) == hand_sets(
                test_probs, q, method
            )


@pytest.mark.parametrize("method", METHODS)
def test_ties_and_zero_probabilities_match_the_hand_computation(method: str) -> None:
    # Multiples of 1/8 sum to 1 exactly and tie often; many classes get probability 0.
    rng = np.random.default_rng(7)
    probs = rng.multinomial(8, np.full(4, 0.25), size=300) / 8.0
    labels = rng.integers(0, 4, size=300)
    calibration = fit_conformal(probs[:200], labels[:200])
    assert conformal_scores(probs, labels, method).tolist() == hand_scores(probs, labels, method)
    for alpha in (0.05, 0.1, 0.3, 0.6):
        q = hand_threshold(hand_scores(probs[:200], labels[:200], method), alpha)
        assert prediction_sets(probs[200:], calibration, alpha, method) == hand_sets(
            probs[200:], q, method
        )


def test_aps_ranks_ties_by_class_index() -> None:
    probs = np.array([[0.25, 0.25, 0.5]] * 3)
    scores = conformal_scores(probs, np.array([2, 0, 1]), "aps")
    # Ranking 2, 0, 1: the tie between classes 0 and 1 goes to the lower index.
    assert scores.tolist() == [0.5, 0.75, 1.0]


def test_aps_includes_classes_whose_mass_vanishes_in_float64() -> None:
    # The running sum is already 1.0 after the top class, so every class scores 1.0: the set of
    # classes scoring <= q holds all three, and so every true label.
    probs = np.array([[1.0, 1e-20, 1e-20]] * 40)
    labels = np.array([1, 2] * 20)
    calibration = fit_conformal(probs, labels)
    assert threshold(calibration, 0.1, "aps") == 1.0
    assert prediction_sets(probs[:2], calibration, 0.1, "aps") == [[0, 1, 2], [0, 1, 2]]


# --- MAPIE as an independent oracle ---------------------------------------------------------


class LookupClassifier(ClassifierMixin, BaseEstimator):
    """A 'fitted' classifier whose input is a row index into fixed probabilities, so MAPIE
    conformalizes exactly the probabilities we give it."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def fit(self, X: object = None, y: object = None) -> LookupClassifier:
        self.classes_ = np.arange(self.probs.shape[1])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.probs[np.asarray(X)[:, 0]]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


def mapie_thresholds_and_sets(
    probs: np.ndarray, labels: np.ndarray, n_cal: int, alphas: list[float], method: str
) -> tuple[np.ndarray, np.ndarray]:
    """MAPIE's split-conformal thresholds (n_alphas,) and sets (n_test, C, n_alphas)."""
    from mapie.classification import SplitConformalClassifier
    from mapie.conformity_scores import APSConformityScore, LACConformityScore

    class NonRandomisedAPS(APSConformityScore):
        # MAPIE always randomises APS calibration scores (subtracts u * p_y). Its own
        # non-randomised part is the cumulative mass through the true label: use that alone.
        def get_conformity_scores(self, y, y_pred, y_enc=None, **kwargs):  # type: ignore[no-untyped-def]
            scores, self.cutoff = self.get_true_label_cumsum_proba(y, y_pred, self.classes)
            return scores

    score = LACConformityScore() if method == "lac" else NonRandomisedAPS()
    rows = np.arange(len(probs))[:, None]
    mapie = SplitConformalClassifier(
        estimator=LookupClassifier(probs).fit(),
        confidence_level=[1 - alpha for alpha in alphas],
        conformity_score=score,
        prefit=True,
    ).conformalize(rows[:n_cal], labels[:n_cal])
    # include_last_label=False is MAPIE's APS set of the classes whose cumulative mass stays
    # within the threshold, the set of classes scoring <= q (it is ignored for LAC).
    _, sets = mapie.predict_set(rows[n_cal:], conformity_score_params={"include_last_label": False})
    return np.asarray(score.quantiles_), sets


# MAPIE refuses APS for binary targets; the hand computation above covers that case.
@pytest.mark.parametrize(
    ("method", "n_classes"),
    [("lac", 2), ("lac", 3), ("lac", 5), ("aps", 3), ("aps", 4), ("aps", 5)],
)
@pytest.mark.parametrize("n_cal", [20, 97, 500])
def test_thresholds_and_sets_match_mapie(method: str, n_classes: int, n_cal: int) -> None:
    # MAPIE quantile: ceil((n+1)(1-alpha))/n with method="lower", i.e. the same order statistic;
    # it needs n >= 1/alpha, which these n and alphas meet. Its set rules compare with a 1e-8
    # tolerance where we compare exactly: continuous random data never lands that close.
    alphas = [0.05, 0.1, 0.2, 0.3]
    rng = np.random.default_rng(1000 * n_classes + n_cal)
    probs, labels = calibrated_data(rng, n_cal + 200, n_classes)
    calibration = fit_conformal(probs[:n_cal], labels[:n_cal])
    mapie_q, mapie_sets = mapie_thresholds_and_sets(probs, labels, n_cal, alphas, method)
    for j, alpha in enumerate(alphas):
        assert threshold(calibration, alpha, method) == pytest.approx(mapie_q[j], abs=1e-12)
        if method == "aps":
            # MAPIE's APS sets add its own rules (the last label, a randomised tie); ours are
            # the classes scoring <= q, checked against the hand computation above.
            continue
        expected = [np.flatnonzero(row).tolist() for row in mapie_sets[:, :, j]]
        assert prediction_sets(probs[n_cal:], calibration, alpha, method) == expected


# --- the guarantee ----------------------------------------------------------------------------


def test_coverage_on_calibrated_synthetic_data() -> None:
    rng = np.random.default_rng(2024)
    cal_probs, cal_labels = calibrated_data(rng, 4000, 4)
    test_probs, test_labels = calibrated_data(rng, 4000, 4)
    table = coverage_table(fit_conformal(cal_probs, cal_labels), test_probs, test_labels)
    rows = {(r.method, r.alpha): r for r in table}
    assert [(r.method, r.alpha) for r in table] == [
        (m, a) for m in METHODS for a in (0.05, 0.1, 0.2)
    ]
    for r in table:
        print(
            f"{r.method} alpha={r.alpha}: coverage {r.coverage:.4f}, "
            f"mean size {r.mean_set_size:.3f}, empty {r.empty_sets:.4f}"
        )
        assert r.coverage >= 1 - r.alpha - 0.02
        assert 0 < r.mean_set_size <= 4
    # No score has atoms here, so all cover near 1 - alpha from above.
    for method in METHODS:
        assert rows[method, 0.1].coverage == pytest.approx(0.9, abs=0.03)


def test_randomized_aps_removes_the_binary_atom() -> None:
    # Binary and calibrated, 25 % of rows misclassified: every misclassified row scores exactly
    # 1 under APS, so at alpha 0.1 its threshold is 1 and every set holds both classes, while
    # the draw brings coverage back to 1 - alpha with smaller sets.
    rng = np.random.default_rng(77)
    cal_probs, cal_labels = calibrated_data(rng, 3000, 2)
    test_probs, test_labels = calibrated_data(rng, 3000, 2)
    table = coverage_table(fit_conformal(cal_probs, cal_labels), test_probs, test_labels)
    rows = {(r.method, r.alpha): r for r in table}
    # (1 up to rounding: p0 + p1 lands a hair below 1 for some rows)
    assert rows["aps", 0.1].coverage > 0.98 and rows["aps", 0.1].mean_set_size > 1.9
    assert rows["aps_randomized", 0.1].coverage == pytest.approx(0.9, abs=0.02)
    assert rows["aps_randomized", 0.1].mean_set_size < 1.9


def test_randomized_aps_is_the_same_for_the_same_input() -> None:
    rng = np.random.default_rng(5)
    probs, labels = calibrated_data(rng, 500, 3)
    calibration = fit_conformal(probs[:300], labels[:300])
    first = prediction_sets(probs[300:], calibration, 0.1, "aps_randomized")
    # the same rows, in another order and batched with others, get the same sets
    again = prediction_sets(probs[::-1], calibration, 0.1, "aps_randomized")[::-1][300:]
    assert first == again


def test_a_record_saved_before_randomized_aps_still_serves_the_others() -> None:
    rng = np.random.default_rng(9)
    probs, labels = calibrated_data(rng, 100, 3)
    record = fit_conformal(probs, labels).to_dict()
    del record["aps_randomized_scores"], record["class_scores"]  # both came later
    old = ConformalCalibration.from_dict(record)
    assert prediction_sets(probs[:5], old, 0.1, "aps") == prediction_sets(
        probs[:5], fit_conformal(probs, labels), 0.1, "aps"
    )
    with pytest.raises(DataError, match="re-calibrate"):
        prediction_sets(probs[:5], old, 0.1, "aps_randomized")


# --- the default method ----------------------------------------------------------------------


@pytest.mark.parametrize(("n_classes", "concentration"), [(2, 1.0), (2, 0.5), (3, 1.0), (5, 0.5)])
def test_the_default_method_covers_the_target_with_the_smallest_sets(
    n_classes: int, concentration: float
) -> None:
    # The bar, on calibrated synthetic data: coverage within 1 - alpha +- 0.03 on
    # held-out rows, and the smallest mean set of the methods that meet it. Binary tasks err
    # more often than alpha here (21-25 %), where non-randomised APS gives both labels.
    rng = np.random.default_rng(40 + n_classes)
    cal_probs, cal_labels = calibrated_data(rng, 3000, n_classes, concentration)
    test_probs, test_labels = calibrated_data(rng, 3000, n_classes, concentration)
    calibration = fit_conformal(cal_probs, cal_labels)
    default = ConformalRequest(alpha=0.1).method
    for alpha in (0.05, 0.1, 0.2):
        rows = {r.method: r for r in coverage_table(calibration, test_probs, test_labels, [alpha])}
        on_target = {m: r for m, r in rows.items() if abs(r.coverage - (1 - alpha)) <= 0.03}
        assert default in on_target, (alpha, rows[default])
        assert rows[default].mean_set_size == min(r.mean_set_size for r in on_target.values())


# --- Mondrian (class-conditional) sets -------------------------------------------------------


def test_mondrian_thresholds_and_sets_by_hand() -> None:
    # LAC scores 1 - p_y. Class 0's rows score 0.1, 0.4, 0.2; class 1's 0.3, 0.5, 0.1, 0.2.
    probs = np.array(
        [[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7], [0.5, 0.5], [0.1, 0.9], [0.2, 0.8]]
    )
    calibration = fit_conformal(probs, np.array([0, 0, 0, 1, 1, 1, 1]))
    # alpha 0.5: class 0 (n = 3) takes the ceil(4 * 0.5) = 2nd smallest, 0.2; class 1 (n = 4)
    # the ceil(5 * 0.5) = 3rd, 0.3; all 7 rows together the ceil(8 * 0.5) = 4th, 0.2.
    assert class_thresholds(calibration, 0.5, "lac") == pytest.approx([0.2, 0.3])
    assert threshold(calibration, 0.5, "lac") == pytest.approx(0.2)
    rows = np.array([[0.85, 0.15], [0.25, 0.75]])
    assert prediction_sets(rows, calibration, 0.5, "lac", mondrian=True) == [[0], [1]]
    assert prediction_sets(rows, calibration, 0.5, "lac") == [[0], []]
    assert calibration.class_rows() == (3, 4)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("method", METHODS)
def test_mondrian_sets_match_a_hand_computation(n_classes: int, method: str) -> None:
    rng = np.random.default_rng(300 + n_classes)
    cal_probs, cal_labels = calibrated_data(rng, 200, n_classes)
    test_probs, _ = calibrated_data(rng, 50, n_classes)
    calibration = fit_conformal(cal_probs, cal_labels)
    scores = np.array(hand_scores(cal_probs, cal_labels, method))
    for alpha in (0.1, 0.2, 0.5):
        q = [hand_threshold(scores[cal_labels == k].tolist(), alpha) for k in range(n_classes)]
        assert class_thresholds(calibration, alpha, method).tolist() == q
        assert prediction_sets(test_probs, calibration, alpha, method, mondrian=True) == (
            hand_sets(test_probs, q, method)
        )


def imbalanced_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary, 10 % class 1, which the model ranks poorly: class 0's rows give class 1 little
    probability (about 0.05), class 1's rows give it about 0.3."""
    labels = (rng.random(n) < 0.1).astype(int)
    p1 = np.where(labels == 1, rng.beta(3, 7, n), rng.beta(1, 19, n))
    return np.stack([1 - p1, p1], axis=1), labels


def test_marginal_coverage_hides_a_missed_class_that_mondrian_covers() -> None:
    rng = np.random.default_rng(12)
    cal_probs, cal_labels = imbalanced_data(rng, 10_000)  # about 1,000 rare rows each
    test_probs, test_labels = imbalanced_data(rng, 10_000)
    calibration = fit_conformal(cal_probs, cal_labels)
    names = ["common", "rare"]
    (marginal,) = coverage_table(calibration, test_probs, test_labels, [0.1], class_names=names)[:1]
    (mondrian,) = coverage_table(
        calibration, test_probs, test_labels, [0.1], mondrian=True, class_names=names
    )[:1]
    assert marginal.method == mondrian.method == "lac" and mondrian.mondrian
    # Marginal sets meet 0.9 overall while the rare class is all but never covered...
    assert marginal.coverage >= 0.89
    for split in ("test", "calibration"):
        assert marginal.class_coverage[split]["rare"] < 0.2
    # ...Mondrian sets cover each class at 0.9 on the held-out rows and, by construction, on
    # the calibration rows (at least ceil((n_k + 1) * 0.9) of n_k).
    for name in names:
        assert mondrian.class_coverage["test"][name] == pytest.approx(0.9, abs=0.03)
        assert mondrian.class_coverage["calibration"][name] >= 0.9


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 1 / 3, 0.45, 0.5, 0.7, 0.99])
def test_rows_needed_is_the_least_n_with_a_finite_threshold(alpha: float) -> None:
    least = next(n for n in range(1, 1000) if conformal_rank(n, alpha) <= n)
    assert rows_needed(alpha) == least


def test_mondrian_refuses_a_class_with_too_few_rows() -> None:
    rng = np.random.default_rng(4)
    probs, _ = calibrated_data(rng, 60, 3)
    labels = np.array([0] * 40 + [1] * 12 + [2] * 8)
    calibration = fit_conformal(probs, labels)
    assert mondrian_shortfall(calibration, 0.2) == {}  # needs 4 rows a class
    assert mondrian_shortfall(calibration, 0.1) == {2: 8}  # needs 9
    assert mondrian_shortfall(calibration, 0.05) == {1: 12, 2: 8}  # needs 19
    with pytest.raises(DataError, match="class 2 has 8 calibration rows.*at least 9"):
        prediction_sets(probs, calibration, 0.1, "lac", mondrian=True)
    with pytest.raises(DataError, match="at least 9"):
        coverage_table(calibration, probs, labels, [0.1], mondrian=True)
    # A job reports Mondrian rows only where they can be served.
    reported = reported_coverage(calibration, probs, labels, ["a", "b", "c"])
    assert [(r.mondrian, r.alpha) for r in reported if r.method == "lac"] == [
        (False, 0.05),
        (False, 0.1),
        (False, 0.2),
        (True, 0.2),
    ]


def test_a_record_saved_before_mondrian_still_serves_marginal_sets() -> None:
    rng = np.random.default_rng(19)
    probs, labels = calibrated_data(rng, 100, 3)
    record = fit_conformal(probs, labels).to_dict()
    del record["class_scores"]
    old = ConformalCalibration.from_dict(record)
    assert prediction_sets(probs[:5], old, 0.1, "aps_randomized") == prediction_sets(
        probs[:5], fit_conformal(probs, labels), 0.1, "aps_randomized"
    )
    with pytest.raises(DataError, match="re-calibrate"):
        prediction_sets(probs[:5], old, 0.1, "lac", mondrian=True)
    (row,) = coverage_table(old, probs, labels, [0.1])[:1]
    assert set(row.class_coverage) == {"test"}  # no per-class scores to measure on


# --- edge cases ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "alpha", "rank"),
    [(9, 0.1, 9), (19, 0.05, 19), (99, 0.1, 90), (9, 0.7, 3), (99, 0.45, 55), (8, 0.1, 9)],
)
def test_rank_is_exact_in_decimal(n: int, alpha: float, rank: int) -> None:
    # In float64, 10 * (1 - 0.7) and 100 * (1 - 0.45) land just above 3 and 55.
    assert conformal_rank(n, alpha) == rank


@pytest.mark.parametrize("method", METHODS)
def test_a_rank_beyond_n_gives_infinity_and_full_sets(method: str) -> None:
    rng = np.random.default_rng(3)
    probs, labels = calibrated_data(rng, 8, 3)
    calibration = fit_conformal(probs, labels)
    assert threshold(calibration, 0.1, method) == math.inf  # ceil(9 * 0.9) = 9 > 8
    assert threshold(calibration, 0.2, method) < math.inf  # ceil(9 * 0.8) = 8
    assert prediction_sets(probs, calibration, 0.1, method) == [[0, 1, 2]] * 8


def test_lac_sets_may_be_empty() -> None:
    calibration = fit_conformal(np.array([[0.9, 0.1]] * 9), np.zeros(9, dtype=int))
    # Every score is 0.1 (up to rounding), so only classes with p >= 0.9 qualify.
    assert prediction_sets(np.array([[0.5, 0.5]]), calibration, 0.5, "lac") == [[]]
    table = coverage_table(calibration, np.array([[0.5, 0.5]]), np.array([0]), alphas=[0.5])
    assert [(r.method, r.empty_sets, r.coverage) for r in table][:2] == [
        ("lac", 1.0, 0.0),
        ("aps", 0.0, 1.0),
    ]


def test_json_round_trip_gives_identical_sets() -> None:
    rng = np.random.default_rng(11)
    probs, labels = calibrated_data(rng, 300, 5)
    calibration = fit_conformal(probs[:200], labels[:200])
    restored = ConformalCalibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert restored == calibration
    for method in METHODS:
        for alpha in (0.01, 0.05, 0.1, 0.2):
            assert prediction_sets(probs[200:], restored, alpha, method) == prediction_sets(
                probs[200:], calibration, alpha, method
            )


def test_from_dict_rejects_a_damaged_record() -> None:
    record = fit_conformal(np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 0, 1]))
    good = record.to_dict()
    with pytest.raises(DataError, match="sorted"):
        ConformalCalibration.from_dict({**good, "lac_scores": good["lac_scores"][::-1]})
    with pytest.raises(DataError, match="expected n=3"):
        ConformalCalibration.from_dict({**good, "aps_scores": good["aps_scores"][:2]})
    with pytest.raises(DataError, match="not a conformal calibration"):
        ConformalCalibration.from_dict({"n": 3})
    by_class = good["class_scores"]
    with pytest.raises(DataError, match="split by class"):
        moved = {**by_class, "lac": [by_class["lac"][0][:1], by_class["lac"][1]]}
        ConformalCalibration.from_dict({**good, "class_scores": moved})
    with pytest.raises(DataError, match="every method"):
        ConformalCalibration.from_dict({**good, "class_scores": {"lac": by_class["lac"]}})


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan"), "0.1", True, None])
def test_invalid_alpha_is_a_value_error_naming_alpha(alpha: object) -> None:
    calibration = fit_conformal(np.array([[0.7, 0.3], [0.2, 0.8]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="alpha"):
        threshold(calibration, alpha, "lac")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha"):
        prediction_sets(np.array([[0.5, 0.5]]), calibration, alpha, "aps")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha"):
        coverage_table(calibration, np.array([[0.5, 0.5]]), np.array([0]), alphas=[alpha])  # type: ignore[list-item]


@pytest.mark.parametrize("method", ["raps", "LAC", "", None])
def test_unknown_method_is_a_value_error_naming_method(method: object) -> None:
    probs, labels = np.array([[0.7, 0.3], [0.2, 0.8]]), np.array([0, 1])
    calibration = fit_conformal(probs, labels)
    with pytest.raises(ValueError, match="method"):
        conformal_scores(probs, labels, method)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):
        threshold(calibration, 0.1, method)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):
        prediction_sets(probs, calibration, 0.1, method)  # type: ignore[arg-type]


def test_inputs_are_checked() -> None:
    probs, labels = np.array([[0.7, 0.3], [0.2, 0.8]]), np.array([0, 1])
    calibration = fit_conformal(probs, labels)
    with pytest.raises(DataError, match="not logits"):
        fit_conformal(np.array([[2.0, 1.0], [0.5, 0.3]]), labels)
    with pytest.raises(DataError, match="class indices"):
        fit_conformal(probs, np.array([0, 2]))
    with pytest.raises(DataError, match="at least one"):
        fit_conformal(np.empty((0, 2)), np.empty(0, dtype=int))
    with pytest.raises(DataError, match="fitted on 2"):
        prediction_sets(np.full((1, 3), 1 / 3), calibration, 0.1, "lac")
