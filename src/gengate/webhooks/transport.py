"""One signed POST to a checked address, over a kept-alive HTTP/1.1 connection, read within a bound.

Neither httpx nor aiohttp: httpx's pool checks every pooled connection on every request (a `poll`
per socket, 2.5 ms of CPU a request at 64 connections here), and aiohttp's request alone cost
about 100 us of CPU where a bare protocol with httptools' parser costs 25
(:mod:`gengate.webhooks.http1`). With `http2`, an https receiver that offers HTTP/2 (ALPN `h2`)
gets it (:mod:`gengate.webhooks.http2`): one connection carries its concurrent callbacks
instead of one connection (and TLS handshake) each, at about three times the CPU a request
(h2's framing and HPACK are pure Python), so it is not the default.

One pool serves every receiver: connections are kept alive per (scheme, address, port, TLS name)
and bounded in all and per host (:mod:`gengate.webhooks.pool`); an HTTP/2 connection leaves the
pool while it carries requests, shared by them, and goes back when it carries none. No proxy
from the environment (a proxy would resolve the name itself, and the guard would be moot), no
redirect followed, nothing inflated: the answer's raw bytes go through
:class:`gengate.net.bounded.Prefix`, so a gzip bomb costs no more than the few KB read.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
from collections.abc import Hashable, Mapping

import h2.exceptions
import httptools

from gengate.deadlines import SharedTimeout
from gengate.net.bounded import Prefix
from gengate.net.guard import CheckedTarget
from gengate.webhooks.http1 import (
    Answer,
    ClientConnection,
    Connection,
    InvalidRequest,
    encode_request,
    wire_path,
)
from gengate.webhooks.http2 import H2Connection, Resendable
from gengate.webhooks.pool import Pool
from gengate.webhooks.retry import Outcome
from gengate.wire import parse_retry_after

#: The most of a receiver's error body kept in the attempt record.
ERROR_EXCERPT = 200
#: The most of a receiver's answer read (raw bytes, about): a short answer is read whole, so its
#: connection is kept alive; a longer one is cut off with its connection.
ANSWER_SCAN = 4096
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: What the network or the receiver can do to an attempt, as the outcome's error.
_FAILURES = (
    OSError,
    ValueError,
    httptools.HttpParserError,
    httptools.HttpParserUpgrade,
    h2.exceptions.H2Error,
)
#: What ALPN offers an https receiver, preferred first.
ALPN = ["h2", "http/1.1"]

log = logging.getLogger(__name__)


class Transport:
    """The sender's HTTP client: `open` it on the running loop, `close` it when stopping."""

    def __init__(
        self,
        timeout_s: float,
        connections: int,
        per_host: int,
        tls: ssl.SSLContext | None = None,
        *,
        http2: bool = False,
    ) -> None:
        self.timeout_s = timeout_s
        self._connections = connections
        self._per_host = per_host
        self._given_tls = tls
        self._http2 = http2
        #: Certificates are checked (against the URL's host name) with this, or the system's CAs.
        self._tls: ssl.SSLContext | None = None
        self._pool: Pool | None = None
        #: Per key, the HTTP/2 connection new requests share (out of the pool while it carries any).
        self._shared: dict[Hashable, H2Connection] = {}

    def open(self) -> None:
        self._tls = self._given_tls or ssl.create_default_context()
        # Offered on a context given too (the transport's own to use); h2 only where the
        # receiver picks it.
        self._tls.set_alpn_protocols(ALPN if self._http2 else ALPN[1:])
        self._pool = Pool(self._connect, self._connections, self._per_host)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        self._shared.clear()

    async def post(self, target: CheckedTarget, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """POST `body` to the checked address (`Host` and, for https, the TLS name and the
        certificate's are the URL's host); the outcome, never an exception for what the network
        or the receiver does."""
        pool = self._pool
        assert pool is not None, "transport not open"
        try:
            request = encode_request(target.path_and_query, target.host_header(), body, headers)
        except InvalidRequest as exc:
            return Outcome(None, f"not sent: {exc}")
        https = target.scheme == "https"
        key = (https, target.address, target.port, target.host if https else "")
        try:
            # Bounds the whole attempt (a slot, connecting, the answer), so a receiver trickling
            # its answer a byte at a time cannot hold the attempt (and its lease).
            with SharedTimeout(self.timeout_s):
                answer = await self._exchange(pool, key, target, request, (body, headers))
        except TimeoutError:
            return Outcome(None, f"no answer within {self.timeout_s:g} s")
        except _FAILURES as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:ERROR_EXCERPT] or type(exc).__name__)
        status = answer.status
        if log.isEnabledFor(logging.INFO):  # the line httpx wrote, which operators grep for
            log.info(
                'HTTP Request: POST %s "HTTP/%s %d %s"',
                target.ip_url(),
                answer.version,
                status,
                _reason(status),
            )
        if 200 <= status < 300:
            return Outcome(status, None)
        error = f"HTTP {status}"
        if status in _REDIRECTS:
            error += " (redirects are not followed)"
        if text := answer.prefix.text():
            error += f": {text}"
        return Outcome(status, error, parse_retry_after(answer.retry_after))

    async def _connect(self, key: Hashable, target: CheckedTarget) -> ClientConnection:
        """A new connection to the checked address, never to a name resolved again."""
        https = target.scheme == "https"
        _transport, chosen = await asyncio.get_running_loop().create_connection(
            lambda: _Negotiated(key),
            target.address,
            target.port,
            ssl=self._tls if https else None,
            server_hostname=target.host if https else None,
        )
        assert chosen.protocol is not None, "connection_made has run"
        return chosen.protocol

    async def _exchange(
        self, pool: Pool, key: Hashable, target: CheckedTarget, request: bytes, h2_parts: _H2Parts
    ) -> Answer:
        """The answer to the request, on a shared HTTP/2 connection of `key`, an idle one or a
        new one. Sent again once on a new connection when the first turns out not to have carried
        it: a kept-alive HTTP/1.1 connection closed by the receiver before a byte of answer (it
        may have closed it as the request went out; delivery is at least once, so a request it
        did read is merely sent twice), or an HTTP/2 request :class:`Resendable` says may go again."""
        shared = self._shared.get(key)
        conn: ClientConnection | None = shared if shared is not None and shared.has_room() else None
        conn = conn or pool.idle(key) or await pool.acquire(key, target)
        retried = False
        while True:
            try:
                if isinstance(conn, H2Connection):
                    return await self._carry_h2(pool, conn, target, h2_parts)
                assert isinstance(conn, Connection)
                try:  # (HTTP/1.1 written out here: a coroutine less per callback)
                    answer = await conn.send(request)
                except BaseException:
                    pool.release(conn, reuse=False)
                    raise
                pool.release(conn, answer.keep_alive)
                return answer
            except OSError as exc:
                if retried or not _not_carried(conn, exc):
                    raise
            retried = True
            conn = await pool.acquire(key, target, fresh=True)

    async def _carry_h2(
        self, pool: Pool, conn: H2Connection, target: CheckedTarget, parts: _H2Parts
    ) -> Answer:
        body, headers = parts
        authority = next((v for k, v in headers.items() if k.lower() == "host"), target.host_header())
        current = self._shared.get(conn.key)
        if current is None or not current.has_room():
            self._shared[conn.key] = conn
        conn.users += 1
        try:
            return await conn.send(wire_path(target.path_and_query), authority, headers.items(), body)
        finally:
            # Counted here, not by the streams in flight: the streams of one read end together,
            # and only the last of their coroutines to run may give the connection back, once.
            conn.users -= 1
            if not conn.users:  # back to the pool's idle ones (or closed)
                if self._shared.get(conn.key) is conn:
                    del self._shared[conn.key]
                pool.release(conn, reuse=True)


