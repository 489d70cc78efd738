"""A forward pass cut into sub-batches of similar token length, so that one long text does
not pad the short ones beside it.

``Predictor.logits`` pads a batch to its longest row. A pass the batcher assembles from many
requests mixes lengths (on mixed-length reviews, 16 rows padded to their longest are 1.8x
their real tokens), and every padded token is computed and thrown away. Cutting the pass
into length-sorted sub-batches removes padding but each sub-batch costs a call of its own, so
``length_buckets`` chooses the cut that minimises the estimated cost, padded tokens plus
``SUB_BATCH_COST_TOKENS`` per sub-batch: an exact partition of the sorted rows (the best
groups for this cost are runs of the length-sorted order), found in O(n²) for a pass of n
rows.

Measured on the default model (torch, 2 threads, 2 cores; mixed-length reviews, median 25
tokens, longest 59; per pass of consecutive rows; two runs, benchmarks/RESULTS.md): 16 rows
101 to 109 ms in one batch, 82 to 89 ms cut at a cost of 64 tokens (2.4 sub-batches); 32
rows 206 to 214 ms, 147 to 155 ms. Costs from 32 to 128 were within the runs' noise of each
other; every row in its own sub-batch (cost 0) was slower than one batch (142 ms for 16): the
cost per call is real.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lpft_core import Predictor

#: What one more sub-batch costs, in padded tokens (chosen from 0 to 800; above).
SUB_BATCH_COST_TOKENS = 64


def length_buckets(lengths: Sequence[int], cost: int = SUB_BATCH_COST_TOKENS) -> list[list[int]]:
    """Row indices in sub-batches that minimise ``sum(cost + rows × longest)`` over the
    sub-batches, shortest rows first; every index once. One sub-batch when cutting saves
    nothing."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: the cheapest cut of the j shortest rows
    start = [0] * (n + 1)  # where the last sub-batch of that cut begins
    for j in range(1, n + 1):
        longest = lengths[order[j - 1]]
        for i in range(j):
            total = best[i] + cost + (j - i) * longest
            if total < best[j]:
                best[j], start[j] = total, i
    groups, j = [], n
    while j:
        groups.append(order[start[j] : j])
        j = start[j]
    return groups[::-1]


def token_lengths(predictor: Predictor, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Tokens per row as the predictor's tokenizer cuts them (one batch call of the fast
    tokenizer: 0.7 ms for 16 rows, under 1 % of their forward pass)."""
    texts = [row["text"] for row in rows]
    pairs = [row["text_pair"] for row in rows] if rows and rows[0].get("text_pair") else None
    encoded = predictor.tokenizer(
        texts, pairs, truncation=True, max_length=predictor.manifest.max_length
    )
    return [len(ids) for ids in encoded["input_ids"]]


def bucketed_logits(predictor: Predictor, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """``predictor.logits(rows)``, in the rows' order, computed in length buckets."""
    groups = length_buckets(token_lengths(predictor, rows))
    if len(groups) <= 1:
        return predictor.logits(rows)
    parts = [predictor.logits([rows[i] for i in group]) for group in groups]
    logits = np.empty((len(rows), parts[0].shape[1]), dtype=parts[0].dtype)
    for group, part in zip(groups, parts, strict=True):
        logits[group] = part
    return logits
