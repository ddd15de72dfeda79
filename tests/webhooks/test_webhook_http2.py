"""Callbacks over HTTP/2 where the receiver offers it (ALPN), against real TLS servers on loopback:
hypercorn (a production ASGI server) for what a well-behaved receiver does, and a bare server on
the h2 library for GOAWAY and stream resets. One connection carries concurrent callbacks; an
answer cut off at the bound, a timed-out request or a refused stream costs its stream, not the
connection; a request the receiver did not process is sent again on a new connection."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config

from asgi_request import Seen, read_request
from gengate.net.guard import CheckedTarget
from gengate.webhooks.retry import Outcome
from gengate.webhooks.transport import ERROR_EXCERPT, Transport
from pgcluster import free_port

HOST = "hooks.localhost"
HEADERS = {"content-type": "application/json", "webhook-id": "msg_1", "webhook-signature": "v1,abc"}


@dataclass
class Hypercorn:
    """An ASGI receiver behind hypercorn: `/hook` answers 200, `/big` a 500 with a megabyte of
    body, `/slow` never answers (it waits for the client to give up); each request is kept, and
    each the client gave up (a stream reset, a connection closed) in `gone`."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)

    async def app(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        self.seen.append(await read_request(scope, receive))
        status, answer = 200, b"ok"
        if scope["path"] == "/big":
            status, answer = 500, b"x" * 1_000_000
        elif scope["path"] == "/slow":
            while (await receive())["type"] != "http.disconnect":
                pass
            self.gone.append(scope["path"])
            return
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": answer})

    def connections(self) -> set[int]:
        return {seen.client_port for seen in self.seen}


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def hypercorn(ca: trustme.CA, tmp_path: Path) -> AsyncIterator[Hypercorn]:
    cert = ca.issue_cert(HOST)
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    receiver = Hypercorn(port=free_port())
    config = Config()
    config.bind = [f"127.0.0.1:{receiver.port}"]
    config.certfile, config.keyfile = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    config.accesslog = config.errorlog = None
    stopped = asyncio.Event()
    server = asyncio.create_task(serve(receiver.app, config, shutdown_trigger=stopped.wait))  # type: ignore[arg-type]
    await until_listening(receiver.port)
    yield receiver
    stopped.set()
    await asyncio.wait_for(server, 10)


async def until_listening(port: int) -> None:
    async with asyncio.timeout(10):
        while True:
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            return


def target(port: int, path: str = "/hook") -> CheckedTarget:
    return CheckedTarget(f"https://{HOST}:{port}{path}", "https", HOST, port, "127.0.0.1", path)


def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def post(transport: Transport, to: CheckedTarget, body: bytes = b'{"n":1}') -> Outcome:
    return await transport.post(to, body, {"host": to.host_header(), **HEADERS})


@pytest.fixture
async def transport(ca: trustme.CA) -> AsyncIterator[Transport]:
    client = Transport(5.0, 8, 4, tls=client_tls(ca), http2=True)
    client.open()
    yield client
    await client.close()


async def test_concurrent_callbacks_share_one_http2_connection(
    transport: Transport, hypercorn: Hypercorn
) -> None:
    await post(transport, target(hypercorn.port))  # the connection is up (it learnt h2)
    outcomes = await asyncio.gather(
        *(post(transport, target(hypercorn.port), b'{"n":%d}' % n) for n in range(20))
    )
    assert [o.status_code for o in outcomes] == [200] * 20
    assert {seen.http_version for seen in hypercorn.seen} == {"2"}
    assert len(hypercorn.connections()) == 1
    assert sorted(seen.body for seen in hypercorn.seen[1:]) == sorted(b'{"n":%d}' % n for n in range(20))
    first = hypercorn.seen[0]
    assert first.headers["host"] == f"{HOST}:{hypercorn.port}"  # (from :authority)
    assert first.headers["webhook-id"] == "msg_1"
    assert first.headers["webhook-signature"] == "v1,abc"
    assert first.headers["content-length"] == "7"


async def test_a_cut_off_error_answer_costs_its_stream_not_the_connection(
    transport: Transport, hypercorn: Hypercorn
) -> None:
    outcome = await post(transport, target(hypercorn.port, "/big"))
    assert outcome.status_code == 500
    assert outcome.error == "HTTP 500: " + "x" * ERROR_EXCERPT
    assert (await post(transport, target(hypercorn.port))).status_code == 200
    assert len(hypercorn.connections()) == 1


async def test_a_timed_out_request_resets_its_stream_only(ca: trustme.CA, hypercorn: Hypercorn) -> None:
    client = Transport(0.5, 8, 4, tls=client_tls(ca), http2=True)
    client.open()
    try:
        assert (await post(client, target(hypercorn.port))).status_code == 200
        slow, quick = await asyncio.gather(
            post(client, target(hypercorn.port, "/slow")), post(client, target(hypercorn.port))
        )
        assert slow.status_code is None
        assert slow.error == "no answer within 0.5 s"
        assert quick.status_code == 200
        assert (await post(client, target(hypercorn.port))).status_code == 200
        assert len(hypercorn.connections()) == 1
        async with asyncio.timeout(5):
            while not hypercorn.gone:  # the receiver learnt of the reset
                await asyncio.sleep(0.01)
        assert hypercorn.gone == ["/slow"]
    finally:
        await client.close()


async def test_a_body_larger_than_the_flow_control_window_goes_whole(
    transport: Transport, hypercorn: Hypercorn
) -> None:
    body = b'{"pad":"' + b"p" * 300_000 + b'"}'  # the initial window is 65,535 bytes
    assert (await post(transport, target(hypercorn.port), body)).status_code == 200
    assert hypercorn.seen[-1].body == body


async def test_http2_is_offered_only_when_asked(ca: trustme.CA, hypercorn: Hypercorn) -> None:
    client = Transport(5.0, 8, 4, tls=client_tls(ca))
    client.open()
    try:
        assert (await post(client, target(hypercorn.port))).status_code == 200
    finally:
        await client.close()
    assert [seen.http_version for seen in hypercorn.seen] == ["1.1"]


# -- a receiver that misbehaves at the HTTP/2 level -------------------------------------------------


@dataclass
class BareH2:
    """An HTTP/2 server on the h2 library: it does `first` to the first request ("goaway":
    GOAWAY below it, then close; "refuse" / "reset": RST_STREAM with REFUSED_STREAM /
    INTERNAL_ERROR; "hold3": answer it, then hold the next three and close when the third of
    them comes; "drop2nd": answer it, then close when the second comes) and answers every other
    request 200."""

    first: str
    port: int = 0
    connections: int = 0
    requests: int = 0
    answered: int = 0
    #: Connections open now (one it closes counts as closed at once), and the most at once.
    open_now: int = 0
    most_open: int = 0

    def protocol(self) -> asyncio.Protocol:
        return _BareProtocol(self)


class _BareProtocol(asyncio.Protocol):
    def __init__(self, server: BareH2) -> None:
        server.connections += 1
        self.server = server
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.open_now += 1
        self.server.most_open = max(self.server.most_open, self.server.open_now)
        self.h2.initiate_connection()
        transport.write(self.h2.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.server.open_now -= 1
            self.transport.close()
            self.transport = None

    def data_received(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.StreamEnded) and self.transport is not None:
                self.answer(event.stream_id)
        if self.transport is not None:
            self.transport.write(self.h2.data_to_send())

    def answer(self, stream_id: int) -> None:
        assert self.transport is not None
        self.server.requests += 1
        first = self.server.first if self.server.requests == 1 else ""
        if self.server.first == "hold3" and 2 <= self.server.requests <= 4:
            if self.server.requests == 4:
                self.close()
            return
        if self.server.first == "drop2nd" and self.server.requests == 2:
            self.close()
            return
        if first == "goaway":
            self.h2.close_connection(last_stream_id=0)
            self.transport.write(self.h2.data_to_send())
            self.close()
        elif first in {"refuse", "reset"}:
            codes = h2.errors.ErrorCodes
            self.h2.reset_stream(
                stream_id, codes.REFUSED_STREAM if first == "refuse" else codes.INTERNAL_ERROR
            )
        else:
            self.server.answered += 1
            self.h2.send_headers(stream_id, [(":status", "200"), ("content-length", "2")])
            self.h2.send_data(stream_id, b"ok", end_stream=True)


@pytest.fixture
async def bare_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    context.set_alpn_protocols(["h2"])
    return context


@contextlib.asynccontextmanager
async def bare(first: str, tls: ssl.SSLContext) -> AsyncIterator[BareH2]:
    receiver = BareH2(first)
    server = await asyncio.get_running_loop().create_server(receiver.protocol, "127.0.0.1", 0, ssl=tls)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()


@pytest.mark.parametrize("first", ["goaway", "refuse"])
async def test_a_request_the_receiver_did_not_process_is_sent_again_on_a_new_connection(
    transport: Transport, bare_tls: ssl.SSLContext, first: str
) -> None:
    async with bare(first, bare_tls) as receiver:
        outcome = await post(transport, target(receiver.port))
    assert (outcome.status_code, outcome.error) == (200, None)
    assert (receiver.connections, receiver.answered) == (2, 1)


async def test_a_stream_reset_after_processing_is_a_failed_attempt(
    transport: Transport, bare_tls: ssl.SSLContext
) -> None:
    async with bare("reset", bare_tls) as receiver:
        outcome = await post(transport, target(receiver.port))
        after = await post(transport, target(receiver.port))
    assert outcome.status_code is None
    assert outcome.error == "Disconnected: the receiver reset the stream (INTERNAL_ERROR)"
    assert after.status_code == 200  # on the same connection: a reset costs its stream
    assert (receiver.connections, receiver.answered) == (1, 1)


async def test_requests_in_flight_when_a_used_connection_ends_all_go_again(
    ca: trustme.CA, bare_tls: ssl.SSLContext
) -> None:
    """Three requests in flight on one connection that had answered before and closes without
    answering them: each goes again on a new connection, and the old connection's pool slot is
    given back once, not once a request: one connection a host still holds."""
    transport = Transport(5.0, 8, 1, tls=client_tls(ca), http2=True)  # one connection a host
    transport.open()
    try:
        async with bare("hold3", bare_tls) as receiver:
            assert (await post(transport, target(receiver.port))).status_code == 200
            held = await asyncio.gather(*(post(transport, target(receiver.port)) for _ in range(3)))
            after = await post(transport, target(receiver.port))
    finally:
        await transport.close()
    assert [outcome.status_code for outcome in held] == [200, 200, 200]
    assert after.status_code == 200
    assert (receiver.requests, receiver.answered) == (8, 5)
    assert receiver.most_open == 1


async def test_a_request_cut_off_by_the_end_of_a_used_connection_is_sent_again(
    transport: Transport, bare_tls: ssl.SSLContext
) -> None:
    """The receiver closes a connection that carried answers as the next request arrives (as
    servers do after so many requests): that request goes again at once on a new connection."""
    async with bare("drop2nd", bare_tls) as receiver:
        first = await post(transport, target(receiver.port))
        second = await post(transport, target(receiver.port))
    assert (first.status_code, second.status_code) == (200, 200)
    assert (receiver.connections, receiver.requests, receiver.answered) == (2, 3, 2)
