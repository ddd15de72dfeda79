"""One HTTP/1.1 client connection: a request written whole, its answer parsed by httptools and
read within a bound.

A bare `asyncio.Protocol` rather than a client library: the callback sender posts thousands of
small bodies a second, and aiohttp's request alone cost about 100 us of CPU each where this costs
about 25 (one `write` a request, the parser's callbacks, one future). It does what the sender
needs and no more: no redirect, no decompression (the answer's bytes go to a
:class:`~gengate.net.bounded.Prefix`, which inflates only the excerpt it keeps), no proxy.
"""

from __future__ import annotations

import asyncio
import re
import string
from collections.abc import Callable, Hashable, Mapping
from typing import cast
from urllib.parse import quote

import httptools

from gengate.net.bounded import Prefix

#: What reads an answer's body, given its status and `Content-Encoding`.
PrefixFor = Callable[[int, str], Prefix]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Header names already found to be tokens (the sender sends the same few names again and again).
_GOOD_NAMES: set[str] = set()
_GOOD_NAMES_KEPT = 256


class InvalidRequest(ValueError):
    """A request that would not be one request on the wire (a line break in a header, say)."""


class Disconnected(ConnectionError):
    """The receiver closed the connection before the end of its answer."""


class Answer:
    """A final answer's status line, what the sender reads of its headers, and its body's prefix.
    `keep_alive`: read to its end and the receiver keeps the connection open for another."""

    __slots__ = ("keep_alive", "prefix", "retry_after", "status", "version")

    def __init__(self, status: int, version: str, prefix: Prefix, retry_after: str | None) -> None:
        self.status = status
        self.version = version
        self.prefix = prefix
        self.retry_after = retry_after
        self.keep_alive = False


