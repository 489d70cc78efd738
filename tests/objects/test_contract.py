"""The object-store contract, on the local directory and on S3 (moto) alike."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from lpft_contract.objects import (
    MANIFEST,
    IntegrityError,
    NotPublished,
    ObjectNotFound,
    ObjectStore,
    S3ObjectStore,
    fetch,
    is_complete,
    latest_complete,
    publish,
    read_manifest,
)

from tests.objects.conftest import PART_BYTES


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


MODEL = {
    "config.json": b'{"labels": ["neg", "pos"]}',
    "weights.bin": os.urandom(300_000),
    "tokenizer/vocab.txt": b"[PAD]\n[UNK]\nfilm\n",
    "empty.txt": b"",
}


def test_put_stat_list_delete(store: ObjectStore) -> None:
    first = store.put_bytes("jobs/j-1/metrics.json", b'{"accuracy": 0.9}')
    store.put_bytes("jobs/j-1/model/config.json", b"{}")
    store.put_bytes("jobs/j-10/metrics.json", b"{}")
    store.put_bytes("datasets/ds-1.jsonl", b'{"text": "a", "label": "pos"}\n')

    stat = store.stat("jobs/j-1/metrics.json")
    assert stat is not None and stat.size == 17 and stat.etag == first.etag
    assert store.stat("jobs/j-1/nothing.json") is None
    assert store.stat("jobs/j-1") is None  # a prefix is not an object
    assert store.get_bytes("jobs/j-1/metrics.json") == b'{"accuracy": 0.9}'
    with pytest.raises(ObjectNotFound):
        store.get_bytes("jobs/j-1/nothing.json")
    with pytest.raises(ObjectNotFound):
        store.stream("jobs/j-1/nothing.json")

    # a prefix is a directory: jobs/j-1 does not hold jobs/j-10's objects
    assert [info.key for info in store.list("jobs/j-1")] == [
        "jobs/j-1/metrics.json",
        "jobs/j-1/model/config.json",
    ]
    assert [(i.key, i.size) for i in store.list("jobs/j-1")][0] == ("jobs/j-1/metrics.json", 17)
    assert len(store.list("")) == 4
    assert store.list("jobs/none") == []

    rewritten = store.put_bytes("jobs/j-1/metrics.json", b'{"accuracy": 0.95}')
    assert rewritten.etag != first.etag  # the version caches key on moves with the content
    assert store.stat("jobs/j-1/metrics.json").etag == rewritten.etag

    store.delete("jobs/j-10/metrics.json")
    store.delete("jobs/j-10/metrics.json")  # gone already: not an error
    assert store.stat("jobs/j-10/metrics.json") is None

    assert store.delete_prefix("jobs/j-1") == 2
    assert store.list("jobs") == []
    assert [info.key for info in store.list("")] == ["datasets/ds-1.jsonl"]
    with pytest.raises(ValueError):
        store.delete_prefix("")  # never the whole store


def test_streamed_round_trip_of_a_multipart_file(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(2 * PART_BYTES + 123_457)
    source = tmp_path / "big.bin"
    source.write_bytes(data)

    put = store.put_file("jobs/j-1/model/weights.bin", source)
    assert put.size == len(data)
    if isinstance(store, S3ObjectStore):  # S3 marks a multipart object's ETag "-<parts>"
        assert store.stat("jobs/j-1/model/weights.bin").etag.strip('"').endswith("-3")

    digest, largest = hashlib.sha256(), 0
    for chunk in store.stream("jobs/j-1/model/weights.bin"):
        digest.update(chunk)
        largest = max(largest, len(chunk))
    assert digest.hexdigest() == sha256(data)
    assert largest <= 8 * 1024 * 1024  # chunks, not the whole object at once

    target = tmp_path / "down" / "weights.bin"
    info = store.download("jobs/j-1/model/weights.bin", target)
    assert target.read_bytes() == data and info.size == len(data)
    assert [p.name for p in target.parent.iterdir()] == ["weights.bin"]  # no partial left
    with pytest.raises(ObjectNotFound):
        store.download("jobs/j-1/model/none.bin", tmp_path / "down" / "none.bin")
    assert not (tmp_path / "down" / "none.bin").exists()


def test_publish_then_fetch_verifies_every_file(store: ObjectStore, tmp_path: Path) -> None:
    manifest = publish(store, "jobs/j-1/model", write_tree(tmp_path / "model", MODEL))

    assert [entry.path for entry in manifest.files] == sorted(MODEL)
    assert {e.path: (e.size, e.sha256) for e in manifest.files} == {
        name: (len(data), sha256(data)) for name, data in MODEL.items()
    }
    assert is_complete(store, "jobs/j-1/model")
    assert read_manifest(store, "jobs/j-1/model") == manifest
    assert store.stat(f"jobs/j-1/model/{MANIFEST}") is not None

    destination = tmp_path / "cache" / "j-1"
    assert fetch(store, "jobs/j-1/model", destination) == manifest
    assert read_tree(destination) == MODEL

    # a second fetch replaces what the first left
    (destination / "stray.txt").write_text("left from before")
    fetch(store, "jobs/j-1/model", destination)
    assert read_tree(destination) == MODEL


def test_a_fetch_of_some_files_downloads_those_alone(store: ObjectStore, tmp_path: Path) -> None:
    """A reader of a job's metrics (a sweep trial's tracker run) need not download its
    weights."""
    publish(store, "jobs/j-1/model", write_tree(tmp_path / "model", MODEL))
    wanted = sorted(MODEL)[:1]
    fetch(store, "jobs/j-1/model", tmp_path / "some", lambda path: path in wanted)
    assert read_tree(tmp_path / "some") == {name: MODEL[name] for name in wanted}
    fetch(store, "jobs/j-1/model", tmp_path / "none", lambda path: False)
    assert read_tree(tmp_path / "none") == {}


def test_republishing_drops_the_files_the_new_set_does_not_name(
    store: ObjectStore, tmp_path: Path
) -> None:
    publish(store, "jobs/j-1/model", write_tree(tmp_path / "v1", MODEL))
    second = {"config.json": b'{"temperature": 1.7}', "weights.bin": b"new"}
    publish(store, "jobs/j-1/model", write_tree(tmp_path / "v2", second))

    assert sorted(info.key for info in store.list("jobs/j-1/model")) == [
        f"jobs/j-1/model/{MANIFEST}",
        "jobs/j-1/model/config.json",
        "jobs/j-1/model/weights.bin",
    ]
    fetch(store, "jobs/j-1/model", tmp_path / "cache")
    assert read_tree(tmp_path / "cache") == second


@pytest.mark.parametrize("damage", ["same size", "truncated", "missing"])
def test_a_damaged_object_fails_the_fetch_and_leaves_nothing(
    store: ObjectStore, tmp_path: Path, damage: str
) -> None:
    publish(store, "jobs/j-1/model", write_tree(tmp_path / "model", MODEL))
    key = "jobs/j-1/model/weights.bin"
    if damage == "same size":
        store.put_bytes(key, bytes(len(MODEL["weights.bin"])))
    elif damage == "truncated":
        store.put_bytes(key, MODEL["weights.bin"][:1000])
    else:
        store.delete(key)

    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(IntegrityError, match="weights.bin"):
        fetch(store, "jobs/j-1/model", cache / "j-1")
    assert list(cache.iterdir()) == []  # no destination, no partial sibling

    # an earlier good copy at the destination survives a failed fetch untouched
    write_tree(cache / "j-1", {"config.json": b"old"})
    with pytest.raises(IntegrityError):
        fetch(store, "jobs/j-1/model", cache / "j-1")
    assert read_tree(cache / "j-1") == {"config.json": b"old"}
    assert [p.name for p in cache.iterdir()] == ["j-1"]


def test_a_prefix_without_manifest_is_not_complete(store: ObjectStore, tmp_path: Path) -> None:
    checkpoints = "jobs/j-1/checkpoints"
    assert latest_complete(store, checkpoints) is None
    publish(store, f"{checkpoints}/epoch-0001", write_tree(tmp_path / "e1", {"state.pt": b"1"}))
    publish(store, f"{checkpoints}/epoch-0002", write_tree(tmp_path / "e2", {"state.pt": b"2"}))
    # a writer that died after its files and before its manifest
    store.put_bytes(f"{checkpoints}/epoch-0003/state.pt", b"3")

    assert not is_complete(store, f"{checkpoints}/epoch-0003")
    assert latest_complete(store, checkpoints) == f"{checkpoints}/epoch-0002"
    with pytest.raises(NotPublished):
        fetch(store, f"{checkpoints}/epoch-0003", tmp_path / "resume")
    assert not (tmp_path / "resume").exists()

    fetch(store, latest_complete(store, checkpoints), tmp_path / "resume")
    assert read_tree(tmp_path / "resume") == {"state.pt": b"2"}


BAD_KEYS = ["../../x", "/etc/passwd", "jobs/../../x", "a\\b", "a//b", "a/", "", "a/./b", "a\x00b"]


def calls_with_key(store: ObjectStore, bad: str, tmp_path: Path) -> list[Callable[[], object]]:
    """Every operation of the interface, and publish and fetch, given the key ``bad``."""
    source = tmp_path / "file"
    source.write_bytes(b"x")
    calls = [
        lambda: store.put_bytes(bad, b"x"),
        lambda: store.put_file(bad, source),
        lambda: store.get_bytes(bad),
        lambda: store.stream(bad),
        lambda: store.download(bad, tmp_path / "down"),
        lambda: store.stat(bad),
        lambda: store.delete(bad),
        lambda: store.delete_prefix(bad),
        lambda: publish(store, bad, tmp_path),
        lambda: fetch(store, bad, tmp_path / "fetched"),
    ]
    if bad:  # the empty prefix lists the whole store
        calls.append(lambda: store.list(bad))
    return calls


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_a_key_that_could_leave_the_prefix_is_refused(
    store: ObjectStore, tmp_path: Path, bad: str
) -> None:
    for call in calls_with_key(store, bad, tmp_path):
        with pytest.raises(ValueError):
            call()
    assert not (tmp_path.parent / "x").exists() and not (tmp_path / "x").exists()
    assert store.list("") == []
