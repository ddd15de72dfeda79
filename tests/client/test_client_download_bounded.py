"""The SDK's download reads only the head of an error answer, whoever serves the result URL.

A result URL may point at a CDN; its error answer is read for the message only. Against a real
loopback server (`hostile_http`) answering 404 with a gzip bomb (1 MB that inflates to 1 GiB), the
SDK used to inflate the whole gigabyte into memory before raising.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gengate.client import APIError, AsyncClient, Client
from hostile_http import FILL, MIB, HostileServer, bomb_reply, traced_peak

PEAK_LIMIT = 16 * MIB


def files_in(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def test_sync_download_of_a_bombed_error_reads_its_head_only(tmp_path: Path) -> None:
    hostile = HostileServer(lambda method, path: bomb_reply(404, "text/plain"))
    with (
        hostile.in_thread() as server,
        Client(server.base_url, "k") as client,
        traced_peak() as peak,
        pytest.raises(APIError) as caught,
    ):
        client.download(server.base_url + "/files/x.png", tmp_path / "x.png")
    assert caught.value.status == 404
    assert caught.value.message == FILL.decode() * 200
    assert peak.bytes < PEAK_LIMIT, f"the SDK held {peak.bytes / MIB:.0f} MiB at once"
    assert files_in(tmp_path) == []


async def test_async_download_of_a_bombed_error_reads_its_head_only(tmp_path: Path) -> None:
    hostile = HostileServer(lambda method, path: bomb_reply(404, "text/plain"))
    async with hostile as server, AsyncClient(server.base_url, "k") as client:
        with traced_peak() as peak, pytest.raises(APIError) as caught:
            await client.download(server.base_url + "/files/x.png", tmp_path / "x.png")
    assert caught.value.status == 404
    assert caught.value.message == FILL.decode() * 200
    assert peak.bytes < PEAK_LIMIT, f"the SDK held {peak.bytes / MIB:.0f} MiB at once"
    assert files_in(tmp_path) == []
