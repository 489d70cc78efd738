"""LP feature extraction: lpft's path against a transformers pipeline (CPU) or a bare bf16
forward (GPU), on the same texts at the same batch size, in one run.

    python benchmarks/lp_extraction.py --device cpu                  # default model, SST-2
    python benchmarks/lp_extraction.py --device cuda --geometry roberta-base

lpft's path is what an LP stage runs: ``encode`` (tokenise once, unpadded) then
``forward_all(output="features")`` (length-sorted batches, outputs kept on the device).
On the CPU the baseline is ``pipeline("feature-extraction", return_tensors=True)`` with the
model's mean pooling applied to its token states; both sides tokenise. On CUDA the baseline is
the encoder alone under bf16 autocast over the same length-sorted batches, padded and moved to
the GPU before the clock starts: the most a feature extractor could reach. Targets: CPU ≥ 1.0×
the pipeline, GPU ≥ 80 % of the bare forward.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _models import GEOMETRIES, benchmark_device, classifier, default_tokenizer, real_examples
from _results import append
from _timing import best_of
from transformers import pipeline
from transformers.utils import logging

from lpft_core.data.batching import encode, length_sorted_batches
from lpft_core.model.inference import forward_all


def lpft_features(model, tokenizer, texts, batch: int, device: torch.device) -> np.ndarray:
    encoded = encode(tokenizer, texts, 128)
    return forward_all(model, encoded, batch_size=batch, device=device, output="features")


def pipeline_features(extractor, texts: list[str], lengths: np.ndarray, batch: int) -> np.ndarray:
    """Mean of each text's token states (the default model's pooling). Batched pipeline
    outputs keep the batch's padding, so each is cut to the text's token count first (counted
    before the clock starts, in the baseline's favour)."""
    states = extractor(texts, batch_size=batch, return_tensors=True, truncation=True)
    return np.stack([s[0, :n].mean(dim=0).numpy() for s, n in zip(states, lengths, strict=True)])


def encoder_pass(model, batches: list[dict]) -> None:
    """The encoder alone under bf16 autocast over batches already padded and on the GPU."""
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for inputs in batches:
            model.encoder(**inputs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--geometry", choices=GEOMETRIES, default="default")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.set_verbosity_error()
    device = benchmark_device(args.device)
    rows = args.rows or (8000 if device.type == "cuda" else 2000)
    examples = real_examples("sst2", "train", rows)
    texts = [e.text for e in examples]
    tokenizer = default_tokenizer()
    model = classifier(args.geometry, device).eval()  # as from_pretrained returns it
    encoded = encode(tokenizer, examples, 128)  # untimed: token counts and the GPU's batches
    rows_out = ["| batch | runner | texts/s | ratio |", "|---|---|---|---|"]
    for batch in args.batch_size:
        lpft_s, ours = best_of(
            args.repeats, lambda b=batch: lpft_features(model, tokenizer, examples, b, device)
        )
        if device.type == "cuda":
            order = length_sorted_batches(encoded.lengths, batch)
            batches = [encoded.batch(rows, device) for rows in order]
            base_s, _ = best_of(args.repeats, lambda b=batches: encoder_pass(model, b))
            base_name, ratio_name = "bare bf16 encoder forward", "lpft / bare"
            check = ""
        else:
            extractor = pipeline(
                "feature-extraction", model=model.encoder, tokenizer=tokenizer, device=device
            )
            base_s, theirs = best_of(
                args.repeats,
                lambda e=extractor, b=batch: pipeline_features(e, texts, encoded.lengths, b),
            )
            base_name, ratio_name = "transformers feature-extraction pipeline", "lpft / pipeline"
            check = f" (max abs feature diff {np.abs(ours - theirs).max():.1e})"
        rows_out.append(f"| {batch} | {base_name} | {rows / base_s:.0f} | 1.00 |")
        rows_out.append(
            f"| {batch} | lpft encode + forward_all | {rows / lpft_s:.0f} | "
            f"{base_s / lpft_s:.2f} ({ratio_name}){check} |"
        )
        print("\n".join(rows_out[-2:]), flush=True)
    table = "\n".join(rows_out)
    print(table)
    append(
        f"LP feature extraction, {args.geometry} geometry, {device.type}",
        table,
        f"{rows} SST-2 train sentences (mean {np.mean([len(t.split()) for t in texts]):.1f} "
        f"words), max_length 128, best of {args.repeats} runs each.",
    )


if __name__ == "__main__":
    main()
