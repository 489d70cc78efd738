"""A finished sweep's report, in the style of every other kind's (``report.html`` with its
pictures embedded, ``report.md`` linking ``plots/<name>.png``): what was searched and how,
the best trial and the figures a practitioner checks before serving it (accuracy and ECE on
the test split before and after temperature scaling, and T), every trial as a table, and
Optuna's optimisation history, parameter importances and parallel coordinates.

Kept apart from ``lpft_core.jobs.sweep`` (the study) since it only reads the result: the
same tables are built whichever worker ends the sweep.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lpft_core.reporting.report import Table, write_report

if TYPE_CHECKING:
    from lpft_core.jobs.sweep import SweepResult
    from lpft_core.jobs.sweep_spec import SweepSpec

#: The pictures of a sweep's report, by file stem (``GET /jobs/{id}/plots/<stem>.png``).
PICTURES = ("optimization-history", "param-importances", "parallel-coordinates")


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _param(value: Any) -> str:
    return _number(value) if isinstance(value, float) else str(value)


def best_trial_table(result: SweepResult) -> Table:
    """The best trial: its number, parameters and objective, and its model's figures on the
    test split (accuracy, ECE without and with temperature scaling) with its T."""
    assert result.best_trial is not None and result.best_metrics is not None
    best, metrics = result.best_trial, result.best_metrics
    test = metrics["test"]
    header = ["trial", *best["params"], result.objective, f"{test['split']} accuracy",
              "ECE w/o TS", "ECE w/ TS", "T"]  # fmt: skip
    row = [
        str(best["number"]),
        *(_param(value) for value in best["params"].values()),
        _number(best["value"]),
        _number(test["uncalibrated"]["accuracy"]),
        _number(test["uncalibrated"]["ece"]),
        _number(test["calibrated"]["ece"]),
        _number(metrics["temperature"]),
    ]
    return header, [row]


def trials_table(result: SweepResult, searched: list[str]) -> Table:
    """Every trial: its parameters, state, objective and how many epochs it reported to the
    pruner; with the head-norm preset, its Diff(F), accuracy and ECE on the test split and
    its head's final norm beside them."""
    header = ["trial", *searched, "state", result.objective, "epochs reported"]
    preset = any(t.head_norm is not None for t in result.trials)
    if preset:
        header += ["Diff(F) on test", "accuracy", "ECE w/o TS", "ECE w/ TS", "‖V‖_F final"]
    rows = []
    for trial in result.trials:
        row = [
            str(trial.number),
            *(_param(trial.params.get(name)) if name in trial.params else "–" for name in searched),
            trial.state,
            _number(trial.value),
            str(len(trial.intermediate_values)),
        ]
        if preset:
            h = trial.head_norm
            row += (
                [_number(h.feature_change), _number(h.accuracy), _number(h.ece_uncalibrated),
                 _number(h.ece_calibrated), _number(h.head_norm)]
                if h is not None
                else ["–"] * 5
            )  # fmt: skip
        rows.append(row)
    return header, rows


def _intro(result: SweepResult, spec: SweepSpec) -> str:
    states: dict[str, int] = {}
    for trial in result.trials:
        states[trial.state] = states.get(trial.state, 0) + 1
    counted = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    searched = "`head_norm_scale` (the head-norm preset)" if spec.preset else (
        ", ".join(f"`{name}`" for name in spec.search_space)
    )  # fmt: skip
    intro = (
        f"A sweep of {spec.method.value} over {searched}: {result.n_trials} trials ({counted}), "
        f"{spec.sampler.value} sampler, {spec.pruner.value} pruner. Objective: "
        f"`{result.objective}` after temperature scaling, to {result.direction} (the rows T "
        "was fitted on, never the test split)."
    )
    if result.best_trial is None:
        return intro + " No trial completed, so there is no best trial to serve."
    return intro + (
        f" The best trial, {result.best_trial['number']}, is the model `/predict`, export and "
        "recalibrate use under the sweep's id."
    )


def sweep_report(
    directory: Path,
    title: str,
    result: SweepResult,
    spec: SweepSpec,
    images: dict[str, bytes],
) -> list[str]:
    """Write the sweep's report into ``directory`` (see ``write_report``); the best trial's
    warnings (reasons not to trust its model) come first. Returns the picture names."""
    built: dict[str, Table] = {}
    if result.best_trial is not None:
        built["Best trial"] = best_trial_table(result)
    built["Trials"] = trials_table(result, list(spec.search_space))
    warnings = [w["message"] for w in (result.best_metrics or {}).get("warnings", [])]
    return write_report(directory, title, _intro(result, spec), built, images, warnings)
