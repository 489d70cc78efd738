"""Which models a job may name: the default, a Hugging Face id, or a directory under the
server's models directory. Anything else would let a tenant load (and, through the report,
read) whatever the worker can reach on its disk."""

from __future__ import annotations

import re
from pathlib import Path

from lpft_api.errors import Unprocessable
from lpft_core.model.classifier import DEFAULT_MODEL

#: ``name`` or ``org/name``, as the Hugging Face Hub spells repository ids.
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


def check_model(model: str | None, models_dir: Path | None) -> str | None:
    """``model`` as the job will load it: a directory of ``models_dir`` resolved (a name
    there wins over a hub id of the same spelling), a hub id unchanged.

    Raises:
        Unprocessable: a path outside ``models_dir`` (or any path when there is none), or a
            string that is neither an id nor such a directory.
    """
    if model is None or model == DEFAULT_MODEL:
        return model
    try:
        if models_dir is not None:
            root = models_dir.resolve()
            path = (root / model).resolve()  # an absolute model replaces root here
            if path.is_relative_to(root) and path.is_dir():
                return str(path)
        looks_like_path = model.startswith(("/", ".", "~")) or ".." in model
        if HUB_ID.fullmatch(model) and not looks_like_path and not Path(model).exists():
            return model
    except OSError:  # a name too long for the filesystem, say: not a directory we have
        pass
    raise Unprocessable(
        f"{model!r} is neither a Hugging Face id (org/name) nor a model directory under the "
        "server's models directory"
        + (
            ""
            if models_dir
            else " (this server takes no model paths: its operator can allow "
            "a directory with LPFT_MODELS_DIR)"
        ),
        field="model",
    )
