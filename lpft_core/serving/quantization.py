"""What int8 serving costs, measured on the job's own held-out rows.

Dynamic int8 quantisation changes every logit a little, and a user acting on a calibrated
probability must know by how much. So before an int8 graph serves, its predictions are
compared with the fp32 graph's on the job's evaluation split (rows that selected and fitted
nothing): accuracy and ECE of each at the fitted T, how often the label agrees, and how far
the probabilities moved. The figures are kept beside the graph (``onnx/quantization.json``)
and returned with every int8 prediction.
"""

from __future__ import annotations

import dataclasses
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpft_core.config import FinetuneSpec
from lpft_core.data.batching import encode
from lpft_core.data.datasets import Example, read_examples
from lpft_core.errors import LpftError
from lpft_core.model.artifacts import SPEC, read_manifest
from lpft_core.serving.onnx_runtime import GRAPHS, OnnxLogits
from lpft_core.stages.calibration import calibration_errors, scaled_softmax
from lpft_core.stages.prepare import label_indices, load_splits

REPORT = "quantization.json"
#: Held-out rows compared, at most (a seeded sample beyond): enough for ECE to mean something,
#: few enough that the comparison costs seconds at the first load.
MAX_ROWS = 2000


@dataclass(frozen=True)
class QuantizationReport:
    """int8 against fp32 on ``rows`` rows of the job's ``split``, probabilities at ``temperature``.

    ``probability_shift_mean`` / ``_max``: mean and largest absolute change of a class
    probability. ``label_agreement``: share of rows whose predicted label is the same. When
    the rows could not be read (the dataset was deleted since), every figure is ``None`` and
    ``unmeasured`` says why.
    """

    split: str | None
    rows: int
    temperature: float
    accuracy_fp32: float | None = None
    accuracy_int8: float | None = None
    ece_fp32: float | None = None
    ece_int8: float | None = None
    probability_shift_mean: float | None = None
    probability_shift_max: float | None = None
    label_agreement: float | None = None
    unmeasured: str | None = None

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def quantization_report(
    model_dir: str | Path,
    fp32: Callable[[], OnnxLogits],
    int8: OnnxLogits,
    tokenizer: object,
    labels: list,
    temperature: float,
    batch_size: int = 64,
    data_root: str | Path | None = None,
) -> QuantizationReport:
    """The model's report at ``temperature``: measured on first use and after a
    re-calibration changed T, read back otherwise. ``fp32`` loads the graph to compare with,
    only when a measurement is needed. A report that could not measure is not kept (the data
    may be readable next time), nor is a file that does not parse trusted. Relative data
    paths in the model's spec are taken from ``data_root`` (default: the working directory)."""
    path = Path(model_dir) / GRAPHS / REPORT
    try:
        kept = QuantizationReport(**json.loads(path.read_text()))
        if kept.temperature == temperature:
            return kept
    except (OSError, ValueError, TypeError):
        pass
    report = _measure(
        Path(model_dir), fp32, int8, tokenizer, labels, temperature, batch_size, data_root
    )
    if report.unmeasured is None:
        scratch = path.with_name(f".{REPORT}.{uuid.uuid4().hex}")
        scratch.write_text(json.dumps(report.to_dict(), indent=2))
        scratch.replace(path)  # atomic: a reader sees the old report or the new one
    return report


def _measure(
    model_dir: Path,
    fp32: Callable[[], OnnxLogits],
    int8: OnnxLogits,
    tokenizer: object,
    labels: list,
    temperature: float,
    batch_size: int,
    data_root: str | Path | None,
) -> QuantizationReport:
    try:
        spec = FinetuneSpec.from_dict(json.loads((model_dir / SPEC).read_text()))
        data = spec.data if data_root is None else spec.data.under(data_root)
        split, rows = _held_out_rows(dataclasses.replace(spec, data=data))
        y = label_indices(rows, labels)
    except (OSError, LpftError, ValueError) as exc:
        return QuantizationReport(
            split=None, rows=0, temperature=temperature, unmeasured=f"held-out rows: {exc}"
        )
    encoded = encode(tokenizer, rows, read_manifest(model_dir).max_length)
    before = scaled_softmax(fp32()(encoded, batch_size), temperature)
    after = scaled_softmax(int8(encoded, batch_size), temperature)
    shift = np.abs(after - before)
    bins = spec.hyperparameters.ece_bins
    return QuantizationReport(
        split=split,
        rows=len(rows),
        temperature=temperature,
        accuracy_fp32=float((before.argmax(1) == y).mean()),
        accuracy_int8=float((after.argmax(1) == y).mean()),
        ece_fp32=calibration_errors(before, y, bins)[0],
        ece_int8=calibration_errors(after, y, bins)[0],
        probability_shift_mean=float(shift.mean()),
        probability_shift_max=float(shift.max()),
        label_agreement=float((before.argmax(1) == after.argmax(1)).mean()),
    )


def _held_out_rows(spec: FinetuneSpec) -> tuple[str, list[Example]]:
    """The job's evaluation split (at most ``MAX_ROWS``, drawn with a fixed seed): its test
    file alone when it had one, else the hold-out ``finetune`` drew from train."""
    if spec.data.test:
        split, rows = "test", read_examples(spec.data.test, max_text_chars=spec.max_text_chars)
    else:
        splits = load_splits(
            spec.data,
            seed=spec.hyperparameters.seed,
            max_text_chars=spec.max_text_chars,
            split_seed=spec.split_seed,
        )
        split, rows = splits.test_source, splits.test
    if len(rows) > MAX_ROWS:
        rows = random.Random(0).sample(rows, MAX_ROWS)
    return split, rows