_H2Parts = tuple[bytes, Mapping[str, str]]


def _not_carried(conn: ClientConnection, exc: OSError) -> bool:
    """Whether the request surely or likely never reached the receiver's application (see
    `Transport._exchange`)."""
    if isinstance(conn, H2Connection):
        return isinstance(exc, Resendable)
    return isinstance(conn, Connection) and conn.reused and not conn.received


class _Negotiated(asyncio.Protocol):
    """Becomes, once TLS is up, the connection ALPN chose: HTTP/2 or HTTP/1.1 (plain http too).

    Chosen in `connection_made`, before any byte is read, so the receiver's first frames go to
    the protocol that reads them."""

    def __init__(self, key: Hashable) -> None:
        self._key = key
        self.protocol: Connection | H2Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tls = transport.get_extra_info("ssl_object")
        h2 = tls is not None and tls.selected_alpn_protocol() == "h2"
        protocol = H2Connection(self._key, _prefix_for) if h2 else Connection(self._key, _prefix_for)
        self.protocol = protocol
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


def _prefix_for(status: int, content_encoding: str) -> Prefix:
    """Only an error's excerpt is kept: a few KB of the answer are read, and only the excerpt is
    inflated. A receiver's gigabyte (or gzip bomb) is never read, on any status."""
    return Prefix(content_encoding, 0 if 200 <= status < 300 else ERROR_EXCERPT, ANSWER_SCAN)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
