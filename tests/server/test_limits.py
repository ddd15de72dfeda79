"""Connection limits from the settings, and the default cap from the open-file limit."""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from gengate.server.limits import RESERVED_DESCRIPTORS, ConnectionLimits, default_max_connections
from gengate.settings import Settings


@pytest.fixture
def open_file_limit(request: pytest.FixtureRequest) -> Iterator[int]:
    """Lowers this process's soft open-file limit for the test (to `param`), then restores it."""
    wanted: int = getattr(request, "param", 300)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard open-file limit ({hard}) is under {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield wanted
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_small_open_file_limit_keeps_a_quarter_free(open_file_limit: int) -> None:
    """300 descriptors (the issue's case): 225 connections, 75 descriptors for the rest."""
    assert default_max_connections() == open_file_limit * 3 // 4


@pytest.mark.parametrize("open_file_limit", [11_000], indirect=True)
def test_a_large_open_file_limit_keeps_a_fixed_reserve(open_file_limit: int) -> None:
    """`bench.longpoll` raises the limit to 11,000 for 10,000 waiters: they all fit."""
    assert default_max_connections() == open_file_limit - RESERVED_DESCRIPTORS
    assert default_max_connections() > 10_000


def test_limits_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENGATE_MAX_HEADER_BYTES", "8192")
    monkeypatch.setenv("GENGATE_HEADER_TIMEOUT_S", "2.5")
    monkeypatch.setenv("GENGATE_KEEP_ALIVE_S", "30")
    monkeypatch.setenv("GENGATE_MAX_CONNECTIONS", "12")
    limits = ConnectionLimits.from_settings(Settings())
    assert limits == ConnectionLimits(
        max_header_bytes=8192, header_timeout_s=2.5, keep_alive_s=30.0, max_connections=12
    )


def test_without_a_cap_set_the_default_applies(monkeypatch: pytest.MonkeyPatch, open_file_limit: int) -> None:
    monkeypatch.delenv("GENGATE_MAX_CONNECTIONS", raising=False)
    assert ConnectionLimits.from_settings(Settings()).max_connections == open_file_limit * 3 // 4
