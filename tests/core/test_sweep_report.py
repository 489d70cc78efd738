"""A finished sweep's report, written in process by ``run_job``: one self-contained HTML page
(pictures embedded) and its markdown twin hold the objective, the best trial with its test
figures, a row per trial and the three Optuna pictures; the head-norm preset adds each
trial's Diff(F) on the test split, accuracy and ECE, in the report and in ``metrics.json``."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from lpft_core import HEAD_NORM_SCALES, Hyperparameters, run_job
from tests.conftest import TINY_HYPERPARAMETERS
from tests.core.test_sweep import sweep_spec

PICTURES = ("optimization-history", "param-importances", "parallel-coordinates")
#: The paper's grid of head-norm scales, three trials of one epoch each.
HEAD_NORM_SWEEP = {
    "hyperparameters": Hyperparameters(**{**TINY_HYPERPARAMETERS, "device": "cpu", "epochs": 1}),
    "search_space": {"head_norm_scale": {"type": "categorical", "choices": HEAD_NORM_SCALES}},
    "preset": "head_norm",
    "sampler": "grid",
    "n_trials": 3,
    "pruner": "none",
}


def _rows(markdown: str, heading: str) -> list[list[str]]:
    """The body rows of the markdown table under ``## heading``."""
    section = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_a_head_norm_sweep_reports_every_trial_with_its_feature_change(
    toy_files: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    spec = sweep_spec(toy_files, tiny_model_dir, tmp_path, **HEAD_NORM_SWEEP)
    out = run_job("sweep", spec.to_dict(), "Sweep report test")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["plots"] == list(PICTURES)

    # metrics.json: the paper's Diff(F) is the feature change on the test split.
    for trial in metrics["trials"]:
        own = json.loads((out / "trials" / str(trial["number"]) / "metrics.json").read_text())
        figures = trial["head_norm"]
        assert figures["split"] == own["test"]["split"] == "test"
        assert figures["feature_change"] == own["features"]["test"]["difference"]
        assert figures["accuracy"] == own["test"]["calibrated"]["accuracy"]
        assert figures["ece_uncalibrated"] == own["test"]["uncalibrated"]["ece"]
        assert figures["ece_calibrated"] == own["test"]["calibrated"]["ece"]
        assert figures["head_norm"] == own["head_norm"]["final"]

    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# Sweep report test\n")
    assert "`validation.nll` after temperature scaling, to minimize" in markdown
    best, best_metrics = metrics["best_trial"], metrics["best_metrics"]
    [best_row] = _rows(markdown, "Best trial")
    assert best_row[:3] == [
        str(best["number"]),
        f"{best['params']['head_norm_scale']:.4g}",
        f"{best['value']:.4g}",
    ]
    assert best_row[3:] == [
        f"{best_metrics['test']['uncalibrated']['accuracy']:.4g}",
        f"{best_metrics['test']['uncalibrated']['ece']:.4g}",
        f"{best_metrics['test']['calibrated']['ece']:.4g}",
        f"{best_metrics['temperature']:.4g}",
    ]
    rows = _rows(markdown, "Trials")
    assert [row[0] for row in rows] == ["0", "1", "2"]
    for row, trial in zip(rows, metrics["trials"], strict=True):
        figures = trial["head_norm"]
        assert row[1:5] == [
            f"{trial['params']['head_norm_scale']:.4g}",
            "complete",
            f"{trial['value']:.4g}",
            "1",  # one epoch reported to the pruner
        ]
        assert row[5] == f"{figures['feature_change']:.4g}"
        assert row[7:] == [
            f"{figures['ece_uncalibrated']:.4g}",
            f"{figures['ece_calibrated']:.4g}",
            f"{figures['head_norm']:.4g}",
        ]
    page = (out / "report.html").read_text()
    assert "Diff(F) on test" in page and "Diff(F) on test" in markdown
    for name in PICTURES:
        png = (out / "plots" / f"{name}.png").read_bytes()
        assert f"![{name}](plots/{name}.png)" in markdown
        embedded = re.search(f'alt="{name}" src="data:image/png;base64,([^"]+)"', page)
        assert embedded is not None and base64.b64decode(embedded.group(1)) == png
    assert 'src="http' not in page and "<script" not in page  # self-contained, inert
