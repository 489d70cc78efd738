"""The per-tenant storage quota, checked before anything is written that would add to it."""

from __future__ import annotations

from lpft_contract.stores import Stores

from lpft_api.errors import QuotaExceeded


def check_room(stores: Stores, tenant: str, quota: int, adding: str, incoming: int = 0) -> None:
    """Refuse ``adding`` (an upload of ``incoming`` bytes; or, with ``incoming`` 0, files whose
    size is known only once written: a job's model, an archive) when the tenant's datasets
    and finished jobs would store more than ``quota`` bytes, or already store it all.

    Raises:
        QuotaExceeded: naming what the tenant stores, the quota and what to delete.
    """
    used = stores.quotas.stored_bytes(tenant)
    if used + incoming > quota or used >= quota:
        incoming_part = f" and {adding} {incoming}" if incoming else ""
        raise QuotaExceeded(
            f"your datasets and finished jobs store {used} bytes{incoming_part}; the quota is "
            f"{quota} bytes (LPFT_MAX_STORED_BYTES_PER_TENANT), and {adding} would add to "
            "them. Delete jobs or datasets you no longer need (DELETE /jobs/{id}, "
            "DELETE /datasets/{id})"
        )
