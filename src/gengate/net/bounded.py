"""Reading the body of an HTTP answer from a server gengate does not control, within a bound.

The SDK uses it too, so the client-only distribution carries this package (see `gengate.net`).

httpx's `read()`, `.json()` and `aiter_bytes()` keep or hand over whatever arrives, inflating
`Content-Encoding: gzip` as it goes: one megabyte on the wire becomes a gigabyte in memory (one
64 KiB network read alone can inflate to 64 MiB). Every outbound read of gengate (callback
receivers, relays' upstreams and result URLs, input images) goes through here instead: the raw
bytes are inflated at most `STEP` at a time, and reading stops as soon as more than the limit has
been decoded, so a gzip bomb costs no more than an honest body of the limit's size.

Only `gzip` and `deflate` are decoded, the encodings :data:`ACCEPT_ENCODING` asks for; a server
that sends another gets :class:`BadEncoding`, never bytes read as if they were plain.
"""

from __future__ import annotations

import codecs
import contextlib
import zlib
from collections.abc import AsyncIterator, Iterator

import httpx

#: The `Accept-Encoding` of every bounded read: what :class:`Inflater` can decode.
ACCEPT_ENCODING = "gzip, deflate"
#: The most one inflating step produces, whatever the ratio of the compressed input.
STEP = 1 << 16
#: Headers that describe the wire form of a body, not the decoded bytes an in-memory copy holds.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class BodyError(Exception):
    """A body gengate will not read: see the subclasses. The message says why, for an error."""


