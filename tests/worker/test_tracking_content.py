"""How a job's metrics document becomes MLflow metrics (``lpft_worker.tracking.content``):
every number outside a list by its dotted path with the document's exact value, the per-step
and per-epoch lists as curves at their steps, and nothing MLflow would refuse."""

from __future__ import annotations

from lpft_worker.tracking.content import Point, document_points, is_job_artifact

DOCUMENT = {
    "method": "lp_ft",
    "temperature": 1.531556199438016,
    "test": {"uncalibrated": {"ece": 0.04648215421063266}, "calibrated": {"ece": 0.0447}},
    "eval_sets": {"ood": {"calibrated": {"accuracy": 0.5}}},
    "dataset": {"splits": {"train": {"rows": 90, "label_counts": {"very good!": 3, "bad": 4}}}},
    "history": [
        {"step": 1, "epoch": 1, "loss": 4.69, "learning_rate": 0.001},
        {"step": 2, "epoch": 1, "loss": 3.5, "learning_rate": 0.0005},
    ],
    "epochs": [{"epoch": 1, "validation_loss": 0.17}],
    "methods": {"ft": {"history": [{"step": 1, "loss": 2.0}], "best_epoch": 1}},
    "non_finite": ["x"],
    "scatter_ratio": None,
    "warnings": [{"code": "w", "count": 3}],
    "converged": True,
}


def test_numbers_are_named_by_their_path_and_lists_become_curves() -> None:
    points = list(document_points(DOCUMENT))
    assert points == [
        Point("temperature", 1.531556199438016),
        Point("test.uncalibrated.ece", 0.04648215421063266),
        Point("test.calibrated.ece", 0.0447),
        Point("eval_sets.ood.calibrated.accuracy", 0.5),
        Point("dataset.splits.train.rows", 90.0),
        # "very good!" is no name MLflow takes: left out, its sibling kept.
        Point("dataset.splits.train.label_counts.bad", 4.0),
        Point("step/epoch", 1.0, 1),
        Point("step/loss", 4.69, 1),
        Point("step/learning_rate", 0.001, 1),
        Point("step/epoch", 1.0, 2),
        Point("step/loss", 3.5, 2),
        Point("step/learning_rate", 0.0005, 2),
        Point("epoch/validation_loss", 0.17, 1),
        Point("methods.ft.step/loss", 2.0, 1),
        Point("methods.ft.best_epoch", 1.0),
    ]


def test_a_trials_run_fetches_its_documents_and_pictures_but_no_weights() -> None:
    tracked = ["metrics.json", "report.html", "report.md", "plots/reliability.png"]
    untracked = ["model.safetensors", "config.json", "plots/notes.txt", "plots/a/b.png"]
    assert all(map(is_job_artifact, tracked))
    assert not any(map(is_job_artifact, untracked))
