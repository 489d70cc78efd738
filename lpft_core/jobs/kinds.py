"""The kinds of job lpft runs: a name shared by the library, the API and the worker, kept in
a module of its own so that naming a kind imports nothing heavy."""

from __future__ import annotations

from enum import StrEnum


class JobKind(StrEnum):
    """``finetune``: one method, one model. ``compare``: several methods on one split.
    ``analysis``: NTK and feature statistics without training. ``recalibrate``: a new
    temperature for a finished finetune job's model."""

    FINETUNE = "finetune"
    COMPARE = "compare"
    ANALYSIS = "analysis"
    RECALIBRATE = "recalibrate"
