"""One HTTP/2 client connection (the receiver chose `h2` by ALPN): many requests at once, each
answer read within the same bound as over HTTP/1.1.

The h2 library does the protocol (frames, HPACK, flow control); this protocol feeds it the bytes
and settles one future per stream. An answer is read as :class:`~gengate.webhooks.http1.Connection`
reads one: its raw bytes go to a :class:`~gengate.net.bounded.Prefix`, and once that wants no more
the stream alone is reset (`CANCEL`): over HTTP/2 a cut-off answer does not cost the connection.
A stream whose future is cancelled (the attempt's timeout) is reset too. After a GOAWAY the
connection takes no new stream, and the streams it says it did not process fail as
:class:`Resendable`: the transport sends them again at once on another connection.

h2 is pure Python and costs about three times the CPU a request of the HTTP/1.1 connection; its
header checks and Huffman coding, which a callback's headers do not need, are turned off here
(in-process, client and server together: 660 -> 490 us a request).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
from hpack import Encoder, HeaderTuple, NeverIndexedHeaderTuple

from gengate.webhooks.http1 import Answer, ClientConnection, Disconnected, PrefixFor

#: The most streams this side opens at once on one connection, whatever the receiver allows.
MAX_STREAMS = 100
#: A stream id past this is not started: the connection retires (ids are 31 bits, never reused).
_LAST_STREAM_ID = 2**31 - 1 - 2 * MAX_STREAMS
#: Headers that mean something to one HTTP/1.1 connection and are not sent over HTTP/2.
_HOP_BY_HOP = frozenset(
    {"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"}
)

#: The headers whose values repeat from one callback to the next: kept in HPACK's table, sent
#: as an index. The others (the message id, its signature, the timestamp, the length, the trace
#: ids) differ each time: sent literally, never indexed, so that they evict nothing from it.
_INDEXED = frozenset({b":authority", b":path", b"content-type", b"user-agent", b"accept-encoding"})
#: The request's headers are checked before they come here (`http1.encode_request`: names are
#: tokens, no CR, LF or NUL anywhere) and lowercased here: h2's own checks would find nothing.
_CONFIG = h2.config.H2Configuration(
    client_side=True, header_encoding=None, validate_outbound_headers=False, normalize_outbound_headers=False
)


class _PlainEncoder(Encoder):
    """HPACK without Huffman coding: h2 codes every literal by default, in pure Python, the
    largest single cost of a request under a profiler; uncoded, the few literals of a callback
    (its id, timestamp and signature) take some 30 bytes more."""

    def encode(self, headers: Any, huffman: bool = False) -> bytes:
        return super().encode(headers, huffman=False)


def _field(name: bytes, value: bytes) -> HeaderTuple:
    return HeaderTuple(name, value) if name in _INDEXED else NeverIndexedHeaderTuple(name, value)


class Resendable(Disconnected):
    """A request with no answer that may go again at once, on another connection: the receiver
    said it did not process it (a GOAWAY below its stream, or the stream refused), or the
    connection ended before its answer began after carrying others' (receivers close a
    connection after so many requests, as over HTTP/1.1; delivery is at least once, so a request
    that was read after all is merely sent twice)."""


class _Stream:
    """One request's state: its future, its answer so far, and its body not yet sent."""

    __slots__ = ("answer", "unsent", "waiter")

    def __init__(self, waiter: asyncio.Future[Answer], body: bytes) -> None:
        self.waiter = waiter
        self.answer: Answer | None = None
        self.unsent = memoryview(body)


