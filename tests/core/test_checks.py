"""The checks that flag a model which learned nothing, on hand-made results."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from lpft_core import DataFiles, FinetuneSpec, Hyperparameters, Method, Predictor
from lpft_core.jobs.kinds import run_job
from lpft_core.results import Evaluation, HeadNorm, ProbeSummary, Reliability
from lpft_core.stages.calibration import ClassificationMetrics
from lpft_core.stages.checks import (
    ModelQualityWarning,
    check_job,
    learned_nothing,
    probe_at_grid_edge,
    small_head,
    temperature_at_bound,
    wilson_interval,
)
from tests.conftest import TINY_HYPERPARAMETERS, toy_rows, write_jsonl


def evaluation(accuracy: float, rows: int, majority: float, top_share: float) -> Evaluation:
    metrics = ClassificationMetrics(accuracy, 0.5, 0.0, 0.6, 0.2, 0.001, 0.01)
    return Evaluation("test", rows, metrics, metrics, Reliability([], []), majority, top_share)


def probe(C: float) -> ProbeSummary:
    return ProbeSummary(C, 5, 0.6, 0.6, C_min=1e-4, C_max=1e4, scoring="accuracy")


def test_wilson_interval_matches_the_textbook_value() -> None:
    low, high = wilson_interval(0.622, 1000)
    assert (low, high) == pytest.approx((0.59153, 0.65153), abs=1e-5)  # by hand
    assert wilson_interval(0.0, 0) == (0.0, 1.0)


def test_a_base_rate_predictor_is_flagged_twice() -> None:
    # The case: 1,000 test rows, accuracy equal to the majority rate, one class always.
    found = learned_nothing("test", evaluation(0.622, 1000, 0.622, 1.0))
    assert [w.code for w in found] == ["constant_predictions", "not_better_than_majority"]
    assert found[1].evidence["interval"] == pytest.approx([0.59153, 0.65153], abs=1e-5)
    assert "0.622" in found[1].message and "1000 rows" in found[1].message


def test_a_model_clearly_above_the_majority_rate_is_not_flagged() -> None:
    assert learned_nothing("test", evaluation(0.83, 872, 0.51, 0.55)) == []
    # A set whose labels are 99 % one class may be predicted as that class; 0.995 is still
    # within the noise of 0.99 on 1,000 rows.
    found = learned_nothing("test", evaluation(0.995, 1000, 0.99, 0.99))
    assert [w.code for w in found] == ["not_better_than_majority"]


def test_probe_grid_edges_and_small_heads_and_temperature_bounds() -> None:
    assert [w.code for w in probe_at_grid_edge(probe(1e-4))] == ["probe_c_at_grid_edge"]
    assert "smallest" in probe_at_grid_edge(probe(1e-4))[0].message
    assert probe_at_grid_edge(probe(0.35938)) == []
    norm = HeadNorm(initial=0.55, after_lp=0.004, final=0.004)
    (warning,) = small_head("lp_ft", norm, head_norm_scale=1.0)
    assert warning.code == "small_head_after_lp" and "head_norm_scale" in warning.message
    assert small_head("lp_ft", norm, head_norm_scale=1000.0) == []
    assert small_head("ft", norm, head_norm_scale=1.0) == []
    assert [w.code for w in temperature_at_bound(100.0)] == ["temperature_at_bound"]
    assert temperature_at_bound(1.3) == []


def test_check_job_orders_causes_before_symptoms() -> None:
    found = check_job(
        "lp_ft",
        probe(1e-4),
        HeadNorm(initial=0.55, after_lp=0.004, final=0.004),
        1.0,
        100.0,
        {"test": evaluation(0.622, 1000, 0.622, 1.0)},
    )
    assert [w.code for w in found] == [
        "probe_c_at_grid_edge",
        "small_head_after_lp",
        "constant_predictions",
        "not_better_than_majority",
        "temperature_at_bound",
    ]


def test_a_job_on_labels_that_mean_nothing_says_so(tiny_model_dir: Path, tmp_path: Path) -> None:
    rng = random.Random(0)
    rows = [{**row, "label": rng.choice(["a", "b"])} for row in toy_rows(120, seed=4)]
    spec = FinetuneSpec(
        method=Method.LP_FT,
        data=DataFiles(train=str(write_jsonl(tmp_path / "train.jsonl", rows))),
        output_dir=str(tmp_path / "model"),
        model=str(tiny_model_dir),
        hyperparameters=Hyperparameters(**{**TINY_HYPERPARAMETERS, "epochs": 1}),
    )
    with pytest.warns(ModelQualityWarning):
        run_job("finetune", spec.to_dict(), "noise")
    saved = json.loads((tmp_path / "model" / "metrics.json").read_text())
    codes = [w["code"] for w in saved["warnings"]]
    assert "not_better_than_majority" in codes, saved["warnings"]
    assert all(w["message"] and w["evidence"] for w in saved["warnings"])
    report = (tmp_path / "model" / "report.md").read_text()
    assert report.index("## Warnings") == report.index("## ")  # the first section
    assert saved["warnings"][0]["message"] in report
    assert Predictor(tmp_path / "model").warnings == codes
