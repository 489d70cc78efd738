"""One finished tiny job per method per pytest run, shared by the tests that only read it.

A tiny job costs about half a second, most of it scikit-learn's cross-validated probe; the
pipeline, seed and export tests each trained the same lp_ft and lp_lora jobs on the same toy
rows. A test that writes into a model directory (ONNX graphs, recalibration) trains its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from lpft_core import FinetuneResult, ProgressEvent, finetune
from tests.conftest import toy_rows, write_jsonl
from tests.core.test_pipeline import spec_for


@dataclass(frozen=True)
class TrainedJob:
    """A finished job on the 3-class toy files: read it, never write into ``model_dir``."""

    files: dict[str, Path]
    model_dir: Path
    result: FinetuneResult
    events: tuple[ProgressEvent, ...]


class TrainedJobs:
    """The toy job of each method, trained on its first request and kept for the run."""

    def __init__(self, root: Path, tiny_model_dir: Path) -> None:
        self.root = root
        self.tiny_model_dir = tiny_model_dir
        self.files = {
            "train": write_jsonl(root / "train.jsonl", toy_rows(90, seed=1)),
            "validation": write_jsonl(root / "validation.jsonl", toy_rows(30, seed=2)),
            "test": write_jsonl(root / "test.jsonl", toy_rows(30, seed=3)),
        }
        self.jobs: dict[str, TrainedJob] = {}

    def __call__(self, method: str) -> TrainedJob:
        if method not in self.jobs:
            events: list[ProgressEvent] = []
            out = self.root / method
            spec = spec_for(self.files, self.tiny_model_dir, out, method, device="cpu")
            result = finetune(spec, progress=events.append)
            self.jobs[method] = TrainedJob(self.files, out, result, tuple(events))
        return self.jobs[method]


@pytest.fixture(scope="session")
def trained_jobs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> TrainedJobs:
    """``trained_jobs("lp_ft")``: the finished lp_ft toy job, trained once per run."""
    return TrainedJobs(tmp_path_factory.mktemp("trained"), tiny_model_dir)
