"""The bounded reader: inflating in bounded steps, and stopping exactly at the limit.

`Inflater` is checked against the standard library's own codecs over any chunking of the wire
bytes and any step; the readers against a real loopback server (`hostile_http`).
"""

from __future__ import annotations

import gzip
import itertools
import zlib
from collections.abc import Callable

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gengate.net.bounded import (
    BadEncoding,
    BodyTooLarge,
    Inflater,
    Prefix,
    aread_capped,
    aread_prefix,
    send_capped,
)
from hostile_http import MIB, HostileServer, Reply, bomb_reply

ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,  # with its zlib header, as the standard says
    "deflate-bare": lambda data: zlib.compress(data)[2:-4],  # as some servers send it
    "identity": lambda data: data,
}


def inflate(encoding: str, wire: bytes, cuts: list[int], step: int) -> bytes:
    inflater = Inflater(encoding.removesuffix("-bare"))
    out = bytearray()
    edges = [0, *sorted({cut % (len(wire) + 1) for cut in cuts}), len(wire)]
    for start, end in itertools.pairwise(edges):
        for piece in inflater.feed(wire[start:end], step):
            assert len(piece) <= step
            out += piece
    return bytes(out)


REPEATED = st.builds(lambda n, b: b * n, st.integers(0, 300_000), st.binary(min_size=1, max_size=3))


@given(
    encoding=st.sampled_from(list(ENCODERS)),
    data=st.one_of(st.binary(max_size=5000), REPEATED),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=8),
    step=st.integers(1, 1 << 17),
)
def test_inflating_in_steps_gives_the_body_back(
    encoding: str, data: bytes, cuts: list[int], step: int
) -> None:
    assert inflate(encoding, ENCODERS[encoding](data), cuts, step) == data


def test_a_bomb_inflates_a_step_at_a_time() -> None:
    first = next(iter(Inflater("gzip").feed(bomb_reply().body)))
    assert len(first) == 1 << 16


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip", "compress"])
def test_other_encodings_are_refused_by_name(encoding: str) -> None:
    with pytest.raises(BadEncoding, match=r"not supported|more than one"):
        Inflater(encoding)


def test_corrupt_gzip_is_refused() -> None:
    with pytest.raises(BadEncoding, match="corrupt"):
        list(Inflater("gzip").feed(b"\x1f\x8b\x08\x00" + b"\xff" * 20))


def test_a_prefix_keeps_whole_characters_only() -> None:
    prefix = Prefix("", keep=4, scan=100)
    assert prefix.feed("abcé".encode() + b"zzz")  # 4 bytes kept: "abc" and half of "é"
    assert prefix.text() == "abc"
    assert Prefix("", 4, 100).text() == ""


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(("size", "fits"), [(MIB, True), (MIB + 1, False)])
async def test_the_limit_is_exact(size: int, fits: bool, chunked: bool) -> None:
    reply = Reply(200, body=b"y" * size, chunked=chunked)
    async with HostileServer(lambda method, path: reply) as server, httpx.AsyncClient() as client:
        request = client.build_request("GET", server.base_url + "/")
        if fits:
            response = await send_capped(client, request, MIB)
            assert response.content == b"y" * size
            assert "content-encoding" not in response.headers
        else:
            with pytest.raises(BodyTooLarge, match="larger than 1048576 bytes"):
                await send_capped(client, request, MIB)


async def test_a_gzip_answer_is_kept_decoded_and_its_wire_headers_dropped() -> None:
    reply = Reply(404, (("Content-Encoding", "gzip"), ("X-Trace-Id", "t1")), gzip.compress(b'{"a": 1}'))
    async with HostileServer(lambda method, path: reply) as server, httpx.AsyncClient() as client:
        response = await send_capped(client, client.build_request("GET", server.base_url + "/"), 100)
    assert response.json() == {"a": 1}
    assert response.status_code == 404
    assert response.headers["x-trace-id"] == "t1"
    assert "content-encoding" not in response.headers


async def test_a_prefix_reads_about_scan_bytes_of_a_long_body() -> None:
    reply = Reply(200, body=b"z" * MIB, repeat=64)
    async with (
        HostileServer(lambda method, path: reply) as server,
        httpx.AsyncClient() as client,
        client.stream("GET", server.base_url + "/") as response,
    ):
        prefix = await aread_prefix(response, keep=10, scan=4096)
        assert response.num_bytes_downloaded <= 4096 + (1 << 16)  # one network read past `scan`
    assert prefix.text() == "z" * 10


async def test_a_response_read_already_is_measured_as_it_is() -> None:
    response = httpx.Response(200, content=b"q" * 10, request=httpx.Request("GET", "http://x/"))
    assert await aread_capped(response, 10) == b"q" * 10
    with pytest.raises(BodyTooLarge):
        await aread_capped(response, 9)
    assert (await aread_prefix(response, 4)).text() == "qqqq"