def encode_request(path: str, host: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """`POST path` with `Host` (the `host` given in `headers`, matched in any case, else `host`),
    `Content-Length` and the other headers, then the body. Raises :class:`InvalidRequest` for a
    name that is no token, or a CR, LF or NUL anywhere but where this puts the line breaks."""
    path = wire_path(path)
    lines = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "host":
            host = value
        elif lowered != "content-length":  # the body's own length is sent, never a caller's
            if name not in _GOOD_NAMES:
                _check_name(name)
            lines.append(f"{name}: {value}\r\n")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n{''.join(lines)}\r\n"
    # Exactly the line breaks put here, no other: a CR or LF in a value or the path adds one.
    breaks = len(lines) + 4
    if head.count("\n") != breaks or head.count("\r") != breaks or "\0" in head:
        raise InvalidRequest(_why_invalid(path, host, headers))
    if " " in path or not path.isprintable():
        raise InvalidRequest("the path holds a space or a control character")
    return head.encode() + body


def wire_path(path: str) -> str:
    """The path as sent: beyond ASCII, UTF-8 percent-encoded (as a browser does)."""
    return path if path.isascii() else quote(path, safe=string.punctuation)


def _check_name(name: str) -> None:
    if not _TOKEN.fullmatch(name):
        raise InvalidRequest(f"the header name {name!r} is not a token")
    if len(_GOOD_NAMES) < _GOOD_NAMES_KEPT:
        _GOOD_NAMES.add(name)


def _why_invalid(path: str, host: str, headers: Mapping[str, str]) -> str:
    """Which part of a refused request holds a CR, LF or NUL (its name, never its value)."""
    for name, value in headers.items():
        if any(c in value for c in "\r\n\0"):
            return f"the header {name!r} holds a CR, LF or NUL"
    if any(c in host for c in "\r\n\0"):
        return "the Host holds a CR, LF or NUL"
    return "the path holds a CR, LF or NUL"


class ClientConnection(asyncio.Protocol):
    """A connection to one receiver as the sender's pool holds it (HTTP/1.1's below, HTTP/2's in
    :mod:`gengate.webhooks.http2`): `usable` says whether it may carry another request,
    `on_idle_lost` tells the pool when it closes while idle."""

    def __init__(self, key: Hashable, prefix_for: PrefixFor) -> None:
        self.key = key
        #: Taken from the pool's idle connections rather than opened for this request.
        self.reused = False
        self.idle_since = 0.0
        self.on_idle_lost: Callable[[ClientConnection], None] | None = None
        self._prefix_for = prefix_for
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        #: Never to carry another request (closed, say).
        self._spent = False

    @property
    def usable(self) -> bool:
        transport = self._transport
        return not self._spent and transport is not None and not transport.is_closing()

    def close(self) -> None:
        """Close after what is written was sent (an idle connection)."""
        self._spent = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close now, dropping whatever is buffered (a connection in an unknown state)."""
        self._spent = True
        if self._transport is not None:
            self._transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are no subclass of it


class Connection(ClientConnection):
    """One HTTP/1.1 connection to one receiver, one request at a time (no pipelining).

    `send` writes a request and answers a future of its :class:`Answer`: set when the answer was
    read to its end, or as soon as `prefix_for`'s prefix wants no more of the body (the connection
    then is not reused); an exception when the connection breaks or the answer is no HTTP.
    Interim answers (`100 Continue`) are skipped. Spent once closed, or when bytes came that no
    request asked for.
    """

    def __init__(self, key: Hashable, prefix_for: PrefixFor) -> None:
        super().__init__(key, prefix_for)
        #: Bytes of the current answer received so far.
        self.received = 0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._answer: Answer | None = None
        self._interim = False
        #: The answer's end is known from its headers (a length, chunks), not the connection's close.
        self._framed = False
        self._encoding = ""
        self._retry_after: str | None = None

    def send(self, request: bytes) -> asyncio.Future[Answer]:
        assert self._waiter is None, "a connection carries one request at a time"
        transport = self._transport
        if transport is None or not self.usable:  # closed while it waited for its request
            raise Disconnected("the connection closed before the request went out")
        self._waiter = waiter = self._loop.create_future()
        self._answer = None
        self.received = 0
        transport.write(request)
        return waiter

    # -- asyncio.Protocol --------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing was asked (idle, or the answer was cut off): drop it
            self.abort()
            return
        self.received += len(data)
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(exc)
            self.abort()

    def eof_received(self) -> bool | None:
        self._spent = True
        return None  # the transport closes, and `connection_lost` settles the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._spent = True
        if self._waiter is not None:
            answer = self._answer
            if exc is None and answer is not None and not self._framed and not self._interim:
                self._settle()  # the answer's body ends where the connection does
            else:
                where = "before the end of its answer" if self.received else "without answering"
                self._fail(exc or Disconnected(f"the receiver closed the connection {where}"))
        elif self.on_idle_lost is not None:
            self.on_idle_lost(self)

    # -- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._waiter is None:  # a second answer to one request
            self._spent = True
        self._interim = self._framed = False
        self._encoding = ""
        self._retry_after = None

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-encoding":
            self._encoding = value.decode("latin-1")
        elif name == b"retry-after":
            self._retry_after = value.decode("latin-1")
        elif name == b"content-length":
            self._framed = True
        elif name == b"transfer-encoding":
            self._framed = value.rstrip().lower().endswith(b"chunked")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            self._interim = True  # the final answer follows on the same connection
            return
        prefix = self._prefix_for(status, self._encoding)
        self._answer = Answer(status, self._parser.get_http_version(), prefix, self._retry_after)

    def on_body(self, body: bytes) -> None:
        answer = self._answer
        if self._waiter is not None and answer is not None and not answer.prefix.feed(body):
            self._spent = True  # read no further: the rest of it stays unread, with the connection
            self._settle()

    def on_message_complete(self) -> None:
        if self._interim or self._waiter is None or self._answer is None:
            return
        self._answer.keep_alive = self._parser.should_keep_alive()
        self._settle()

    def _settle(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done() and self._answer is not None:
            waiter.set_result(self._answer)

    def _fail(self, exc: BaseException) -> None:
        self._spent = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
