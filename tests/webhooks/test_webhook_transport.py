"""The sender's HTTP/1.1 client against real loopback servers that answer as scripted: what it
sends, when it keeps a connection alive and when not, the stale idle connection it retries, the
bounds of its pool, and the requests it refuses to write."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Self

import pytest

from gengate.net.guard import CheckedTarget
from gengate.webhooks import pool
from gengate.webhooks.retry import Outcome
from gengate.webhooks.transport import ANSWER_SCAN, Transport
from loopback_http import LoopbackServer

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
HEADERS = {"content-type": "application/json", "webhook-id": "msg_1"}


@dataclass
class Request:
    """One request as it arrived: on which connection (from 0), its head's lines, its body."""

    connection: int
    line: str
    headers: list[tuple[str, str]]
    body: bytes


Answer = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]


async def answer_ok(request: Request, writer: asyncio.StreamWriter) -> bool:
    writer.write(OK)
    return True


def answering(*replies: bytes, keep: bool = True) -> Answer:
    """Answers the n-th request with the n-th reply (the last one from then on)."""

    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(replies[min(answer.count, len(replies) - 1)])  # type: ignore[attr-defined]
        answer.count += 1  # type: ignore[attr-defined]
        return keep

    answer.count = 0  # type: ignore[attr-defined]
    return answer


@dataclass(kw_only=True)
class Receiver(LoopbackServer):
    """Reads each request whole and lets `answer` reply; keeps the requests, counts connections
    opened and ended."""

    answer: Answer = answer_ok
    requests: list[Request] = field(default_factory=list)
    opened: int = 0
    ended: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    #: Each connection's number, by its writer (held, so that no later connection's writer can
    #: take a freed one's `id` and its number).
    _numbers: dict[asyncio.StreamWriter, int] = field(default_factory=dict)

    async def __aenter__(self) -> Self:
        await self.listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shut()

    def target(self, path: str = "/hook", host: str = "hooks.example") -> CheckedTarget:
        url = f"http://{host}:{self.port}{path}"
        return CheckedTarget(url, "http", host, self.port, "127.0.0.1", path)

    def _connected(self) -> None:
        self.opened += 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await super()._serve(reader, writer)
        finally:
            self.ended += 1

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        line, *lines = head.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
        headers = [(name, value.strip()) for name, _, value in (x.partition(":") for x in lines)]
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        number = self._numbers.setdefault(writer, len(self._numbers))
        request = Request(number, line, headers, await reader.readexactly(length))
        self.requests.append(request)
        self.arrived.set()
        keep = await self.answer(request, writer)
        await writer.drain()
        return keep


@contextlib.asynccontextmanager
async def opened(timeout_s: float = 5.0, connections: int = 8, per_host: int = 4) -> AsyncIterator[Transport]:
    client = Transport(timeout_s, connections, per_host)
    client.open()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    async with opened() as client:
        yield client


async def post(transport: Transport, to: CheckedTarget, **headers: str) -> Outcome:
    return await transport.post(to, b'{"n":1}', {"host": to.host_header(), **HEADERS, **headers})


async def until(condition: Callable[[], bool]) -> None:
    """Wait (at most 5 s) until `condition` holds."""
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def test_the_request_is_one_post_with_one_host_and_its_length(transport: Transport) -> None:
    async with Receiver() as receiver:
        to = receiver.target("/hook?a=1")
        outcome = await transport.post(to, b'{"n":1}', {"HOST": to.host_header(), "webhook-id": "m"})
    assert outcome == Outcome(200, None)
    [request] = receiver.requests
    assert request.line == "POST /hook?a=1 HTTP/1.1"
    names = [name.lower() for name, _ in request.headers]
    assert names.count("host") == 1
    found = {k.lower(): v for k, v in request.headers}
    assert (found["host"], found["content-length"]) == (f"hooks.example:{receiver.port}", "7")
    assert ("webhook-id", "m") in request.headers
    assert request.body == b'{"n":1}'


async def test_a_path_beyond_ascii_goes_percent_encoded(transport: Transport) -> None:
    async with Receiver() as receiver:
        assert await post(transport, receiver.target("/hoök?x=é")) == Outcome(200, None)
    assert receiver.requests[0].line == "POST /ho%C3%B6k?x=%C3%A9 HTTP/1.1"


async def test_sequential_posts_share_one_connection(transport: Transport) -> None:
    async with Receiver() as receiver:
        outcomes = [await post(transport, receiver.target()) for _ in range(5)]
    assert outcomes == [Outcome(200, None)] * 5
    assert [r.connection for r in receiver.requests] == [0] * 5
    assert receiver.opened == 1


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n", id="connection-close"
        ),
        pytest.param(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", id="http-1.0"),
    ],
)
async def test_no_reuse_when_the_receiver_says_close(transport: Transport, reply: bytes) -> None:
    """The receiver keeps its end open, yet the client must not send on it again."""
    async with Receiver(answer=answering(reply)) as receiver:
        outcomes = [await post(transport, receiver.target()) for _ in range(2)]
    assert outcomes == [Outcome(200, None)] * 2
    assert [r.connection for r in receiver.requests] == [0, 1]


