"""A lean HTTP/1.1 load generator for submits: keep-alive connections on raw asyncio streams.

httpx spends more CPU per request than gengate does to accept a task, so on a 2-core machine it
would measure itself; wrk stops by time, not after N requests. This sends exactly N requests, as
fast as `connections` allow (`submit_many`) or on an open-loop schedule (`submit_at_rate`), and
keeps each answer's task id, status and latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import orjson

#: Longest a connection may have been idle to be used again (the server's keep-alive is 5 s).
KEEP_ALIVE_REUSE_S = 3.0


class LoadError(Exception):
    """The server closed a connection or answered something this client cannot read."""


@dataclass
class Answers:
    """What came back: `task_ids` of the 200 answers, `statuses` of the others (status -> count),
    `latencies_ms` per request, and the wall-clock span `seconds` of the whole run."""

    task_ids: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return len(self.latencies_ms)

    @property
    def failed(self) -> int:
        return sum(self.statuses.values())

    def record(self, status: int, body: bytes, latency_ms: float) -> None:
        self.latencies_ms.append(latency_ms)
        if status == 200:
            self.task_ids.append(orjson.loads(body)["data"]["taskId"])
        else:
            self.statuses[status] = self.statuses.get(status, 0) + 1


class Connection:
    """One keep-alive connection sending the same request again and again."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
        self.reader, self.writer, self.request = reader, writer, request

    @classmethod
    async def open(cls, port: int, request: bytes) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, request)

    async def exchange(self) -> tuple[int, bytes]:
        self.writer.write(self.request)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise LoadError(f"the server closed the connection: {exc}") from exc
        status = int(head.split(b" ", 2)[1])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise LoadError(f"an answer without Content-Length: {head[:200]!r}")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def post_request(port: int, path: str, authorization: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {authorization}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def submit_many(port: int, request: bytes, count: int, connections: int) -> Answers:
    """Send `count` requests over `connections` connections, each sending its next request as
    soon as the previous one is answered."""
    answers = Answers()
    left = count

    async def loop(conn: Connection) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            sent = time.perf_counter()
            status, body = await conn.exchange()
            answers.record(status, body, (time.perf_counter() - sent) * 1000)

    conns = await asyncio.gather(*(Connection.open(port, request) for _ in range(min(connections, count))))
    started = time.perf_counter()
    try:
        await asyncio.gather(*(loop(conn) for conn in conns))
    finally:
        answers.seconds = time.perf_counter() - started
        for conn in conns:
            conn.close()
    return answers


async def submit_at_rate(
    port: int, request: bytes, count: int, rate: float, max_connections: int = 64
) -> Answers:
    """Send `count` requests at `rate` per second on a fixed schedule (open loop: a slow answer
    does not delay the next request), over as many connections as are busy at once."""
    answers = Answers()
    idle: list[tuple[Connection, float]] = []
    opened: list[Connection] = []
    slots = asyncio.Semaphore(max_connections)

    async def one() -> None:
        async with slots:
            conn = None
            while idle:
                conn, last_used = idle.pop()
                # The server closes a keep-alive connection idle for 5 s (uvicorn's default):
                # one idle that long may be closing as we send, so it is not used again.
                if time.perf_counter() - last_used < KEEP_ALIVE_REUSE_S:
                    break
                conn.close()
                conn = None
            if conn is None:
                conn = await Connection.open(port, request)
                opened.append(conn)
            sent = time.perf_counter()
            status, body = await conn.exchange()
            answers.record(status, body, (time.perf_counter() - sent) * 1000)
            idle.append((conn, time.perf_counter()))

    started = time.perf_counter()
    running: list[asyncio.Task[None]] = []
    try:
        for n in range(count):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            running.append(asyncio.create_task(one()))
        await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*running, return_exceptions=True)
        answers.seconds = time.perf_counter() - started
        for conn in opened:
            conn.close()
    return answers
