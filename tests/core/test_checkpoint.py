"""Resuming an interrupted job from its checkpoint gives the numbers of an uninterrupted run
(on the CPU, where every kernel is deterministic), and does not redo the parts that finished."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from lpft_core import DataFiles, FinetuneSpec, Hyperparameters, JobCancelled, Method, finetune
from lpft_core.events import ProgressEvent, StopCallback
from lpft_core.jobs.analysis import analyze
from lpft_core.jobs.checkpoint import IDENTITY, PROBE, TRAINING
from lpft_core.jobs.compare import compare
from lpft_core.jobs.specs import AnalysisSpec, CompareSpec
from lpft_core.model.artifacts import write_json
from lpft_core.stages.snapshots import load_checkpoint
from tests.conftest import TINY_HYPERPARAMETERS

#: 90 toy train rows in batches of 16: 6 steps an epoch.
STEPS_PER_EPOCH = 6


def spec_for(
    files: dict[str, Path], model_dir: Path, root: Path, method: str, **options: object
) -> FinetuneSpec:
    ntk_samples = int(options.pop("ntk_samples", 0))
    return FinetuneSpec(
        method=Method(method),
        data=DataFiles(**{k: str(v) for k, v in files.items()}),
        output_dir=str(root / "model"),
        model=str(model_dir),
        hyperparameters=Hyperparameters(
            **{**TINY_HYPERPARAMETERS, "epochs": 3, "device": "cpu", **options}
        ),
        ntk_samples=ntk_samples,
        checkpoint_dir=str(root / "checkpoint"),
    )


def reproducible(metrics_json: Path) -> dict:
    """metrics.json less what depends on the wall clock."""
    metrics = json.loads(metrics_json.read_text())
    del metrics["timing"]
    for epoch in metrics["epochs"]:
        del epoch["seconds"]
    return metrics


def stop_when(
    events: list[ProgressEvent], condition: Callable[[ProgressEvent], bool]
) -> StopCallback:
    """Stop once any published event meets ``condition``."""
    return lambda: any(condition(e) for e in events)


def resumes(event: ProgressEvent) -> bool:
    return "resumed_from_epoch" in event.metrics


@pytest.mark.parametrize(
    ("method", "ntk_samples", "stop", "resumed_from"),
    [
        # cut inside epoch 2, before its 8th step
        ("lp_ft", 6, lambda e: "loss" in e.metrics and e.step >= STEPS_PER_EPOCH + 1, 1),
        ("lp_lora", 0, lambda e: "loss" in e.metrics and e.step >= STEPS_PER_EPOCH + 1, 1),
        # cut during calibration, after the last epoch
        ("lp_ft", 0, lambda e: e.stage == "calibrate", 3),
    ],
    ids=["lp_ft-epoch-2", "lp_lora-epoch-2", "lp_ft-calibration"],
)
def test_an_interrupted_job_resumes_to_the_same_numbers(
    method: str,
    ntk_samples: int,
    stop: Callable[[ProgressEvent], bool],
    resumed_from: int,
    toy_files: dict[str, Path],
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    uninterrupted = spec_for(
        toy_files, tiny_model_dir, tmp_path / "a", method, ntk_samples=ntk_samples
    )
    finetune(uninterrupted)
    expected = reproducible(tmp_path / "a" / "model" / "metrics.json")

    spec = spec_for(toy_files, tiny_model_dir, tmp_path / "b", method, ntk_samples=ntk_samples)
    checkpoint = Path(spec.checkpoint_dir or "")
    events: list[ProgressEvent] = []
    with pytest.raises(JobCancelled):
        finetune(spec, events.append, stop_when(events, stop))
    assert not Path(spec.output_dir).exists()
    assert {IDENTITY, PROBE, TRAINING} <= {p.name for p in checkpoint.iterdir()}
    # After the last epoch nothing trains on: its checkpoint leaves AdamW's state out.
    saved = load_checkpoint(checkpoint / TRAINING)
    assert (saved.optimizer is None) == (resumed_from == 3)

    events.clear()
    finetune(spec, events.append)
    stage = "lora" if method == "lp_lora" else "ft"
    assert [e for e in events if resumes(e)] == [
        ProgressEvent(
            stage,
            resumed_from * STEPS_PER_EPOCH,
            3 * STEPS_PER_EPOCH,
            {"resumed_from_epoch": float(resumed_from)},
        )
    ]
    # LP was not run again: only its result was reported.
    assert [e.step for e in events if e.stage == "lp"] == [3]
    trained_steps = [e.step for e in events if e.stage == stage and "loss" in e.metrics]
    assert trained_steps == list(range(resumed_from * STEPS_PER_EPOCH + 1, 19))
    assert reproducible(Path(spec.output_dir) / "metrics.json") == expected
    assert not checkpoint.exists()


def test_a_checkpoint_of_another_job_is_ignored(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    first = spec_for(toy_files, tiny_model_dir, tmp_path, "lp_ft")
    events: list[ProgressEvent] = []
    with pytest.raises(JobCancelled):
        finetune(first, events.append, stop_when(events, lambda e: e.step > STEPS_PER_EPOCH))
    assert (Path(first.checkpoint_dir or "") / TRAINING).exists()

    other = spec_for(toy_files, tiny_model_dir, tmp_path, "lp_ft", learning_rate=5e-4)
    events.clear()
    with pytest.warns(UserWarning, match="written for another job"):
        metrics = finetune(other, events.append).metrics
    assert not any(resumes(e) for e in events)
    assert [e.step for e in events if e.stage == "lp"] == [0, 1, 2, 3]
    assert metrics.history[0].step == 1 and len(metrics.history) == 3 * STEPS_PER_EPOCH
    assert not Path(other.checkpoint_dir or "").exists()


def test_checkpoint_dir_round_trips_and_defaults_to_none(toy_files: dict[str, Path]) -> None:
    spec = FinetuneSpec(Method.FT, DataFiles(str(toy_files["train"])), "out", checkpoint_dir="ckpt")
    assert FinetuneSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert FinetuneSpec(Method.FT, DataFiles("t.jsonl"), "out").checkpoint_dir is None


def finished_parts(events: list[ProgressEvent]) -> list[str]:
    """The stages a resumed run announced as finished by the interrupted one."""
    return [e.stage for e in events if "already_finished" in e.metrics]


def compare_spec(files: dict[str, Path], model_dir: Path, root: Path) -> CompareSpec:
    return CompareSpec(
        data=DataFiles(**{k: str(v) for k, v in files.items()}),
        output_dir=str(root / "model"),
        model=str(model_dir),
        methods=[Method.LP_FT, Method.FT],
        hyperparameters=Hyperparameters(**{**TINY_HYPERPARAMETERS, "epochs": 3, "device": "cpu"}),
        ntk_samples=6,
        checkpoint_dir=str(root / "checkpoint"),
    )


@pytest.mark.slow  # three two-method comparisons with kernels: about 5 s on 2 cores
def test_an_interrupted_comparison_keeps_the_methods_that_finished(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    compare(compare_spec(toy_files, tiny_model_dir, tmp_path / "a"))
    methods = ("lp_ft", "ft")
    expected = {m: reproducible(tmp_path / "a" / "model" / m / "metrics.json") for m in methods}

    spec = compare_spec(toy_files, tiny_model_dir, tmp_path / "b")
    events: list[ProgressEvent] = []
    with pytest.raises(JobCancelled):  # in the second epoch of ft, the second method
        compare(
            spec,
            events.append,
            stop_when(events, lambda e: e.stage == "ft/ft" and e.step > STEPS_PER_EPOCH),
        )
    events.clear()
    result = compare(spec, events.append)

    assert finished_parts(events) == ["shared/lp/resumed", "lp_ft/resumed"]
    # neither the shared probe nor lp_ft was trained again
    assert {e.stage for e in events if e.stage.startswith(("shared/", "lp_ft/"))} == {
        "shared/lp/resumed",
        "lp_ft/resumed",
    }
    assert [(e.stage, e.metrics) for e in events if resumes(e)] == [
        ("ft/ft", {"resumed_from_epoch": 1.0})
    ]
    for method in methods:
        assert reproducible(Path(spec.output_dir) / method / "metrics.json") == expected[method]
    assert result.methods["lp_ft"].temperature == expected["lp_ft"]["temperature"]
    assert not Path(spec.checkpoint_dir or "").exists()


def analysis_spec(files: dict[str, Path], model_dir: Path, root: Path) -> AnalysisSpec:
    return AnalysisSpec(
        data=DataFiles(**{k: str(v) for k, v in files.items()}),
        output_dir=str(root / "analysis"),
        model=str(model_dir),
        methods=[Method.FT, Method.LP_FT],
        ntk_samples=6,
        hyperparameters=Hyperparameters(**{**TINY_HYPERPARAMETERS, "device": "cpu"}),
        checkpoint_dir=str(root / "checkpoint"),
    )


def analysis_numbers(spec: AnalysisSpec, **callbacks: object) -> dict:
    """The analysis's metrics.json less its timing."""
    path = Path(spec.output_dir) / "metrics.json"
    write_json(path, analyze(spec, **callbacks).to_dict())  # type: ignore[arg-type]
    numbers = json.loads(path.read_text())
    del numbers["timing"]
    return numbers


@pytest.mark.slow  # three analyses of two methods' kernels: about 4 s on 2 cores
def test_an_interrupted_analysis_keeps_the_parts_that_finished(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    expected = analysis_numbers(analysis_spec(toy_files, tiny_model_dir, tmp_path / "a"))

    spec = analysis_spec(toy_files, tiny_model_dir, tmp_path / "b")
    events: list[ProgressEvent] = []
    with pytest.raises(JobCancelled):  # in the second kernel (lp_ft's)
        analyze(spec, events.append, stop_when(events, lambda e: e.stage == "ntk" and e.step == 1))
    events.clear()
    numbers = analysis_numbers(spec, progress=events.append)

    assert finished_parts(events) == ["features/resumed", "lp/resumed", "ntk/ft/resumed"]
    assert not any(e.stage in ("features", "lp") for e in events)  # not measured again
    assert numbers == expected
    assert not Path(spec.checkpoint_dir or "").exists()
