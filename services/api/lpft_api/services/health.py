"""What readiness means: the job store answers and the artifact volume takes writes."""

from __future__ import annotations

import logging
import uuid

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
    probe = settings.artifacts_dir / f".ready-{uuid.uuid4().hex}"
    try:
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
        checks["artifacts"] = "ok"
    except OSError:
        logger.exception("readiness: artifact volume not writable")
        checks["artifacts"] = "not writable"
    return checks
