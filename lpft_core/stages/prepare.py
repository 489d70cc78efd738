"""The first stage of every job that reads data: the splits, the tokenizer, the encoded sets
and their labels, and a forward pass over any of them. Fine-tuning and analysis both start
here, so they see the same rows in the same order."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lpft_core.config import DataFiles
from lpft_core.data.batching import EncodedTexts, encode
from lpft_core.data.datasets import DatasetSplits, Example, Label, build_splits, read_examples
from lpft_core.errors import DataError
from lpft_core.events import StopCallback, never_stop
from lpft_core.model.inference import forward_all

#: The encoded set reported under the evaluation split's name (``test`` or ``held_out``).
EVALUATION = "evaluation"


@dataclass(frozen=True)
class PreparedData:
    """The data of one job, encoded for one tokenizer.

    Attributes:
        splits: the checked splits.
        labels: the class order: class ``i`` is ``labels[i]``.
        encoded: ``train``, ``validation``, ``evaluation`` and each extra eval set, by key.
        targets: class indices of the same keys.
        reported: the sets whose metrics and features are reported, by the name they are
            reported under (the evaluation split's name first, then each eval set), each
            naming its key in ``encoded``.
    """

    splits: DatasetSplits
    labels: list[Label]
    encoded: dict[str, EncodedTexts]
    targets: dict[str, np.ndarray]
    reported: dict[str, str]


def load_splits(
    data: DataFiles, *, seed: int, max_text_chars: int, split_seed: int | None = None
) -> DatasetSplits:
    """Read and cross-check the dataset files; hold-outs are drawn with ``split_seed`` (default
    ``seed``)."""
    read = lambda path: read_examples(path, max_text_chars=max_text_chars)  # noqa: E731
    return build_splits(
        read(data.train),
        read(data.validation) if data.validation else None,
        read(data.test) if data.test else None,
        seed=seed if split_seed is None else split_seed,
        names={
            "train": Path(data.train).name,
            "validation": Path(data.validation).name if data.validation else "validation",
            "test": Path(data.test).name if data.test else "test",
            **{name: Path(path).name for name, path in data.eval_sets.items()},
        },
        eval_sets={name: read(path) for name, path in data.eval_sets.items()},
    )


def prepare_data(
    splits: DatasetSplits,
    tokenizer: Any,
    max_length: int,
    labels: Sequence[Label] | None = None,
) -> PreparedData:
    """Encode every set of ``splits``; ``labels`` is the class order of an existing model
    (default: the labels of train)."""
    order = list(labels) if labels is not None else list(splits.labels)
    eval_name, eval_examples = splits.evaluation
    sets = {
        "train": splits.train,
        "validation": splits.validation,
        EVALUATION: eval_examples,
        **splits.eval_sets,
    }
    return PreparedData(
        splits=splits,
        labels=order,
        encoded={key: encode(tokenizer, rows, max_length) for key, rows in sets.items()},
        targets={key: label_indices(rows, order) for key, rows in sets.items()},
        reported={eval_name: EVALUATION, **{name: name for name in splits.eval_sets}},
    )


def label_indices(
    examples: Sequence[Example], labels: Sequence[Label], source: str | None = None
) -> np.ndarray:
    """Class indices of ``examples`` in the order ``labels``; a label outside it is a
    ``DataError`` naming the row (of the file ``source``)."""
    position = {label: i for i, label in enumerate(labels)}
    for example in examples:
        if example.label not in position:
            raise DataError(
                f"label {example.label!r} is not one of the model's labels "
                f"{sorted(map(str, labels))}; fix the label or drop the row",
                source=source,
                line=example.line,
                field="label",
            )
    return np.array([position[e.label] for e in examples], dtype=np.int64)


def features_of(
    model: torch.nn.Module,
    encoded: EncodedTexts,
    *,
    batch_size: int,
    device: torch.device,
    should_stop: StopCallback = never_stop,
) -> np.ndarray:
    """phi(x) of every row, in fp32 and eval mode."""
    return forward_all(
        model,
        encoded,
        batch_size=batch_size,
        device=device,
        output="features",
        should_stop=should_stop,
    )


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a job is repeatable on one machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
