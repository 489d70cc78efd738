"""The specs of the job kinds beyond ``finetune`` (whose ``FinetuneSpec`` is in
``lpft_core.config``): plain dataclasses in a module that imports no torch, so the API builds
and checks every kind's spec without loading the training stack."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpft_core.config import DataFiles, FinetuneSpec, Hyperparameters, Method, spec_from_dict
from lpft_core.errors import ConfigError

#: Where the runs after the first keep their metrics, inside the job's output directory.
RUNS_DIR = "runs"


def run_dir(output_dir: str | Path, seed: int) -> Path:
    """Where a run after the first keeps its metrics."""
    return Path(output_dir) / RUNS_DIR / f"seed-{seed}"


@dataclass(frozen=True)
class CompareSpec:
    """A comparison job.

    Attributes:
        methods: the methods to run, in this order (default: all five).
        ntk_samples: train (and evaluation) samples of the NTK at each FT start; 0 skips it.
        seeds: as ``FinetuneSpec.seeds``: more than one runs the comparison once per seed.
        checkpoint_dir: as ``FinetuneSpec.checkpoint_dir``; each method's run keeps its own
            checkpoint in a directory inside it.
    """

    data: DataFiles
    output_dir: str
    model: str | None = None
    methods: list[Method] = field(default_factory=lambda: list(Method))
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    ntk_samples: int = 256
    max_text_chars: int = 20_000
    seeds: list[int] = field(default_factory=list)
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        try:
            methods = [Method(m) for m in self.methods]
        except ValueError as exc:
            known = [m.value for m in Method]
            raise ConfigError("methods", f"{exc}; use some of {known}") from None
        if not methods or len(set(methods)) != len(methods):
            raise ConfigError("methods", "give one or more distinct methods")
        object.__setattr__(self, "methods", methods)
        FinetuneSpec(
            Method.LP,
            self.data,
            self.output_dir,
            hyperparameters=self.hyperparameters,
            ntk_samples=self.ntk_samples,
            seeds=self.seeds,
        )

    @property
    def run_seeds(self) -> list[int]:
        """The seeds the comparison runs with, the first one's run being the one served."""
        return self.seeds or [self.hyperparameters.seed]

    def job(self, method: Method, seed: int | None = None) -> FinetuneSpec:
        """The single-seed ``finetune`` spec of one method (default: the first seed's), which
        checkpoints inside ``checkpoint_dir``."""
        seeds = self.run_seeds
        seed = seeds[0] if seed is None else seed
        output_dir = Path(self.output_dir) / method.value
        checkpoint_dir = (
            str(Path(self.checkpoint_dir) / f"{method.value}-seed-{seed}")
            if self.checkpoint_dir
            else None
        )
        return FinetuneSpec(
            method=method,
            data=self.data,
            output_dir=str(output_dir if seed == seeds[0] else run_dir(output_dir, seed)),
            model=self.model,
            hyperparameters=dataclasses.replace(self.hyperparameters, seed=seed),
            max_text_chars=self.max_text_chars,
            ntk_samples=self.ntk_samples if method.finetunes else 0,
            checkpoint_dir=checkpoint_dir,
            split_seed=seeds[0] if len(seeds) > 1 else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CompareSpec:
        """The spec ``to_dict`` wrote."""
        return spec_from_dict(cls, raw)


#: Methods whose FT stage has a kernel (LP trains the head only: its kernel is P).
FINETUNING_METHODS = [m for m in Method if m.finetunes]


@dataclass(frozen=True)
class AnalysisSpec:
    """An analysis job.

    Attributes:
        model: the base model (Hugging Face id or directory; default all-MiniLM-L6-v2).
        model_dir: a finished lpft model directory instead: its features are compared with
            its base model's, and its NTK is taken where training ended, over all encoder
            parameters (LoRA adapters are merged into the weights when it is loaded).
        ntk: compute the NTK; ``methods`` picks whose FT-start kernel (base model only).
        features: compute feature statistics (base) or feature change (finished model).
        ntk_samples: stratified, seeded train samples (and as many evaluation samples).
        checkpoint_dir: as ``FinetuneSpec.checkpoint_dir``.
    """

    data: DataFiles
    output_dir: str
    model: str | None = None
    model_dir: str | None = None
    ntk: bool = True
    features: bool = True
    methods: list[Method] = field(default_factory=lambda: list(FINETUNING_METHODS))
    ntk_samples: int = 256
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    max_text_chars: int = 20_000
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        if not (self.ntk or self.features):
            raise ConfigError("analysis", "ask for ntk, features or both")
        methods = [Method(m) for m in self.methods]
        if self.ntk and self.model_dir is None:
            if not methods or any(not m.finetunes for m in methods):
                raise ConfigError(
                    "methods", f"give one or more of {[m.value for m in FINETUNING_METHODS]}"
                )
        object.__setattr__(self, "methods", methods)
        if not 1 <= self.ntk_samples <= 4096:
            raise ConfigError("ntk_samples", "must be between 1 and 4096")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AnalysisSpec:
        """The spec ``to_dict`` wrote."""
        return spec_from_dict(cls, raw)


@dataclass(frozen=True)
class RecalibrateSpec:
    """A re-calibration as a job: the model directory whose temperature is replaced, the
    labelled file to fit it on, and where the job writes its ``metrics.json``."""

    model_dir: str
    data: str
    output_dir: str
    name: str | None = None
    max_text_chars: int = 20_000

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RecalibrateSpec:
        """The spec ``to_dict`` wrote."""
        return cls(**raw)
