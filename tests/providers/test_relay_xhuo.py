"""The XHuo relay against a real upstream gengate (whose synchronous runs wait at most 1 s):
synchronous results, tasks followed past the wait limit, error envelopes mapped."""

from __future__ import annotations

from pathlib import Path

from relay_support import TINY, FlakyProxy, UpstreamServer, relay_model, relay_provider, relaying


async def test_a_synchronous_run_is_copied(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str
) -> None:
    providers = {"run": relay_provider("xhuo", upstream.base_url, status_dialect="apixo")}
    async with relaying(tmp_path, providers, {"fox": relay_model("run:demo-image")}) as gateway:
        data = await gateway.run("fox", TINY)
        assert data["state"] == "success", data
        [url] = await gateway.result_urls(data)
        assert (await gateway.http.get(url)).content.startswith(b"\x89PNG")


async def test_a_run_past_the_upstream_wait_is_followed_by_status_reads(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str
) -> None:
    providers = {"run": relay_provider("xhuo", upstream.base_url, status_dialect="apixo")}
    async with relaying(tmp_path, providers, {"fox": relay_model("run:demo-image")}) as gateway:
        data = await gateway.run("fox", {**TINY, "duration_ms": 2500})
        assert data["state"] == "success", data


async def test_without_status_reads_an_upstream_timeout_is_a_timeout(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str
) -> None:
    providers = {"run": relay_provider("xhuo", upstream.base_url)}
    async with relaying(tmp_path, providers, {"fox": relay_model("run:demo-image")}) as gateway:
        data = await gateway.run("fox", {**TINY, "duration_ms": 5000})
        assert (data["state"], data["failCode"]) == ("failed", "TIMEOUT"), data


async def test_error_envelopes_are_mapped_and_a_failed_run_is_not_repeated(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str, proxy: FlakyProxy
) -> None:
    providers = {"run": relay_provider("xhuo", proxy.url)}
    async with relaying(tmp_path, providers, {"fox": relay_model("run:demo-image")}) as gateway:
        refused = await gateway.run("fox", {**TINY, "fail_code": "CONTENT_VIOLATION"})
        assert (refused["state"], refused["failCode"]) == ("failed", "CONTENT_VIOLATION"), refused
        # A 500 that names its task is a task that failed, not a request to repeat.
        failed = await gateway.run("fox", {**TINY, "fail_code": "PROVIDER_ERROR"})
        assert (failed["state"], failed["failCode"]) == ("failed", "PROVIDER_ERROR"), failed
        assert proxy.count("/api/v1/run/") == 2


async def test_with_a_public_url_the_run_is_followed_by_callback(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str
) -> None:
    """Polling waits a minute here, so only the callback can end the task within the test."""
    provider = relay_provider(
        "xhuo", upstream.base_url, status_dialect="kie", poll_initial_s=60, poll_max_s=60
    )
    models = {"fox": relay_model("run:demo-image")}
    async with relaying(tmp_path, {"run": provider}, models, listen=True) as gateway:
        data = await gateway.run("fox", {**TINY, "duration_ms": 200}, timeout=30)
        assert data["state"] == "success", data
