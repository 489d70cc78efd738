"""The fast API tier: the app in process under FastAPI's TestClient, no server, no Redis, no
worker. Its lifespan never runs, so the store, the queue and the model cache are replaced
through ``dependency_overrides`` by ``Untouchable``: a request these tests send must be
answered (refused, mostly) before it reaches any of them, and one that reaches them fails
the test by name. What needs the real store lives in tests/integration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from lpft_api import deps
from lpft_api.main import create_app
from lpft_api.settings import ApiSettings

KEY = "key-alice"


class Untouchable:
    """Stands for a dependency a request must not reach."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> object:
        raise AssertionError(
            f"the request reached the {self.name} ({attribute}) before it was refused"
        )


def untouched_client(settings: ApiSettings) -> TestClient:
    """Alice's client of the app with ``settings``, its store, queue and models untouchable."""
    app = create_app(settings)
    for dependency, name in (
        (deps.get_stores, "job store"),
        (deps.get_enqueuer, "queue"),
        (deps.get_models, "model cache"),
    ):
        app.dependency_overrides[dependency] = lambda name=name: Untouchable(name)
    # Not entered as a context manager: that would run the lifespan, which opens the store.
    return TestClient(app, headers={"Authorization": f"Bearer {KEY}"})


@pytest.fixture()
def client() -> Iterator[TestClient]:
    yield untouched_client(
        ApiSettings(api_keys=f"alice:{KEY}", max_eval_sets=2, max_request_bytes=64 * 1024)
    )
