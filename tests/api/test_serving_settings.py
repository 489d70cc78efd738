"""A serving set-up that cannot work is refused when the process starts, not at a /predict."""

from __future__ import annotations

import pytest
from lpft_api.model_cache import serving_choice
from lpft_api.settings import ApiSettings
from pydantic import ValidationError

from lpft_core.serving.cpu_quota import usable_cpus


def test_int8_needs_the_onnx_backend() -> None:
    with pytest.raises(ValidationError, match="LPFT_PREDICT_BACKEND=onnx"):
        ApiSettings(predict_backend="torch", predict_precision="int8")
    assert ApiSettings(predict_backend="onnx", predict_precision="int8").predict_precision == "int8"
    assert ApiSettings(predict_precision="int8").predict_backend == "auto"


def test_the_default_backend_is_chosen_at_start_up() -> None:
    assert ApiSettings().predict_backend == "auto"
    assert ApiSettings().predict_threads is None
    with pytest.raises(ValidationError, match="predict_threads"):
        ApiSettings(predict_threads=0)


def test_the_onnx_backend_is_cpu_only() -> None:
    with pytest.raises(ValidationError, match="serves on the CPU"):
        ApiSettings(predict_backend="onnx", predict_device="cuda")


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValidationError, match="predict_backend"):
        ApiSettings(predict_backend="tensorrt")


def test_the_serving_choice_names_backend_device_threads_and_why() -> None:
    asked = serving_choice(ApiSettings(predict_backend="torch", predict_device="cpu"))
    assert (asked.backend, asked.device, asked.threads) == ("torch", "cpu", usable_cpus())
    assert asked.describe() == f"torch on cpu, {usable_cpus()} intra-op threads (asked for)"
    three = serving_choice(ApiSettings(predict_device="cpu", predict_threads=3))
    assert (three.backend, three.threads) == ("onnx", 3)


def test_int8_on_a_process_that_serves_with_torch_is_refused_at_start_up() -> None:
    # auto with device cuda chooses torch on the GPU (GPU or not: torch then says none is here)
    settings = ApiSettings(predict_precision="int8", predict_device="cuda")
    with pytest.raises(RuntimeError, match="int8 needs the onnx backend"):
        serving_choice(settings)
