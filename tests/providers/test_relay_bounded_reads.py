"""An upstream cannot make a relay read, or inflate, more than its bounds.

The upstream here is a real loopback server (`hostile_http`) answering a gzip bomb (1 MB on the
wire, 1 GiB inflated) or a plain body of a gigabyte and more, chunked, without a length. A relay
reads an upstream's JSON answers up to `max_answer_bytes` and streams a result to disk up to
`max_result_bytes`, counting decoded bytes as they arrive; past either it fails with a
transient provider error that says which bound, and the memory it held stays small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from relay_support import UPSTREAM_KEY_ENV, relay_model, relay_provider, relaying

from gengate.providers.base import ProviderFailure
from gengate.providers.relay.openai import OpenAIOptions
from gengate.providers.relay.upstream import RelayOptions, Upstream, parse_options
from hostile_http import MIB, HostileServer, Reply, bomb_reply, endless_reply, traced_peak

#: Far above what a bounded read holds at once, far below what a whole bomb takes.
PEAK_LIMIT = 16 * MIB


def files_in(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def upstream(base_url: str, **options: Any) -> Upstream:
    fast = {"retry_attempts": 2, "retry_initial_s": 0.01, "retry_max_s": 0.01, **options}
    return Upstream(
        "hostile", base_url=base_url, api_key="k", timeout_s=30, options=parse_options(fast, RelayOptions)
    )


def test_answer_bounds_default_to_sane_sizes() -> None:
    assert parse_options({}, RelayOptions).max_answer_bytes == 16 * MIB
    assert parse_options({}, OpenAIOptions).max_answer_bytes == 64 * MIB
    assert parse_options({"max_answer_bytes": "1024"}, RelayOptions).max_answer_bytes == 1024


@pytest.mark.parametrize(
    "reply",
    [bomb_reply(200), bomb_reply(503), endless_reply(200), Reply(200, body=b"x" * MIB, repeat=64)],
    ids=["gzip-bomb", "gzip-bomb-503", "plain-chunked-1.5GiB", "plain-64MiB-with-length"],
)
async def test_a_json_answer_over_the_bound_is_a_provider_error(reply: Reply) -> None:
    async with HostileServer(lambda method, path: reply) as server:
        up = upstream(server.base_url, max_answer_bytes=MIB)
        try:
            with traced_peak() as peak, pytest.raises(ProviderFailure) as caught:
                await up.call("GET", "/api/v1/statusTask/m", params={"taskId": "t"})
        finally:
            await up.aclose()
    failure = caught.value
    assert failure.transient
    assert failure.fail_code == "PROVIDER_ERROR"
    assert "larger than 1048576 bytes" in failure.message
    assert "max_answer_bytes" in failure.message
    assert "GET /api/v1/statusTask/m" in failure.message
    assert peak.bytes < PEAK_LIMIT, f"the relay held {peak.bytes / MIB:.0f} MiB at once"
    assert len(server.requests) == 1, "a body over the bound is not worth a second try"


async def test_a_result_is_cut_at_its_bound_as_it_inflates(tmp_path: Path) -> None:
    """The bound counts decoded bytes as they arrive: the bomb stops at 32 MiB on disk, and no
    more than a piece of it is in memory at once."""
    async with HostileServer(lambda method, path: bomb_reply(200, "image/png")) as server:
        up = upstream(server.base_url, max_result_bytes=32 * MIB)
        try:
            with traced_peak() as peak, pytest.raises(ProviderFailure) as caught:
                await up.download("/out/0.png", tmp_path, 0)
        finally:
            await up.aclose()
    assert peak.bytes < PEAK_LIMIT, f"the relay held {peak.bytes / MIB:.0f} MiB at once"
    assert "a result is larger than 33554432 bytes" in caught.value.message
    assert "max_result_bytes" in caught.value.message
    assert caught.value.transient
    assert files_in(tmp_path) == [], "the cut file is left behind"


async def test_a_retried_download_does_not_read_the_error_body(tmp_path: Path) -> None:
    async with HostileServer(lambda method, path: bomb_reply(503, "text/plain")) as server:
        up = upstream(server.base_url)
        try:
            with traced_peak() as peak, pytest.raises(ProviderFailure) as caught:
                await up.download("/out/0.png", tmp_path, 0)
        finally:
            await up.aclose()
    assert "HTTP 503" in caught.value.message
    assert len(server.requests) == 2
    assert peak.bytes < PEAK_LIMIT, f"the relay held {peak.bytes / MIB:.0f} MiB at once"


async def test_a_result_in_an_encoding_gengate_does_not_decode_is_refused(tmp_path: Path) -> None:
    reply = Reply(200, (("Content-Type", "image/png"), ("Content-Encoding", "br")), b"\x8b\x00\x80")
    async with HostileServer(lambda method, path: reply) as server:
        up = upstream(server.base_url)
        try:
            with pytest.raises(ProviderFailure) as caught:
                await up.download("/out/0.png", tmp_path, 0)
        finally:
            await up.aclose()
    assert "'br' is not supported" in caught.value.message
    assert files_in(tmp_path) == []


async def test_a_small_gzip_result_is_still_mirrored_decoded(tmp_path: Path) -> None:
    import gzip

    picture = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    reply = Reply(200, (("Content-Type", "image/png"), ("Content-Encoding", "gzip")), gzip.compress(picture))
    async with HostileServer(lambda method, path: reply) as server:
        up = upstream(server.base_url)
        try:
            output = await up.download("/out/0", tmp_path, 3)
        finally:
            await up.aclose()
    assert output.path == tmp_path / "3.png"
    assert output.path.read_bytes() == picture


@pytest.mark.parametrize("kind", ["apixo", "xhuo", "openai"])
async def test_a_relayed_task_fails_cleanly_on_a_bomb(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a whole gateway: the task ends PROVIDER_ERROR naming the bound, nothing crashes."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, "k")
    async with HostileServer(lambda method, path: bomb_reply(200)) as server:
        providers = {"up": relay_provider(kind, server.base_url, retry_attempts=1, max_answer_bytes=MIB)}
        async with relaying(tmp_path, providers, {"fox": relay_model("up:m")}) as gateway:
            data = await gateway.run("fox", {"prompt": "a red fox"})
    assert (data["state"], data["failCode"]) == ("failed", "PROVIDER_ERROR"), data
    assert "larger than 1048576 bytes" in data["failMsg"]
