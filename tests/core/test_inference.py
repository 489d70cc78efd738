"""Every forward pass outside the training step runs in fp32, on every device."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

import lpft_core.model.inference
from lpft_core.data.batching import encode
from lpft_core.data.datasets import Example
from lpft_core.model.classifier import build_classifier, load_tokenizer
from lpft_core.model.inference import forward_all


def test_inference_never_autocasts(tiny_model_dir: Path) -> None:
    model = build_classifier(str(tiny_model_dir), ["neg", "pos"], "mean", seed=0)
    examples = [Example(text=f"a fine film number {i}", label="pos") for i in range(6)]
    encoded = encode(load_tokenizer(str(tiny_model_dir)), examples, max_length=16)
    seen: list[tuple[bool, bool, torch.dtype]] = []

    def record(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        cuda, cpu = torch.is_autocast_enabled("cuda"), torch.is_autocast_enabled("cpu")
        seen.append((cuda, cpu, output.dtype))

    model.encoder.encoder.layer[0].attention.self.query.register_forward_hook(record)
    for output in ("logits", "features"):
        values = forward_all(
            model, encoded, batch_size=4, device=torch.device("cpu"), output=output
        )
        assert values.dtype.name == "float32"
    assert seen and all(not cuda and not cpu for cuda, cpu, _ in seen), seen
    assert {dtype for _, _, dtype in seen} == {torch.float32}
    # The CPU run above cannot see a CUDA-only autocast; the source can.
    assert "autocast(" not in inspect.getsource(lpft_core.model.inference)
