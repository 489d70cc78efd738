"""The code of a registered lpft model: an MLflow pyfunc over the job's ONNX export that
returns the calibrated probabilities ``/predict`` returns, where lpft is not installed.

MLflow stores this file with the model and runs it when the model loads ("models from
code"), so it imports only what the model's declared requirements install (ONNX Runtime,
transformers for the tokenizer, numpy, pandas) and never lpft or the worker: a team deploys
the version from its registry with ``mlflow.pyfunc.load_model`` and nothing of the service.

The arithmetic is ``/predict``'s: the inputs tokenised with truncation to the job's
``max_length`` (pairs as pairs), the graph's ``logits`` (T = 1), and softmax(logits / T) in
float64 with the job's temperature, from the model's config (``model_config`` in MLmodel).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

#: Rows per forward pass: the batch ``/predict`` draws at most.
BATCH_ROWS = 32


class CalibratedClassifier(PythonModel):
    """``predict``: a DataFrame with ``text`` (and ``text_pair`` for a pair task) in, a
    DataFrame out with one column per label holding its calibrated probability and ``label``,
    the most probable one."""

    def load_context(self, context: Any) -> None:
        import onnxruntime
        from transformers import AutoTokenizer

        export = Path(context.artifacts["export"])
        settings = context.model_config
        self.labels = list(settings["labels"])
        self.temperature = float(settings["temperature"])
        self.max_length = int(settings["max_length"])
        self.pair = bool(settings["pair"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(export))
        self.tokenizer.padding_side = "right"
        self.session = onnxruntime.InferenceSession(
            str(export / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        self.input_names = {node.name for node in self.session.get_inputs()}

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        texts = _column(frame, "text")
        pairs = _column(frame, "text_pair") if self.pair else None
        logits = [np.empty((0, len(self.labels)))]
        for start in range(0, len(texts), BATCH_ROWS):
            encoded = self.tokenizer(
                texts[start : start + BATCH_ROWS],
                pairs[start : start + BATCH_ROWS] if pairs is not None else None,
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="np",
            )
            feed = {k: v.astype(np.int64) for k, v in encoded.items() if k in self.input_names}
            logits.append(self.session.run(["logits"], feed)[0])
        probabilities = _softmax(np.concatenate(logits).astype(np.float64) / self.temperature)
        out = pd.DataFrame(probabilities, columns=[str(x) for x in self.labels], index=frame.index)
        out["label"] = [self.labels[i] for i in probabilities.argmax(axis=1)]
        return out


def _column(frame: pd.DataFrame, name: str) -> list[str]:
    if name not in frame.columns:
        raise ValueError(f"the input needs a {name!r} column (strings), one row per input")
    return [str(value) for value in frame[name].tolist()]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


mlflow.models.set_model(CalibratedClassifier())
