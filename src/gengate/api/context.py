"""What the routes are given: the services and the few settings they read."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.types import Scope

from gengate.api.disk_space import DiskSpace
from gengate.api.hotpath import header_value
from gengate.api.trace import RESPONSE_HEADERS_KEY
from gengate.dialects.links import SignedLinks
from gengate.domain.catalogue import Catalogue
from gengate.domain.errors import TooManyRequests
from gengate.domain.keys import ApiKey
from gengate.files.base import FileStore
from gengate.metrics import Metrics
from gengate.observability.context import note_key
from gengate.observability.requests import RequestObserver
from gengate.providers.base import Provider
from gengate.providers.relay.hooks import UpstreamHooks
from gengate.services.keys import KeyService
from gengate.services.ratelimit import RateLimiter, RateState
from gengate.services.tasks import TaskService
from gengate.store.write_health import WriteHealth


@dataclass(frozen=True, slots=True)
class ApiContext:
    keys: KeyService
    tasks: TaskService
    catalogue: Catalogue
    files: FileStore
    #: The signed URLs of finished tasks, as the dialects render them (shared with the sender).
    links: SignedLinks
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
    #: One line per HTTP request (GENGATE_ACCESS_LOG), and who else sees each request (metrics, tracing).
    access_log: bool = True
    request_observers: tuple[RequestObserver, ...] = ()

    async def authenticate(self, scope: Scope, authorization: str | None = None) -> ApiKey:
        """The key of a request's `Authorization` header, counted against its rate limit.
        A door that reads the header its own way (fal's `Key <key>`) passes it as `authorization`."""
        if authorization is None:
            authorization = header_value(scope, b"authorization")
        key = await self.keys.authenticate(authorization)
        note_key(key.id)
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


def rate_headers(state: RateState) -> list[tuple[bytes, bytes]]:
    """`X-RateLimit-Limit` (requests per window), `-Remaining` (left in it now) and `-Reset`
    (Unix seconds when the oldest request in the window leaves it)."""
    return [
        (b"x-ratelimit-limit", b"%d" % state.limit),
        (b"x-ratelimit-remaining", b"%d" % state.remaining),
        (b"x-ratelimit-reset", b"%d" % math.ceil(state.reset)),
    ]
