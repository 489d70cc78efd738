"""Whether the artifact store is usable: at startup, where bad credentials or a missing bucket
stop the process with a message that says which setting to fix (rather than failing its
first job), and for readiness, which must answer within a probe's timeout.

Both ask through a store with a short retry budget (``PROBE_RETRY_S``): the store the
process works with retries for ``LPFT_STORE_RETRY_SECONDS``, far longer than a probe waits.
"""

from __future__ import annotations

import logging

from lpft_contract.objects import (
    BucketMissing,
    ObjectStore,
    ObjectStoreAuthError,
    ObjectStoreError,
    ObjectStoreUnavailable,
)
from lpft_contract.settings import SharedSettings
from lpft_contract.stores import artifact_store, artifacts_location

#: How long a startup or readiness check retries an unreachable store.
PROBE_RETRY_S = 2.0
logger = logging.getLogger("lpft.store")


class ArtifactStoreMisconfigured(RuntimeError):
    """The store refuses this process's credentials, or its bucket does not exist."""


def probe_store(settings: SharedSettings) -> ObjectStore:
    """The settings' artifact store, with the probes' short retry budget."""
    return artifact_store(artifacts_location(settings), PROBE_RETRY_S)


def check_at_startup(settings: SharedSettings) -> None:
    """Raise ArtifactStoreMisconfigured for what only the operator can fix; an unreachable
    store is logged and left to readiness (it may come back)."""
    store = probe_store(settings)
    try:
        store.check(write=True)
    except (ObjectStoreAuthError, BucketMissing) as misconfigured:
        raise ArtifactStoreMisconfigured(str(misconfigured)) from misconfigured
    except ObjectStoreUnavailable as unreachable:
        logger.warning(
            "the artifact store %s is unreachable at startup: %s", store.url, unreachable
        )


def store_readiness(settings: SharedSettings) -> str:
    """``ok``, or in a word or two what is wrong with the store (details go to the log)."""
    store = probe_store(settings)
    try:
        store.check(write=True)
    except ObjectStoreAuthError:
        verdict = "credentials refused"
    except BucketMissing:
        verdict = "bucket missing"
    except ObjectStoreUnavailable:
        verdict = "unavailable"
    except ObjectStoreError:
        verdict = "failing"
    else:
        return "ok"
    logger.exception("readiness: the artifact store %s is %s", store.url, verdict)
    return verdict
