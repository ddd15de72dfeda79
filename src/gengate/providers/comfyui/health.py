"""Which ComfyUI servers answer: a server that does not is skipped until it does again.

ComfyUI has no health route of its own; `GET /prompt` (the queue's length) is the cheapest
answer it gives. A run that finds its server unreachable marks it down at once (and tries
another); a run that fails for want of an answer has its server asked at once; while any server
is down, each is asked every `every_s`, and one that answers is marked up. The pool keeps the
state, so `/readyz` and `/metrics` show it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from gengate.background import spawn, stop
from gengate.providers.base import ProviderFailure
from gengate.providers.comfyui.client import ComfyServer
from gengate.providers.server_pool import ServerPool

log = logging.getLogger(__name__)


class Unreachable(Exception):
    """The server did not answer before anything of the run reached it: another may take the run."""

    def __init__(self, failure: ProviderFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class HealthWatch:
    """Marks the pool's unreachable servers down, and up again once they answer."""

    def __init__(self, pool: ServerPool, servers: Mapping[str, ComfyServer], every_s: float) -> None:
        self.pool = pool
        self.servers = servers
        self.every_s = every_s
        self.down: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def mark_down(self, url: str, reason: str) -> None:
        self.down.add(url)
        self.pool.mark_down(url, reason)
        if self._task is None or self._task.done():
            self._task = spawn(self._watch(), f"health checks of {self.pool.provider}'s ComfyUI servers")

    async def check(self, url: str) -> None:
        """Ask one server; mark it up if it answers, down if it does not."""
        try:
            await self.servers[url].json("GET", "/prompt")
        except ProviderFailure as failure:
            self.mark_down(url, failure.message.removeprefix("Upstream provider error: "))
        else:
            if url in self.down:
                self.down.discard(url)
                self.pool.mark_up(url)

    async def _watch(self) -> None:
        while self.down:
            await asyncio.sleep(self.every_s)
            for url in list(self.down):
                await self.check(url)

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None
