"""compare → paper-style tables → report with pictures; re-calibration of a finished model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lpft_core import DataFiles, Hyperparameters, Predictor
from lpft_core.errors import ConfigError, DataError
from lpft_core.jobs.analysis import analyze
from lpft_core.jobs.compare import compare
from lpft_core.jobs.recalibrate import recalibrate
from lpft_core.jobs.specs import AnalysisSpec, CompareSpec
from lpft_core.reporting.report import analysis_report, job_report, tables
from tests.conftest import TINY_HYPERPARAMETERS, toy_rows, write_jsonl

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    root = tmp_path_factory.mktemp("compare")
    files = {
        "train": write_jsonl(root / "train.jsonl", toy_rows(60, seed=1)),
        "test": write_jsonl(root / "test.jsonl", toy_rows(24, seed=3)),
        "shifted": write_jsonl(root / "shifted.jsonl", toy_rows(18, seed=4)),
    }
    spec = CompareSpec(
        data=DataFiles(
            train=str(files["train"]),
            test=str(files["test"]),
            eval_sets={"shifted": str(files["shifted"])},
        ),
        output_dir=str(root / "out"),
        model=str(tiny_model_dir),
        methods=["lp", "lp_ft", "lora"],
        hyperparameters=Hyperparameters(**TINY_HYPERPARAMETERS),
        ntk_samples=9,
    )
    return spec, compare(spec), files


def test_methods_share_one_probe_and_get_the_ntk_at_ft_start(comparison) -> None:
    spec, result, _ = comparison
    lp, lp_ft, lora = (result.methods[m] for m in ("lp", "lp_ft", "lora"))
    assert lp.lp == lp_ft.lp and lp.head_norm.after_lp == lp_ft.head_norm.after_lp
    assert lp.ntk is None and lp_ft.ntk is not None and lora.ntk is not None
    # LoRA's B = 0 at init: its F runs over the adapters but is tiny next to full FT's
    assert lora.ntk.parameters < lp_ft.ntk.parameters
    assert lora.ntk.ft_ratio < lp_ft.ntk.ft_ratio
    assert all(set(m.features) == {"test", "shifted"} for m in result.methods.values())
    assert lp.features["test"].difference == 0.0 < lp_ft.features["test"].difference
    for method in spec.methods:
        assert (Path(spec.output_dir) / method.value / "metrics.json").is_file()


def test_tables_hold_every_method_and_set(comparison) -> None:
    _, result, _ = comparison
    built = tables(result.methods)
    header, rows = built["Accuracy"]
    assert header[:3] == ["method", "test acc", "shifted acc"] and len(rows) == 3
    _, ntk_rows = built["NTK at the start of FT"]
    assert [r[1] for r in ntk_rows] == ["Pre-train E", "FT E", "NTK", "FT E", "NTK"]
    _, calibration_rows = built["Calibration (temperature scaling fitted on validation)"]
    assert len(calibration_rows) == 3 * 2


def test_report_embeds_its_pictures(comparison, tmp_path: Path) -> None:
    _, result, _ = comparison
    names = job_report(tmp_path, "Comparison", result.methods)
    assert {"comparison", "ntk-spectra", "lp_ft-reliability", "lora-training"} <= set(names)
    for name in names:
        assert (tmp_path / "plots" / f"{name}.png").read_bytes().startswith(PNG)
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(names)
    assert "NTK at the start of FT" in page and "<table>" in page
    markdown = (tmp_path / "report.md").read_text()
    assert all(f"(plots/{name}.png)" in markdown for name in names)


def test_recalibrate_keeps_the_old_temperature_on_record(comparison, tmp_path: Path) -> None:
    spec, result, files = comparison
    model_dir = Path(spec.output_dir) / "lp_ft"
    old = result.methods["lp_ft"].temperature
    outcome = recalibrate(model_dir, files["shifted"])
    assert outcome.previous_temperature == pytest.approx(old)
    assert outcome.calibrated.nll <= outcome.previous.nll + 1e-9
    assert outcome.calibrated.accuracy == outcome.previous.accuracy
    assert outcome.in_sample  # T was fitted on these rows: the figures say so

    def ece(bins: list) -> float:
        filled = [b for b in bins if b.count]
        return sum(b.count * abs(b.accuracy - b.confidence) for b in filled) / outcome.rows

    # The "uncalibrated" bins are at T = 1, as the "uncalibrated" metrics are.
    assert ece(outcome.reliability.uncalibrated) == pytest.approx(outcome.uncalibrated.ece)
    assert ece(outcome.reliability.calibrated) == pytest.approx(outcome.calibrated.ece)
    assert ece(outcome.previous_reliability) == pytest.approx(outcome.previous.ece)
    saved = json.loads((model_dir / "calibration.json").read_text())
    assert saved["temperature"] == outcome.temperature and saved["fitted_on"] == "shifted.jsonl"
    assert saved["previous"][0]["temperature"] == pytest.approx(old)
    assert Predictor(model_dir).temperature == outcome.temperature
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine", "label": "unknown"}])
    with pytest.raises(DataError, match="line 1.*label|label.*line 1"):
        recalibrate(model_dir, bad)


def test_compare_rejects_unknown_or_repeated_methods(tmp_path: Path) -> None:
    data = DataFiles(train=str(tmp_path / "t.jsonl"))
    with pytest.raises(ConfigError, match="methods"):
        CompareSpec(data=data, output_dir=str(tmp_path), methods=["lp", "sgd"])
    with pytest.raises(ConfigError, match="methods"):
        CompareSpec(data=data, output_dir=str(tmp_path), methods=["lp", "lp"])


def test_analysis_of_a_base_model_gives_each_methods_starting_kernel(
    comparison, tiny_model_dir: Path, tmp_path: Path
) -> None:
    spec, _, files = comparison
    result = analyze(
        AnalysisSpec(
            data=spec.data,
            output_dir=str(tmp_path),
            model=str(tiny_model_dir),
            methods=["ft", "lp_lora"],
            ntk_samples=6,
            hyperparameters=Hyperparameters(**TINY_HYPERPARAMETERS),
        )
    )
    assert set(result.ntk) == {"ft", "lp_lora"} and not result.feature_change
    assert set(result.feature_statistics) == {"test", "shifted"}
    # P sees only the pre-trained features: the same for every method
    ft, lp_lora = result.ntk["ft"], result.ntk["lp_lora"]
    assert ft.pretrain_effective.frobenius_norm == lp_lora.pretrain_effective.frobenius_norm
    assert lp_lora.parameters < ft.parameters
    names = analysis_report(tmp_path, "Analysis", result)
    assert (
        names == ["ntk-spectra"]
        and "NTK at the start of FT" in (tmp_path / "report.md").read_text()
    )
    assert json.dumps(result.to_dict())


def test_analysis_of_a_finished_model_measures_its_feature_change(
    comparison, tmp_path: Path
) -> None:
    spec, result, _ = comparison
    analysis = analyze(
        AnalysisSpec(
            data=spec.data,
            output_dir=str(tmp_path),
            model_dir=str(Path(spec.output_dir) / "lp_ft"),
            ntk_samples=6,
        )
    )
    job_change = result.methods["lp_ft"].features["test"]
    assert analysis.feature_change["test"].difference == pytest.approx(
        job_change.difference, rel=1e-5
    )
    assert set(analysis.ntk) == {"trained"}


def test_analysis_needs_something_to_do(tmp_path: Path) -> None:
    data = DataFiles(train=str(tmp_path / "t.jsonl"))
    with pytest.raises(ConfigError, match="ntk, features"):
        AnalysisSpec(data=data, output_dir=str(tmp_path), ntk=False, features=False)
    with pytest.raises(ConfigError, match="methods"):
        AnalysisSpec(data=data, output_dir=str(tmp_path), methods=["lp"])
