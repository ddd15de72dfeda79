"""Watching a pool of cog servers: `GET /health-check` of each, every few seconds, into the pool.

READY (or BUSY) puts a server back in the pool, STARTING keeps runs waiting for it, and
SETUP_FAILED, DEFUNCT or no answer takes it out, with the reason shown in `/readyz` and
`/metrics`. The first server found usable also gives the model's input schema. The watch
starts with the first run (or the first input checked) and ends with the provider.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Mapping

from gengate.background import stop
from gengate.providers.cog.client import CogClient, Health
from gengate.providers.cog.schema import CogSchema
from gengate.providers.server_pool import ServerPool

log = logging.getLogger(__name__)


class HealthWatch:
    """The health loop of one provider's pool; `started()` waits for its first round."""

    def __init__(
        self, pool: ServerPool, clients: Mapping[str, CogClient], schema: CogSchema, interval_s: float
    ) -> None:
        self.pool = pool
        self.clients = clients
        self.schema = schema
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._first_round: asyncio.Event | None = None

    def start(self) -> None:
        """Begin watching, once (needs a running event loop)."""
        if self._task is None:
            self._first_round = asyncio.Event()
            # A context of its own: the run that happens to start it lends it no trace or task id.
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name=f"cog health {self.pool.provider}", context=contextvars.Context()
            )

    async def started(self) -> None:
        """Start if need be, and wait until each server has been checked once."""
        self.start()
        assert self._first_round is not None
        await self._first_round.wait()

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(url) for url in self.clients))

    async def _loop(self) -> None:
        assert self._first_round is not None
        while True:
            try:
                await self.check_all()
            except Exception:  # pragma: no cover - a bug here must not end the watch
                log.exception("%s: health round failed", self.pool.provider)
            self._first_round.set()
            await asyncio.sleep(self.interval_s)

    async def _check(self, url: str) -> None:
        report = await self.clients[url].health()
        if report.status in (Health.READY, Health.BUSY):
            if report.status == Health.READY or _marked(self.pool, url):
                self.pool.mark_up(url)
            if not self.schema.known:
                await self._learn_schema(url)
        elif report.status == Health.STARTING:
            self.pool.mark_starting(url)
        else:
            reason = report.status.value + (f": {report.detail}" if report.detail else "")
            self.pool.mark_down(url, reason)

    async def _learn_schema(self, url: str) -> None:
        try:
            openapi = await self.clients[url].openapi()
        except Exception as exc:
            log.info("%s: no schema from %s (%s)", self.pool.provider, url, exc)
            return
        if openapi is not None and self.schema.learn(openapi):
            log.info("%s: input schema learned from %s", self.pool.provider, url)

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None


def _marked(pool: ServerPool, url: str) -> bool:
    """Whether the pool holds `url` down or starting: a BUSY answer says it is back."""
    return any(state.url == url and state.state in ("down", "starting") for state in pool.snapshot())
