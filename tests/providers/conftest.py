"""Fixtures of the relay tests (the helpers behind them are in `relay_support`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from relay_support import UPSTREAM_KEY_ENV, FlakyProxy, UpstreamServer, serve

from e2e_harness import harness as e2e


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No `GENGATE_*` variable nor `gengate.toml` of the developer's leaks into a gateway here."""
    for name in [name for name in os.environ if name.startswith("GENGATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamServer]:
    """A real `gengate serve` as the upstream of every dialect. Loopback callbacks are allowed
    (our hooks live on 127.0.0.1) and synchronous runs wait at most 1 s."""
    server = e2e.start_server(
        tmp_path_factory.mktemp("relay-upstream"),
        "upstream",
        env={"GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8", "GENGATE_SYNC_WAIT": "1", "GENGATE_WORKERS": "8"},
    )
    key = server.create_key("relay")["key"]
    yield UpstreamServer(server, key)
    server.stop()


@pytest.fixture
def upstream_key(upstream: UpstreamServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The upstream key, in the environment variable the test providers name."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, upstream.key)
    return upstream.key


@pytest.fixture
async def proxy(upstream: UpstreamServer) -> AsyncIterator[FlakyProxy]:
    """A flaky loopback proxy in front of the upstream."""
    flaky = FlakyProxy(upstream.base_url)
    async with serve(flaky.app()) as url:
        flaky.url = url
        yield flaky
