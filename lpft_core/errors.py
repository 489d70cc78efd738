"""The one error tree of lpft_core.

    LpftError
    ├── ConfigError(LpftError, ValueError)   a job spec or option is invalid
    ├── DataError(LpftError, ValueError)     a dataset file or record is invalid
    ├── ModelError(LpftError)                a model or artifact cannot be loaded
    ├── TrainingDivergedError(LpftError)     the loss became NaN or infinite
    └── JobCancelled(LpftError)            the caller asked the job to stop

Messages say what to change, because the HTTP service shows them to users verbatim.
The ValueError bases keep callers that catch ValueError working (scikit-learn's
NotFittedError uses the same trick).
"""

from __future__ import annotations


class LpftError(Exception):
    """Base class of every error lpft_core raises on purpose."""

    code = "lpft_error"


class ConfigError(LpftError, ValueError):
    """A job spec or an option is invalid; the message names the field and the fix."""

    code = "invalid_config"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class DataError(LpftError, ValueError):
    """A dataset is invalid; the message names the file, line and field."""

    code = "invalid_data"

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        where = ", ".join(
            part
            for part in (
                source,
                f"line {line}" if line is not None else None,
                f"field {field!r}" if field else None,
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.line = line
        self.field = field


class ModelError(LpftError):
    """A model, tokenizer or artifact could not be loaded."""

    code = "model_error"


class TrainingDivergedError(LpftError):
    """The loss became NaN or infinite; lower ``learning_rate`` or ``head_norm_scale``."""

    code = "training_diverged"


class JobCancelled(LpftError):
    """The job was asked to stop (``should_stop()`` returned True) and stopped cleanly."""

    code = "cancelled"
