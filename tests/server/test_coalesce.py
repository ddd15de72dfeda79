"""The connection transport that sends what a connection writes in one loop turn in one write."""

from __future__ import annotations

import asyncio

from gengate.server.coalesce import HOLD_BYTES, CoalescingTransport


class Recorder(asyncio.Transport):
    """What reaches the socket: one entry per `write`, and the calls that end the output."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[object] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.calls.append(bytes(data))

    def close(self) -> None:
        self.calls.append("close")

    def write_eof(self) -> None:
        self.calls.append("eof")

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default


async def test_a_head_and_its_body_leave_in_one_write_when_the_loop_turns() -> None:
    raw = Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert raw.calls == []  # held until every ready connection of this turn was read
    await asyncio.sleep(0)
    assert raw.calls == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    await asyncio.sleep(0)
    assert len(raw.calls) == 1


async def test_a_large_piece_leaves_at_once() -> None:
    raw = Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"a" * HOLD_BYTES)
    assert raw.calls == [b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * HOLD_BYTES]
    transport.write(b"tail")
    await asyncio.sleep(0)
    assert raw.calls[1:] == [b"tail"]


async def test_a_lone_write_leaves_when_the_loop_turns() -> None:
    raw = Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"data: one\n\n")  # an event of a stream, nothing after it for now
    assert raw.calls == []
    await asyncio.sleep(0)
    assert raw.calls == [b"data: one\n\n"]
    transport.write(b"data: two\n\n")
    await asyncio.sleep(0)
    assert raw.calls == [b"data: one\n\n", b"data: two\n\n"]


async def test_ending_the_output_sends_what_is_held_first() -> None:
    for end, marker in (("close", "close"), ("write_eof", "eof")):
        raw = Recorder()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
        getattr(transport, end)()
        assert raw.calls == [b"HTTP/1.1 503 Service Unavailable\r\n\r\n", marker]


async def test_what_is_written_after_the_output_ended_is_dropped() -> None:
    raw = Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    transport.write_eof()
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")  # the answer to a request before the bad one
    await asyncio.sleep(0)
    assert raw.calls == [b"HTTP/1.1 400 Bad Request\r\n\r\n", "eof"]


async def test_the_rest_goes_straight_through() -> None:
    raw = Recorder()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"x")
    assert transport.get_write_buffer_size() == 0
    assert raw.calls == [b"x"]  # a flow-control check sees the held bytes as sent
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
    assert transport.wrapped is raw
