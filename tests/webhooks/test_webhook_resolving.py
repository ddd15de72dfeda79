"""The resolution cache keeps a name's answers for a while, never a verdict: every delivery
still checks the (cached) addresses against the policy of the moment."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

import pytest

from gengate.net.guard import AddressPolicy, UnsafeUrl, resolve_and_check
from gengate.webhooks.resolving import ResolutionCache

URL = "https://hooks.example.com/callback"


class Dns:
    """A resolver answering from a table, counting the questions it is asked."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str) -> Sequence[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError("no such name")
        return self.answers[host]


async def test_an_answer_is_asked_once_within_its_ttl() -> None:
    dns = Dns({"hooks.example.com": ["93.184.216.34"]})
    cache = ResolutionCache(dns, ttl_s=3600)
    policy = AddressPolicy()
    for _ in range(5):
        target = await resolve_and_check(URL, policy, resolver=cache)
        assert target.address == "93.184.216.34"
        assert target.host == "hooks.example.com"
    assert dns.asked == ["hooks.example.com"]


async def test_a_cached_address_no_longer_allowed_is_refused() -> None:
    """The operator admitted 10.0.0.0/8 and a name resolved there; without that admission the
    same cached answer is refused at once, with no new question to the resolver."""
    dns = Dns({"hooks.example.com": ["10.1.2.3"]})
    cache = ResolutionCache(dns, ttl_s=3600)
    admitted = AddressPolicy([ipaddress.ip_network("10.0.0.0/8")])
    assert (await resolve_and_check(URL, admitted, resolver=cache)).address == "10.1.2.3"
    with pytest.raises(UnsafeUrl, match=r"10\.1\.2\.3, a private address"):
        await resolve_and_check(URL, AddressPolicy(), resolver=cache)
    assert dns.asked == ["hooks.example.com"]


async def test_a_name_that_moves_to_a_forbidden_address_is_refused_once_the_answer_expires() -> None:
    dns = Dns({"hooks.example.com": ["93.184.216.34"]})
    cache = ResolutionCache(dns, ttl_s=0)  # every answer expires at once
    assert (await resolve_and_check(URL, AddressPolicy(), resolver=cache)).address == "93.184.216.34"
    dns.answers["hooks.example.com"] = ["93.184.216.34", "169.254.169.254"]  # rebinding
    with pytest.raises(UnsafeUrl, match=r"169\.254\.169\.254"):
        await resolve_and_check(URL, AddressPolicy(), resolver=cache)
    assert dns.asked == ["hooks.example.com", "hooks.example.com"]


async def test_a_failed_resolution_is_not_kept() -> None:
    dns = Dns({})
    cache = ResolutionCache(dns, ttl_s=3600)
    for _ in range(2):
        with pytest.raises(UnsafeUrl, match="does not resolve"):
            await resolve_and_check(URL, AddressPolicy(), resolver=cache)
    dns.answers["hooks.example.com"] = ["93.184.216.34"]
    assert (await resolve_and_check(URL, AddressPolicy(), resolver=cache)).address == "93.184.216.34"
    assert len(dns.asked) == 3


async def test_a_fresh_answer_is_checked_with_no_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a question to the resolver is bounded by a timeout (a loop timer each): the answer
    at hand is checked without one (the delivery's SSRF check is on every callback's path)."""
    armed: list[float] = []
    real_timeout = asyncio.timeout

    def counted(delay: float | None) -> asyncio.Timeout:
        armed.append(delay or 0.0)
        return real_timeout(delay)

    monkeypatch.setattr(asyncio, "timeout", counted)
    cache = ResolutionCache(Dns({"hooks.example.com": ["93.184.216.34"]}), ttl_s=3600)
    policy = AddressPolicy()
    assert (await resolve_and_check(URL, policy, resolver=cache)).address == "93.184.216.34"
    assert len(armed) == 1  # the question
    assert (await resolve_and_check(URL, policy, resolver=cache)).address == "93.184.216.34"
    assert len(armed) == 1
