"""What an operator meets on S3: a missing bucket, wrong credentials, an unreachable endpoint,
an outage the store rides out and one longer than its retry budget. Each against a real moto
server, the outages through a TCP proxy the test closes and reopens."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest
from lpft_contract.objects import (
    BucketMissing,
    ObjectStoreAuthError,
    ObjectStoreUnavailable,
    S3ObjectStore,
)

from tests.objects.conftest import BUCKET, PART_BYTES, s3_store
from tests.objects.moto_server import aws_environment, free_port, running_moto
from tests.objects.proxy import Proxy
from tests.objects.test_contract import BAD_KEYS, calls_with_key

OUTAGE_S = 3.0


def test_check_passes_on_a_good_store(moto_endpoint: str) -> None:
    store = s3_store(moto_endpoint)
    store.check()
    assert store.list("") == []  # the write probe leaves nothing


def test_check_names_a_missing_bucket(moto_endpoint: str) -> None:
    store = s3_store(moto_endpoint, bucket="no-such-bucket")
    with pytest.raises(BucketMissing, match="no-such-bucket.*LPFT_ARTIFACTS_URL"):
        store.check()


def test_check_names_wrong_credentials(tmp_path: Path) -> None:
    with running_moto(tmp_path / "moto.log", iam_checks=True) as endpoint:
        store = s3_store(endpoint)
        with pytest.raises(ObjectStoreAuthError, match="AWS_ACCESS_KEY_ID"):
            store.check()
        with pytest.raises(ObjectStoreAuthError):
            store.put_bytes("jobs/j-1/metrics.json", b"{}")


def test_check_names_an_unreachable_endpoint() -> None:
    store = s3_store(f"http://127.0.0.1:{free_port()}", retry_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(ObjectStoreUnavailable, match="AWS_ENDPOINT_URL.*LPFT_STORE_RETRY"):
        store.check()
    assert time.monotonic() - started < 30, "the retry budget was not kept"


def test_a_key_is_refused_before_any_request(tmp_path: Path) -> None:
    """Nothing listens at the endpoint: an operation that sent a request would fail with
    ObjectStoreUnavailable after 30 s; each fails at once with ValueError."""
    store = s3_store(f"http://127.0.0.1:{free_port()}", retry_seconds=30.0)
    started = time.monotonic()
    for bad in BAD_KEYS:
        for call in calls_with_key(store, bad, tmp_path):
            with pytest.raises(ValueError):
                call()
    assert time.monotonic() - started < 10


def reopen_after(proxy: Proxy, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, proxy.open)
    timer.start()
    return timer


def test_writes_during_an_outage_succeed_after_it(proxy: Proxy, tmp_path: Path) -> None:
    store = s3_store(proxy.url, retry_seconds=30.0)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(PART_BYTES + 4096))  # multipart
    store.put_bytes("jobs/j-1/before.json", b"{}")

    proxy.close()
    timer = reopen_after(proxy, OUTAGE_S)
    started = time.monotonic()
    store.put_bytes("jobs/j-1/metrics.json", b'{"epoch": 1}')
    store.put_file("jobs/j-1/model/weights.bin", big)
    waited = time.monotonic() - started
    timer.join()

    assert waited >= OUTAGE_S * 0.9, "the outage did not happen: the proxy stayed open"
    assert store.get_bytes("jobs/j-1/metrics.json") == b'{"epoch": 1}'
    assert store.stat("jobs/j-1/model/weights.bin").size == big.stat().st_size


def test_503_slow_down_is_retried(proxy: Proxy) -> None:
    store = s3_store(proxy.url, retry_seconds=30.0)
    proxy.slow_down()
    timer = threading.Timer(OUTAGE_S, proxy.slow_down, args=(False,))
    timer.start()
    started = time.monotonic()
    store.put_bytes("jobs/j-1/metrics.json", b'{"epoch": 1}')
    waited = time.monotonic() - started
    timer.join()
    assert waited >= OUTAGE_S * 0.9, "no SlowDown was answered"
    assert store.get_bytes("jobs/j-1/metrics.json") == b'{"epoch": 1}'


@pytest.mark.parametrize("outage", ["refused", "slow down"])
def test_an_outage_longer_than_the_budget_is_unavailable(proxy: Proxy, outage: str) -> None:
    store = s3_store(proxy.url, retry_seconds=1.0)
    store.put_bytes("jobs/j-1/before.json", b"{}")
    if outage == "refused":
        proxy.close()
    else:
        proxy.slow_down()
    try:
        started = time.monotonic()
        with pytest.raises(ObjectStoreUnavailable, match="LPFT_STORE_RETRY_SECONDS=1"):
            store.put_bytes("jobs/j-1/metrics.json", b"{}")
        with pytest.raises(ObjectStoreUnavailable):
            store.stat("jobs/j-1/before.json")
        assert time.monotonic() - started < 30, "the retry budget was not kept"
    finally:
        if outage == "refused":
            proxy.open()
        else:
            proxy.slow_down(False)
    assert store.get_bytes("jobs/j-1/before.json") == b"{}"


def test_a_read_cut_mid_stream_resumes_where_it_stopped(proxy: Proxy, moto_log: Path) -> None:
    data = os.urandom(48 * 1024 * 1024)
    store = s3_store(proxy.url, retry_seconds=30.0)
    store.put_bytes("jobs/j-1/model/weights.bin", data)

    chunks = store.stream("jobs/j-1/model/weights.bin")
    digest = hashlib.sha256(next(chunks))
    proxy.close()  # cuts the body being read
    timer = reopen_after(proxy, 1.0)
    for chunk in chunks:
        digest.update(chunk)
    timer.join()
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    resumed = [
        line
        for line in moto_log.read_text().splitlines()
        if f"{store.prefix}/jobs/j-1/model/weights.bin" in line and '" 206 ' in line
    ]
    assert resumed, "no ranged GET: the cut did not reach the reader"


def test_aws_profile_supplies_the_keys(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[lpft]\naws_access_key_id = profile-key\naws_secret_access_key = profile-secret\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    environ = {
        key: value
        for key, value in aws_environment(moto_endpoint).items()
        if key not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    store = S3ObjectStore(BUCKET, "profile", environ={**environ, "AWS_PROFILE": "lpft"})
    store.put_bytes("a.json", b"{}")
    assert store.get_bytes("a.json") == b"{}"
    store.delete_prefix("a.json")
