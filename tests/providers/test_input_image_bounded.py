"""A client's image URL cannot make the gateway read or inflate more than the image limit.

The image host is a real loopback server (`hostile_http`) admitted by the SSRF policy. The limit
holds for decoded bytes however the body comes: declared too long, chunked without a length, or
gzip-encoded so that a megabyte on the wire inflates to a gigabyte (which used to inflate 64 MiB
at a time before the limit was even checked).
"""

from __future__ import annotations

import gzip
import io

import pytest
from PIL import Image

from gengate.net.guard import AddressPolicy
from gengate.providers.base import ProviderFailure
from gengate.providers.input_image import open_image, read_image_url
from hostile_http import MIB, HostileServer, Reply, bomb_reply, endless_reply, traced_peak

LOOPBACK = AddressPolicy.from_env_value("127.0.0.0/8")
LIMIT = MIB
#: The body read so far (a growing buffer may briefly be copied) and a piece on its way.
PEAK_LIMIT = 4 * LIMIT


@pytest.mark.parametrize(
    "reply",
    [
        bomb_reply(200, "image/png"),
        endless_reply(200, 64 * MIB, "image/png"),
        Reply(200, (("Content-Type", "image/png"),), b"x" * MIB, repeat=64),
    ],
    ids=["gzip-bomb", "chunked-without-length", "declared-length"],
)
async def test_an_image_over_the_limit_is_refused_within_the_limit(reply: Reply) -> None:
    async with HostileServer(lambda method, path: reply) as server:
        with traced_peak() as peak, pytest.raises(ProviderFailure) as caught:
            await read_image_url(server.base_url + "/big.png", LOOPBACK, max_bytes=LIMIT)
    assert caught.value.fail_code == "INVALID_INPUT"
    assert caught.value.message == f"The image is larger than {LIMIT} bytes."
    assert peak.bytes < PEAK_LIMIT, f"reading the image held {peak.bytes / MIB:.0f} MiB at once"


async def test_a_gzip_encoded_image_is_read_decoded() -> None:
    png = io.BytesIO()
    Image.new("RGB", (32, 16), "red").save(png, "PNG")
    reply = Reply(
        200, (("Content-Type", "image/png"), ("Content-Encoding", "gzip")), gzip.compress(png.getvalue())
    )
    async with HostileServer(lambda method, path: reply) as server:
        data = await read_image_url(server.base_url + "/ok.png", LOOPBACK, max_bytes=LIMIT)
    assert data == png.getvalue()
    assert open_image(data).size == (32, 16)


async def test_an_image_in_an_encoding_gengate_does_not_decode_is_refused() -> None:
    reply = Reply(200, (("Content-Type", "image/png"), ("Content-Encoding", "br")), b"\x8b\x00\x80")
    async with HostileServer(lambda method, path: reply) as server:
        with pytest.raises(ProviderFailure) as caught:
            await read_image_url(server.base_url + "/odd.png", LOOPBACK, max_bytes=LIMIT)
    assert caught.value.fail_code == "INVALID_INPUT"
    assert "'br' is not supported" in caught.value.message
