"""A pool of model servers that run one model (cog, ComfyUI): who may take a run now, who is healthy.

A server takes at most `capacity` runs of ours at once. A run waits in the pool's queue
(first come, first served) until some healthy server has a free slot; the least busy one gets
it, so runs spread over the pool. A server is skipped while it is down: marked so by a health
check (`mark_down`, until `mark_up`), or by its breaker after `breaker_failures` failed runs in
a row (for `breaker_reset_s`, then one trial run; a success closes it again). A server still
setting up (`mark_starting`) takes nothing yet. When no server could take a run for any reason
but being busy or starting, a waiting run fails at once (transient), so the model's fallback
chain moves on instead of waiting for its timeout.

The pool knows nothing of the servers' protocols: the provider reports what it learns.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import msgspec

from gengate.domain.states import FailCode
from gengate.providers.base import Provider, ProviderFailure
from gengate.providers.fallback import FallbackProvider
from gengate.startup import redacted_url

log = logging.getLogger(__name__)

ServerStatus = Literal["ready", "busy", "starting", "down"]
SERVER_STATES: tuple[ServerStatus, ...] = ("ready", "busy", "starting", "down")


@dataclass(frozen=True, slots=True)
class ServerState:
    """One server as `/readyz` and `/metrics` show it. Fields: `url`, `state`, `busy` (our runs
    on it now), `capacity` (runs it may take at once), `reason` (why it is down, else None)."""

    url: str
    state: ServerStatus
    busy: int
    capacity: int
    reason: str | None


class _Server:
    """A server's bookkeeping; only the pool touches it."""

    def __init__(self, url: str, capacity: int) -> None:
        self.url = url
        self.capacity = capacity
        self.busy = 0
        self.down_reason: str | None = None  # from a health check
        self.starting = False
        self.full = False  # it said it was full although we thought it had room
        self.failures = 0  # failed runs in a row
        self.open_until = 0.0  # breaker: skipped until then (monotonic), then one trial run

    def breaker_open(self, now: float) -> bool:
        return self.open_until > now

    def takes(self, now: float) -> bool:
        if self.down_reason is not None or self.starting or self.full or self.breaker_open(now):
            return False
        half_open = self.open_until > 0.0
        return self.busy < (1 if half_open else self.capacity)

    def could_take(self, now: float) -> bool:
        """Not down: it may take runs once it has room or is set up."""
        return self.down_reason is None and not self.breaker_open(now)


class ServerSlot:
    """A run's place on one server. `url` is the server; `fail(reason)` reports that the run
    failed because of the server (the breaker counts it when the slot is freed; a run that ends
    without it counts as a success); `full()` that the server refused the run for want of room
    (it takes nothing more until one of our runs there ends, or `mark_up`)."""

    def __init__(self, pool: ServerPool, url: str) -> None:
        self._pool = pool
        self.url = url
        self.failed: str | None = None
        self.refused = False

    def fail(self, reason: str) -> None:
        self.failed = reason

    def full(self) -> None:
        self.refused = True
        self._pool._full(self.url)


