"""An https callback goes to the checked address with the URL's host as its TLS name (SNI) and
`Host`, and the certificate must be valid for that name: a real TLS server on loopback (a
trustme CA, a certificate for `hooks.localhost`) and the sender's transport."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import trustme

from gengate.net.guard import CheckedTarget
from gengate.webhooks.transport import Transport


@dataclass
class TlsReceiver:
    """Answers 200 over TLS; keeps the TLS name (SNI) each handshake asked for, and each Host."""

    server_names: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = dict(
                line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line
            )
            self.hosts.append(headers.get("Host") or headers.get("host", ""))
            await reader.readexactly(int(headers.get("Content-Length") or headers.get("content-length", "0")))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def receiver(ca: trustme.CA) -> AsyncIterator[TlsReceiver]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.localhost").configure_cert(context)
    found = TlsReceiver()
    context.sni_callback = lambda _sock, name, _context: found.server_names.append(name)
    server = await asyncio.start_server(found.handle, "127.0.0.1", 0, ssl=context)
    found.port = server.sockets[0].getsockname()[1]
    yield found
    server.close()
    await server.wait_closed()


def target(host: str, port: int) -> CheckedTarget:
    return CheckedTarget(f"https://{host}:{port}/hook", "https", host, port, "127.0.0.1", "/hook")


async def post(ca: trustme.CA, to: CheckedTarget) -> tuple[int | None, str | None]:
    client = ssl.create_default_context()
    ca.configure_trust(client)
    transport = Transport(5.0, 4, 4, tls=client)
    transport.open()
    try:
        outcome = await transport.post(
            to, b"{}", {"host": to.host_header(), "content-type": "application/json"}
        )
    finally:
        await transport.close()
    return outcome.status_code, outcome.error


async def test_https_goes_to_the_address_with_the_urls_name(ca: trustme.CA, receiver: TlsReceiver) -> None:
    assert await post(ca, target("hooks.localhost", receiver.port)) == (200, None)
    assert receiver.server_names == ["hooks.localhost"]
    assert receiver.hosts == [f"hooks.localhost:{receiver.port}"]


async def test_a_certificate_for_another_name_is_refused(ca: trustme.CA, receiver: TlsReceiver) -> None:
    status, error = await post(ca, target("other.localhost", receiver.port))
    assert status is None
    assert error is not None
    assert "certificate" in error.lower()
    assert receiver.hosts == []  # nothing was sent over it
