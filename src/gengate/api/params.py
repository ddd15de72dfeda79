"""Query parameters shared by several routes."""

from __future__ import annotations

import math

from gengate.domain.errors import BadRequest

#: The longest a long-poll may hold a request.
MAX_WAIT_S = 60.0


def wait_seconds(raw: str | None) -> float:
    """`wait=N`: seconds to long-poll, capped at `MAX_WAIT_S`; absent means do not wait."""
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest("`wait` must be a number of seconds.") from None
    if not math.isfinite(value) or value < 0:
        raise BadRequest("`wait` must be a number of seconds, 0 or more.")
    return min(value, MAX_WAIT_S)