class H2Connection(ClientConnection):
    """A connection carrying up to :attr:`capacity` requests at once (see the module's docstring).

    The same pool holds it as an HTTP/1.1 connection; the transport takes it out of the pool
    while it carries requests and puts it back when it carries none. Spent once closed, after
    a GOAWAY, or out of stream ids."""

    def __init__(self, key: Hashable, prefix_for: PrefixFor) -> None:
        super().__init__(key, prefix_for)
        self._h2 = h2.connection.H2Connection(config=_CONFIG)
        self._h2.encoder = _PlainEncoder()  # (before any header went out: the table is empty)
        self._streams: dict[int, _Stream] = {}
        #: Answers received whole (or as far as they were read) on this connection.
        self._answers = 0
        #: The transport's requests on it, from before they are sent until their coroutines
        #: have their answers: back to the pool when none is left (the transport counts them).
        self.users = 0

    # -- the transport's side ------------------------------------------------------------------
    def has_room(self) -> bool:
        limit = min(MAX_STREAMS, self._h2.remote_settings.max_concurrent_streams)
        return self.usable and len(self._streams) < limit

    def send(
        self, path: str, authority: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> asyncio.Future[Answer]:
        """POST `body`; the future of its answer. Cancelling the future resets the stream."""
        if not self.usable:
            raise Disconnected("the connection closed before the request went out")
        stream_id = self._h2.get_next_available_stream_id()
        if stream_id >= _LAST_STREAM_ID:
            self._spent = True  # this one still goes; the next request opens another connection
        fields = [_field(b":method", b"POST"), _field(b":scheme", b"https")]
        fields += [_field(b":authority", authority.encode()), _field(b":path", path.encode())]
        for name, value in headers:
            lowered = name.lower()
            if lowered not in _HOP_BY_HOP:
                fields.append(_field(lowered.encode(), value.encode()))
        fields.append(_field(b"content-length", b"%d" % len(body)))
        waiter: asyncio.Future[Answer] = self._loop.create_future()
        try:
            self._h2.send_headers(stream_id, fields, end_stream=not body)
        except h2.exceptions.ProtocolError as exc:  # its state unknown now: no further request
            self._spent = True
            raise Disconnected(f"HTTP/2 refused the request: {exc}") from exc
        self._streams[stream_id] = _Stream(waiter, body)
        if body:
            self._send_body(stream_id)
        self._flush()
        waiter.add_done_callback(lambda done: self._abandon(stream_id) if done.cancelled() else None)
        return waiter

    def close(self) -> None:
        """Say GOAWAY and close (an idle connection)."""
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection()
                self._flush()
        super().close()

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._h2.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail_all(Disconnected(f"HTTP/2 protocol error from the receiver: {exc}"))
            self.abort()
            return
        for event in events:
            self._on_event(event)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._spent = True
        if not self._streams:
            if self.on_idle_lost is not None:
                self.on_idle_lost(self)
            return
        why = f"{type(exc).__name__}: {exc}" if exc else "the receiver closed the connection"
        for stream_id, stream in list(self._streams.items()):
            if stream.answer is None and self._answers:
                self._fail(stream_id, Resendable(f"{why} before answering (it had answered others)"))
            else:
                self._fail(stream_id, exc or Disconnected(f"{why} before the end of its answer"))

    # -- the h2 library's events ---------------------------------------------------------------
    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            self._on_response(event.stream_id, event.headers or [])
        elif isinstance(event, h2.events.DataReceived):
            self._on_data(event.stream_id, event.data or b"", event.flow_controlled_length or 0)
        elif isinstance(event, h2.events.StreamEnded):
            self._settle(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            code = event.error_code
            name = code.name if isinstance(code, h2.errors.ErrorCodes) else str(code)
            kind = Resendable if code == h2.errors.ErrorCodes.REFUSED_STREAM else Disconnected
            self._fail(event.stream_id, kind(f"the receiver reset the stream ({name})"))
        elif isinstance(event, h2.events.WindowUpdated):
            for stream_id in [event.stream_id] if event.stream_id else list(self._streams):
                if stream_id in self._streams:
                    self._send_body(stream_id)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._spent = True
            last = event.last_stream_id or 0
            unprocessed = Resendable("the receiver closed the connection (GOAWAY) before this request")
            for stream_id in [sid for sid in self._streams if sid > last]:
                self._fail(stream_id, unprocessed)
            if not self._streams and self._transport is not None:
                self._transport.close()

    def _on_response(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        status, encoding, retry_after = 0, "", None
        for name, value in headers:
            if name == b":status":
                status = int(value)
            elif name == b"content-encoding":
                encoding = value.decode("latin-1")
            elif name == b"retry-after":
                retry_after = value.decode("latin-1")
        stream.answer = Answer(status, "2", self._prefix_for(status, encoding), retry_after)

    def _on_data(self, stream_id: int, data: bytes, flow_controlled: int) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):  # (a stream closed meanwhile)
            self._h2.acknowledge_received_data(flow_controlled, stream_id)
        stream = self._streams.get(stream_id)
        if stream is None or stream.answer is None:
            return
        if not stream.answer.prefix.feed(data):
            self._reset(stream_id)  # read no further: only this stream is given up
            self._settle(stream_id)

    # -- streams -------------------------------------------------------------------------------
    def _send_body(self, stream_id: int) -> None:
        """As much of the stream's body as the flow-control windows allow; the end with the last."""
        stream = self._streams[stream_id]
        while stream.unsent:
            room = min(self._h2.local_flow_control_window(stream_id), self._h2.max_outbound_frame_size)
            if room <= 0:
                return  # a WINDOW_UPDATE sends the rest
            chunk, stream.unsent = stream.unsent[:room], stream.unsent[room:]
            self._h2.send_data(stream_id, chunk.tobytes(), end_stream=not stream.unsent)

    def _settle(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        if stream.unsent:  # answered before its body was all sent: this side ends it too
            self._reset(stream_id)
        waiter = stream.waiter
        if waiter.done():
            return
        if stream.answer is None:
            waiter.set_exception(Disconnected("the stream ended without an answer"))
        else:
            self._answers += 1
            waiter.set_result(stream.answer)

    def _fail(self, stream_id: int, exc: BaseException) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None and not stream.waiter.done():
            stream.waiter.set_exception(exc)

    def _fail_all(self, exc: BaseException) -> None:
        for stream_id in list(self._streams):
            self._fail(stream_id, exc)

    def _abandon(self, stream_id: int) -> None:
        """The request's future was cancelled: reset its stream, if it is still open."""
        if self._streams.pop(stream_id, None) is not None:
            self._reset(stream_id)
            self._flush()

    def _reset(self, stream_id: int) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