async def test_an_answer_cut_off_at_the_scan_is_not_reused(transport: Transport) -> None:
    """An error body longer than the scan is read no further: its connection is closed."""
    body = b"e" * (ANSWER_SCAN * 4)
    big = b"HTTP/1.1 500 Oops\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    async with Receiver(answer=answering(big, OK)) as receiver:
        first = await post(transport, receiver.target())
        await until(lambda: receiver.ended == 1)  # the client closed the cut-off connection
        second = await post(transport, receiver.target())
    assert first.status_code == 500
    assert first.error == "HTTP 500: " + "e" * 200
    assert second == Outcome(200, None)
    assert [r.connection for r in receiver.requests] == [0, 1]


async def test_a_chunked_answer_is_read_to_its_end_and_the_connection_kept(transport: Transport) -> None:
    chunked = (
        b"HTTP/1.1 503 Busy\r\ntransfer-encoding: chunked\r\nretry-after: 7\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    async with Receiver(answer=answering(chunked, OK)) as receiver:
        first = await post(transport, receiver.target())
        second = await post(transport, receiver.target())
    assert first == Outcome(503, "HTTP 503: hello world", 7.0)
    assert second == Outcome(200, None)
    assert [r.connection for r in receiver.requests] == [0, 0]


async def test_an_answer_ended_by_closing_is_complete(transport: Transport) -> None:
    """No length, not chunked: the body ends where the receiver closes the connection."""
    async with Receiver(answer=answering(b"HTTP/1.1 500 Oops\r\n\r\nall of it", keep=False)) as receiver:
        outcome = await post(transport, receiver.target())
    assert outcome == Outcome(500, "HTTP 500: all of it")


async def test_an_answer_shorter_than_its_length_is_an_error(transport: Transport) -> None:
    short = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"
    async with Receiver(answer=answering(short, keep=False)) as receiver:
        outcome = await post(transport, receiver.target())
    assert outcome.status_code is None
    assert outcome.error


async def test_an_interim_100_continue_is_skipped(transport: Transport) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"
    async with Receiver(answer=answering(interim, OK)) as receiver:
        first = await post(transport, receiver.target())
        second = await post(transport, receiver.target())
    assert (first, second) == (Outcome(201, None), Outcome(200, None))
    assert [r.connection for r in receiver.requests] == [0, 0]


async def test_a_redirect_is_not_followed(transport: Transport) -> None:
    moved = b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/x\r\ncontent-length: 0\r\n\r\n"
    async with Receiver(answer=answering(moved)) as receiver:
        outcome = await post(transport, receiver.target())
    assert outcome == Outcome(302, "HTTP 302 (redirects are not followed)")
    assert len(receiver.requests) == 1


async def test_a_stale_idle_connection_is_retried_once_on_a_fresh_one(transport: Transport) -> None:
    """The receiver closed a kept-alive connection as the next request went out on it (it read
    the request and answered nothing): the request is sent again, once, on a new connection."""

    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.connection == 0 and len(receiver.requests) == 2:
            return False  # hang up without a byte of answer
        writer.write(OK)
        return True

    async with Receiver(answer=answer) as receiver:
        first = await post(transport, receiver.target())
        second = await post(transport, receiver.target())
    assert (first, second) == (Outcome(200, None), Outcome(200, None))
    assert [r.connection for r in receiver.requests] == [0, 0, 1]


async def test_an_idle_connection_the_receiver_closed_gives_up_its_slot() -> None:
    """The receiver closes after each answer, as it may between requests: the next request
    goes out on a new connection, without waiting for the old one's slot."""
    async with opened(5.0, 1, 1) as transport, Receiver(answer=answering(OK, keep=False)) as receiver:
        first = await post(transport, receiver.target())
        await until(lambda: receiver.ended == 1)
        await asyncio.sleep(0.05)  # the client has seen the end of the connection
        second = await post(transport, receiver.target())
    assert (first, second) == (Outcome(200, None), Outcome(200, None))
    assert [r.connection for r in receiver.requests] == [0, 1]


async def test_a_fresh_connection_closed_without_an_answer_is_not_retried(transport: Transport) -> None:
    async with Receiver(answer=answering(b"", keep=False)) as receiver:
        outcome = await post(transport, receiver.target())
    assert outcome.status_code is None
    assert outcome.error
    assert len(receiver.requests) == 1


async def test_a_refused_connection_says_so(transport: Transport) -> None:
    async with Receiver() as receiver:
        to = receiver.target()
    outcome = await post(transport, to)
    assert outcome.status_code is None
    assert outcome.error is not None
    assert "connect" in outcome.error.lower()


async def test_the_per_host_bound_makes_the_next_request_wait() -> None:
    release = asyncio.Event()

    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        if len(receiver.requests) == 1:
            await release.wait()
        writer.write(OK)
        return True

    async with opened(5.0, 8, 1) as transport, Receiver(answer=answer) as receiver:
        first = asyncio.create_task(post(transport, receiver.target()))
        await until(lambda: len(receiver.requests) == 1)
        second = asyncio.create_task(post(transport, receiver.target()))
        await asyncio.sleep(0.1)
        assert (receiver.opened, len(receiver.requests)) == (1, 1)  # waiting for the slot
        release.set()
        assert [await first, await second] == [Outcome(200, None)] * 2
    assert [r.connection for r in receiver.requests] == [0, 0]


async def test_the_total_bound_closes_an_idle_connection_for_another_host() -> None:
    async with opened(5.0, 1, 1) as transport, Receiver() as one, Receiver() as two:
        assert await post(transport, one.target()) == Outcome(200, None)
        assert await post(transport, two.target()) == Outcome(200, None)
        await until(lambda: one.ended == 1)  # its idle connection gave up its slot
        assert await post(transport, one.target()) == Outcome(200, None)
        assert (one.opened, two.opened) == (2, 1)


async def test_a_trickling_receiver_times_out_and_frees_its_slot() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.connection == 0:
            for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 100000:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.02)
        writer.write(OK)
        return True

    async with opened(0.5, 1, 1) as transport, Receiver(answer=answer) as receiver:
        slow = await post(transport, receiver.target())
        fast = await post(transport, receiver.target())
        await until(lambda: receiver.ended == 1)  # the trickling connection was closed
    assert slow == Outcome(None, "no answer within 0.5 s")
    assert fast == Outcome(200, None)
    assert [r.connection for r in receiver.requests] == [0, 1]


