"""The callback sender's keep-alive pool: connections per receiver, bounded in all and per key.

A key is what makes two connections interchangeable: scheme, checked address, port and TLS name.
An idle connection is reused last-in first-out (the warmest; the coldest ones age out), and closed
after `IDLE_S` by one sweep timer for the whole pool, not a timer per connection. Open connections
(idle ones included) are at most `total` in all and `per_key` per key: a request beyond waits for
a slot, first come first served, and an idle connection of another key gives its slot up. A slot
is a count, given back exactly once however the request ends (an error, a timeout, a cancel).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Final, TypeAlias

from gengate.net.guard import CheckedTarget
from gengate.webhooks.http1 import ClientConnection

#: A connection idle this long is closed (receivers commonly close theirs after 5 s to 2 min).
IDLE_S = 30.0
#: The sweep runs at most this often, however many connections age out one by one.
SWEEP_EVERY_S = 1.0


Connect: TypeAlias = Callable[[Hashable, CheckedTarget], Awaitable[ClientConnection]]


class _Slot:
    """A slot counted for a connection yet to be opened (handed to a waiter)."""


_SLOT: Final = _Slot()
_Grant: TypeAlias = ClientConnection | _Slot
_Waiter: TypeAlias = tuple[Hashable, bool, "asyncio.Future[_Grant]"]


class ClosedPool(ConnectionError):
    """The transport was closed: no more requests."""


class Pool:
    """`acquire` a connection for a key (an idle one, or a new one within the bounds), `release`
    it once, saying whether it can carry another request; `close` closes them all."""

    def __init__(self, connect: Connect, total: int, per_key: int) -> None:
        self._connect = connect
        self._total = max(1, total)
        self._per_key = max(1, per_key)
        self._idle_s = IDLE_S
        self._loop = asyncio.get_running_loop()
        #: Every connection open (idle or carrying a request), for `close`.
        self._conns: set[ClientConnection] = set()
        #: Idle connections per key, oldest first (a dict: `popitem` takes the newest).
        self._idle: dict[Hashable, dict[ClientConnection, None]] = {}
        #: Every idle connection, oldest first: the sweep's and the eviction's order.
        self._idle_all: dict[ClientConnection, None] = {}
        #: Slots taken per key, and in all: connections open or being opened.
        self._open: dict[Hashable, int] = {}
        self._open_total = 0
        self._waiters: deque[_Waiter] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    def idle(self, key: Hashable) -> ClientConnection | None:
        """An idle connection of `key` when no request waits: `acquire`'s usual case, without
        its coroutine."""
        return None if self._waiters or self._closed else self._reuse(key)

    async def acquire(self, key: Hashable, target: CheckedTarget, *, fresh: bool = False) -> ClientConnection:
        """A connection for `key`: an idle one unless `fresh`, else one opened to `target`."""
        if self._closed:
            raise ClosedPool("the transport is closed")
        grant = None if self._waiters else self._take(key, fresh)
        if grant is None:
            grant = await self._wait(key, fresh)
        if not isinstance(grant, _Slot):
            return grant
        try:
            conn = await self._connect(key, target)
        except BaseException:
            self._free(key)
            self._wake()
            raise
        if self._closed:
            conn.abort()
            self._free(key)
            raise ClosedPool("the transport is closed")
        self._conns.add(conn)
        return conn

    def release(self, conn: ClientConnection, reuse: bool) -> None:
        """Back to the idle ones (`reuse` and still usable), or closed and its slot freed."""
        if reuse and not self._closed and conn.usable:
            conn.idle_since = self._loop.time()
            conn.on_idle_lost = self._idle_lost
            idle = self._idle.get(conn.key)
            if idle is None:
                idle = self._idle[conn.key] = {}
            idle[conn] = None
            self._idle_all[conn] = None
            if self._sweeper is None:
                self._sweeper = self._loop.call_later(self._idle_s, self._sweep)
        else:
            self._discard(conn)
        if self._waiters:
            self._wake()

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        busy = self._conns.difference(self._idle_all)
        for conn in list(self._idle_all):
            self._unidle(conn)
            conn.close()
        for conn in busy:
            conn.abort()  # carrying a request: its owner gives the slot back on release
        self._conns.clear()
        while self._waiters:
            _key, _fresh, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ClosedPool("the transport is closed"))
        await asyncio.sleep(0)  # the transports' closing callbacks run

    # -- slots ---------------------------------------------------------------------------------
    def _take(self, key: Hashable, fresh: bool) -> _Grant | None:
        """An idle connection of `key`, or a slot counted for a new one, or None: wait."""
        if not fresh and (conn := self._reuse(key)) is not None:
            return conn
        idle = self._idle.get(key)
        opened = self._open.get(key, 0)
        if opened >= self._per_key:
            if not idle:
                return None
            self._discard(self._unidle(next(iter(idle))))  # fresh: the oldest idle one makes way
        elif self._open_total >= self._total:
            if not self._idle_all:
                return None
            self._discard(self._unidle(next(iter(self._idle_all))))
        self._open[key] = self._open.get(key, 0) + 1
        self._open_total += 1
        return _SLOT

    def _reuse(self, key: Hashable) -> ClientConnection | None:
        """The newest usable idle connection of `key`; the unusable ones met are closed."""
        idle = self._idle.get(key)
        while idle:
            conn = self._unidle(next(reversed(idle)))
            if conn.usable:
                conn.reused = True
                return conn
            self._discard(conn)
        return None

    async def _wait(self, key: Hashable, fresh: bool) -> _Grant:
        waiter: asyncio.Future[_Grant] = self._loop.create_future()
        entry = (key, fresh, waiter)
        self._waiters.append(entry)
        self._wake()
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back(key, waiter.result())  # granted, then cancelled before it ran
            elif entry in self._waiters:
                self._waiters.remove(entry)
            raise

    def _wake(self) -> None:
        """Grant what can be granted to the waiters, in their order."""
        for entry in list(self._waiters):
            key, fresh, waiter = entry
            if waiter.done():
                self._waiters.remove(entry)
                continue
            grant = self._take(key, fresh)
            if grant is not None:
                self._waiters.remove(entry)
                waiter.set_result(grant)

    def _give_back(self, key: Hashable, grant: _Grant) -> None:
        if not isinstance(grant, _Slot):
            self.release(grant, reuse=True)
        else:
            self._free(key)
            self._wake()

    def _free(self, key: Hashable) -> None:
        self._open_total -= 1
        left = self._open[key] - 1
        if left:
            self._open[key] = left
        else:
            del self._open[key]

    # -- idle connections ----------------------------------------------------------------------
    def _unidle(self, conn: ClientConnection) -> ClientConnection:
        conn.on_idle_lost = None
        idle = self._idle[conn.key]
        del idle[conn]
        if not idle:
            del self._idle[conn.key]
        del self._idle_all[conn]
        return conn

    def _discard(self, conn: ClientConnection) -> None:
        """Close a connection that is no longer idle, and free its slot."""
        conn.abort()
        self._conns.discard(conn)
        self._free(conn.key)

    def _idle_lost(self, conn: ClientConnection) -> None:
        """The receiver closed an idle connection: its slot is free."""
        if conn in self._idle_all:
            self._discard(self._unidle(conn))
            self._wake()

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._loop.time()
        while self._idle_all:
            oldest = next(iter(self._idle_all))
            if now - oldest.idle_since < self._idle_s:
                when = max(oldest.idle_since + self._idle_s, now + SWEEP_EVERY_S)
                self._sweeper = self._loop.call_at(when, self._sweep)
                break
            self._unidle(oldest)
            oldest.close()
            self._conns.discard(oldest)
            self._free(oldest.key)
        self._wake()
