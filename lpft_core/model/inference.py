"""Batched, gradient-free forward passes: probe features and logits. Here, below the stages,
since training, calibration and serving all run the same fp32 forward."""

from __future__ import annotations

import numpy as np
import torch

from lpft_core.data.batching import EncodedTexts, length_sorted_batches
from lpft_core.errors import JobCancelled
from lpft_core.events import StopCallback, never_stop


@torch.inference_mode()
def forward_all(
    model: torch.nn.Module,
    encoded: EncodedTexts,
    *,
    batch_size: int,
    device: torch.device,
    output: str = "logits",
    should_stop: StopCallback = never_stop,
) -> np.ndarray:
    """Run ``model`` in eval mode over every row of ``encoded`` in length-sorted batches,
    in fp32 on every device: probe features, the validation logits that fit T and the test
    logits it is applied to must be computed alike (bf16 rounds them differently), and a CPU
    and a GPU run must agree. bf16 autocast belongs to the training step alone.

    Args:
        output: ``"logits"`` (shape (n, C)) or ``"features"`` (phi(x), shape (n, hidden)).
        should_stop: checked before every batch.

    Raises:
        JobCancelled: ``should_stop()`` returned True.

    Returns:
        A float32 array in the original row order.
    """
    was_training = model.training
    model.eval()
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    # Outputs stay on the device until the end: reading each batch back would make the host
    # wait for the GPU every batch instead of preparing the next one meanwhile.
    order, outputs = [], []
    try:
        for indices in length_sorted_batches(encoded.lengths, batch_size):
            if should_stop():
                raise JobCancelled("stopped on request during a forward pass")
            batch = encoded.batch(indices, device)
            values = inner.features(**batch) if output == "features" else model(**batch).logits
            order.append(indices)
            outputs.append(values.float())
    finally:
        model.train(was_training)
    assert outputs, "forward_all needs at least one row"
    values = torch.cat(outputs).cpu().numpy()
    out = np.empty_like(values)
    out[np.concatenate(order)] = values
    return out
