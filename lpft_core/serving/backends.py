"""Which runtime serves a model, and why: the choice a server makes once, at start-up.

``auto`` (the default) serves through ONNX Runtime on the CPU, which on 2 cores answered
/predict 1.6x to 2x faster than eager torch (benchmarks/RESULTS.md), wherever onnxruntime
imports; torch where it does not (a slimmed image, a wheel that does not load on this CPU),
and torch on a CUDA GPU when ``device`` lets one be used. A fallback is said, with its reason,
so that an operator who expected ONNX sees why it is not running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from lpft_core.errors import ModelError
from lpft_core.serving.predictor import Backend

BackendSetting = Literal["auto", "torch", "onnx"]
BACKEND_SETTINGS: tuple[BackendSetting, ...] = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class BackendChoice:
    """The backend that serves, the device it serves on, and why (said in /readyz)."""

    backend: Backend
    device: str
    reason: str

    @property
    def fallback(self) -> bool:
        """Whether ``auto`` wanted ONNX Runtime and got torch on the CPU instead."""
        return self.reason.startswith("fallback")


def onnxruntime_import_error() -> str | None:
    """Why ``import onnxruntime`` fails here, or ``None`` when it imports."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def choose_backend(
    setting: BackendSetting,
    device: str = "auto",
    *,
    cuda_available: Callable[[], bool] = torch.cuda.is_available,
    import_error: Callable[[], str | None] = onnxruntime_import_error,
) -> BackendChoice:
    """The backend for ``setting`` (``auto``, ``torch`` or ``onnx``) and ``device``
    (``auto``, ``cpu``, ``cuda``); the callables are for tests.

    Raises:
        ModelError: ``onnx`` was asked for by name and onnxruntime does not import.
    """
    if setting == "torch":
        return BackendChoice("torch", _torch_device(device, cuda_available), "asked for")
    if setting == "onnx":
        error = import_error()
        if error is not None:
            raise ModelError(
                f"the onnx backend was asked for but onnxruntime does not import ({error})"
            )
        return BackendChoice("onnx", "cpu", "asked for")
    if device == "cuda" or (device == "auto" and cuda_available()):
        return BackendChoice("torch", "cuda", "a CUDA GPU: torch serves on it")
    error = import_error()
    if error is not None:
        return BackendChoice("torch", "cpu", f"fallback: onnxruntime does not import ({error})")
    return BackendChoice("onnx", "cpu", "onnxruntime on the CPU")


def _torch_device(device: str, cuda_available: Callable[[], bool]) -> str:
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return device
