"""uvicorn's httptools protocol, bounded: a request head has a size limit and a time limit, an
over-full process answers 503, and errors the server answers itself use the gateway's envelope.

The hot path stays as it was. A head that arrives in one read costs a few attribute tests;
only a head split over reads arms a timer (the one armed per connection covers a client that
connects and says nothing). Bytes are counted per read while a head is being read, which
bounds memory to the limit plus one read; a single read that both starts and ends an
oversized head is measured exactly, from the parsed URL and headers, when it is that large.

Two more things happen here for speed: the app's hot routes (status reads, and submits whose
body came with their head) are answered below ASGI (:mod:`gengate.server.hot_lane`), and a
connection's keep-alive timer is armed once per idle period instead of once per response.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gengate.deadlines import Bucket, cancel, deadlines_of
from gengate.server import replies
from gengate.server.coalesce import CoalescingTransport
from gengate.server.hot_lane import (
    BODY_HEADERS,
    HOLD_KEY,
    Headers,
    HeldAnswer,
    HotCycle,
    HotLane,
    find_hot_lane,
    post_answerer,
    render,
)
from gengate.server.limits import ConnectionLimits

log = logging.getLogger("gengate.server")

#: How long a connection answered early (431, 400) keeps being read, and its bytes dropped,
#: so that closing it does not reset it before the client has read the answer.
LINGER_S = 2.0
#: What the request line adds to the URL besides it: `GET ` and ` HTTP/1.1\r\n`, roughly.
_REQUEST_LINE_EXTRA = 20


class GatewayConfig(Config):
    """uvicorn's config, carrying the limits to each connection (and, pickled, to each process)."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **options: Any) -> None:
        super().__init__(app, http=GatewayHttpProtocol, **options)
        self.limits = limits
        #: The app's hot routes, answered below ASGI (:mod:`gengate.server.hot_lane`); found
        #: once the app is loaded, in each process.
        self.hot_lane: HotLane | None = None

    def load(self) -> None:
        super().load()
        self.hot_lane = find_hot_lane(self.loaded_app)


class _HeadTooLarge(Exception):
    """Raised inside the parser to stop it; uvicorn then calls `send_400_response`."""


