"""Multi-seed jobs: one run per seed on one split, mean ± std of every metric, the first
seed's model kept; an interrupted job trains only the runs that had not finished. Also the
per-method learning-rate map."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from lpft_client.local import build_parser, hyperparameters_from

from lpft_core import ConfigError, FinetuneSpec, Hyperparameters, JobCancelled, Method, finetune
from lpft_core.config import DEFAULT_LEARNING_RATES, DataFiles
from lpft_core.events import ProgressEvent
from lpft_core.jobs.compare import compare
from lpft_core.jobs.specs import CompareSpec
from lpft_core.reporting.report import tables
from lpft_core.serving.predictor import Predictor
from tests.conftest import TINY_HYPERPARAMETERS
from tests.core.test_checkpoint import reproducible, stop_when

SEEDS = [0, 5, 7]


def seeded_spec(
    files: dict[str, Path], model_dir: Path, root: Path, **options: object
) -> FinetuneSpec:
    seeds = list(options.pop("seeds", SEEDS))  # type: ignore[call-overload]
    return FinetuneSpec(
        method=Method(str(options.pop("method", "lp_ft"))),
        data=DataFiles(**{k: str(v) for k, v in files.items() if k != "test"}),
        output_dir=str(root / "model"),
        model=str(model_dir),
        hyperparameters=Hyperparameters(
            **{**TINY_HYPERPARAMETERS, "device": "cpu", "seed": seeds[0], **options}
        ),
        checkpoint_dir=str(root / "checkpoint"),
        seeds=seeds,
    )


def test_one_run_per_seed_on_one_split_with_mean_and_std(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    spec = seeded_spec(toy_files, tiny_model_dir, tmp_path)
    events: list[ProgressEvent] = []
    metrics = finetune(spec, events.append).metrics

    assert [run.seed for run in metrics.runs] == SEEDS
    assert {e.stage.split("/")[0] for e in events} == {f"seed-{s}" for s in SEEDS}
    # Every run is scored on the same held-out rows: the first seed's split.
    assert {run.test.rows for run in metrics.runs} == {metrics.test.rows}
    assert metrics.test.split == "held_out"
    alone = dataclasses.replace(
        spec,
        hyperparameters=dataclasses.replace(spec.hyperparameters, seed=5),
        output_dir=str(tmp_path / "alone"),
        checkpoint_dir=None,
        seeds=[],
        split_seed=0,
    )
    assert finetune(alone).metrics.test == metrics.runs[1].test

    summary = metrics.summary
    assert summary is not None and summary.seeds == SEEDS
    for side in ("uncalibrated", "calibrated"):
        for name in ("accuracy", "macro_f1", "mcc", "nll", "brier", "ece", "mce"):
            values = [getattr(getattr(r.test, side), name) for r in metrics.runs]
            stat = getattr(summary.test, side)[name]
            assert stat.mean == pytest.approx(np.mean(values))
            assert stat.std == pytest.approx(np.std(values, ddof=1))
    assert summary.temperature.mean == pytest.approx(np.mean([r.temperature for r in metrics.runs]))

    # The first seed's run is the model; the others keep their numbers and no weights.
    out = Path(spec.output_dir)
    assert metrics.temperature == metrics.runs[0].temperature
    saved = json.loads((out / "metrics.json").read_text())
    assert [r["seed"] for r in saved["runs"]] == SEEDS
    assert set(saved["summary"]["test"]["calibrated"]["ece"]) == {"mean", "std"}
    assert Predictor(out).seeds == SEEDS
    for seed in SEEDS[1:]:
        assert {p.name for p in (out / "runs" / f"seed-{seed}").iterdir()} == {
            "metrics.json",
            "spec.json",
        }
    assert not Path(spec.checkpoint_dir or "").exists()

    accuracy_title = next(t for t in tables({"lp_ft": metrics}) if t.startswith("Accuracy"))
    assert "mean ± std over seeds [0, 5, 7]" in accuracy_title
    row = tables({"lp_ft": metrics})[accuracy_title][1][0]
    assert all(" ± " in cell for cell in row[1:])


def test_an_interrupted_multi_seed_job_trains_only_the_unfinished_runs(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    expected_dir = tmp_path / "a"
    finetune(seeded_spec(toy_files, tiny_model_dir, expected_dir, seeds=[0, 5]))

    spec = seeded_spec(toy_files, tiny_model_dir, tmp_path / "b", seeds=[0, 5])
    events: list[ProgressEvent] = []
    with pytest.raises(JobCancelled):
        finetune(spec, events.append, stop_when(events, lambda e: e.stage == "seed-5/ft"))
    events.clear()
    finetune(spec, events.append)

    assert not any(e.stage.startswith("seed-0/") for e in events)
    assert reproducible(Path(spec.output_dir) / "metrics.json") == reproducible(
        expected_dir / "model" / "metrics.json"
    )
    assert not Path(spec.checkpoint_dir or "").exists()


def test_a_compare_job_runs_every_method_per_seed(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    spec = CompareSpec(
        data=DataFiles(train=str(toy_files["train"]), validation=str(toy_files["validation"])),
        output_dir=str(tmp_path),
        model=str(tiny_model_dir),
        methods=[Method.LP, Method.LP_FT],
        hyperparameters=Hyperparameters(**{**TINY_HYPERPARAMETERS, "device": "cpu"}),
        ntk_samples=0,
        seeds=[0, 1],
    )
    result = compare(spec)
    for name, metrics in result.methods.items():
        assert [r.seed for r in metrics.runs] == [0, 1]
        assert metrics.summary is not None
        saved = json.loads((tmp_path / name / "metrics.json").read_text())
        assert saved["summary"]["seeds"] == [0, 1]
        assert (tmp_path / name / "runs" / "seed-1" / "metrics.json").exists()
    # One probe per seed, shared by the LP methods of that seed.
    lp, lp_ft = result.methods["lp"], result.methods["lp_ft"]
    assert [r.lp_C for r in lp.runs] == [r.lp_C for r in lp_ft.runs]
    calibration = next(v for k, v in tables(result.methods).items() if k.startswith("Calib"))
    assert all(" ± " in row[2] for row in calibration[1])  # T as mean ± std


def test_seeds_must_start_with_the_seed_and_be_distinct(toy_files: dict[str, Path]) -> None:
    data = DataFiles(train=str(toy_files["train"]))
    with pytest.raises(ConfigError, match="seeds"):
        FinetuneSpec(Method.FT, data, "out", seeds=[1, 2])  # hyperparameters.seed is 0
    with pytest.raises(ConfigError, match="repeated"):
        FinetuneSpec(Method.FT, data, "out", seeds=[0, 0])
    with pytest.raises(ConfigError, match="at most"):
        FinetuneSpec(Method.FT, data, "out", seeds=list(range(11)))


def test_learning_rate_per_method() -> None:
    rates = Hyperparameters(learning_rate={"ft": 3e-5, "lora": 1e-3})
    assert rates.learning_rate_for(Method.FT) == 3e-5
    assert rates.learning_rate_for(Method.LORA) == 1e-3
    assert rates.learning_rate_for(Method.LP_FT) == DEFAULT_LEARNING_RATES[Method.LP_FT]
    assert Hyperparameters(learning_rate=4e-5).learning_rate_for(Method.LP_LORA) == 4e-5
    with pytest.raises(ConfigError, match="learning_rate.lp:"):
        Hyperparameters(learning_rate={"lp": 1e-3})
    with pytest.raises(ConfigError, match="learning_rate.ft:"):
        Hyperparameters(learning_rate={"ft": 2.0})


def test_cli_flags_for_seeds_and_per_method_rates() -> None:
    parser, _ = build_parser()
    args = parser.parse_args(
        "train --train t.jsonl --method lp_ft --out o --seeds 3 1 2 "
        "--learning-rate ft=2e-5,lp_ft=1e-5".split()
    )
    options = hyperparameters_from(args)
    assert args.seeds == [3, 1, 2]
    assert options["seed"] == 3
    assert options["learning_rate"] == {"ft": 2e-5, "lp_ft": 1e-5}
