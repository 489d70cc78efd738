"""The spec of a sweep job: a hyperparameter search of one finetune method on one split.

Light on purpose (no Optuna, no torch): the API builds and checks a sweep's spec with it,
and ``lpft_core.jobs.sweep`` turns it into an Optuna study. Every trial is a single-seed
``FinetuneSpec`` (``trial_spec``) on the base seed's split, so the trials are scored on the
very same validation rows and their objective values compare.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from lpft_core.config import DataFiles, FinetuneSpec, Hyperparameters, Method, spec_from_dict
from lpft_core.errors import ConfigError

#: Trials one sweep may run (the service caps it lower with ``LPFT_MAX_TRIALS``).
MAX_TRIALS = 1000
#: Values one range of a grid search may hold.
MAX_GRID_POINTS = 10_000
#: Where the trials keep their models, inside the sweep's output directory.
TRIALS_DIR = "trials"
#: Hyperparameters that are not searched: the device picks the queue, ``ece_bins`` is how
#: ECE itself is measured (a search over it would game the objective), and the seed picks
#: the validation rows every trial must share.
NOT_SEARCHABLE = ("device", "ece_bins", "seed")
#: The searchable hyperparameters by name, with the type their values have.
SEARCHABLE: dict[str, type] = {
    "epochs": int,
    "batch_size": int,
    "learning_rate": float,
    "max_length": int,
    "head_norm_scale": float,
    "lora_r": int,
    "lora_alpha": float,
    "weight_decay": float,
    "max_grad_norm": float,
    "pooling": str,
    "group_by_length": bool,
    "compile": bool,
    "lp_scoring": str,
}
assert set(SEARCHABLE) | set(NOT_SEARCHABLE) == {
    f.name for f in dataclasses.fields(Hyperparameters)
}
#: The grid of the paper's head-norm analysis (Sec. 6): the head's norm scaled down and up
#: around the probe's, one decade each way.
HEAD_NORM_SCALES = [0.1, 0.3, 1.0, 3.0, 10.0]


class Objective(StrEnum):
    """Validation metrics after temperature scaling that a sweep optimises (``validation.*``
    of the trial's metrics: the rows T was fitted on, never the test split)."""

    NLL = "nll"
    ECE = "ece"
    ACCURACY = "accuracy"
    MACRO_F1 = "macro_f1"

    @property
    def epoch_metric(self) -> str:
        """What each epoch's validation pass measures in its place, which pruning reads:
        the loss for the calibration metrics, the accuracy for the others (an epoch fits no
        temperature, and accuracy is the same before and after it)."""
        return (
            "validation_loss" if self in (Objective.NLL, Objective.ECE) else "validation_accuracy"
        )


class Sampler(StrEnum):
    """How trials pick their parameters."""

    TPE = "tpe"
    RANDOM = "random"
    GRID = "grid"


class Pruner(StrEnum):
    """What stops a trial early on its per-epoch validation values."""

    MEDIAN = "median"
    HYPERBAND = "hyperband"
    NONE = "none"


class ParamType(StrEnum):
    """The kinds of search range."""

    FLOAT = "float"
    INT = "int"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class SearchParam:
    """The range of one hyperparameter: ``low``..``high`` (``log``: sampled on a log scale;
    ``step``: on a grid of that step) for ``float`` and ``int``, ``choices`` for
    ``categorical``."""

    type: ParamType
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)

    def grid(self) -> list[Any]:
        """Every value the grid sampler tries (a range needs a ``step``, or is an int)."""
        if self.type is ParamType.CATEGORICAL:
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.type is ParamType.INT:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        assert self.step is not None
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [self.low + i * self.step for i in range(count)]


