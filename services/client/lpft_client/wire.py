"""The fields of the API's answers that its schemas and this client's types declare alike,
written once: the API builds its response models on these (it installs the client extra),
while the client cannot import the API, which needs FastAPI and the ML stack. Each side adds
its own rules: the API narrows a field to what it sends (``object`` a constant), the client
keeps fields it does not know (``lpft_client.types.ApiModel``)."""

from __future__ import annotations

from pydantic import BaseModel


class DatasetFields(BaseModel):
    """An uploaded, validated dataset and its summary."""

    object: str = "dataset"
    id: str
    name: str
    rows: int
    pair: bool
    label_counts: dict[str, int]
    created_at: float


class PredictionFields(BaseModel):
    """One input's label and probabilities per label name."""

    label: str | int | None
    probabilities: dict[str, float]
    logits: list[float]
    prediction_set: list[str | int] | None = None
    abstained: bool = False
