"""One signed POST to a checked address, over aiohttp, read within a bound.

aiohttp rather than httpx: httpx's pool checks every pooled connection on every request (a
`poll` per socket), which cost 2.5 ms of CPU a request at 64 connections here; aiohttp's
keep-alive pool costs about 80 us. One session serves every receiver: connections are kept alive
per (address, port, TLS name) and bounded per host; no proxy from the environment (a proxy
would resolve the name itself, and the guard would be moot), no redirect followed, nothing
inflated by aiohttp: the answer's raw bytes go through :class:`gengate.net.bounded.Prefix`, so a
gzip bomb costs no more than the few KB read.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping

import aiohttp

from gengate.net.bounded import Prefix
from gengate.net.guard import CheckedTarget
from gengate.webhooks.retry import Outcome
from gengate.wire import parse_retry_after

#: The most of a receiver's error body kept in the attempt record.
ERROR_EXCERPT = 200
#: The most of a receiver's answer read (raw bytes, about): a short answer is read whole, so its
#: connection is kept alive; a longer one is cut off with its connection.
ANSWER_SCAN = 4096
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

log = logging.getLogger(__name__)


class Transport:
    """The sender's HTTP client: `open` it on the running loop, `close` it when stopping."""

    def __init__(
        self, timeout_s: float, connections: int, per_host: int, tls: ssl.SSLContext | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self._connections = connections
        self._per_host = per_host
        #: Certificates are checked (against the URL's host name) with this, or the system's CAs.
        self._tls: ssl.SSLContext | bool = tls if tls is not None else True
        self._session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._connections, limit_per_host=self._per_host, keepalive_timeout=30, ssl=self._tls
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # No timer of aiohttp's: `post` bounds the whole attempt with one of its own.
            timeout=aiohttp.ClientTimeout(),
            trust_env=False,  # a proxy would resolve the name itself: the guard would be moot
            auto_decompress=False,  # the bounded read inflates only the excerpt it keeps
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, target: CheckedTarget, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """POST `body` to the checked address (`Host` and, for https, the TLS name and the
        certificate's are the URL's host); the outcome, never an exception for what the network
        or the receiver does."""
        assert self._session is not None, "transport not open"
        try:
            # aiohttp's timeout bounds the request; this bounds the whole attempt, so a receiver
            # trickling its answer a byte at a time cannot hold the attempt (and its lease).
            async with asyncio.timeout(self.timeout_s):
                response = await self._session.post(
                    target.ip_url(),
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    server_hostname=target.host if target.scheme == "https" else None,
                )
                try:
                    excerpt = await _read_prefix(response)
                finally:
                    if response.content.at_eof():
                        response.release()  # read to its end: the connection is kept alive
                    else:
                        response.close()  # cut off: so is its connection
        except TimeoutError:
            return Outcome(None, f"no answer within {self.timeout_s:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:ERROR_EXCERPT] or type(exc).__name__)
        status = response.status
        if log.isEnabledFor(logging.INFO):  # the line httpx wrote, which operators grep for
            version = (
                f"HTTP/{response.version.major}.{response.version.minor}" if response.version else "HTTP"
            )
            log.info('HTTP Request: POST %s "%s %d %s"', target.ip_url(), version, status, response.reason)
        if 200 <= status < 300:
            return Outcome(status, None)
        error = f"HTTP {status}"
        if status in _REDIRECTS:
            error += " (redirects are not followed)"
        if text := excerpt.text():
            error += f": {text}"
        return Outcome(status, error, parse_retry_after(response.headers.get("retry-after")))


async def _read_prefix(response: aiohttp.ClientResponse) -> Prefix:
    """Only an error's excerpt is kept: read a few KB of the answer, inflate only the excerpt. A
    receiver's gigabyte (or gzip bomb) is never read, on any status."""
    keep = 0 if 200 <= response.status < 300 else ERROR_EXCERPT
    prefix = Prefix(response.headers.get("content-encoding", ""), keep, ANSWER_SCAN)
    while not response.content.at_eof():
        raw = await response.content.readany()
        if not raw or not prefix.feed(raw):
            break
    return prefix
