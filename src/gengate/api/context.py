"""What the routes are given: the services and the few settings they read."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson
from starlette.types import Scope

from gengate.api.disk_space import DiskSpace
from gengate.api.hotpath import header_value
from gengate.api.trace import RESPONSE_HEADERS_KEY
from gengate.domain.catalogue import Catalogue
from gengate.domain.errors import TooManyRequests
from gengate.domain.keys import ApiKey
from gengate.domain.task import Task
from gengate.files.base import FileStore
from gengate.metrics import Metrics
from gengate.providers.base import Provider
from gengate.providers.relay_hooks import UpstreamHooks
from gengate.services.keys import KeyService
from gengate.services.ratelimit import RateLimiter, RateState
from gengate.services.tasks import TaskService
from gengate.store.write_health import WriteHealth

RESULT_JSON_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class ApiContext:
    keys: KeyService
    tasks: TaskService
    catalogue: Catalogue
    files: FileStore
    result_ttl_ms: int
    max_body_bytes: int
    sync_wait_s: float
    metrics: Metrics
    #: Per-key request rates; None: no limits at all.
    rate_limiter: RateLimiter | None = None
    #: The providers by key, for `/readyz` to read their circuits.
    providers: Mapping[str, Provider] = field(default_factory=dict)
    #: Where upstream callbacks wake the relays of this process; None: no such route.
    upstream_hooks: UpstreamHooks | None = None
    #: For `/readyz`: free space of the folders written to, and whether store writes succeed.
    disk_space: DiskSpace | None = None
    write_health: WriteHealth | None = None
    #: How long a web console sign-in lasts, and failed sign-ins allowed per client address.
    console_session_ttl_s: float = 12 * 3600
    console_signin_limit: str = "10/minute"
    #: resultJson of recently read finished tasks: a finished task is immutable, and
    #: clients poll the same ones over and over.
    _result_json: dict[tuple[str, int], str] = field(default_factory=dict)

    async def authenticate(self, scope: Scope) -> ApiKey:
        """The key of a request's `Authorization` header, counted against its rate limit."""
        key = await self.keys.authenticate(header_value(scope, b"authorization"))
        limiter = self.rate_limiter
        if limiter is not None and (key.rate_limit or limiter.default is not None):
            await self.limit_rate(key, scope)
        return key

    async def limit_rate(self, key: ApiKey, scope: Scope) -> None:
        """Count a request of `key`: `too_many_requests` past its limit; within it, the
        `X-RateLimit-*` headers go on the response (the trace middleware adds them)."""
        if self.rate_limiter is None:
            return
        state = await self.rate_limiter.hit(key)
        if state is None:
            return
        if not state.allowed:
            headers = {name.decode(): value.decode() for name, value in rate_headers(state)}
            headers["Retry-After"] = str(state.retry_after())
            raise TooManyRequests(
                f"Rate limit of {state.limit} requests exceeded; retry after {headers['Retry-After']} s.",
                headers=headers,
            )
        scope[RESPONSE_HEADERS_KEY] = rate_headers(state)

    def result_urls(self, task: Task) -> list[str]:
        """Signed URLs of a finished task; they all expire `result_ttl` after completion."""
        if not task.files or task.complete_time is None:
            return []
        expires = task.complete_time + self.result_ttl_ms
        return [self.files.url(task.id, file, expires) for file in task.files]

    def result_json(self, task: Task) -> str:
        """The `resultJson` string of a successful task: `{"resultUrls": [...]}`."""
        cache_key = (task.id, task.complete_time or 0)
        cached = self._result_json.get(cache_key)
        if cached is None:
            if len(self._result_json) >= RESULT_JSON_CACHE_SIZE:
                self._result_json.clear()
            cached = orjson.dumps({"resultUrls": self.result_urls(task)}).decode()
            self._result_json[cache_key] = cached
        return cached


def rate_headers(state: RateState) -> list[tuple[bytes, bytes]]:
    """`X-RateLimit-Limit` (requests per window), `-Remaining` (left in it now) and `-Reset`
    (Unix seconds when the oldest request in the window leaves it)."""
    return [
        (b"x-ratelimit-limit", b"%d" % state.limit),
        (b"x-ratelimit-remaining", b"%d" % state.remaining),
        (b"x-ratelimit-reset", b"%d" % math.ceil(state.reset)),
    ]
