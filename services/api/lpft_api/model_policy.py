"""Which models a job may name: the default, a Hugging Face id, or a directory under the
server's models directory. Anything else would let a tenant load (and, through the report,
read) whatever the worker can reach on its disk. A named model must also be allowed
(``LPFT_ALLOWED_MODELS``) and small enough (``LPFT_MAX_MODEL_BYTES``), which is checked from
the hub's metadata, the local Hugging Face cache or the disk, before anything is downloaded."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import httpx2  # huggingface_hub's HTTP client: its transport errors mean "hub unreachable"
from huggingface_hub import HfApi, constants, try_to_load_from_cache
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

from lpft_api.errors import HubUnavailable, Unprocessable
from lpft_api.settings import ApiSettings
from lpft_core import DEFAULT_MODEL

#: ``name`` or ``org/name``, as the Hugging Face Hub spells repository ids.
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
#: Seconds the hub may take to say how large a model is, within a POST /jobs.
HUB_TIMEOUT_S = 10
#: Weights ``from_pretrained`` never fetches for a PyTorch model (other frameworks', exports),
#: besides the ``.bin`` files of a repository that has ``.safetensors`` ones.
OTHER_WEIGHTS = (".h5", ".msgpack", ".ot", ".onnx", ".pt", ".pth", ".ckpt", ".gguf", ".tflite")


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
            validate_repo_id(model)  # the hub's own rules ("a--b", "x.git"): else a 500 later
            return model
    except OSError:  # a name too long for the filesystem, say: not a directory we have
        pass
    except HFValidationError:
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


def check_model_policy(model: str | None, settings: ApiSettings) -> None:
    """Refuse a model the operator does not allow or that is over the size limit, before the
    job is stored: a worker would otherwise download gigabytes to fail, or train what it
    should not. ``model`` is as ``check_model`` returned it. The default model ships with the
    service and is always allowed; a directory under ``LPFT_MODELS_DIR`` is sized from disk
    and not matched against the allow-list, since that directory is the operator's own list
    of local models.

    Raises:
        Unprocessable: the model is not allowed, not on the hub, not readable there, over the
            size limit, or not in the cache of a server that works offline.
        HubUnavailable: the hub did not answer, and the model is not in the local cache.
    """
    if model is None or model == DEFAULT_MODEL:
        return
    if Path(model).is_absolute():
        size, where = _fetched_bytes(_top_files(Path(model))), "on disk"
    else:
        _check_allowed(model, settings.allowed_models)
        size, where = _hub_bytes(model)
    if size > settings.max_model_bytes:
        raise Unprocessable(
            f"model {model!r} is {size:,} bytes {where} (the weights, config and tokenizer a "
            f"job loads); the limit is LPFT_MAX_MODEL_BYTES = {settings.max_model_bytes:,} "
            "bytes: pick a smaller model",
            field="model",
        )


def _check_allowed(model: str, allowed: str) -> None:
    patterns = [pattern.strip() for pattern in allowed.split(",") if pattern.strip()]
    if patterns and not any(fnmatch.fnmatchcase(model, pattern) for pattern in patterns):
        raise Unprocessable(
            f"model {model!r} is not allowed on this server: LPFT_ALLOWED_MODELS allows "
            f"{', '.join(patterns)} (and the default model)",
            field="model",
        )


def _hub_bytes(model: str) -> tuple[int, str]:
    """The model's size and where it was measured: on the hub (``HF_ENDPOINT``), else, when
    the server works offline (``HF_HUB_OFFLINE``) or the hub does not answer, in the local
    Hugging Face cache, from which the worker would load it."""
    try:
        if constants.is_offline_mode():
            raise OfflineModeIsEnabled("HF_HUB_OFFLINE is set")
        info = HfApi().model_info(model, files_metadata=True, timeout=HUB_TIMEOUT_S)
    except HfHubHTTPError as exc:
        status = exc.response.status_code
        if status < 500 and status != 429:
            raise Unprocessable(
                f"the Hugging Face Hub has no model {model!r} this server may read (HTTP "
                f"{status}): check the id; a private or gated model needs the operator's token",
                field="model",
            ) from None
        return _cached_bytes(model, offline=False), "in the local Hugging Face cache"
    except OfflineModeIsEnabled:
        return _cached_bytes(model, offline=True), "in the local Hugging Face cache"
    except httpx2.TransportError:
        return _cached_bytes(model, offline=False), "in the local Hugging Face cache"
    siblings = {s.rfilename: s.size or 0 for s in info.siblings or []}
    return _fetched_bytes(siblings), f"on the hub ({constants.ENDPOINT})"


def _cached_bytes(model: str, *, offline: bool) -> int:
    """The size of the model's snapshot in the local cache.

    Raises:
        Unprocessable: (offline) the cache has no copy, and never will.
        HubUnavailable: (hub down) the cache has no copy; the hub may answer later.
    """
    cached = try_to_load_from_cache(model, "config.json")
    if isinstance(cached, str):
        return _fetched_bytes(_top_files(Path(cached).parent))
    if offline:
        raise Unprocessable(
            f"this server works offline (HF_HUB_OFFLINE) and its Hugging Face cache has no "
            f"model {model!r}; use a model under the server's models directory, or ask the "
            "operator to put this one in the cache",
            field="model",
        )
    raise HubUnavailable(
        f"the Hugging Face Hub ({constants.ENDPOINT}) did not answer, so the size of model "
        f"{model!r} cannot be checked (it is not in this server's cache); retry shortly",
        retry_after=30,
        field="model",
    )


def _top_files(directory: Path) -> dict[str, int]:
    """The files directly in ``directory`` (the only ones ``from_pretrained`` reads), with
    their sizes, through links: a cache snapshot links to its blobs."""
    return {path.name: path.stat().st_size for path in directory.iterdir() if path.is_file()}


def _fetched_bytes(files: dict[str, int]) -> int:
    """Of a model repository's files (relative path: bytes), the bytes ``from_pretrained``
    loads: the top-level files, PyTorch weights only (the ``.safetensors`` ones where there
    are any, else the ``.bin`` ones), none of a subfolder (an ONNX export, another
    framework's pooling module)."""
    top = {name: size for name, size in files.items() if "/" not in name}
    has_safetensors = any(name.endswith(".safetensors") for name in top)

    def fetched(name: str) -> bool:
        if name.endswith(".bin"):
            return name.startswith("pytorch_model") and not has_safetensors
        return not name.endswith(OTHER_WEIGHTS)

    return sum(size for name, size in top.items() if fetched(name))
