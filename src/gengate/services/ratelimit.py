"""Per-key request rate limits: a moving window per key, kept by the `limits` library.

The windows live in `memory://` (this process: the embedded setup) or in Redis
(`redis://host:port`), which several API processes share so that a key's limit holds over
all of them. A key's own `rate_limit` wins over the server's default; with neither, a request
costs nothing here. When the shared store cannot be reached, requests pass (and a warning is
logged): a rate limiter that is down should not take the whole API down with it.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time

import msgspec
from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from gengate.domain.keys import ApiKey

log = logging.getLogger(__name__)

#: Keys in a shared store start with this, apart from anything else kept there.
KEY_PREFIX = "gengate"
#: At most one warning this often while the shared store is unreachable.
WARN_EVERY_S = 30.0


class RateState(msgspec.Struct, frozen=True):
    """One request's standing: `allowed`, the window's `limit`, the `remaining` requests in
    it, and `reset` (Unix seconds) when its oldest request leaves it."""

    allowed: bool
    limit: int
    remaining: int
    reset: float

    def retry_after(self, now: float | None = None) -> int:
        """Whole seconds until a refused request may be sent again; at least 1."""
        return max(1, math.ceil(self.reset - (time.time() if now is None else now)))


#: One limit: a count (1 or more), `/` or `per`, an optional multiple and a unit, lower case.
#: Stricter than `limits.parse` (which also takes several limits, or a count of 0), and plain
#: enough to be the JSON Schema pattern of the admin API's `rate_limit`.
RATE_LIMIT_PATTERN = r"^[1-9][0-9]{0,8} ?(/|per) ?([1-9][0-9]{0,5} ?)?(second|minute|hour|day|month|year)s?$"
_RATE_LIMIT = re.compile(RATE_LIMIT_PATTERN)


@functools.lru_cache(maxsize=1024)
def parse_rate_limit(text: str) -> RateLimitItem:
    """`60/minute`, `10 per second`, `1000 per 2 hours` ...; ValueError for anything else."""
    if not _RATE_LIMIT.match(text):
        raise ValueError(f"invalid rate limit {text!r}: write it like `60/minute` or `10 per second`")
    return parse(text)


def storage_uri(uri: str) -> tuple[str, dict[str, str]]:
    """Our setting to the `limits` async storage URI and its options: `memory://` and
    `redis://` (or `rediss://`) name the async variants; Redis goes through redis-py."""
    if not uri.startswith("async+"):
        uri = "async+" + uri
    options = {"implementation": "redispy", "key_prefix": KEY_PREFIX} if "+redis" in uri else {}
    return uri, options


class RateLimiter:
    def __init__(self, storage: str = "memory://", default: str | None = None) -> None:
        uri, options = storage_uri(storage)
        self._storage = storage_from_string(uri, wrap_exceptions=True, **options)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self.default = parse_rate_limit(default) if default else None
        self._warned_at = -math.inf

    def limit_of(self, key: ApiKey) -> RateLimitItem | None:
        if key.rate_limit:
            return parse_rate_limit(key.rate_limit)
        return self.default

    async def hit(self, key: ApiKey) -> RateState | None:
        """Count one request of `key`; None when no limit applies (or the store is down)."""
        item = self.limit_of(key)
        if item is None:
            return None
        return await self.hit_item(item, "key", key.id)

    async def full(self, item: RateLimitItem, *identifiers: str) -> bool:
        """Whether the window of `item` for `identifiers` is used up, counting nothing."""
        try:
            return not await self._limiter.test(item, *identifiers)
        except StorageError:
            return False

    async def hit_item(self, item: RateLimitItem, *identifiers: str) -> RateState | None:
        """Count one event against `item` for `identifiers` (say, a client address's failed
        console sign-ins) in the same windows as the keys; None when the store is down."""
        try:
            allowed = await self._limiter.hit(item, *identifiers)
            stats = await self._limiter.get_window_stats(item, *identifiers)
        except StorageError as exc:
            now = time.monotonic()
            if now - self._warned_at > WARN_EVERY_S:
                self._warned_at = now
                log.warning("rate-limit store unreachable, requests pass unlimited: %s", exc)
            return None
        return RateState(allowed, item.amount, stats.remaining, stats.reset_time)
