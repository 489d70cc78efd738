"""Wall-clock timing on a shared machine: the GPU's queue drained at both ends of a run, and
the fastest of several runs kept (noise from other work only ever adds time)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def synchronize() -> None:
    """Wait for queued GPU work, so that a clock reading covers it (a no-op without CUDA)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_of(repeats: int, run: Callable[[], T]) -> tuple[float, T]:
    """Seconds of the fastest of ``repeats`` calls of ``run``, and the last call's result."""
    best = float("inf")
    for _ in range(repeats):
        synchronize()
        started = time.perf_counter()
        result = run()
        synchronize()
        best = min(best, time.perf_counter() - started)
    return best, result
