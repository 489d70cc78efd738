"""``python -m lpft_api``: serve the API on ``LPFT_API_PORT`` (default 8000)."""

from __future__ import annotations

import uvicorn
from lpft_contract.settings import get_settings

if __name__ == "__main__":
    uvicorn.run(
        "lpft_api.main:create_app", factory=True, host="0.0.0.0", port=get_settings().api_port
    )
