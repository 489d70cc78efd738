"""The transformer-fusion lever on its own: the exported ONNX graph against the same graph with
ONNX Runtime's fusions (``lpft_core.serving.graph_fusion``), in onnxruntime in this process, on
mixed-length reviews, for the default model and a RoBERTa-base-shaped one.

    flock /tmp/lpft-heavy.lock python benchmarks/onnx_fusion.py [--model-dir DIR]

Per model: the fusions each tool applies (onnxruntime.transformers.optimizer's kernel counts,
and onnxscript's ort_fusions rules, the ones served), the largest probability difference from
the plain graph, and inputs/s at batch 32 in length-sorted batches (as the server's passes
are) and p50 of one input, plain and fused runs interleaved, best of three, ``--threads``
intra-op threads. The default model is a trained job's directory (``--model-dir``) or the
base all-MiniLM-L6-v2 with a fresh head; RoBERTa-base has random weights (speed does not depend
on them).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
from _models import classifier, default_tokenizer, mixed_reviews
from _results import append
from transformers.utils import logging

from lpft_core.data.batching import length_sorted_batches
from lpft_core.serving.export import export_classifier_graph, write_onnx_graph
from lpft_core.serving.graph_fusion import fuse


def session(graph: Path, threads: int) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def feeds(texts: list[str], names: set[str], batch: int) -> list[dict[str, np.ndarray]]:
    """Tokenised once, padded per length-sorted batch: the server's passes, without the clock."""
    tokenizer = default_tokenizer()
    encoded = tokenizer(texts, truncation=True, max_length=128)
    lengths = np.array([len(ids) for ids in encoded["input_ids"]])
    out = []
    for indices in length_sorted_batches(lengths, batch):
        rows = [{k: encoded[k][i] for k in encoded} for i in indices]
        padded = tokenizer.pad(rows, return_tensors="np")
        out.append({k: v.astype(np.int64) for k, v in padded.items() if k in names})
    return out


def ort_optimizer_kernels(plain: Path, heads: int, hidden: int) -> dict[str, int]:
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(plain), model_type="bert", num_heads=heads, hidden_size=hidden)
    return {k: v for k, v in model.get_fused_operator_statistics().items() if v}


def measure(name: str, plain: Path, heads: int, hidden: int, texts: list[str], threads: int):
    fused = plain.with_name("fused.onnx")
    applied = fuse(plain, fused)
    sessions = {"plain": session(plain, threads), "fused": session(fused, threads)}
    names = {n.name for n in sessions["plain"].get_inputs()}
    batches, singles = feeds(texts, names, 32), feeds(texts[:200], names, 1)
    outputs = {k: [s.run(["probabilities"], f)[0] for f in batches] for k, s in sessions.items()}
    difference = max(
        float(np.abs(a - b).max()) for a, b in zip(outputs["plain"], outputs["fused"], strict=True)
    )
    rate = dict.fromkeys(sessions, 0.0)
    single = {k: float("inf") for k in sessions}
    for _ in range(3):
        for key, s in sessions.items():
            started = time.perf_counter()
            for feed in batches:
                s.run(["probabilities"], feed)
            rate[key] = max(rate[key], len(texts) / (time.perf_counter() - started))
            times = []
            for feed in singles:
                started = time.perf_counter()
                s.run(["probabilities"], feed)
                times.append((time.perf_counter() - started) * 1000)
            single[key] = min(single[key], statistics.median(times))
    return {
        "name": name,
        "ort_optimizer": ort_optimizer_kernels(plain, heads, hidden),
        "applied": applied,
        "difference": difference,
        "rate": rate,
        "single": single,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, default=None, help="a trained job's model/")
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.set_verbosity_error()
    texts = mixed_reviews(args.requests)
    tokenizer = default_tokenizer()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, geometry in (("all-MiniLM-L6-v2", "default"), ("RoBERTa-base", "roberta-base")):
            graph = Path(tmp) / geometry / "model.onnx"
            graph.parent.mkdir()
            model = classifier(geometry).eval()
            if geometry == "default" and args.model_dir is not None:
                write_onnx_graph(args.model_dir, graph)
                name += " (trained lp job)"
            else:
                export_classifier_graph(model, tokenizer, 1.0, graph)
            shape = model.encoder.config
            results.append(
                measure(
                    name, graph, shape.num_attention_heads, shape.hidden_size, texts, args.threads
                )
            )
            print(results[-1])
    rows = [
        "| model | onnxruntime.transformers.optimizer fuses | ort_fusions (served) apply "
        "| max prob. diff | batch 32, plain → fused | 1 input p50, plain → fused |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r['name']} | {', '.join(f'{k} {v}' for k, v in r['ort_optimizer'].items())} "
            f"| {', '.join(f'{k} {v}' for k, v in r['applied'].items())} | {r['difference']:.1e} "
            f"| {r['rate']['plain']:.0f} → {r['rate']['fused']:.0f} inputs/s "
            f"({r['rate']['fused'] / r['rate']['plain']:.2f}x) "
            f"| {r['single']['plain']:.2f} → {r['single']['fused']:.2f} ms |"
        )
    table = "\n".join(rows)
    print(table)
    words = [len(t.split()) for t in texts]
    append(
        "Transformer fusions on the ONNX serving graph, in process (benchmarks/onnx_fusion.py)",
        table,
        f"{len(texts)} Rotten Tomatoes snippets, short and long interleaved (median "
        f"{statistics.median(words):.0f} words, longest {max(words)}), tokenised once and "
        "padded per length-sorted batch of 32 (one input: the first 200, each alone); "
        f"onnxruntime {onnxruntime.__version__} on the CPU with {args.threads} intra-op threads; "
        "plain and fused runs interleaved, best of three. The graphs are the dynamo exporter's "
        "(`export.write_onnx_graph`); RoBERTa-base has random weights.",
    )


if __name__ == "__main__":
    main()
