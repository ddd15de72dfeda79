"""A small HTTP/1.1 server on 127.0.0.1 (`asyncio.start_server`), for the tests' receivers and
upstreams: it accepts connections and keeps each one's handler task, so closing ends them all
quietly; a subclass answers one request at a time in `_one`, returning whether to keep the
connection open."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass(kw_only=True)
class LoopbackServer:
    """The connection loop; subclasses are dataclasses too (these fields are keyword-only, so a
    subclass may add fields without defaults)."""

    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    async def listen(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def shut(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def _connected(self) -> None:
        """Called for each new connection."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connected()
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client hung up, often in the middle of a body it would not read
        except asyncio.CancelledError:
            pass  # closed by `shut()`: end quietly rather than as a cancelled connection callback
        finally:
            self._handlers.discard(handler)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        raise NotImplementedError