async def test_a_cancelled_post_frees_its_slot() -> None:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.connection == 0:
            await asyncio.sleep(60)
        writer.write(OK)
        return True

    async with opened(30.0, 1, 1) as transport, Receiver(answer=answer) as receiver:
        hanging = asyncio.create_task(post(transport, receiver.target()))
        await until(lambda: len(receiver.requests) == 1)
        waiting = asyncio.create_task(post(transport, receiver.target()))
        await asyncio.sleep(0.05)
        waiting.cancel()  # cancelled while waiting for the slot
        hanging.cancel()  # cancelled while waiting for the answer
        await asyncio.gather(hanging, waiting, return_exceptions=True)
        assert await asyncio.wait_for(post(transport, receiver.target()), 5) == Outcome(200, None)


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        pytest.param({"x-evil": "a\r\nInjected: 1"}, "/hook", id="crlf-in-value"),
        pytest.param({"x-evil": "a\nInjected: 1"}, "/hook", id="lf-in-value"),
        pytest.param({"x-evil": "a\x00b"}, "/hook", id="nul-in-value"),
        pytest.param({"x-evil\r\nInjected": "1"}, "/hook", id="crlf-in-name"),
        pytest.param({}, "/hook\r\nInjected: 1", id="crlf-in-path"),
        pytest.param({}, "/ho\x00ok", id="nul-in-path"),
    ],
)
async def test_a_header_or_path_with_a_line_break_is_refused_unsent(
    transport: Transport, headers: dict[str, str], path: str
) -> None:
    async with Receiver() as receiver:
        outcome = await post(transport, receiver.target(path), **headers)
        await asyncio.sleep(0.05)
    assert outcome.status_code is None
    assert outcome.error
    assert (receiver.opened, receiver.requests) == (0, [])


async def test_an_idle_connection_is_closed_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool, "IDLE_S", 0.2)
    async with opened() as transport, Receiver() as receiver:
        assert await post(transport, receiver.target()) == Outcome(200, None)
        await until(lambda: receiver.ended == 1)
        assert await post(transport, receiver.target()) == Outcome(200, None)
    assert [r.connection for r in receiver.requests] == [0, 1]


async def test_close_closes_the_kept_connections() -> None:
    transport = Transport(5.0, 8, 4)
    transport.open()
    async with Receiver() as receiver:
        assert await post(transport, receiver.target()) == Outcome(200, None)
        assert receiver.ended == 0
        await transport.close()
        await until(lambda: receiver.ended == 1)


async def test_the_request_is_logged_with_its_status(
    transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    async with Receiver(answer=answering(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")) as receiver:
        with caplog.at_level(logging.INFO, logger="gengate.webhooks.transport"):
            await post(transport, receiver.target())
    assert f'HTTP Request: POST http://127.0.0.1:{receiver.port}/hook "HTTP/1.1 404 Not Found"' in caplog.text
