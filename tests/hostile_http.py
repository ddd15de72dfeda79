"""Loopback HTTP servers that answer with bodies no client should read whole.

Shared by the webhook, relay and end-to-end tests of bounded reads. A `HostileServer` is a
small HTTP/1.1 server on 127.0.0.1 (`asyncio.start_server`), answering each request with the
`Reply` its route maps to: a gzip bomb (about 1 MB on the wire that inflates to 1 GiB), or a
plain body of any size sent chunked without a `Content-Length`, generated as it is written.
It runs on the test's own event loop (`async with server`), or on a loop of its own in a
thread for tests that are not async (`with server.in_thread()`).

The bomb is built once per test session in a fraction of a second: a deflate stream of one
repeated byte, flushed after every MiB, repeats the same bytes for every MiB after the first,
so one MiB is compressed and the repeating block copied; only the CRC runs over the whole GiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Self

from loopback_http import LoopbackServer

MIB = 1 << 20
GIB = 1 << 30
WRITE_SLICE = 1 << 16
#: The byte a bomb inflates to: readable, so an excerpt of it can be compared.
FILL = b"x"


@functools.cache
def gzip_bomb(size: int = GIB, fill: bytes = FILL) -> bytes:
    """A gzip member that inflates to `size` bytes of `fill` (a multiple of 1 MiB)."""
    assert size % MIB == 0
    assert size >= 3 * MIB
    block = fill * MIB
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
    repeat = deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
    assert deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH) == repeat
    last = deflate.flush()
    crc = 0
    for _ in range(size // MIB):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return header + first + repeat * (size // MIB - 1) + last + trailer


@dataclass(frozen=True)
class Reply:
    """One answer: `body` sent `repeat` times, with a `Content-Length`, or chunked (one chunk per
    repetition, no `Content-Length`)."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    repeat: int = 1
    chunked: bool = False

    @property
    def size(self) -> int:
        return len(self.body) * self.repeat


def bomb_reply(status: int = 200, content_type: str = "application/json") -> Reply:
    """1 GiB of `FILL` as about 1 MB of gzip, declared with `Content-Encoding: gzip`."""
    headers = (("Content-Type", content_type), ("Content-Encoding", "gzip"))
    return Reply(status, headers, gzip_bomb())


def endless_reply(status: int = 200, size: int = 1536 * MIB, content_type: str = "application/json") -> Reply:
    """`size` bytes of `FILL`, chunked, without a `Content-Length`: 1.5 GiB unless told."""
    assert size % MIB == 0
    return Reply(status, (("Content-Type", content_type),), FILL * MIB, size // MIB, chunked=True)


@dataclass
class HostileServer(LoopbackServer):
    """Answers each request with `route(method, path)`; records requests and bytes sent."""

    route: Callable[[str, str], Reply]
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: Body bytes written per request, in arrival order; a client that stops reading cuts it short.
    sent: list[int] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        await self.listen(self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shut()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[Self]:
        """Serve on an event loop of its own in a daemon thread, for a test that is not async."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(self.__aenter__(), loop).result(10)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.__aexit__(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        await reader.readexactly(int(headers.get("content-length", "0")))
        method, path = request_line.split(" ")[:2]
        self.requests.append((method, path))
        reply = self.route(method, path)
        index = len(self.sent)
        self.sent.append(0)
        head_lines = [f"HTTP/1.1 {reply.status} Hostile", *(f"{k}: {v}" for k, v in reply.headers)]
        head_lines.append("Transfer-Encoding: chunked" if reply.chunked else f"Content-Length: {reply.size}")
        writer.write(("\r\n".join(head_lines) + "\r\n\r\n").encode("latin-1"))
        body = memoryview(reply.body)
        for _ in range(reply.repeat):
            if reply.chunked:
                writer.write(b"%x\r\n" % len(body))
            # In slices, drained one by one: the server buffers little, so in-process tests that
            # trace memory see the client's allocations, not the server's.
            for start in range(0, len(body), WRITE_SLICE):
                writer.write(body[start : start + WRITE_SLICE])
                await writer.drain()
                self.sent[index] += len(body[start : start + WRITE_SLICE])
            if reply.chunked:
                writer.write(b"\r\n")
        if reply.chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


@dataclass
class Peak:
    """The most Python memory allocated at once while a `traced_peak()` block ran, in bytes."""

    bytes: int = 0


@contextlib.contextmanager
def traced_peak() -> Iterator[Peak]:
    """Trace Python allocations while the block runs; on leaving, `Peak.bytes` holds their peak."""
    peak = Peak()
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
