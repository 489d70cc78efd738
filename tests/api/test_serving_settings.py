"""A serving set-up that cannot work is refused when the process starts, not at a /predict."""

from __future__ import annotations

import pytest
from lpft_api.settings import ApiSettings
from pydantic import ValidationError


def test_int8_needs_the_onnx_backend() -> None:
    with pytest.raises(ValidationError, match="LPFT_PREDICT_BACKEND=onnx"):
        ApiSettings(predict_precision="int8")
    assert ApiSettings(predict_backend="onnx", predict_precision="int8").predict_precision == "int8"


def test_the_onnx_backend_is_cpu_only() -> None:
    with pytest.raises(ValidationError, match="serves on the CPU"):
        ApiSettings(predict_backend="onnx", predict_device="cuda")


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValidationError, match="predict_backend"):
        ApiSettings(predict_backend="tensorrt")
