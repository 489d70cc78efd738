"""What readiness means: the job store answers and the artifact store takes writes."""

from __future__ import annotations

import logging

from lpft_contract.store_checks import store_readiness
from lpft_contract.stores import Stores

from lpft_api.settings import ApiSettings

logger = logging.getLogger("lpft.api")


def readiness(stores: Stores, settings: ApiSettings) -> dict[str, str]:
    """``ok`` or what is wrong, per dependency (``redis``, ``artifacts``); the details of a
    failure go to the log, which is the operator's, not to the caller."""
    checks = {}
    try:
        stores.redis.ping()
        checks["redis"] = "ok"
    except Exception:  # noqa: BLE001 - any failure means not ready
        logger.exception("readiness: Redis unreachable")
        checks["redis"] = "unreachable"
    checks["artifacts"] = store_readiness(settings)
    return checks
