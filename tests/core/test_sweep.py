"""Sweep jobs in process: the search space's checks name the field, and a sweep run with
``run_job`` asks the study for every trial's parameters, ends with ``n_trials`` trials, the
best one by the objective (validation after calibration), and its plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lpft_core import ConfigError, Hyperparameters, SweepSpec, run_job
from lpft_core.config import DataFiles
from tests.conftest import TINY_HYPERPARAMETERS


def sweep_spec(files: dict[str, Path], model_dir: Path, root: Path, **options: object) -> SweepSpec:
    raw = {
        "method": "lp_ft",
        "data": DataFiles(**{k: str(v) for k, v in files.items()}),
        "output_dir": str(root / "sweep"),
        "model": str(model_dir),
        "hyperparameters": Hyperparameters(**{**TINY_HYPERPARAMETERS, "device": "cpu"}),
        "search_space": {
            "learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
            "head_norm_scale": {"type": "categorical", "choices": [0.5, 1.0, 2.0]},
        },
        "n_trials": 3,
        "parallelism": 1,
        "objective": "nll",
        "direction": "minimize",
        **options,
    }
    return SweepSpec(**raw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("space", "field"),
    [
        ({"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-4}}, "learning_rate.low"),
        ({"warmup": {"type": "float", "low": 0.0, "high": 0.1}}, "warmup"),
        (
            {"learning_rate": {"type": "float", "low": 0.0, "high": 1e-3, "log": True}},
            "learning_rate.low",
        ),
        ({"learning_rate": {"type": "float", "low": 1e-5, "high": 2.0}}, "learning_rate.high"),
        ({"epochs": {"type": "float", "low": 1, "high": 3}}, "epochs.type"),
        ({"epochs": {"type": "int", "low": 0, "high": 3}}, "epochs.low"),
        ({"pooling": {"type": "categorical", "choices": ["cls", "max"]}}, "pooling.choices[1]"),
        ({"seed": {"type": "int", "low": 0, "high": 3}}, "seed"),
    ],
)
def test_a_bad_range_names_its_field(
    space: dict, field: str, toy_files: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        sweep_spec(toy_files, tmp_path, tmp_path, search_space=space)
    assert caught.value.field == f"search_space.{field}"


def test_grid_needs_a_step_for_a_float_range(toy_files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        sweep_spec(toy_files, tmp_path, tmp_path, sampler="grid")
    assert caught.value.field == "search_space.learning_rate.step"


def test_spec_round_trips(toy_files: dict[str, Path], tmp_path: Path) -> None:
    spec = sweep_spec(toy_files, tmp_path, tmp_path)
    again = SweepSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    trial = again.trial_spec(2, {"learning_rate": 1e-3})
    assert trial.hyperparameters.learning_rate == 1e-3
    assert trial.split_seed == spec.hyperparameters.seed
    assert trial.output_dir.endswith("sweep/trials/2")


def test_a_sweep_runs_every_trial_and_keeps_the_best(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    spec = sweep_spec(
        toy_files,
        tiny_model_dir,
        tmp_path,
        hyperparameters=Hyperparameters(**{**TINY_HYPERPARAMETERS, "device": "cpu", "epochs": 1}),
        pruner="none",
    )
    out = run_job("sweep", spec.to_dict(), "sweep")
    metrics = json.loads((out / "metrics.json").read_text())

    assert metrics["n_trials"] == 3 and [t["number"] for t in metrics["trials"]] == [0, 1, 2]
    assert {t["state"] for t in metrics["trials"]} == {"complete"}
    params = [json.dumps(t["params"], sort_keys=True) for t in metrics["trials"]]
    assert len(set(params)) == 3, f"every trial asked the same parameters: {params}"
    best = min(metrics["trials"], key=lambda t: t["value"])
    assert metrics["best_trial"] == {
        "number": best["number"],
        "params": best["params"],
        "value": best["value"],
    }
    # The objective is the validation NLL after temperature scaling, as its name says.
    assert best["value"] == metrics["best_metrics"]["validation"]["calibrated"]["nll"]
    assert metrics["best_metrics"]["calibration"]["nll_after"] == pytest.approx(best["value"])
    for trial in metrics["trials"]:
        trial_metrics = json.loads(
            (out / "trials" / str(trial["number"]) / "metrics.json").read_text()
        )
        assert trial_metrics["validation"]["calibrated"]["nll"] == trial["value"]
        assert list(trial["intermediate_values"]) == ["1"]
    assert "optimization-history" in metrics["plots"]
    assert (out / "plots" / "optimization-history.png").stat().st_size > 1000


def test_a_grid_sweep_visits_each_point_once(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Optuna's grid sampler stops its study when the grid is used up, which raises outside
    ``optimize``: the ask-and-tell sweep must still record the last trial's end."""
    spec = sweep_spec(
        toy_files,
        tiny_model_dir,
        tmp_path,
        hyperparameters=Hyperparameters(**{**TINY_HYPERPARAMETERS, "device": "cpu", "epochs": 1}),
        search_space={"head_norm_scale": {"type": "categorical", "choices": [0.5, 1.0, 2.0]}},
        sampler="grid",
        pruner="none",
    )
    out = run_job("sweep", spec.to_dict(), "sweep")
    metrics = json.loads((out / "metrics.json").read_text())

    assert [t["state"] for t in metrics["trials"]] == ["complete"] * 3
    assert sorted(t["params"]["head_norm_scale"] for t in metrics["trials"]) == [0.5, 1.0, 2.0]