class GatewayHttpProtocol(HttpToolsProtocol):
    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        limits = config.limits if isinstance(config, GatewayConfig) else ConnectionLimits()
        self._max_head = limits.max_header_bytes
        self._head_timeout_s = limits.header_timeout_s
        self._max_connections = limits.max_connections
        #: From connecting, and from each message's end, until the next head is complete.
        self._reading_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_too_large = False
        #: Answered early: what the client still sends is dropped until the connection closes.
        self._answered = False
        self._hot_lane = config.hot_lane if isinstance(config, GatewayConfig) and not self.root_path else None
        self._answer_post = post_answerer(self._hot_lane)
        #: When the last response ended on a connection with nothing in flight; None while a
        #: request is being read or answered (see `on_response_complete`).
        self._idle_since: float | None = None
        #: The keep-alive deadline's bucket while one is set (:meth:`due`).
        self._deadlines = deadlines_of(self.loop)
        self._keep_alive: Bucket | None = None
        #: A hot `POST` whose body is still arriving in the read that brought its head: its
        #: lane, route, scope and the cycle it replaced (:meth:`_answer_hot`).
        self._hot_post: tuple[HotLane, object, Any, Any] | None = None
        #: A long-poll held with no coroutine (:meth:`_hold`), until it answers or the client
        #: leaves, and its request's cycle.
        self._held: HeldAnswer | None = None
        self._held_cycle: HotCycle | None = None

    # -- the connection ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Responses (and the early answers below) leave in one write; uvicorn's flow control
        # keeps the transport itself, set up above.
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        if len(self.connections) > self._max_connections:
            self.app = replies.reply_app(replies.over_capacity(len(self.connections)))
            self._hot_lane = None
        self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_timed_out)

    def shutdown(self) -> None:
        """The server stops: a held long-poll answers now with its task as it stands (its client
        can ask another process at once, not after the graceful timeout), then the connection
        closes."""
        super().shutdown()
        held, cycle = self._held, self._held_cycle
        if held is not None and cycle is not None:
            cycle.keep_alive = False
            held.answer_now()

    def handle_websocket_upgrade(self) -> None:
        # A websocket protocol gets the connection's own transport.
        if isinstance(self.transport, CoalescingTransport):
            self.transport.flush()
            self.transport = self.transport.wrapped
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        held = self._held
        if held is not None:
            self._held = None
            held.drop()
        super().connection_lost(exc)
        cancel(self._keep_alive, self)
        self._keep_alive = None

    # -- keep-alive: one deadline per idle period, not one timer per response ---------------
    # uvicorn arms a timer after every response and cancels it on every read: two timer-heap
    # operations per request. Here a read only marks the connection busy; the deadline, set
    # once, closes the connection when it finds it idle long enough, else is set for the rest.
    # It is one of the loop's shared deadlines (:mod:`gengate.deadlines`), not a timer of its
    # own: 10,000 long-polls answered at once would make 10,000 timers.
    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        now = self._idle_since = self.loop.time()
        if self._keep_alive is None:
            self._keep_alive = self._deadlines.add(now + self.timeout_keep_alive, self)

    def due(self) -> None:
        """The keep-alive deadline: close the connection if it stayed idle that long."""
        self._keep_alive = None
        if self._idle_since is None:
            return  # busy: the response sets it again
        when = self._idle_since + self.timeout_keep_alive
        if when > self.loop.time():
            self._keep_alive = self._deadlines.add(when, self)
        else:
            self.timeout_keep_alive_handler()

    # The three methods below run on every request: they call uvicorn's directly, which costs
    # half of what `super()` does.
    def data_received(self, data: bytes) -> None:
        if not self._reading_head:  # a body, or a request being answered: uvicorn's own path
            HttpToolsProtocol.data_received(self, data)
            if self._hot_post is not None:  # (a hot POST's head after a message ending here)
                self._hot_post_to_asgi()
            return
        if self._answered:
            return
        self._head_bytes += len(data)
        HttpToolsProtocol.data_received(self, data)
        if self._hot_post is not None:  # its body did not all come in this read
            self._hot_post_to_asgi()
        if self._reading_head and self._head_bytes and not self._answered:  # a head split over reads
            if self._head_bytes > self._max_head:
                self._head_too_large = True
                self.send_400_response("")
            elif self._head_timer is None:
                self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_timed_out)

    # -- parser callbacks -------------------------------------------------------------
    def on_headers_complete(self) -> None:
        self._reading_head = False
        if self._head_timer is not None:
            self._cancel_head_timer()
        if self._head_bytes > self._max_head and self._head_size() > self._max_head:
            self._head_too_large = True
            raise _HeadTooLarge
        if self._hot_lane is None or not self._answer_hot(self._hot_lane):
            HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        HttpToolsProtocol.on_message_complete(self)
        if self._hot_post is not None:  # its whole body came with its head: the lane answers
            lane, route, scope, _previous = self._hot_post
            self._hot_post = None
            self._start_hot(lane, route, scope, self.cycle)  # type: ignore[arg-type]
        self._reading_head = True  # whether or not the app read the body (it may have answered first)
        self._head_bytes = 0

    # -- hot requests, below ASGI ---------------------------------------------------------
    def _answer_hot(self, lane: HotLane) -> bool:
        """Start answering the request on the lane when it is a plain `GET` of a hot route, or
        a `POST` of one with a `Content-Length` (started once its body is all there, or left
        to uvicorn when the read ends before); False leaves it to uvicorn."""
        method = self._hot_method()
        if method is None:
            return False
        parsed = httptools.parse_url(self.url)
        raw_path: bytes = parsed.path
        if b"%" in raw_path:
            return False
        path = raw_path.decode("ascii")
        route = lane.route_for(method, path)
        if route is None:
            return False
        parser = self.parser
        scope: Any = self.scope
        http_version = parser.get_http_version()
        if http_version != "1.1":
            scope["http_version"] = http_version
        scope["method"] = method
        scope["path"] = path
        scope["raw_path"] = raw_path
        scope["query_string"] = parsed.query or b""
        if method == "GET":
            scope[HOLD_KEY] = True
        hot = HotCycle(keep_alive=http_version != "1.0" and parser.should_keep_alive())
        cycle = self.cycle
        self.cycle = hot  # type: ignore[assignment]
        if method == "POST":  # uvicorn's `on_body` fills `hot.body`; `on_message_complete` starts it
            self._hot_post = (lane, route, scope, cycle)
        else:
            self._start_hot(lane, route, scope, hot)
        return True

    def _hot_method(self) -> str | None:
        """`GET` or `POST` when the head lets the request take the lane: no upgrade, nothing in
        flight on the connection, no body for a `GET`, one `Content-Length` for a `POST`."""
        parser = self.parser
        method = parser.get_method()
        post = method == b"POST" and self._answer_post is not None
        if not (post or method == b"GET") or parser.should_upgrade():
            return None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            return None  # pipelined behind a request in flight: uvicorn queues it
        length = None
        for name, value in self.headers:
            if name in BODY_HEADERS:
                if not post or name != b"content-length" or length is not None:
                    return None  # a GET with a body, chunked, `Expect`, or two lengths
                length = value
        if post and not (length is not None and length.isdigit()):
            return None
        return "POST" if post else "GET"

    def _start_hot(self, lane: HotLane, route: object, scope: Any, hot: HotCycle) -> None:
        task = self.loop.create_task(self._run_hot(lane, route, scope, hot))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _hot_post_to_asgi(self) -> None:
        """A hot `POST` whose body is split over reads goes to uvicorn after all: its cycle is
        made as if the head had just ended, with the body so far."""
        assert self._hot_post is not None
        hot = self.cycle
        self.cycle = self._hot_post[3]
        self._hot_post = None
        HttpToolsProtocol.on_headers_complete(self)
        if hot.body:
            self.cycle.body = hot.body
            self.cycle.message_event.set()

    async def _run_hot(self, lane: HotLane, route: object, scope: Any, cycle: HotCycle) -> None:
        try:
            if scope["method"] == "GET" or self._answer_post is None:
                answer = await lane.answer(route, scope)
            else:
                answer = await self._answer_post(route, scope, cycle.receive)
                if isinstance(answer, tuple) and (b"connection", b"close") in answer[1]:
                    cycle.keep_alive = False  # the app's own (a 413): as uvicorn does
        except Exception:
            log.exception("unexpected error answering %s", scope["path"])
            self._close()
            return
        if not isinstance(answer, tuple):  # a long-poll, held with no coroutine until it answers
            self._hold(answer, cycle)
            return
        status, headers, body = answer
        if self._gone(cycle):
            return
        if self.flow.write_paused:
            await self.flow.drain()
        self._write_hot(cycle, status, headers, body)

    def _gone(self, cycle: HotCycle) -> bool:
        """Whether the answer to `cycle` has nowhere to go. (A request pipelined behind it holds
        `self.cycle`, so look at the connection too: closing, or answered early by
        `send_400_response`, its output ended by EOF.)"""
        return cycle.disconnected or self._answered or self.transport.is_closing()

    def _write_hot(self, cycle: HotCycle, status: int, headers: Headers, body: bytes) -> None:
        response = render(status, self.server_state.default_headers, headers, body, cycle.keep_alive)
        # Held by the coalescing transport until the loop turns: the answers of one turn leave
        # together (a third less CPU a request than writing each at once, measured in pairs).
        self.transport.write(response)
        cycle.response_complete = True
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()

    # -- held answers (long-polls), with no coroutine ---------------------------------------
    def _hold(self, held: HeldAnswer, cycle: HotCycle) -> None:
        if self._gone(cycle):
            held.drop()
            return
        self._held = held
        self._held_cycle = cycle
        held.hold(partial(self._answer_held, held, cycle))

    def _answer_held(
        self, held: HeldAnswer, cycle: HotCycle, status: int, headers: Headers, body: bytes
    ) -> None:
        if self._held is held:
            self._held = self._held_cycle = None
        if not self._gone(cycle):
            # No wait for the transport's buffer to drain: nothing else was written while the
            # request was held, and one answer is bounded.
            self._write_hot(cycle, status, headers, body)

    # -- answering early --------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, here in the envelope (or a 431)."""
        if self._answered or self.transport.is_closing():
            return
        error = replies.head_too_large(self._max_head) if self._head_too_large else replies.malformed()
        url: bytes = getattr(self, "url", b"")  # set once a request line has begun
        path = url.partition(b"?")[0].decode("latin-1")
        self.transport.write(replies.render(error, path, self.server_state.default_headers))
        self._answered = True
        self._reading_head = True  # so that what follows is dropped, not parsed
        self._cancel_head_timer()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self._close)

    def _head_size(self) -> int:
        url: bytes = self.url
        headers = sum(len(name) + len(value) + 4 for name, value in self.headers)
        return _REQUEST_LINE_EXTRA + len(url) + headers

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._reading_head:
            self._close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()
