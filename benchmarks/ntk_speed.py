"""Time and peak memory of the exact NTK (lpft_core.diagnostics.ntk.exact_ntk) against a naive
per-sample full-Jacobian NTK, in one run.

    python benchmarks/ntk_speed.py                       # default model, CPU, n = 64 128 256
    python benchmarks/ntk_speed.py --geometry roberta-base --device cuda --n 256   # on a GPU

Inputs are SST-2 train sentences (real length distribution). ``--geometry roberta-base``
builds RoBERTa-base with random weights (speed does not depend on weight values) and feeds
random token ids with the SST-2 lengths, so no download is needed. The kernel is the
train×train one over n samples, C = 2, every encoder parameter (word embeddings included).
The naive baseline materialises every sample's full Jacobian (torch.func.jacrev) and
multiplies J·Jᵀ; it runs where J fits in ``--baseline-gb`` and is reported as skipped
otherwise. Both kernels are compared (max relative difference) where both ran.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _models import (
    benchmark_device,
    classifier,
    encoded_examples,
    peak_gb,
    random_ids,
    real_examples,
)
from _results import append
from _timing import best_of
from torch.func import functional_call, jacrev
from transformers.utils import logging

from lpft_core.data.batching import EncodedTexts
from lpft_core.diagnostics.ntk import exact_ntk
from lpft_core.model.classifier import classifier_head


def sst2_encoded(count: int, max_length: int) -> EncodedTexts:
    return encoded_examples(real_examples("sst2", "train", count), max_length)


def naive_ntk(model: torch.nn.Module, encoded: EncodedTexts, rows: list[int], device) -> np.ndarray:
    """Every sample's full Jacobian over the encoder's parameters, then J·Jᵀ (float64)."""
    model.eval()
    head = {id(p) for p in classifier_head(model).parameters()}
    params = {k: v.detach() for k, v in model.named_parameters() if id(v) not in head}

    def logits(p, batch):
        return functional_call(model, p, args=(), kwargs=batch, strict=False).logits[0]

    stacked = None
    for i, row in enumerate(rows):
        jac = jacrev(logits)(params, encoded.batch([row], device))
        flat = torch.cat([j.detach().reshape(j.shape[0], -1) for j in jac.values()], dim=1)
        if stacked is None:  # filled in place: no second copy of J
            stacked = flat.new_empty(len(rows) * flat.shape[0], flat.shape[1])
        stacked[i * flat.shape[0] : (i + 1) * flat.shape[0]] = flat
    return (stacked @ stacked.T).double().cpu().numpy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--geometry", choices=["default", "roberta-base"], default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--baseline-gb", type=float, default=12.0)
    args = parser.parse_args()
    logging.set_verbosity_error()
    device = benchmark_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # exact kernels, as the library computes
    encoded = sst2_encoded(max(args.n), args.max_length)
    if args.geometry == "roberta-base":
        model = classifier("roberta-base", device)
        encoded = random_ids(encoded.lengths, model.config.encoder_config().vocab_size, 0)
        name = "RoBERTa-base geometry, random weights"
    else:
        model = classifier("default", device)
        name = "all-MiniLM-L6-v2 (default)"
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("classifier"))
    rows = [
        "| n | tokens (mean) | exact NTK s | exact peak GB | naive s | naive peak GB | speed-up | "
        "max rel. diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in args.n:
        subset = list(range(n))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        exact_s, kernels = best_of(
            1, lambda s=subset: exact_ntk(model, encoded, s, [], device=device)
        )
        exact_gb = peak_gb(device)
        needed = n * 2 * params * 4 / 2**30
        naive = f"skipped (J needs {needed:.0f} GB)"
        naive_s = naive_gb = speedup = diff = "–"
        if needed <= args.baseline_gb:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            seconds, reference = best_of(1, lambda s=subset: naive_ntk(model, encoded, s, device))
            naive_s, naive_gb = f"{seconds:.1f}", f"{peak_gb(device):.1f}"
            speedup = f"{seconds / exact_s:.1f}×"
            error = np.abs(kernels.ft_effective - reference).max() / np.abs(reference).max()
            diff = f"{error:.1e}"
        else:
            naive_s = naive
        row = (
            f"| {n} | {encoded.lengths[:n].mean():.1f} | {exact_s:.1f} | {exact_gb:.1f} | "
            f"{naive_s} | {naive_gb} | {speedup} | {diff} |"
        )
        rows.append(row)
        print(row, flush=True)
    table = "\n".join(rows)
    print(table)
    append(
        f"Exact NTK, {name}, {device.type}",
        table,
        f"{params / 1e6:.1f}M encoder parameters (word embeddings included), C = 2, train×train "
        f"kernel on the first n SST-2 train sentences (max_length {args.max_length}). Peak GB "
        "on the CPU is the process's peak RSS so far (it only grows over the run); on CUDA the "
        "peak allocated memory of each step.",
    )


if __name__ == "__main__":
    main()