@dataclass(frozen=True)
class SweepSpec:
    """A sweep job.

    Attributes:
        method: the finetune method every trial trains.
        search_space: the range of each searched hyperparameter, by name; the others take
            ``hyperparameters``. ``search_space`` holds ``SearchParam`` data.
        n_trials: trials run in all; pruned and failed ones count.
        parallelism: trials run at once at most.
        objective: the validation metric after calibration to optimise, in ``direction``.
        sampler, pruner: Optuna's TPE (seeded with ``hyperparameters.seed``), random or
            grid sampler; its median or hyperband pruner, or none.
        preset: ``head_norm`` for the paper's head-norm analysis (set by the API, which then
            fills ``search_space`` with ``HEAD_NORM_SCALES``); reported beside each trial.
        checkpoint_dir: each trial checkpoints in ``trial-<n>`` inside it.
    """

    method: Method
    data: DataFiles
    output_dir: str
    search_space: dict[str, SearchParam]
    n_trials: int
    parallelism: int = 1
    objective: Objective = Objective.NLL
    direction: str = "minimize"
    sampler: Sampler = Sampler.TPE
    pruner: Pruner = Pruner.MEDIAN
    model: str | None = None
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    max_text_chars: int = 20_000
    preset: str | None = None
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        def enum(cls: type[StrEnum], name: str) -> Any:
            try:
                return cls(getattr(self, name))
            except ValueError:
                raise ConfigError(name, f"use one of {[m.value for m in cls]}") from None

        for name, cls in (
            ("method", Method),
            ("objective", Objective),
            ("sampler", Sampler),
            ("pruner", Pruner),
        ):
            object.__setattr__(self, name, enum(cls, name))
        if self.direction not in ("minimize", "maximize"):
            raise ConfigError("direction", "use minimize or maximize")
        if not 1 <= self.n_trials <= MAX_TRIALS:
            raise ConfigError("n_trials", f"must be between 1 and {MAX_TRIALS}")
        if not 1 <= self.parallelism <= self.n_trials:
            raise ConfigError("parallelism", f"must be between 1 and n_trials ({self.n_trials})")
        space = check_search_space(self.search_space, self.hyperparameters, self.sampler)
        if self.sampler is Sampler.GRID:
            check_grid_trials(space, self.n_trials)
        object.__setattr__(self, "search_space", space)
        self.trial_spec(0, {})  # the base options as a finetune job would check them

    def trial_spec(
        self,
        number: int,
        params: dict[str, Any],
        output_dir: str | None = None,
        checkpoint_dir: str | None = None,
    ) -> FinetuneSpec:
        """Trial ``number``'s finetune job with ``params`` on the base seed's split. Its model
        goes to ``output_dir`` (default ``trials/<n>`` in the sweep's), its checkpoint to
        ``checkpoint_dir`` (default ``trial-<n>`` in the sweep's, if it has one): the service
        runs each trial as a job of its own, in that job's directories."""
        if checkpoint_dir is None and self.checkpoint_dir:
            checkpoint_dir = str(Path(self.checkpoint_dir) / f"trial-{number}")
        return FinetuneSpec(
            method=self.method,
            data=self.data,
            output_dir=output_dir or str(trial_dir(self.output_dir, number)),
            model=self.model,
            hyperparameters=dataclasses.replace(self.hyperparameters, **params),
            max_text_chars=self.max_text_chars,
            checkpoint_dir=checkpoint_dir,
            split_seed=self.hyperparameters.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SweepSpec:
        """The spec ``to_dict`` wrote."""
        return spec_from_dict(cls, raw)


def trial_dir(output_dir: str | Path, number: int) -> Path:
    """Where trial ``number`` of a sweep keeps its model and metrics."""
    return Path(output_dir) / TRIALS_DIR / str(number)


def check_search_space(
    space: dict[str, SearchParam | dict[str, Any]], base: Hyperparameters, sampler: Sampler | str
) -> dict[str, SearchParam]:
    """Every range of ``space`` checked (``check_param``), against ``base`` options.

    Raises:
        ConfigError: naming the field, e.g. ``search_space.learning_rate.low``.
    """
    if not space:
        raise ConfigError("search_space", f"search one or more of {sorted(SEARCHABLE)}")
    return {name: check_param(name, raw, base, Sampler(sampler)) for name, raw in space.items()}


def check_grid_trials(space: dict[str, SearchParam], n_trials: int) -> None:
    """A grid sweep tries each point of its grid once: beyond them, Optuna's grid sampler
    would train the same points again.

    Raises:
        ConfigError: on ``n_trials``, naming the grid's size.
    """
    points = math.prod(len(param.grid()) for param in space.values())
    if n_trials > points:
        raise ConfigError(
            "n_trials",
            f"the grid has {points} points, each tried once; ask for at most {points} trials",
        )


def check_param(
    name: str, raw: SearchParam | dict[str, Any], base: Hyperparameters, sampler: Sampler
) -> SearchParam:
    """The range of ``name`` once checked: a searchable hyperparameter, a type that fits it,
    bounds in order, and every bound (or choice) an option a finetune job accepts.

    Raises:
        ConfigError: naming the field, e.g. ``search_space.learning_rate.low``.
    """
    where = f"search_space.{name}"
    if name not in SEARCHABLE:
        hint = " (it is fixed for every trial)" if name in NOT_SEARCHABLE else ""
        raise ConfigError(where, f"not a searchable hyperparameter{hint}; use {sorted(SEARCHABLE)}")
    param = raw if isinstance(raw, SearchParam) else _build_param(raw, where)
    kind = SEARCHABLE[name]
    if param.type is ParamType.CATEGORICAL:
        if not param.choices or len(param.choices) != len(set(map(repr, param.choices))):
            raise ConfigError(f"{where}.choices", "give one or more distinct choices")
        for index, choice in enumerate(param.choices):
            _accepted(name, choice, base, f"{where}.choices[{index}]")
        return param
    if kind not in (int, float) or (kind is int and param.type is ParamType.FLOAT):
        raise ConfigError(
            f"{where}.type",
            f"{name} takes {kind.__name__} values; use "
            f"{'int or categorical' if kind is int else 'categorical'}",
        )
    for bound in ("low", "high"):
        value = getattr(param, bound)
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{where}.{bound}", "give a finite number")
        if param.type is ParamType.INT and value != int(value):
            raise ConfigError(f"{where}.{bound}", "give a whole number for an int range")
    assert param.low is not None and param.high is not None
    if param.low > param.high:
        raise ConfigError(f"{where}.low", f"is above high ({param.high}); swap them")
    if param.log and param.low <= 0:
        raise ConfigError(f"{where}.low", "a log range needs low above 0")
    if param.step is not None:
        if param.log:
            raise ConfigError(f"{where}.step", "a log range takes no step")
        if not param.step > 0:
            raise ConfigError(f"{where}.step", "must be positive")
        if param.type is ParamType.INT and param.step != int(param.step):
            raise ConfigError(f"{where}.step", "give a whole number for an int range")
    elif sampler is Sampler.GRID and param.type is ParamType.FLOAT:
        raise ConfigError(f"{where}.step", "the grid sampler needs a step (or choices)")
    if sampler is Sampler.GRID:
        points = (param.high - param.low) / (param.step or 1) + 1
        if points > MAX_GRID_POINTS:
            raise ConfigError(
                f"{where}.step",
                f"the grid would hold {points:.0f} values; at most {MAX_GRID_POINTS}",
            )
    for bound in ("low", "high"):
        value = getattr(param, bound)
        _accepted(
            name, int(value) if param.type is ParamType.INT else value, base, f"{where}.{bound}"
        )
    return param


def _build_param(raw: Any, where: str) -> SearchParam:
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be an object with type and low/high or choices")
    names = {f.name for f in dataclasses.fields(SearchParam)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", f"unknown option; known: {sorted(names)}")
    try:
        kind = ParamType(raw.get("type"))
    except ValueError:
        raise ConfigError(f"{where}.type", f"use one of {[t.value for t in ParamType]}") from None
    return SearchParam(**{**raw, "type": kind})


def _accepted(name: str, value: Any, base: Hyperparameters, where: str) -> None:
    """Refuse a value the finetune job's own checks refuse, under the search field's name."""
    if SEARCHABLE[name] is bool and not isinstance(value, bool):
        raise ConfigError(where, "must be true or false")
    try:
        dataclasses.replace(base, **{name: value})
    except (ConfigError, TypeError) as exc:
        message = str(exc).split(": ", 1)[-1]
        raise ConfigError(where, message) from None