class ServerPool:
    """Model servers of one provider: how many runs each may take now, which are healthy."""

    def __init__(
        self,
        provider: str,
        urls: Sequence[str],
        *,
        capacity: int = 1,
        breaker_failures: int = 3,
        breaker_reset_s: float = 30.0,
    ) -> None:
        if not urls:
            raise ValueError("a server pool needs at least one server URL")
        if len(set(urls)) != len(urls):
            raise ValueError("a server URL is listed twice")
        if capacity < 1 or breaker_failures < 1 or breaker_reset_s <= 0:
            raise ValueError("capacity and breaker_failures must be >= 1, breaker_reset_s > 0")
        self.provider = provider
        self._servers = {url: _Server(url, capacity) for url in urls}
        self._breaker_failures = breaker_failures
        self._breaker_reset_s = breaker_reset_s
        self._waiters: collections.deque[asyncio.Future[_Server]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def urls(self) -> list[str]:
        return list(self._servers)

    @contextlib.asynccontextmanager
    async def slot(self, cancel: asyncio.Event | None = None) -> AsyncIterator[ServerSlot]:
        """Wait for a slot (in turn; a CANCELED failure if `cancel` is set first), hold it for the body."""
        server = await self._acquire(cancel)
        slot = ServerSlot(self, server.url)
        try:
            yield slot
        finally:
            self._release(server, slot)

    def set_capacity(self, url: str, slots: int) -> None:
        """The server says how many runs it takes at once."""
        self._servers[url].capacity = max(1, slots)
        self._dispatch()

    def mark_down(self, url: str, reason: str) -> None:
        """A health check found the server unusable: skip it until `mark_up`."""
        server = self._servers[url]
        if server.down_reason is None:
            log.warning("%s: server %s is down: %s", self.provider, url, reason)
        server.down_reason = reason
        server.starting = False
        self._dispatch()

    def mark_starting(self, url: str) -> None:
        """The server is setting up: nothing goes to it yet, but runs wait for it."""
        server = self._servers[url]
        server.down_reason = None
        server.starting = True
        self._dispatch()

    def mark_up(self, url: str) -> None:
        """A health check found the server ready: it takes runs again. Its breaker is another
        matter: it closes only after a run there succeeds (a server may answer health checks
        and still fail every run)."""
        server = self._servers[url]
        if server.down_reason is not None:
            log.info("%s: server %s is up again", self.provider, url)
        server.down_reason = None
        server.starting = server.full = False
        self._dispatch()

    def snapshot(self) -> list[ServerState]:
        now = time.monotonic()
        states = []
        for server in self._servers.values():
            reason = server.down_reason
            if reason is None and server.breaker_open(now):
                reason = f"{server.failures} failed runs in a row"
            if reason is not None:
                state: ServerStatus = "down"
            elif server.starting:
                state = "starting"
            elif server.full or server.busy >= server.capacity:
                state = "busy"
            else:
                state = "ready"
            states.append(ServerState(server.url, state, server.busy, server.capacity, reason))
        return states

    def waiting(self) -> int:
        """Runs waiting for a slot now."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    # -- inside ---------------------------------------------------------------------------------

    async def _acquire(self, cancel: asyncio.Event | None) -> _Server:
        loop = asyncio.get_running_loop()
        if not self._waiters:
            server = self._pick(time.monotonic())
            if server is not None:
                server.busy += 1
                return server
        self._unavailable()
        waiter: asyncio.Future[_Server] = loop.create_future()
        self._waiters.append(waiter)
        self._dispatch()
        stop = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        got: _Server | None = None
        try:
            watched: set[asyncio.Future[Any]] = {waiter} if stop is None else {waiter, stop}
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                raise ProviderFailure(FailCode.CANCELED, "Task canceled.")
            got = waiter.result()
            return got
        finally:
            if stop is not None:
                stop.cancel()
            if got is None:
                if not waiter.done():
                    waiter.cancel()
                elif not waiter.cancelled() and waiter.exception() is None:
                    # A slot came to a run that stopped waiting: it goes to the next one.
                    waiter.result().busy -= 1
                    self._dispatch()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _pick(self, now: float) -> _Server | None:
        candidates = [server for server in self._servers.values() if server.takes(now)]
        if not candidates:
            return None
        return min(candidates, key=lambda server: server.busy / server.capacity)

    def _unavailable(self) -> None:
        """Raise when no server could take a run at all (every one down): waiting would not help."""
        now = time.monotonic()
        if not any(server.could_take(now) for server in self._servers.values()):
            reasons = "; ".join(f"{s.url}: {r}" for s in self.snapshot() for r in [s.reason] if r)
            raise ProviderFailure(
                FailCode.PROVIDER_ERROR,
                f"Upstream provider error: no server of {self.provider} is available ({reasons}).",
                transient=True,
            )

    def _dispatch(self) -> None:
        """Hand free slots to the waiting runs, oldest first; fail them all when every server is down."""
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        now = time.monotonic()
        while self._waiters:
            server = self._pick(now)
            if server is None:
                break
            server.busy += 1
            self._waiters.popleft().set_result(server)
            while self._waiters and self._waiters[0].done():
                self._waiters.popleft()
        if not self._waiters:
            return
        try:
            self._unavailable()
        except ProviderFailure as failure:
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(failure)
            return
        self._wake_at_reset(now)

    def _wake_at_reset(self, now: float) -> None:
        """While runs wait, look again when the next open breaker lets a trial run through."""
        reopen = [s.open_until for s in self._servers.values() if s.breaker_open(now)]
        if not reopen or self._timer is not None:
            return
        loop = asyncio.get_running_loop()

        def wake() -> None:
            self._timer = None
            self._dispatch()

        self._timer = loop.call_later(max(0.0, min(reopen) - now) + 0.001, wake)

    def _release(self, server: _Server, slot: ServerSlot) -> None:
        server.busy = max(0, server.busy - 1)
        failed = slot.failed
        if slot.refused:  # it never ran: says nothing of the server's health
            pass
        elif failed is None:
            server.full = False
            if server.failures or server.open_until:
                log.info("%s: server %s: its breaker closes", self.provider, server.url)
            server.failures = 0
            server.open_until = 0.0
        else:
            server.full = False
            server.failures += 1
            half_open = server.open_until > 0.0
            if half_open or server.failures >= self._breaker_failures:
                log.warning(
                    "%s: server %s: breaker opens after %d failed runs (%s)",
                    self.provider,
                    server.url,
                    server.failures,
                    failed,
                )
                server.open_until = time.monotonic() + self._breaker_reset_s
        self._dispatch()

    def _full(self, url: str) -> None:
        self._servers[url].full = True

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def pool_states(providers: Mapping[str, Provider]) -> dict[str, list[ServerState]]:
    """Every server pool the models use (a provider with a `pool`), by provider name: for
    `/readyz` and `/metrics`, so a password in a server's URL is masked."""
    found: dict[str, list[ServerState]] = {}
    for provider in providers.values():
        links = provider.links if isinstance(provider, FallbackProvider) else ()
        for link in links:
            pool = getattr(link.provider, "pool", None)
            if isinstance(pool, ServerPool):
                found[pool.provider] = [
                    dataclasses.replace(state, url=redacted_url(state.url)) for state in pool.snapshot()
                ]
    return dict(sorted(found.items()))


OptionsT = TypeVar("OptionsT", bound=msgspec.Struct)


def pool_options(options: Mapping[str, Any], kind: type[OptionsT]) -> OptionsT:
    """A pool kind's options (a struct with `urls`) from the provider's extra keys. Lax:
    `GENGATE_PROVIDERS__<NAME>__URLS` is a string of comma-separated URLs, and other options
    set in the environment are strings too. `ValueError` names a bad one."""
    raw = dict(options)
    if isinstance(raw.get("urls"), str):
        raw["urls"] = [url.strip() for url in raw["urls"].split(",") if url.strip()]
    try:
        parsed = msgspec.convert(raw, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
    urls: list[str] = getattr(parsed, "urls", [])
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"`urls`: {url!r} is not an http(s) URL")
    urls[:] = [url.rstrip("/") for url in urls]
    return parsed
