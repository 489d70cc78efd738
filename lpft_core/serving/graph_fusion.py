"""ONNX Runtime's transformer fusions on a serving graph, kept only where they win.

The fusions rewrite an encoder's subgraphs into ONNX Runtime's fused kernels (``Attention`` /
``MultiHeadAttention``, ``SkipLayerNormalization``, ``BiasGelu``). They find them by pattern.
``onnxruntime.transformers.optimizer`` was written for the TorchScript exporter's graphs: on
the dynamo exporter's graphs that ``export.write_onnx_graph`` writes it fuses the layer norms
and GELUs but no attention, on all-MiniLM-L6-v2 and on a RoBERTa alike (benchmarks/RESULTS.md).
onnxscript's ``ort_fusions``, the same kernels' rules for dynamo graphs, fuse the attention
too, so they are used. A fusion can still miss or slow a model down, so the fused graph is
built once beside the plain one and both are timed on the same padded batches (a short batch
and a batch of mixed lengths) in this process; the fused graph serves only if it fused
something, gives the plain graph's outputs to ``TOLERANCE`` and is faster by ``MIN_GAIN``. The
decision and its figures stay beside the graphs (``fusion.json``): later processes read it
instead of measuring again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: largest difference of any output (logits, probabilities) the fused graph may show
TOLERANCE = 1e-4
#: how much faster the fused graph must be, over both batches, to serve
MIN_GAIN = 0.05
DECISION = "fusion.json"


@dataclass(frozen=True)
class FusionDecision:
    """Whether the fused graph serves, and the figures that decided it."""

    #: the fusion rules applied, and how many times each
    fused_operators: dict[str, int]
    plain_ms: float
    fused_ms: float
    max_difference: float
    kept: bool
    reason: str


def decide(
    fused_operators: dict[str, int],
    plain_ms: float,
    fused_ms: float,
    max_difference: float,
) -> FusionDecision:
    """The rule of the module docstring, on figures measured elsewhere."""
    if not any(fused_operators.values()):
        kept, reason = False, "the optimizer fused nothing in this graph"
    elif not max_difference <= TOLERANCE:
        kept, reason = False, f"outputs moved by {max_difference:.2e} (> {TOLERANCE:g})"
    elif fused_ms > plain_ms * (1 - MIN_GAIN):
        kept, reason = False, f"not {MIN_GAIN:.0%} faster ({fused_ms:.1f} vs {plain_ms:.1f} ms)"
    else:
        kept, reason = True, f"{plain_ms / fused_ms:.2f}x faster, outputs within {TOLERANCE:g}"
    return FusionDecision(fused_operators, plain_ms, fused_ms, max_difference, kept, reason)


def fused_if_faster(plain: Path, folder: Path, threads: int) -> Path:
    """The graph to serve: ``folder/model.onnx`` (fused) where the decision, taken once and
    kept in ``folder``'s parent, says so, else ``plain``."""
    decision_file = folder.parent / DECISION
    if not decision_file.is_file():
        decision = _build_and_decide(plain, folder, threads)
        scratch = decision_file.with_name(f".{DECISION}-{uuid.uuid4().hex}")
        scratch.write_text(json.dumps(asdict(decision), indent=2) + "\n")
        os.replace(scratch, decision_file)
    fused = folder / plain.name
    if json.loads(decision_file.read_text())["kept"] and fused.is_file():
        return fused
    return plain


def read_decision(graphs: Path) -> FusionDecision | None:
    """The decision kept in ``graphs`` (a model's ``onnx/`` folder), if one was taken."""
    path = graphs / DECISION
    return FusionDecision(**json.loads(path.read_text())) if path.is_file() else None


def _build_and_decide(plain: Path, folder: Path, threads: int) -> FusionDecision:
    scratch = folder.parent / f".build-{uuid.uuid4().hex}"
    scratch.mkdir(parents=True)
    try:
        try:
            applied = fuse(plain, scratch / plain.name)
            plain_ms, fused_ms, difference = compare(plain, scratch / plain.name, threads)
        except Exception as exc:  # noqa: BLE001 - a fusion that fails leaves the plain graph
            return FusionDecision({}, 0.0, 0.0, 0.0, False, f"the fusions failed: {exc!r}")
        decision = decide(applied, plain_ms, fused_ms, difference)
        if decision.kept:
            with contextlib.suppress(OSError):  # another process renamed its build first
                os.rename(scratch, folder)
        return decision
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fuse(plain: Path, out: Path) -> dict[str, int]:
    """``plain`` with the fusions applied, at ``out``; how many of each were applied."""
    import onnx_ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    # its rewriter logs every rule it tries at INFO: hundreds of lines in a server's log
    logging.getLogger("onnxscript").setLevel(logging.WARNING)
    model, applied = optimize_for_ort(onnx_ir.load(str(plain)))
    # the weights beside it, as the exporter writes them (the plain graph's may be in a file
    # of their own, read from it here)
    onnx_ir.save(model, str(out), external_data=f"{out.name}.data")
    return {name: count for name, count in applied.items() if count}


def compare(plain: Path, fused: Path, threads: int, repeats: int = 5) -> tuple[float, float, float]:
    """(plain ms, fused ms, largest output difference) over the probe batches, each graph's
    time the best of ``repeats`` runs, the runs of the two interleaved so that a neighbour's
    load hits both alike."""
    sessions = [_session(plain, threads), _session(fused, threads)]
    best = [float("inf"), float("inf")]
    difference = 0.0
    for feed in probe_batches():
        outputs = [s.run(None, {k: feed[k] for k in _inputs(s)}) for s in sessions]
        difference = max(
            difference, *(float(np.abs(a - b).max()) for a, b in zip(*outputs, strict=True))
        )
    for _ in range(repeats):
        for i, session in enumerate(sessions):
            started = time.perf_counter()
            for feed in probe_batches():
                session.run(None, {k: feed[k] for k in _inputs(session)})
            best[i] = min(best[i], (time.perf_counter() - started) * 1000)
    return best[0], best[1], difference


def probe_batches() -> list[dict[str, np.ndarray]]:
    """One input of 12 tokens, and 32 rows of 6 to 64 tokens right-padded to 64, a pass of
    mixed lengths (ids below 1000, valid in any BERT or RoBERTa vocabulary; fixed, so every run
    times the same work)."""
    rng = np.random.default_rng(0)
    batches = []
    for lengths in (np.array([12]), np.linspace(6, 64, 32).astype(int)):
        width = int(lengths.max())
        ids = rng.integers(5, 1000, size=(len(lengths), width))
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        batches.append(
            {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": 0 * mask}
        )
    return batches


def _session(graph: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    # two sessions timed in turn: a pool spinning after its run would steal the other's cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def _inputs(session: Any) -> list[str]:
    return [node.name for node in session.get_inputs()]
