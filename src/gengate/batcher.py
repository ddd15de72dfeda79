"""Group commit: calls that arrive while a batch is on its way go together as the next batch
(for the PostgreSQL store, one statement, so one transaction and one WAL flush; for the local
file store, one trip to a thread).

Nothing waits on a timer: an idle batcher sends a lone call at once, and under load the batch
grows to whatever arrived during the last round trip (as the SQLite writer does with its
commits). `limit` bounds one statement.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from gengate.background import spawn

In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    def __init__(self, send: Callable[[Sequence[In]], Awaitable[Sequence[Out]]], limit: int = 256) -> None:
        #: Takes a batch, returns one result per item, in order.
        self._send = send
        self._limit = limit
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._running: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._running is None or self._running.done():
            self._running = spawn(self._drain(), "a batch of store calls")
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
            try:
                results = await self._send([item for item, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running
