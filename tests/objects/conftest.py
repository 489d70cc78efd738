"""Fixtures for the object-store contract: every test runs on both backends, a temporary
directory and a bucket on a real moto server on loopback (tests/objects/moto_server.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lpft_contract.objects import LocalObjectStore, ObjectStore, S3ObjectStore

from tests.integration.conftest import toy_dataset_files  # noqa: F401 - shared-nothing tests
from tests.objects.moto_server import ACCESS_KEY, REGION, SECRET_KEY, aws_environment, running_moto
from tests.objects.proxy import Proxy, running_proxy

BUCKET = "lpft-test"
#: S3's smallest part: a file of a few MB then takes the multipart path.
PART_BYTES = 5 * 1024 * 1024


def create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    ).create_bucket(Bucket=bucket)


@pytest.fixture(scope="session")
def moto_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's moto server's request log."""
    return tmp_path_factory.mktemp("moto") / "moto.log"


@pytest.fixture(scope="session")
def moto_endpoint(moto_log: Path) -> Iterator[str]:
    """A moto server for the session, with the test bucket."""
    with running_moto(moto_log) as endpoint:
        create_bucket(endpoint, BUCKET)
        yield endpoint


def s3_store(endpoint: str, *, retry_seconds: float = 20.0, bucket: str = BUCKET) -> S3ObjectStore:
    """A store under a prefix of its own, so tests sharing the bucket never meet."""
    return S3ObjectStore(
        bucket,
        f"t/{uuid.uuid4().hex}",
        retry_seconds=retry_seconds,
        part_bytes=PART_BYTES,
        environ=aws_environment(endpoint),
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each backend in turn: the contract is the same."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "store")
    return s3_store(request.getfixturevalue("moto_endpoint"))


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[Proxy]:
    """A proxy in front of moto that a test can close and reopen."""
    with running_proxy(moto_endpoint) as running:
        yield running
