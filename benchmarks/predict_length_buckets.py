"""Length buckets in a /predict pass: the time of a pass of mixed-length reviews in one padded
batch, and cut by ``lpft_api.length_buckets`` at several costs per sub-batch.

    python benchmarks/predict_length_buckets.py

The default model (torch, fp32, the process's intra-op threads stated), passes of 16 and 32
consecutive rows of ``mixed_reviews`` (short and long interleaved, as a server forms passes
from concurrent requests), the best of 5 runs over 512 rows. It chose
``SUB_BATCH_COST_TOKENS``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _models import classifier, default_tokenizer, mixed_reviews
from _results import append
from lpft_api.length_buckets import length_buckets

from lpft_core.data.batching import encode
from lpft_core.data.datasets import Example

ROWS, REPEATS = 512, 5
COSTS = (0, 32, 64, 96, 128, 200, 400)


def main() -> None:
    model = classifier("default").eval()
    examples = [Example(text=t, label=0) for t in mixed_reviews(ROWS)]
    encoded = encode(default_tokenizer(), examples, 128)
    lengths = encoded.lengths

    def run(plans: list[list[np.ndarray]]) -> float:
        """Milliseconds per pass, the best of REPEATS."""
        best = float("inf")
        for _ in range(REPEATS):
            started = time.perf_counter()
            with torch.inference_mode():
                for groups in plans:
                    for group in groups:
                        model(**encoded.batch(group))
            best = min(best, time.perf_counter() - started)
        return best / len(plans) * 1000

    lines = ["| rows per pass | cut | sub-batches | padded / real tokens | ms per pass |"]
    lines.append("|---|---|---|---|---|")
    for size in (16, 32):
        windows = [np.arange(start, start + size) for start in range(0, ROWS, size)]
        real = np.mean([lengths[w].sum() for w in windows])
        strategies = {"one batch": [[w] for w in windows]}
        for cost in COSTS:
            strategies[f"cost {cost}"] = [
                [w[group] for group in length_buckets(lengths[w].tolist(), cost)] for w in windows
            ]
        for name, plans in strategies.items():
            run(plans[:2])  # warm up
            padded = np.mean([sum(len(g) * lengths[g].max() for g in p) for p in plans])
            groups = np.mean([len(p) for p in plans])
            lines.append(
                f"| {size} | {name} | {groups:.1f} | {padded / real:.2f} | {run(plans):.1f} |"
            )
    table = "\n".join(lines)
    print(table)
    append(
        "Length buckets in a /predict pass (benchmarks/predict_length_buckets.py)",
        table,
        f"Default model, torch fp32, {torch.get_num_threads()} intra-op threads; {ROWS} mixed "
        f"reviews (median {np.median(lengths):.0f} tokens, longest {lengths.max()}), passes of "
        "consecutive rows; cost: padded tokens charged per extra sub-batch.",
    )


if __name__ == "__main__":
    main()
