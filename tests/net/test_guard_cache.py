"""Callback URLs parsed once and kept: the same answer, and errors still raised every time."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from gengate.net import guard
from gengate.net.guard import AddressPolicy, UnsafeUrl, parse_callback_url


def test_a_url_parsed_again_is_the_kept_answer() -> None:
    first = parse_callback_url("https://hooks.example.com/in?x=1")
    again = parse_callback_url("https://hooks.example.com/in?x=1")
    assert again is first
    assert again.host == "hooks.example.com"


@pytest.mark.parametrize("bad", ["ftp://example.com/", "http://exa mple.com/", "http://user@example.com/"])
def test_a_refused_url_is_refused_each_time(bad: str) -> None:
    for _ in range(2):
        with pytest.raises(UnsafeUrl):
            parse_callback_url(bad)


@pytest.mark.parametrize("value", [["http://example.com/"], {"url": 1}, 7, None, ""])
def test_values_that_are_not_urls_are_refused_not_hashed(value: Any) -> None:
    with pytest.raises(UnsafeUrl):
        parse_callback_url(value)


def test_the_length_limit_holds_for_a_url_kept_under_the_default() -> None:
    url = "https://example.com/" + "a" * 100
    parse_callback_url(url)
    with pytest.raises(UnsafeUrl, match="longer than 50"):
        parse_callback_url(url, max_length=50)


def test_a_policy_judges_an_address_once(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = AddressPolicy.from_env_value("10.1.0.0/16")
    judged: list[object] = []
    judge = AddressPolicy._judge

    def counting(self: AddressPolicy, ip: Any) -> str | None:
        judged.append(ip)
        return judge(self, ip)

    monkeypatch.setattr(AddressPolicy, "_judge", counting)
    for _ in range(3):
        assert policy.refusal(IPv4Address("10.1.2.3")) is None
        assert policy.refusal(IPv4Address("10.2.0.1")) == "a private address"
    assert judged == [IPv4Address("10.1.2.3"), IPv4Address("10.2.0.1")]


def test_kept_verdicts_are_those_of_their_own_policy() -> None:
    strict, lenient = AddressPolicy(), AddressPolicy.from_env_value("127.0.0.0/8")
    loopback = IPv4Address("127.0.0.1")
    assert strict.refusal(loopback) == "a loopback address"
    assert lenient.refusal(loopback) is None
    assert strict.refusal(loopback) == "a loopback address"


def test_verdicts_past_the_bound_start_again_and_stay_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "VERDICTS_KEPT", 8)
    policy = AddressPolicy()
    for i in range(20):
        assert policy.refusal(IPv4Address(f"10.0.0.{i}")) == "a private address"
        assert policy.refusal(IPv4Address(f"8.8.4.{i}")) is None
    assert len(policy._verdicts) <= 8


def test_a_scoped_address_is_refused_whatever_was_kept_for_its_unscoped_form() -> None:
    policy = AddressPolicy.from_env_value("fe80::/10")
    assert policy.refusal(IPv6Address("fe80::1")) is None
    assert policy.refusal(IPv6Address("fe80::1%eth0")) == "a scoped (zone-qualified) address"


def test_check_address_takes_text_or_an_address() -> None:
    policy = AddressPolicy()
    for form in ("127.0.0.1", IPv4Address("127.0.0.1")):
        with pytest.raises(UnsafeUrl, match=r"127\.0\.0\.1 is a loopback address"):
            policy.check_address(form)
    policy.check_address("93.184.216.34")
