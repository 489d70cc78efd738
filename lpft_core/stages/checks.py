"""Checks that a trained model learned something, run on every finetune job's metrics.

A model that predicts the base rate for every row is perfectly calibrated (its ECE is near
0) and useless; a probe whose C sits at the end of its grid, or a head too small for the FT
stage to move the encoder, explains how such a model comes about. Each failed check is a
``ModelWarning`` with a stable ``code``, a message a user understands and the figures behind
it; ``metrics.json`` lists them under ``warnings`` and ``/predict`` names their codes.
"""

from __future__ import annotations

import math

from lpft_core.results import Evaluation, HeadNorm, ModelWarning, ProbeSummary
from lpft_core.stages.calibration import TEMPERATURE_BOUNDS

#: A model predicting one class for at least this share of a set is called constant (unless
#: that class holds as large a share of the labels).
CONSTANT_SHARE = 0.98
#: z of the two-sided 95 % Wilson interval around an accuracy.
Z95 = 1.96


class ModelQualityWarning(UserWarning):
    """A ``ModelWarning`` raised as a Python warning, so that it reaches the job's events
    and the CLI's output as it happens."""


def probe_at_grid_edge(probe: ProbeSummary) -> list[ModelWarning]:
    """The cross-validated C is the smallest or largest of the grid: the best value may lie
    beyond it, and at the small end the head is nearly zero (every prediction the base rate)."""
    if probe.C not in (probe.C_min, probe.C_max):
        return []
    end = "smallest" if probe.C == probe.C_min else "largest"
    advice = (
        "the probe is regularised as hard as the grid allows and its head is nearly zero; "
        "the features may not separate the classes (try lp_scoring='neg_log_loss', more "
        "data, or another model)"
        if end == "smallest"
        else "the best C may lie beyond the grid"
    )
    return [
        ModelWarning(
            "probe_c_at_grid_edge",
            f"the linear probe chose C = {probe.C:.3g}, the {end} value of its grid "
            f"[{probe.C_min:.3g}, {probe.C_max:.3g}]: {advice}",
            {"C": probe.C, "grid": [probe.C_min, probe.C_max], "scoring": probe.scoring},
        )
    ]


def learned_nothing(name: str, evaluation: Evaluation) -> list[ModelWarning]:
    """The model predicts (nearly) one class, or its accuracy is not above the majority rate
    by more than the 95 % interval of a set this size."""
    found = []
    share, majority = evaluation.top_prediction_share, evaluation.majority_rate
    if share >= CONSTANT_SHARE and majority < CONSTANT_SHARE:
        found.append(
            ModelWarning(
                "constant_predictions",
                f"on {name} the model predicts one class for {share:.1%} of the rows: it "
                "has learned (almost) nothing, however good its calibration looks (a "
                "constant prediction of the base rate has an ECE near 0)",
                {"set": name, "top_prediction_share": share, "majority_rate": majority},
            )
        )
    accuracy = evaluation.uncalibrated.accuracy
    low, high = wilson_interval(accuracy, evaluation.rows)
    if low <= majority:
        found.append(
            ModelWarning(
                "not_better_than_majority",
                f"on {name} the accuracy {accuracy:.3f} (95 % interval {low:.3f}-{high:.3f}, "
                f"{evaluation.rows} rows) is not significantly above {majority:.3f}, what "
                "always answering the most common label scores",
                {
                    "set": name,
                    "accuracy": accuracy,
                    "interval": [low, high],
                    "majority_rate": majority,
                    "rows": evaluation.rows,
                },
            )
        )
    return found


def small_head(method: str, head_norm: HeadNorm, head_norm_scale: float) -> list[ModelWarning]:
    """LP-FT / LP-LoRA starts from a head smaller than a fresh one: the FT-effective part of
    the NTK, V·Theta_phi·V^T, scales with ‖V‖², so the encoder will barely move."""
    if method not in ("lp_ft", "lp_lora") or head_norm.after_lp is None:
        return []
    start = head_norm.after_lp * head_norm_scale
    if start >= head_norm.initial:
        return []
    return [
        ModelWarning(
            "small_head_after_lp",
            f"{method} started fine-tuning from a head of norm {start:.3g}, below the "
            f"{head_norm.initial:.3g} of a fresh head: the FT-effective part of the NTK scales "
            "with the squared head norm, so the encoder barely moves. Raise head_norm_scale, "
            "or use ft",
            {"head_norm_at_ft_start": start, "fresh_head_norm": head_norm.initial},
        )
    ]


def temperature_at_bound(temperature: float) -> list[ModelWarning]:
    """T at the end of its search interval: the logits carry no usable information."""
    low, high = TEMPERATURE_BOUNDS
    if not (temperature <= low * (1 + 1e-3) or temperature >= high * (1 - 1e-3)):
        return []
    return [
        ModelWarning(
            "temperature_at_bound",
            f"the fitted temperature {temperature:.3g} sits at the end of its search interval "
            f"[{low:g}, {high:g}]: on validation the logits carry no usable information about "
            "the labels, so calibration flattens (or sharpens) every prediction",
            {"temperature": temperature, "bounds": [low, high]},
        )
    ]


def wilson_interval(share: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``share`` observed on ``n`` rows."""
    if n == 0:
        return 0.0, 1.0
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def check_job(
    method: str,
    probe: ProbeSummary | None,
    head_norm: HeadNorm,
    head_norm_scale: float,
    temperature: float,
    evaluations: dict[str, Evaluation],
) -> list[ModelWarning]:
    """Every check on one finetune job's results, in the order a user should read them."""
    found = probe_at_grid_edge(probe) if probe is not None else []
    found += small_head(method, head_norm, head_norm_scale)
    for name, evaluation in evaluations.items():
        found += learned_nothing(name, evaluation)
    return found + temperature_at_bound(temperature)
