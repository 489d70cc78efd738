"""Time and peak memory of the exact NTK (lpft_core.diagnostics.ntk.exact_ntk) against a naive
per-sample full-Jacobian NTK, in one run.

    python benchmarks/ntk_speed.py                       # default model, CPU, default rows
    python benchmarks/ntk_speed.py --sst2 1024 --rte     # one large SST-2 kernel only
    python benchmarks/ntk_speed.py --geometry roberta-base --device cuda --sst2 256 --rte 256

Rows: ``--sst2 n`` is the train×train kernel of the first n SST-2 train sentences; ``--rte n``
is the kernel the pipeline takes at the FT start, between the first n RTE train pairs (rows)
and those n then the first n validation pairs (columns). C = 2, every encoder parameter (word
embeddings included). ``--geometry roberta-base`` builds RoBERTa-base with random weights
(speed does not depend on weight values) and feeds random token ids with the real lengths, so
no download is needed. ``--block-tokens`` passes exact_ntk's bound (default: the library's).

The naive baseline materialises every sample's full Jacobian (torch.func.jacrev) and
multiplies J·Jᵀ; it runs where J fits in ``--baseline-gb`` and is reported as skipped
otherwise. Both kernels are compared (max relative difference) where both ran.

Peak memory: every measurement (each exact kernel, each baseline) runs in a fresh child
process (this script with ``--measure``), so no row's peak can hide another's. On the CPU the
figure is that process's peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss`` at its end: Python,
torch, the model and the data included); on CUDA, the peak allocated GPU memory. Times cover
the kernel alone, not the model build.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

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


def samples(data: str, n: int, max_length: int) -> tuple[EncodedTexts, list[int], list[int]]:
    """The encoded texts, the train rows and the test rows of one table row."""
    if data == "sst2":
        encoded = encoded_examples(real_examples("sst2", "train", n), max_length)
        return encoded, list(range(n)), []
    pairs = real_examples("rte", "train", n) + real_examples("rte", "validation", n)
    return encoded_examples(pairs, max_length), list(range(n)), list(range(n, 2 * n))


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


def measure(spec: dict) -> dict:
    """One measurement, in this (fresh) process: seconds, peak GB and mean tokens; the kernel
    rows of the train samples go to ``spec["save"]`` for the comparison."""
    logging.set_verbosity_error()
    device = benchmark_device(spec["device"])
    torch.backends.cuda.matmul.allow_tf32 = False  # exact kernels, as the library computes
    encoded, train, test = samples(spec["data"], spec["n"], spec["max_length"])
    model = classifier(spec["geometry"], device)
    if spec["geometry"] == "roberta-base":
        encoded = random_ids(encoded.lengths, model.config.encoder_config().vocab_size, 0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if spec["method"] == "exact":
        seconds, kernels = best_of(
            1,
            lambda: exact_ntk(
                model, encoded, train, test, device=device, block_tokens=spec["block_tokens"]
            ),
        )
        kernel = kernels.ft_effective
    else:
        seconds, full = best_of(1, lambda: naive_ntk(model, encoded, train + test, device))
        kernel = full[: len(train) * 2]
    np.save(spec["save"], kernel)
    tokens = float(encoded.lengths[train + test].mean())
    return {"seconds": seconds, "peak_gb": peak_gb(device), "tokens": tokens}


def in_child(spec: dict) -> dict:
    """``measure(spec)`` in a fresh Python process, with the 1-minute load average at its end
    (other work on a shared machine slows a measurement down: the notes say how busy it was)."""
    done = subprocess.run(
        [sys.executable, __file__, "--measure", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"measurement {spec} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load": os.getloadavg()[0]}


def table_row(spec: dict, baseline_gb: float, params: int, folder: Path, loads: list[float]) -> str:
    """Exact kernel, then the naive one where J fits, for one dataset and n; the load
    averages at the measurements' ends go to ``loads``."""
    data, n = spec["data"], spec["n"]
    samples_n = n if data == "sst2" else 2 * n
    exact = in_child({**spec, "method": "exact", "save": str(folder / "exact.npy")})
    loads.append(exact["load"])
    needed = samples_n * 2 * params * 4 / 2**30
    naive_s, naive_gb, speedup, diff = f"skipped (J needs {needed:.0f} GB)", "–", "–", "–"
    if needed <= baseline_gb:
        naive = in_child({**spec, "method": "naive", "save": str(folder / "naive.npy")})
        loads.append(naive["load"])
        reference = np.load(folder / "naive.npy")
        error = np.abs(np.load(folder / "exact.npy") - reference).max() / np.abs(reference).max()
        naive_s, naive_gb = f"{naive['seconds']:.1f}", f"{naive['peak_gb']:.1f}"
        speedup, diff = f"{naive['seconds'] / exact['seconds']:.1f}×", f"{error:.1e}"
    shape = f"{n}" if data == "sst2" else f"{n} + {n}"
    return (
        f"| {data} | {shape} | {exact['tokens']:.1f} | {exact['seconds']:.1f} | "
        f"{exact['peak_gb']:.2f} | {naive_s} | {naive_gb} | {speedup} | {diff} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--geometry", choices=["default", "roberta-base"], default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sst2", type=int, nargs="*", default=[64, 128, 256])
    parser.add_argument("--rte", type=int, nargs="*", default=[64, 256])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--block-tokens", type=int, default=None)
    parser.add_argument("--baseline-gb", type=float, default=12.0)
    parser.add_argument("--no-append", action="store_true", help="print only")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return
    logging.set_verbosity_error()
    benchmark_device(args.device)  # fails early, in one line, where the device is missing
    model = classifier(args.geometry)
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("classifier"))
    del model
    rows = [
        "| data | n (train + test) | tokens (mean) | exact NTK s | exact peak GB | naive s | "
        "naive peak GB | speed-up | max rel. diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    common = {
        "geometry": args.geometry,
        "device": args.device,
        "max_length": args.max_length,
        "block_tokens": args.block_tokens,
    }
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for data, sizes in (("sst2", args.sst2), ("rte", args.rte)):
            for n in sizes:
                spec = {**common, "data": data, "n": n}
                rows.append(table_row(spec, args.baseline_gb, params, Path(folder), loads))
                print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(table)
    if args.no_append:
        return
    name = "all-MiniLM-L6-v2 (default)"
    if args.geometry == "roberta-base":
        name = "RoBERTa-base geometry, random weights"
    bound = args.block_tokens or "the library default (BLOCK_BYTES of records per block)"
    append(
        f"Exact NTK, {name}, {args.device}",
        table,
        f"{params / 1e6:.1f}M encoder parameters (word embeddings included), C = 2, "
        f"max_length {args.max_length}, block_tokens {bound}. sst2 n: train×train kernel of "
        "the first n SST-2 train sentences; rte n + n: the first n RTE train pairs against "
        "those and the first n validation pairs (the pipeline's NTK). Each figure comes from a "
        "fresh process: peak GB on the CPU is that process's peak RSS (Python, torch, model and "
        "data included), on CUDA the peak allocated GPU memory. 1-minute load average at the "
        f"measurements' ends: {min(loads):.1f} to {max(loads):.1f} ({os.cpu_count()} cores: a "
        "load above that means other work shared them, and the times are longer).",
    )


if __name__ == "__main__":
    main()
