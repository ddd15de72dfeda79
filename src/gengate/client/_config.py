"""Where a client finds its gateway and key when the caller names neither: the environment."""

from __future__ import annotations

import os
from typing import Final

ENV_API_KEY: Final = "GENGATE_API_KEY"
ENV_BASE_URL: Final = "GENGATE_BASE_URL"
#: Where `gengate serve` listens by default.
DEFAULT_BASE_URL: Final = "http://127.0.0.1:8000"


def resolve(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    """The base URL and key to use: the arguments, else `GENGATE_BASE_URL` / `GENGATE_API_KEY`.

    A key is required (`ValueError` without one); the URL defaults to a local `gengate serve`.
    """
    url = base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    key = api_key if api_key is not None else os.environ.get(ENV_API_KEY, "")
    if not key:
        raise ValueError(f"api_key is empty: pass api_key=... or set {ENV_API_KEY}")
    return url, key
