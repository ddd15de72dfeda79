"""Fallback chains and circuit breakers, end to end: a provider failing again and again is
skipped, `/readyz` and `/metrics` show it, and it is tried again once its reset time passes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from relay_support import TINY, FlakyProxy, Relaying, UpstreamServer, relay_model, relay_provider, relaying

from gengate.runtime import Gateway
from gengate.settings import load_settings

LOCAL = {"kind": "demo"}


def _flaky(proxy: FlakyProxy, **options: Any) -> dict[str, Any]:
    return relay_provider("apixo", proxy.url, retry_attempts=1, **options)


async def _ready(gateway: Relaying) -> tuple[int, dict[str, Any]]:
    response = await gateway.http.get("/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def test_a_failing_provider_is_skipped_once_its_circuit_opens(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str, proxy: FlakyProxy
) -> None:
    proxy.mode = "down"
    providers = {"flaky": _flaky(proxy, breaker_failures=2, breaker_reset_s=600), "local": LOCAL}
    models = {"fox": relay_model("flaky:demo-image", "local"), "only-flaky": relay_model("flaky:demo-image")}
    async with relaying(tmp_path, providers, models) as gateway:
        status, body = await _ready(gateway)
        assert (status, body["status"], body["circuits"]) == (
            200,
            "ready",
            {"flaky": "closed", "local": "closed"},
        )

        for _ in range(2):  # each run fails over to the local provider; the second opens the circuit
            data = await gateway.run("fox", TINY)
            assert data["state"] == "success", data
        assert proxy.count("generateTask") == 2

        status, body = await _ready(gateway)
        assert status == 503, body
        assert body["error"]["code"] == "unavailable"
        assert body["circuits"]["flaky"] == "open"
        assert body["unavailableModels"] == {"only-flaky": ["flaky"]}
        metrics = (await gateway.http.get("/metrics")).text
        assert 'gengate_provider_circuit_state{provider="flaky",state="open"} 1.0' in metrics
        assert 'gengate_provider_circuit_state{provider="local",state="closed"} 1.0' in metrics

        data = await gateway.run("fox", TINY)
        assert data["state"] == "success", data
        skipped = await gateway.run("only-flaky", TINY)
        assert (skipped["state"], skipped["failCode"]) == ("failed", "PROVIDER_ERROR"), skipped
        assert "available" in skipped["failMsg"]
        assert proxy.count("generateTask") == 2  # neither run reached the open provider


async def test_an_open_circuit_is_tried_again_after_its_reset_time(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str, proxy: FlakyProxy
) -> None:
    proxy.mode = "down"
    providers = {"flaky": _flaky(proxy, breaker_failures=1, breaker_reset_s=0.5)}
    async with relaying(tmp_path, providers, {"fox": relay_model("flaky:demo-image")}) as gateway:
        data = await gateway.run("fox", TINY)
        assert data["failCode"] == "PROVIDER_ERROR", data
        proxy.mode = "pass"
        deadline = time.monotonic() + 30
        while (await _ready(gateway))[1]["circuits"]["flaky"] != "half_open":
            assert time.monotonic() < deadline, "the circuit never became half-open"
            await asyncio.sleep(0.1)
        data = await gateway.run("fox", TINY)
        assert data["state"] == "success", data
        status, body = await _ready(gateway)
        assert (status, body["circuits"]) == (200, {"flaky": "closed"})


async def test_client_faults_do_not_open_a_circuit(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str, proxy: FlakyProxy
) -> None:
    providers = {"flaky": _flaky(proxy, breaker_failures=1)}
    async with relaying(tmp_path, providers, {"fox": relay_model("flaky:demo-image")}) as gateway:
        for _ in range(2):
            data = await gateway.run("fox", {**TINY, "fail_code": "CONTENT_VIOLATION"})
            assert data["failCode"] == "CONTENT_VIOLATION", data
        status, body = await _ready(gateway)
        assert (status, body["circuits"]) == (200, {"flaky": "closed"})
        assert proxy.count("generateTask") == 2


async def test_readyz_says_when_the_store_does_not_answer(tmp_path: Path) -> None:
    gateway = Gateway(load_settings(data_dir=tmp_path / "data", admin_key="adm", workers=0))
    async with gateway.running():
        pass  # started and stopped: the store is closed now
    transport = httpx.ASGITransport(app=gateway.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        response = await http.get("/readyz")
    assert response.status_code == 503, response.text
    body = response.json()
    assert (body["error"]["code"], body["store"]) == ("unavailable", "unreachable")
    assert response.headers["retry-after"] == "5"
