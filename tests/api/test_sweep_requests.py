"""Sweep requests refused before anything is stored: each bad search space, cap or option
is a 422 naming the field, checked against the finetune job's own limits."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.test_requests import problem

SWEEP = {
    "kind": "sweep",
    "method": "lp_ft",
    "dataset": {"train": "ds-a"},
    "search_space": {
        "learning_rate": {"type": "float", "low": 1e-5, "high": 2e-4, "log": True},
        "epochs": {"type": "int", "low": 1, "high": 3},
        "head_norm_scale": {"type": "categorical", "choices": [0.1, 1.0, 10.0]},
    },
    "n_trials": 6,
    "parallelism": 2,
    "objective": {"metric": "validation.nll", "direction": "minimize"},
    "sampler": "tpe",
    "pruner": "median",
}


def with_space(**space: dict) -> dict:
    return {**SWEEP, "search_space": space}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # The four: low above high, an unknown parameter, log with low 0, too many.
        (
            with_space(learning_rate={"type": "float", "low": 2e-4, "high": 1e-5}),
            "search_space.learning_rate.low",
        ),
        (
            with_space(warmup_ratio={"type": "float", "low": 0, "high": 0.1}),
            "search_space.warmup_ratio",
        ),
        (
            with_space(learning_rate={"type": "float", "low": 0, "high": 1e-3, "log": True}),
            "search_space.learning_rate.low",
        ),
        ({**SWEEP, "n_trials": 51}, "n_trials"),
        ({**SWEEP, "n_trials": 100_000}, "n_trials"),
        # Bounds the finetune job itself refuses.
        (
            with_space(learning_rate={"type": "float", "low": 1e-5, "high": 2.0}),
            "search_space.learning_rate.high",
        ),
        (with_space(epochs={"type": "int", "low": 1, "high": 500}), "search_space.epochs.high"),
        (
            with_space(head_norm_scale={"type": "categorical", "choices": [1.0, -1.0]}),
            "search_space.head_norm_scale.choices[1]",
        ),
        (with_space(epochs={"type": "float", "low": 1, "high": 3}), "search_space.epochs.type"),
        (with_space(seed={"type": "int", "low": 0, "high": 3}), "search_space.seed"),
        (with_space(device={"type": "categorical", "choices": ["cpu"]}), "search_space.device"),
        (with_space(), "search_space"),
        ({**SWEEP, "search_space": "head_norms"}, "search_space"),
        ({**SWEEP, "sampler": "grid"}, "search_space.learning_rate.step"),
        # A grid of 3 x 2 points tries each once: a seventh trial would repeat one.
        (
            {
                **with_space(
                    epochs={"type": "int", "low": 1, "high": 3},
                    pooling={"type": "categorical", "choices": ["mean", "cls"]},
                ),
                "sampler": "grid",
                "n_trials": 7,
            },
            "n_trials",
        ),
        ({**SWEEP, "search_space": "head_norm", "sampler": "grid", "n_trials": 6}, "n_trials"),
        ({**SWEEP, "parallelism": 7, "n_trials": 6}, "parallelism"),
        ({**SWEEP, "parallelism": 8, "n_trials": 10}, "parallelism"),
        (
            {**SWEEP, "objective": {"metric": "test.nll", "direction": "minimize"}},
            "objective.metric",
        ),
        ({**SWEEP, "pruner": "asha"}, "pruner"),
        (
            with_space(epochs={"type": "int", "low": 1, "high": 3, "step": 0.5}),
            "search_space.epochs.step",
        ),
        (
            {
                **SWEEP,
                **with_space(batch_size={"type": "int", "low": 1, "high": 1e9}),
            },
            "search_space.batch_size.high",
        ),
        (
            {
                **with_space(weight_decay={"type": "float", "low": 0, "high": 10, "step": 1e-6}),
                "sampler": "grid",
            },
            "search_space.weight_decay.step",
        ),
    ],
)
def test_a_bad_sweep_is_a_422_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    problem(client.post("/jobs", json=body), 422, field)
