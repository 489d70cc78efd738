"""Which store a URL names, and what the standard AWS variables set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lpft_contract.objects import (
    LocalObjectStore,
    ObjectStoreAuthError,
    S3ObjectStore,
    object_store_from_url,
    validate_key,
)
from lpft_contract.objects.s3_config import S3Settings


def test_a_url_picks_the_backend(tmp_path: Path) -> None:
    s3 = object_store_from_url("s3://artifacts/lpft/prod", retry_seconds=5)
    assert isinstance(s3, S3ObjectStore)
    assert (s3.bucket, s3.prefix, s3.retry_seconds, s3.url) == (
        "artifacts",
        "lpft/prod",
        5,
        "s3://artifacts/lpft/prod",
    )
    assert object_store_from_url("s3://artifacts").prefix == ""
    for local in (str(tmp_path), f"file://{tmp_path}", "relative/dir"):
        store = object_store_from_url(local)
        assert isinstance(store, LocalObjectStore)
    assert object_store_from_url(f"file://{tmp_path}").root == tmp_path.resolve()
    for bad in ("gs://bucket", "s3:///prefix", "s3://bucket/../x", "file://host/dir", ""):
        with pytest.raises(ValueError):
            object_store_from_url(bad)


def test_a_plain_directory_reads_as_a_store(tmp_path: Path) -> None:
    """Today's layout, written before the store existed, and an atomic write's leftover."""
    (tmp_path / "jobs" / "j-1" / "model").mkdir(parents=True)
    (tmp_path / "jobs" / "j-1" / "model" / "config.json").write_text("{}")
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "ds-1.jsonl").write_text("{}\n")
    (tmp_path / "datasets" / f".ds-2.jsonl.{'0' * 32}.partial").write_text("half")
    store = LocalObjectStore(tmp_path)
    assert [info.key for info in store.list("")] == [
        "datasets/ds-1.jsonl",
        "jobs/j-1/model/config.json",
    ]
    assert store.get_bytes("datasets/ds-1.jsonl") == b"{}\n"


def test_the_s3_endpoint_and_keys_come_from_the_aws_variables() -> None:
    settings = S3Settings.from_environ(
        {
            "AWS_ENDPOINT_URL": "https://general.example",
            "AWS_ENDPOINT_URL_S3": "http://minio:9000",
            "AWS_ACCESS_KEY_ID": "key",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_SESSION_TOKEN": "token",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }
    )
    assert settings.endpoint == "http://minio:9000"  # the S3-specific one wins
    assert settings.allow_http
    assert settings.store_options()["config"] == {
        "region": "eu-west-1",
        "endpoint": "http://minio:9000",
        "access_key_id": "key",
        "secret_access_key": "secret",
        "session_token": "token",
    }
    assert "secret" not in repr(settings) and "token" not in repr(settings)
    assert S3Settings.from_environ({}).region == "us-east-1"
    assert not S3Settings.from_environ({"AWS_ENDPOINT_URL": "https://r2.example"}).allow_http
    with pytest.raises(ObjectStoreAuthError, match="AWS_SECRET_ACCESS_KEY"):
        S3Settings.from_environ({"AWS_ACCESS_KEY_ID": "key"}).store_options()


def test_a_valid_key_is_returned_unchanged() -> None:
    assert validate_key("jobs/j-1/checkpoints/epoch-0001/state.pt") == (
        "jobs/j-1/checkpoints/epoch-0001/state.pt"
    )


def test_the_base_install_never_imports_the_s3_client() -> None:
    """The package and a local store work without the [s3] extra: obstore is imported only
    when an S3ObjectStore is built."""
    code = (
        "import sys, tempfile\n"
        "from lpft_contract.objects import LocalObjectStore, object_store_from_url\n"
        "store = object_store_from_url(tempfile.mkdtemp())\n"
        "store.put_bytes('jobs/j-1/a', b'1')\n"
        "assert 'obstore' not in sys.modules, 'obstore was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
