"""Every refusal of an address says how the operator admits it (`GENGATE_WEBHOOK_ALLOW`), and the
value it suggests does admit that address: the hint is checked by following it."""

from __future__ import annotations

import re
from ipaddress import ip_address

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gengate.net.guard import AddressPolicy, Resolver, UnsafeUrl, resolve_and_check

DENY_ALL = AddressPolicy()
HINT = re.compile(
    r"; the gateway's operator can allow it with GENGATE_WEBHOOK_ALLOW=(\S+)"
    r"(?: \(or a range such as (\S+)\))?$"
)

#: One URL for each kind of refused address, as a client would send it.
REFUSED = [
    "http://127.0.0.1:8080/hook",
    "http://127.1/hook",
    "http://0.0.0.0/",
    "http://0.1.2.3/",
    "http://[::]/",
    "http://[::1]:8080/x",
    "http://[::ffff:127.0.0.1]/",
    "http://[::127.0.0.1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.100.100.200/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b:1::1]/",
    "http://[2002:7f00:1::1]/",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://192.0.2.7/",
    "http://198.18.0.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://[fc00::1]/",
    "http://[fe80::1]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    "http://[2001:db8::1]/",
    "http://[100::1]/",
    "http://[::ffff:0:7f00:1]/",
    "http://localhost:9/",
]


async def no_dns(host: str) -> list[str]:
    raise AssertionError(f"the guard asked DNS about {host!r}")


def resolving_to(*answers: str) -> Resolver:
    async def resolve(_host: str) -> list[str]:
        return list(answers)

    return resolve


async def refusal_of(url: str, resolver: Resolver = no_dns) -> str:
    with pytest.raises(UnsafeUrl) as caught:
        await resolve_and_check(url, DENY_ALL, resolver=resolver)
    return str(caught.value)


async def follow_hint(url: str, message: str, resolver: Resolver = no_dns) -> None:
    """The address alone, and the range when one is named, each admit `url` when set."""
    found = HINT.search(message)
    assert found is not None, message
    for value in filter(None, found.groups()):
        policy = AddressPolicy.from_env_value(value)
        await resolve_and_check(url, policy, resolver=resolver)


@pytest.mark.parametrize("url", REFUSED)
async def test_every_refused_address_names_the_setting_that_admits_it(url: str) -> None:
    message = await refusal_of(url)
    await follow_hint(url, message)


async def test_a_loopback_hint_names_the_address_and_its_range() -> None:
    message = await refusal_of("http://127.0.0.1:8080/hook")
    assert message == (
        "callback_url host 127.0.0.1 is a loopback address; the gateway's operator can allow it with "
        "GENGATE_WEBHOOK_ALLOW=127.0.0.1 (or a range such as 127.0.0.0/8)"
    )


async def test_a_name_resolving_to_a_refused_address_names_that_address() -> None:
    resolver = resolving_to("93.184.216.34", "10.1.2.3")
    message = await refusal_of("https://mixed.example/hook", resolver)
    assert "resolves to 10.1.2.3, a private address" in message
    await follow_hint("https://mixed.example/hook", message, resolver)


@given(st.ip_addresses())
async def test_any_refused_address_can_be_admitted_as_the_hint_says(ip: object) -> None:
    address = ip_address(str(ip))
    if DENY_ALL.refusal(address) is None:
        return
    url = f"http://[{address}]/" if address.version == 6 else f"http://{address}/"
    await follow_hint(url, await refusal_of(url))


async def test_a_submit_refused_for_its_callback_says_how_to_allow_it(
    http: httpx.AsyncClient, api_key: str
) -> None:
    body = {"input": {"mode": "echo"}, "callback_url": "http://127.0.0.1:9/hook"}
    response = await http.post(
        "/api/v1/generateTask/demo-echo", json=body, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "is a loopback address" in message
    assert "GENGATE_WEBHOOK_ALLOW=127.0.0.1" in message, message
