"""Fixtures shared by the in-process layers: settings in a temp folder, a running gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gengate.runtime import Gateway
from gengate.settings import Settings, load_settings

ADMIN_KEY = "gga_test_admin_key"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(__import__("os").environ):
        if name.startswith("GENGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return load_settings(data_dir=tmp_path / "data", admin_key=ADMIN_KEY, lease_s=2.0)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    gateway = Gateway(settings)
    async with gateway.running():
        yield gateway


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client


@pytest.fixture
async def api_key(gateway: Gateway) -> str:
    _key, secret = await gateway.keys.create("test")
    return secret


@pytest.fixture
async def idle(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, str, Gateway]]:
    """A gateway without workers: its tasks stay pending until canceled."""
    gateway = Gateway(settings.model_copy(update={"workers": 0}))
    async with gateway.running():
        _key, secret = await gateway.keys.create("idle")
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield http, secret, gateway
