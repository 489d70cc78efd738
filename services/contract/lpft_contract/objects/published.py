"""Publishing a directory so that no reader sees half of it, and fetching one back verified:
every file first, the manifest last (manifest.py). A prefix without a manifest is not
complete: a crashed writer's leftovers are never read. Written once over the ObjectStore
protocol, so both backends behave alike.

A set is meant to be written once under its prefix: checkpoints take one prefix per epoch
(``checkpoints/epoch-0003``) and ``latest_complete`` picks the newest. Republishing a prefix
removes its manifest first, so a reader sees "not complete" rather than a mix, and a fetch
already under way meets an IntegrityError.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from .errors import IntegrityError, NotPublished, ObjectNotFound
from .keys import child_key, join, validate_prefix
from .manifest import MANIFEST, Digest, Manifest, ManifestEntry, digest_file, directory_files
from .protocol import ObjectStore


def publish(store: ObjectStore, prefix: str, directory: Path) -> Manifest:
    """Upload every file under ``directory`` to ``prefix``, then the manifest naming them;
    objects under ``prefix`` that the new manifest does not name are removed after it."""
    validate_prefix(prefix)
    manifest_key = join(prefix, MANIFEST)
    files = list(directory_files(Path(directory)))
    if any(relative == MANIFEST for relative, _ in files):
        raise ValueError(f"{directory} holds a file named {MANIFEST}, the manifest's own name")
    store.delete(manifest_key)
    entries = []
    for relative, path in files:
        digest = digest_file(path)
        info = store.put_file(join(prefix, relative), path)
        if info.size != digest.size:
            raise IntegrityError(f"{path} changed while it was published")
        entries.append(ManifestEntry(path=relative, size=digest.size, sha256=digest.sha256))
    manifest = Manifest(files=tuple(entries))
    store.put_bytes(manifest_key, manifest.to_json())
    named = {join(prefix, entry.path) for entry in entries} | {manifest_key}
    for stale in store.list(prefix):
        if stale.key not in named:
            store.delete(stale.key)
    return manifest


def read_manifest(store: ObjectStore, prefix: str) -> Manifest:
    """The manifest published under ``prefix``; NotPublished when there is none."""
    try:
        return Manifest.from_json(store.get_bytes(join(prefix, MANIFEST)))
    except ObjectNotFound as missing:
        raise NotPublished(prefix, f"nothing complete under {prefix!r}: no manifest") from missing


def is_complete(store: ObjectStore, prefix: str) -> bool:
    """Whether ``prefix`` holds a published set (its manifest is there)."""
    return store.stat(join(validate_prefix(prefix), MANIFEST)) is not None


def latest_complete(store: ObjectStore, prefix: str) -> str | None:
    """The last, in name order, of the published sets directly under ``prefix`` (name them so
    that they sort: ``epoch-0003``), or None; a set still being written does not count."""
    validate_prefix(prefix, allow_root=True)
    base = f"{prefix}/" if prefix else ""
    complete = sorted(
        info.key[len(base) : -len(MANIFEST) - 1]
        for info in store.list(prefix)
        if info.key.endswith(f"/{MANIFEST}") and info.key[len(base) :].count("/") == 1
    )
    return child_key(prefix, complete[-1]) if complete else None


def fetch(
    store: ObjectStore,
    prefix: str,
    destination: Path,
    wanted: Callable[[str], bool] | None = None,
) -> Manifest:
    """Download the set published under ``prefix`` into ``destination``, each file checked
    against the manifest's size and SHA-256 (with ``wanted``, only the files whose paths it
    accepts: a reader of a job's metrics need not download its weights). The files land in a
    sibling directory renamed onto ``destination`` at the end: on any failure (IntegrityError
    for a mismatch) ``destination`` is as it was, and nothing partial is left."""
    manifest = read_manifest(store, prefix)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.partial")
    staging.mkdir()
    try:
        for entry in manifest.files:
            if wanted is not None and not wanted(entry.path):
                continue
            target = staging / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            receive(store, join(prefix, entry.path), entry, target)
        replace_directory(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def receive(store: ObjectStore, key: str, entry: ManifestEntry, target: Path) -> None:
    """Stream one object to ``target``, hashing as it goes; IntegrityError on a mismatch."""
    digest = Digest()
    try:
        with target.open("wb") as sink:
            for chunk in store.stream(key):
                digest.update(chunk)
                if digest.size > entry.size:
                    break
                sink.write(chunk)
    except ObjectNotFound as missing:
        raise IntegrityError(f"{key!r} is named by its manifest but missing") from missing
    if digest.size != entry.size or digest.sha256 != entry.sha256:
        raise IntegrityError(
            f"{key!r} differs from its manifest: {digest.size} bytes, sha256 "
            f"{digest.sha256[:12]}…, expected {entry.size} bytes, {entry.sha256[:12]}…"
        )


def replace_directory(source: Path, destination: Path) -> None:
    """Put ``source`` where ``destination`` is; an old ``destination`` is moved aside first
    (directories cannot be swapped in one rename) and removed after."""
    old = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.old")
    if destination.exists():
        os.replace(destination, old)
    os.replace(source, destination)
    shutil.rmtree(old, ignore_errors=True)
