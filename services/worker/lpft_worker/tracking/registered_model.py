"""A job's calibrated model as an MLflow pyfunc model directory, ready to upload into its run
and register (``register_as``).

The model holds the job's ONNX export (``lpft_core.serving.export``: LoRA merged into the
weights, so a LoRA job's model carries one copy of the encoder, not the base model beside
its adapters) with the tokenizer, and ``pyfunc_model.py`` as its code: what loads it needs
ONNX Runtime, transformers, numpy and pandas, never lpft.
"""

from __future__ import annotations

import dataclasses
import tempfile
from importlib import metadata
from pathlib import Path

from lpft_core import serving_facts, write_export
from lpft_worker.tracking.mlflow_run import TrackingFailed

#: The packages the model's code imports, pinned to the versions the export was made and
#: checked with (the model's ``requirements.txt``).
REQUIREMENTS = ("onnxruntime", "transformers", "tokenizers", "numpy", "pandas")
#: The model's code, stored with it (not imported here: it imports MLflow and pandas).
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
#: What the signature's input example holds.
EXAMPLE_TEXT = "an example input"


def save_pyfunc(model_dir: Path, out: Path) -> Path:
    """Write the pyfunc model of the job in ``model_dir`` into the new directory ``out``."""
    from mlflow.models import ModelSignature
    from mlflow.pyfunc import save_model
    from mlflow.types import ColSpec, Schema

    facts = serving_facts(model_dir)
    labels = facts.labels
    names = [str(label) for label in labels]
    if "label" in names or len(set(names)) != len(names):
        raise TrackingFailed(
            "the model's labels cannot be the output's column names (one is 'label', or two "
            "are the same as text); rename them to register the model"
        )
    text_columns = ["text", *(["text_pair"] if facts.pair else [])]
    label_type = "long" if all(isinstance(x, int) for x in labels) else "string"
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", column) for column in text_columns]),
        outputs=Schema([*(ColSpec("double", n) for n in names), ColSpec(label_type, "label")]),
    )
    with tempfile.TemporaryDirectory() as scratch:
        export = write_export(model_dir, Path(scratch) / "export", "onnx")
        save_model(
            path=str(out),
            python_model=str(PYFUNC_CODE),
            artifacts={"export": str(export)},
            model_config=dataclasses.asdict(facts),
            signature=signature,
            input_example={column: [EXAMPLE_TEXT] for column in text_columns},
            pip_requirements=[f"{name}=={metadata.version(name)}" for name in REQUIREMENTS],
        )
    return out
