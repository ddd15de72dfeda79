"""One write per response instead of two.

uvicorn writes a response's head and its body with a `transport.write` each, and uvloop sends
each at once: two `send` system calls for every status read. In a virtual machine a
system call costs about what the rest of the read does; in a profile of the status path the
two writes were a sixth of the server's time. This transport holds a write back until the
next one, or until the event loop turns, and sends what it holds in one call: a head and a
body written one after the other (as every plain response is) leave in one segment. Anything
that ends or inspects the connection's output (close, write_eof, the buffer size) flushes
first, so bytes never pass one another nor stay behind.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescingTransport:
    """Wraps one connection's transport; everything but writing goes straight through."""

    __slots__ = ("_flush_armed", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._flush_armed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            if not self._flush_armed:
                self._flush_armed = True
                self._loop.call_soon(self._flush_soon)
            return
        self._held = None
        self._transport.write(held + data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def _flush_soon(self) -> None:
        self._flush_armed = False
        self.flush()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        self.flush()
        return self._transport.get_write_buffer_size()

    @property
    def wrapped(self) -> asyncio.Transport:
        return self._transport

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        # pause/resume_reading, get_extra_info, can_write_eof, set_protocol, ...
        return getattr(self._transport, name)
