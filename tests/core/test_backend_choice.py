"""The backend a server picks on its own: onnxruntime on the CPU where it imports, torch as
the fallback (said as one, with its cause), torch on a CUDA GPU; a backend asked for by name
is served or refused, never swapped."""

from __future__ import annotations

import pytest

from lpft_core.errors import ModelError
from lpft_core.serving.backends import choose_backend


def no_gpu() -> bool:
    return False


def a_gpu() -> bool:
    return True


def imports() -> str | None:
    return None


def does_not_import() -> str | None:
    return "ModuleNotFoundError: No module named 'onnxruntime'"


def test_auto_serves_onnx_on_the_cpu_where_it_imports() -> None:
    choice = choose_backend("auto", "auto", cuda_available=no_gpu, import_error=imports)
    assert (choice.backend, choice.device, choice.fallback) == ("onnx", "cpu", False)


def test_auto_falls_back_to_torch_and_says_why() -> None:
    choice = choose_backend("auto", "auto", cuda_available=no_gpu, import_error=does_not_import)
    assert (choice.backend, choice.device, choice.fallback) == ("torch", "cpu", True)
    assert "No module named 'onnxruntime'" in choice.reason


def test_auto_keeps_torch_on_a_gpu() -> None:
    choice = choose_backend("auto", "auto", cuda_available=a_gpu, import_error=imports)
    assert (choice.backend, choice.device, choice.fallback) == ("torch", "cuda", False)
    cuda = choose_backend("auto", "cuda", cuda_available=a_gpu, import_error=imports)
    assert (cuda.backend, cuda.device) == ("torch", "cuda")


def test_auto_on_a_gpu_host_told_to_use_the_cpu_serves_onnx() -> None:
    choice = choose_backend("auto", "cpu", cuda_available=a_gpu, import_error=imports)
    assert (choice.backend, choice.device) == ("onnx", "cpu")


def test_torch_by_name_is_torch_on_the_device_asked_for() -> None:
    on_gpu = choose_backend("torch", "auto", cuda_available=a_gpu, import_error=imports)
    on_cpu = choose_backend("torch", "auto", cuda_available=no_gpu, import_error=imports)
    assert (on_gpu.backend, on_gpu.device, on_cpu.device) == ("torch", "cuda", "cpu")
    assert not on_gpu.fallback


def test_onnx_by_name_without_onnxruntime_is_refused_not_swapped() -> None:
    with pytest.raises(ModelError, match="onnxruntime does not import"):
        choose_backend("onnx", "auto", cuda_available=no_gpu, import_error=does_not_import)
    choice = choose_backend("onnx", "auto", cuda_available=a_gpu, import_error=imports)
    assert (choice.backend, choice.device) == ("onnx", "cpu")


def test_this_machine_imports_onnxruntime() -> None:
    """onnxruntime is a dependency of the base install: ``auto`` serves onnx here."""
    assert choose_backend("auto", "cpu").backend == "onnx"
