"""One signed POST to a checked address, over a kept-alive HTTP/1.1 connection, read within a bound.

Neither httpx nor aiohttp: httpx's pool checks every pooled connection on every request (a `poll`
per socket, 2.5 ms of CPU a request at 64 connections here), and aiohttp's request alone cost
about 100 us of CPU where a bare protocol with httptools' parser costs 25
(:mod:`gengate.webhooks.http1`). One pool serves every receiver: connections are kept alive per
(scheme, address, port, TLS name) and bounded in all and per host (:mod:`gengate.webhooks.pool`);
no proxy from the environment (a proxy would resolve the name itself, and the guard would be
moot), no redirect followed, nothing inflated: the answer's raw bytes go through
:class:`gengate.net.bounded.Prefix`, so a gzip bomb costs no more than the few KB read.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
from collections.abc import Hashable, Mapping

import httptools

from gengate.net.bounded import Prefix
from gengate.net.guard import CheckedTarget
from gengate.webhooks.http1 import Answer, Connection, InvalidRequest, encode_request
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
_FAILURES = (OSError, ValueError, httptools.HttpParserError, httptools.HttpParserUpgrade)

log = logging.getLogger(__name__)


class Transport:
    """The sender's HTTP client: `open` it on the running loop, `close` it when stopping."""

    def __init__(
        self, timeout_s: float, connections: int, per_host: int, tls: ssl.SSLContext | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self._connections = connections
        self._per_host = per_host
        self._given_tls = tls
        #: Certificates are checked (against the URL's host name) with this, or the system's CAs.
        self._tls: ssl.SSLContext | None = None
        self._pool: Pool | None = None

    def open(self) -> None:
        self._tls = self._given_tls or ssl.create_default_context()
        self._pool = Pool(self._connect, self._connections, self._per_host)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

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
            async with asyncio.timeout(self.timeout_s):
                answer = await _exchange(pool, key, target, request)
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

    async def _connect(self, key: Hashable, target: CheckedTarget) -> Connection:
        """A new connection to the checked address, never to a name resolved again."""
        https = target.scheme == "https"
        _transport, conn = await asyncio.get_running_loop().create_connection(
            lambda: Connection(key, _prefix_for),
            target.address,
            target.port,
            ssl=self._tls if https else None,
            server_hostname=target.host if https else None,
        )
        return conn


async def _exchange(pool: Pool, key: Hashable, target: CheckedTarget, request: bytes) -> Answer:
    """The answer to `request`; the connection goes back to the pool, kept when its answer was
    read to its end. Sent again once on a new connection when a kept-alive one turns out closed
    by the receiver before a byte of answer (it may have closed it as the request went out;
    delivery is at least once, so a request it did read is merely sent twice)."""
    conn = pool.idle(key) or await pool.acquire(key, target)
    try:
        answer = await conn.send(request)
    except OSError:
        pool.release(conn, reuse=False)
        if not conn.reused or conn.received:
            raise
        conn = await pool.acquire(key, target, fresh=True)
        try:
            answer = await conn.send(request)
        except BaseException:
            pool.release(conn, reuse=False)
            raise
    except BaseException:
        pool.release(conn, reuse=False)
        raise
    pool.release(conn, answer.keep_alive)
    return answer


def _prefix_for(status: int, content_encoding: str) -> Prefix:
    """Only an error's excerpt is kept: a few KB of the answer are read, and only the excerpt is
    inflated. A receiver's gigabyte (or gzip bomb) is never read, on any status."""
    return Prefix(content_encoding, 0 if 200 <= status < 300 else ERROR_EXCERPT, ANSWER_SCAN)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
