"""SSRF guard: unsafe callback URLs are refused with a reason, before any connection; DNS is asked once."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gengate.net.guard import (
    AddressPolicy,
    CheckedTarget,
    Resolver,
    UnsafeUrl,
    parse_callback_url,
    resolve_and_check,
    system_resolver,
)

DENY_ALL = AddressPolicy()
PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"

# The IPv4 deny list, written out here independently of the module's table.
DENIED_V4 = [
    IPv4Network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]


async def no_dns(host: str) -> list[str]:
    raise AssertionError(f"the guard asked DNS about {host!r}")


def static_resolver(*answers: str) -> tuple[list[str], Resolver]:
    """A resolver answering `answers`, and the list of hosts it was asked about."""
    asked: list[str] = []

    async def resolve(host: str) -> list[str]:
        asked.append(host)
        return list(answers)

    return asked, resolve


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.1/hook", "loopback"),
        ("http://2130706433/hook", "loopback"),
        ("http://0x7f.1/hook", "loopback"),
        ("http://017700000001/hook", "loopback"),
        ("http://127.0.0.1./hook", "loopback"),
        ("http://１２７.０.０.１/hook", "loopback"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://[::1]:8080/x", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped form of 127.0.0.1, a loopback"),
        ("http://[::127.0.0.1]/", "IPv4-compatible form of 127.0.0.1, a loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://100.100.100.200/", "carrier-grade NAT"),
        ("http://[64:ff9b::7f00:1]/", "NAT64 form of 127.0.0.1, a loopback"),
        ("http://[64:ff9b:1::1]/", "local-use NAT64"),
        ("http://[2002:7f00:1::1]/", "6to4 form of 127.0.0.1, a loopback"),
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"),
        ("http://10.0.0.1/", "private"),
        ("http://172.16.5.4/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://224.0.0.1/", "multicast"),
        ("http://255.255.255.255/", "broadcast"),
        ("http://[fc00::1]/", "unique-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[ff02::1]/", "multicast"),
        ("http://[::ffff:0:7f00:1]/", "reserved"),
        ("http://localhost/", "localhost resolves to 127.0.0.1, a loopback"),
        ("http://LOCALHOST.:8080/", "loopback"),
        ("http://api.localhost/", "loopback"),
    ],
)
async def test_unsafe_address_is_refused_without_dns(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=r"^callback_url host ") as caught:
        await resolve_and_check(url, DENY_ALL, resolver=no_dns)
    assert why in str(caught.value)


async def test_name_resolving_to_loopback_is_refused() -> None:
    asked, resolver = static_resolver("127.0.0.1")
    with pytest.raises(
        UnsafeUrl, match=r"^callback_url host evil\.example resolves to 127\.0\.0\.1, a loopback"
    ):
        await resolve_and_check("https://evil.example/hook", DENY_ALL, resolver=resolver)
    assert asked == ["evil.example"]


async def test_real_resolver_answers_for_localhost_are_refused() -> None:
    answers = await system_resolver("localhost")
    assert answers
    assert all(DENY_ALL.refusal(ip_address(answer)) == "a loopback address" for answer in answers)

    async def via_system(host: str) -> Sequence[str]:
        return await system_resolver("localhost")

    with pytest.raises(UnsafeUrl, match="loopback"):
        await resolve_and_check("http://rebound.example/", DENY_ALL, resolver=via_system)
    with pytest.raises(UnsafeUrl, match="loopback"):
        await resolve_and_check("http://localhost:9/", DENY_ALL)


@pytest.mark.parametrize(
    "answers", [(PUBLIC_V4, "10.0.0.1"), ("10.0.0.1", PUBLIC_V4), (PUBLIC_V6, "fd00::1")]
)
async def test_mixed_records_are_refused(answers: tuple[str, str]) -> None:
    _, resolver = static_resolver(*answers)
    with pytest.raises(UnsafeUrl, match=r"mixed\.example resolves to .*(private|unique-local)"):
        await resolve_and_check("https://mixed.example/", DENY_ALL, resolver=resolver)


async def test_unresolvable_or_slow_names_are_refused() -> None:
    _, empty = static_resolver()
    with pytest.raises(UnsafeUrl, match="does not resolve"):
        await resolve_and_check("https://nothing.example/", DENY_ALL, resolver=empty)

    async def failing(host: str) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(UnsafeUrl, match="does not resolve"):
        await resolve_and_check("https://nothing.example/", DENY_ALL, resolver=failing)

    async def hanging(host: str) -> list[str]:
        await asyncio.sleep(60)
        return [PUBLIC_V4]

    with pytest.raises(UnsafeUrl, match="could not be resolved in time"):
        await resolve_and_check("https://slow.example/", DENY_ALL, resolver=hanging, timeout_s=0.05)


@pytest.mark.parametrize(
    ("url", "expected", "ip_url"),
    [
        (
            f"http://{PUBLIC_V4}:8080/a/b?x=1&y=2#frag",
            CheckedTarget(
                f"http://{PUBLIC_V4}:8080/a/b?x=1&y=2", "http", PUBLIC_V4, 8080, PUBLIC_V4, "/a/b?x=1&y=2"
            ),
            f"http://{PUBLIC_V4}:8080/a/b?x=1&y=2",
        ),
        (
            f"HTTPS://[{PUBLIC_V6.upper()}]/hook?q=1",
            CheckedTarget(f"https://[{PUBLIC_V6}]/hook?q=1", "https", PUBLIC_V6, 443, PUBLIC_V6, "/hook?q=1"),
            f"https://[{PUBLIC_V6}]/hook?q=1",
        ),
        (
            f"https://[{PUBLIC_V6}]:8443/x",
            CheckedTarget(f"https://[{PUBLIC_V6}]:8443/x", "https", PUBLIC_V6, 8443, PUBLIC_V6, "/x"),
            f"https://[{PUBLIC_V6}]:8443/x",
        ),
        (
            "http://1572395042",
            CheckedTarget(f"http://{PUBLIC_V4}/", "http", PUBLIC_V4, 80, PUBLIC_V4, "/"),
            f"http://{PUBLIC_V4}/",
        ),
    ],
)
async def test_public_address_is_accepted(url: str, expected: CheckedTarget, ip_url: str) -> None:
    target = await resolve_and_check(url, DENY_ALL, resolver=no_dns)
    assert target == expected
    assert target.ip_url() == ip_url


async def test_public_name_connects_to_the_checked_address() -> None:
    _, resolver = static_resolver(PUBLIC_V6, PUBLIC_V4)
    target = await resolve_and_check("https://Bücher.Example:8443/cb?a=b", DENY_ALL, resolver=resolver)
    assert target.host == "xn--bcher-kva.example"
    assert target.address == PUBLIC_V6
    assert target.ip_url() == f"https://[{PUBLIC_V6}]:8443/cb?a=b"
    assert target.host_header() == "xn--bcher-kva.example:8443"
    assert target.url == "https://xn--bcher-kva.example:8443/cb?a=b"


async def test_dns_is_asked_once_so_rebinding_fails() -> None:
    calls: list[str] = []

    async def rebinding(host: str) -> list[str]:
        calls.append(host)
        return [PUBLIC_V4] if len(calls) == 1 else ["127.0.0.1"]

    target = await resolve_and_check("http://rebind.example:8080/x", DENY_ALL, resolver=rebinding)
    assert calls == ["rebind.example"]
    assert target.address == PUBLIC_V4
    assert target.ip_url() == f"http://{PUBLIC_V4}:8080/x"
    assert target.host_header() == "rebind.example:8080"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://example.com:70/_x", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("example.com/hook", "http or https"),
        ("http://user:pw@example.com/", "user information"),
        ("http://example.com@127.0.0.1/", "user information"),
        ("http://exa mple.com", "whitespace or control"),
        ("http://example.com/\r\nX: y", "whitespace or control"),
        ("http://example.com/\tx", "whitespace or control"),
        ("http://example.com/\x00", "whitespace or control"),
        ("http://exa\u200bmple.com/", "whitespace or control"),
        ("http:///nohost", "no host"),
        ("http://:8080/", "no host"),
        ("http://example.com:99999/", "invalid port"),
        ("http://example.com:0/", "invalid port"),
        ("http://example.com:8o/", "invalid port"),
        ("http://example.com:80:80/", "invalid port"),
        ("http://[::1/", "not a valid URL|unclosed"),
        ("http://[fe80::1%25eth0]/", "zone"),
        ("http://[not-v6]/", "not a valid"),
        ("http://exa%6dple.com/", "not a valid host name"),
        ("http://-bad-.example/", "not a valid host name"),
        ("http://a..b/", "not a valid host name"),
        ("http://1.2.3.4.5/", "neither an IPv4 address"),
        ("http://256.256.256.256/", "neither an IPv4 address"),
        ("http://example.com\\.evil.com/", "not a valid host name"),
        ("", "non-empty string"),
        ("http://example.com/" + "a" * 2048, "longer than 2048"),
    ],
)
def test_malformed_url_is_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=r"^callback_url") as caught:
        parse_callback_url(url)
    assert any(part in str(caught.value) for part in why.split("|"))


@pytest.mark.parametrize("value", [None, b"http://example.com/", 42])
def test_non_string_is_refused(value: object) -> None:
    with pytest.raises(UnsafeUrl, match="non-empty string"):
        parse_callback_url(value)  # type: ignore[arg-type]


async def test_allow_list_admits_only_its_ranges() -> None:
    policy = AddressPolicy.from_env_value(" 127.0.0.0/8 , ::1/128,,")
    target = await resolve_and_check("http://127.0.0.1:8080/hook", policy, resolver=no_dns)
    assert target.ip_url() == "http://127.0.0.1:8080/hook"
    assert (await resolve_and_check("http://[::1]/", policy)).address == "::1"
    assert (await resolve_and_check("http://localhost:8080/", policy)).address == "127.0.0.1"
    for url in ("http://10.0.0.1/", "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/"):
        with pytest.raises(UnsafeUrl):
            await resolve_and_check(url, policy, resolver=no_dns)
    assert AddressPolicy.from_env_value("").allowed == ()
    assert AddressPolicy.from_env_value(None).allowed == ()
    with pytest.raises(ValueError, match="GENGATE_WEBHOOK_ALLOW: 'nonsense'"):
        AddressPolicy.from_env_value("10.0.0.0/8,nonsense")


async def test_refused_target_sees_no_connection() -> None:
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, to_listener = static_resolver("127.0.0.1")
    async with server:
        with pytest.raises(UnsafeUrl, match="loopback"):
            await resolve_and_check(f"http://127.0.0.1:{port}/", DENY_ALL)
        with pytest.raises(UnsafeUrl, match="loopback"):
            await resolve_and_check(f"http://listener.example:{port}/", DENY_ALL, resolver=to_listener)
        await asyncio.sleep(0.05)
    assert connections == 0


denied_v4 = st.sampled_from(DENIED_V4).flatmap(lambda net: st.ip_addresses(network=net))


def embedding_forms(ip: IPv4Address) -> list[str]:
    """IPv4-mapped, NAT64 and 6to4 forms of `ip`, all of which reach it."""
    high, low = int(ip) >> 16, int(ip) & 0xFFFF
    return [f"::ffff:{ip}", f"64:ff9b::{ip}", f"2002:{high:x}:{low:x}::1"]


@given(denied_v4)
def test_embedded_forms_of_denied_ipv4_are_refused(ip: IPv4Address) -> None:
    with pytest.raises(UnsafeUrl):
        DENY_ALL.check_address(ip)
    for form in embedding_forms(ip):
        with pytest.raises(UnsafeUrl, match=f"form of {ip}, "):
            DENY_ALL.check_address(form)


@given(st.ip_addresses(v=4))
def test_embedded_forms_are_judged_like_their_ipv4(ip: IPv4Address) -> None:
    denied = any(ip in net for net in DENIED_V4)
    assert (DENY_ALL.refusal(ip) is not None) == denied
    for form in embedding_forms(ip):
        with pytest.raises(UnsafeUrl) if denied else contextlib.nullcontext():
            DENY_ALL.check_address(form)


@given(st.ip_addresses(v=4), st.sampled_from(["{:d}", "0x{:x}", "0{:o}"]))
def test_numeric_hosts_are_read_as_ipv4(ip: IPv4Address, spelling: str) -> None:
    parsed = parse_callback_url(f"http://{spelling.format(int(ip))}/")
    assert parsed.ip == ip
    assert parsed.host == str(ip)
