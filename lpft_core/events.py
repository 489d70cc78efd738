"""Progress events and the callbacks ``finetune`` accepts.

The library reports progress and checks for cancellation through plain callables, so the CLI
can draw progress bars and the worker can publish to Redis without lpft_core knowing either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report.

    Attributes:
        stage: ``load``, ``lp``, ``ntk``, ``ft``, ``lora``, ``calibrate`` or ``save``
            (``<method>/<stage>`` within a comparison); ``<part>/resumed`` for a part of a
            job that an interrupted run finished (``lpft_core.jobs.checkpoint``).
        step: steps done in this stage.
        total: steps this stage will take.
        metrics: numbers for this step (``loss``, ``head_weight_norm``, ...); may be empty.
    """

    stage: str
    step: int
    total: int
    metrics: dict[str, float] = field(default_factory=dict)


ProgressCallback = Callable[[ProgressEvent], None]
StopCallback = Callable[[], bool]


def no_progress(event: ProgressEvent) -> None:
    """The default progress callback: ignore the event."""


def never_stop() -> bool:
    """The default stop callback: never ask the job to stop."""
    return False