class BodyTooLarge(BodyError):
    """More than `limit` bytes, decoded."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


class BadEncoding(BodyError):
    """A `Content-Encoding` other than gzip or deflate, or compressed data that is corrupt."""


class Inflater:
    """Decodes one body's `Content-Encoding` in bounded steps. Sans-IO: fed raw bytes, it yields
    decoded pieces of at most `step` bytes, so the caller may stop between any two."""

    def __init__(self, content_encoding: str) -> None:
        codings = [c.strip().lower() for c in content_encoding.split(",")]
        codings = [c for c in codings if c not in ("", "identity")]
        if len(codings) > 1:
            raise BadEncoding(f"Content-Encoding {content_encoding!r}: more than one encoding")
        self._zlib: zlib._Decompress | None = None
        #: The first bytes of a "deflate" body, until they tell whether it has a zlib header.
        self._deflate_head: bytes | None = None
        if codings and codings[0] in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif codings and codings[0] == "deflate":
            self._deflate_head = b""
        elif codings:
            raise BadEncoding(f"Content-Encoding {codings[0]!r} is not supported")

    def feed(self, raw: bytes, step: int = STEP) -> Iterator[bytes]:
        if self._deflate_head is not None:
            raw = self._deflate_head + raw
            if len(raw) < 2:
                self._deflate_head = raw
                return
            self._deflate_head = None
            # "deflate" is meant to carry a zlib header; some servers send it bare (httpx reads both).
            wrapped = raw[0] & 0x0F == 8 and (raw[0] << 8 | raw[1]) % 31 == 0
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        if self._zlib is None:
            for start in range(0, len(raw), step):
                yield raw[start : start + step]
            return
        pending = raw
        while True:
            try:
                piece = self._zlib.decompress(pending, step)
            except zlib.error as exc:
                raise BadEncoding(f"the compressed body is corrupt: {exc}") from None
            pending = self._zlib.unconsumed_tail
            if piece:
                yield piece
            # A full piece may leave output inside zlib even when all input is taken: ask again.
            # Bytes after the end of the stream are ignored, as httpx does.
            if not piece or (not pending and len(piece) < step):
                return


def _already_read(response: httpx.Response) -> bytes | None:
    """The decoded content of a response that is no stream (a test transport's, say), else None."""
    try:
        return response.content
    except httpx.ResponseNotRead:
        return None


def _declared_too_large(response: httpx.Response, limit: int) -> bool:
    """A plain body whose `Content-Length` is already over the limit need not be read at all."""
    if response.headers.get("content-encoding", "identity").strip().lower() != "identity":
        return False
    declared = response.headers.get("content-length", "")
    return declared.isascii() and declared.isdigit() and int(declared) > limit


async def aiter_capped(response: httpx.Response, limit: int) -> AsyncIterator[bytes]:
    """The decoded body of a streamed `response`, piece by piece; raises :class:`BodyTooLarge`
    as soon as more than `limit` bytes have been decoded, before they are handed over."""
    if _declared_too_large(response, limit):
        raise BodyTooLarge(limit)
    content = _already_read(response)
    if content is not None:
        if len(content) > limit:
            raise BodyTooLarge(limit)
        yield content
        return
    inflater = Inflater(response.headers.get("content-encoding", ""))
    size = 0
    async for raw in response.aiter_raw():
        for piece in inflater.feed(raw):
            size += len(piece)
            if size > limit:
                raise BodyTooLarge(limit)
            yield piece


async def aread_capped(response: httpx.Response, limit: int) -> bytes:
    """The whole decoded body of a streamed `response`, at most `limit` bytes of it."""
    body = bytearray()
    async for piece in aiter_capped(response, limit):
        body += piece
    return bytes(body)


async def send_capped(client: httpx.AsyncClient, request: httpx.Request, limit: int) -> httpx.Response:
    """Send `request` and read its answer whole, up to `limit` decoded bytes: a response on which
    `.json()` and `.text` work. Raises :class:`BodyError` for a body over the limit."""
    response = await client.send(request, stream=True)
    try:
        body = await aread_capped(response, limit)
    finally:
        await response.aclose()
    return with_body(response, body)


def with_body(response: httpx.Response, body: bytes) -> httpx.Response:
    """An in-memory copy of a streamed `response` holding `body` as its (decoded) content."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=body,
        request=response.request,
        extensions=response.extensions,
    )


class Prefix:
    """The first `keep` decoded bytes of a body that is read no further than `scan` raw bytes.

    Sans-IO, for the async and sync loops below: `feed` each raw chunk while it returns True.
    A body that ends within `scan` is read to its end, so its connection can be kept alive.
    """

    def __init__(self, content_encoding: str, keep: int, scan: int) -> None:
        self.keep = keep
        self.scan = scan
        self.data = bytearray()
        self._seen = 0
        self._inflater: Inflater | None = None
        if keep > 0:
            with contextlib.suppress(BadEncoding):  # then nothing of it is kept: only read past
                self._inflater = Inflater(content_encoding)

    def feed(self, raw: bytes) -> bool:
        self._seen += len(raw)
        if self._inflater is not None:
            try:
                for piece in self._inflater.feed(raw, step=max(1, self.keep - len(self.data))):
                    self.data += piece
                    if len(self.data) >= self.keep:
                        self._inflater = None
                        break
            except BadEncoding:
                self._inflater = None
        return self._seen < self.scan

    def text(self) -> str:
        """The kept bytes as UTF-8, without a character the cut split; '' when not UTF-8."""
        try:
            return codecs.getincrementaldecoder("utf-8")().decode(bytes(self.data[: self.keep]))
        except UnicodeDecodeError:
            return ""


async def aread_prefix(response: httpx.Response, keep: int, scan: int = 4096) -> Prefix:
    """Up to `keep` decoded bytes of a streamed `response`, reading at most about `scan` raw
    bytes (one network read past it at worst). Never raises for what the body holds."""
    prefix, content = _prefix_of(response, keep, scan)
    if content is None:
        async for raw in response.aiter_raw():
            if not prefix.feed(raw):
                break
    return prefix


def read_prefix(response: httpx.Response, keep: int, scan: int = 4096) -> Prefix:
    """:func:`aread_prefix` for a synchronous client."""
    prefix, content = _prefix_of(response, keep, scan)
    if content is None:
        for raw in response.iter_raw():
            if not prefix.feed(raw):
                break
    return prefix


def _prefix_of(response: httpx.Response, keep: int, scan: int) -> tuple[Prefix, bytes | None]:
    """A prefix to feed the raw body to; already filled (and the content) when it was read."""
    content = _already_read(response)
    if content is None:
        return Prefix(response.headers.get("content-encoding", ""), keep, scan), None
    prefix = Prefix("", keep, scan)
    prefix.feed(content[:keep])
    return prefix, content
