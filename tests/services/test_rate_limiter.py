"""The rate limiter on its own: the limit strings it takes, its moving window, and a shared
store that is down."""

from __future__ import annotations

import logging
import socket

import pytest

from gengate.domain.keys import ApiKey
from gengate.services.ratelimit import RateLimiter, parse_rate_limit, storage_uri


def key(rate_limit: str | None = None, key_id: str = "key_1") -> ApiKey:
    return ApiKey(id=key_id, name="k", key_hash="h", prefix="gg_", created_at=0, rate_limit=rate_limit)


@pytest.mark.parametrize(
    ("text", "amount", "seconds"),
    [("60/minute", 60, 60), ("10 per second", 10, 1), ("100 per 2 hours", 100, 7200), ("5/day", 5, 86400)],
)
def test_limits_it_takes(text: str, amount: int, seconds: int) -> None:
    item = parse_rate_limit(text)
    assert (item.amount, item.get_expiry()) == (amount, seconds)


@pytest.mark.parametrize(
    "text", ["", "lots", "0/minute", "1/minute;2/hour", "1/sec", "-1/minute", "60/Minute", "9999999999/day"]
)
def test_limits_it_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid rate limit"):
        parse_rate_limit(text)


def test_storage_uris() -> None:
    assert storage_uri("memory://") == ("async+memory://", {})
    uri, options = storage_uri("redis://127.0.0.1:6379/0")
    assert uri == "async+redis://127.0.0.1:6379/0"
    assert options["implementation"] == "redispy"


async def test_a_moving_window_per_key() -> None:
    limiter = RateLimiter("memory://", default="2/minute")
    states = [await limiter.hit(key()) for _ in range(3)]
    assert [s.allowed for s in states if s] == [True, True, False]
    assert [s.remaining for s in states if s] == [1, 0, 0]
    assert states[2] is not None
    assert 1 <= states[2].retry_after() <= 60
    assert (await limiter.hit(key(key_id="key_2"))) is not None
    own = await limiter.hit(key("10/minute", key_id="key_3"))
    assert own is not None
    assert own.limit == 10
    assert await RateLimiter("memory://").hit(key()) is None  # no limit at all: nothing counted


async def test_a_shared_store_that_is_down_lets_requests_pass(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    limiter = RateLimiter(f"redis://127.0.0.1:{port}", default="1/minute")
    with caplog.at_level(logging.WARNING):
        assert await limiter.hit(key()) is None
        assert await limiter.hit(key()) is None
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1  # said once, not per request
