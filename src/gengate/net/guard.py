"""SSRF guard for client-supplied URLs: parse strictly, resolve once, check every address.

It serves callback URLs (checked at submit and again before each delivery) and input images.
The sender then connects to the address that was checked (:meth:`CheckedTarget.ip_url`, with
`host` as the Host header and the TLS server name), so a name that later resolves elsewhere
(DNS rebinding) cannot move the request.

The deny list is explicit because `ipaddress` flags miss cases on Python 3.11: `::ffff:127.0.0.1`
is not `is_loopback`, `100.100.100.200` is not `is_private`, `64:ff9b::7f00:1` is `is_global`.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TypeAlias
from urllib.parse import urlsplit

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPNetwork: TypeAlias = IPv4Network | IPv6Network
Resolver: TypeAlias = Callable[[str], Awaitable[Sequence[str]]]
"""An async callable answering every address (as text) a host name resolves to."""

ALLOW_ENV = "GENGATE_WEBHOOK_ALLOW"
DEFAULT_PORTS = {"http": 80, "https": 443}
RESOLVE_TIMEOUT_S = 5.0

LOOPBACK = "a loopback address"
PRIVATE = "a private address"
LINK_LOCAL = "a link-local address"
MULTICAST = "a multicast address"
DOCUMENTATION = "a documentation address"
RESERVED = "a reserved address"
UNSPECIFIED = "an unspecified address"

_IPV4_DENY = tuple(
    (IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/32", UNSPECIFIED),
        ("0.0.0.0/8", "a 'this network' address"),
        ("10.0.0.0/8", PRIVATE),
        ("100.64.0.0/10", "a carrier-grade NAT address (where cloud metadata services live)"),
        ("127.0.0.0/8", LOOPBACK),
        ("169.254.0.0/16", LINK_LOCAL),
        ("172.16.0.0/12", PRIVATE),
        ("192.0.0.0/24", RESERVED),
        ("192.0.2.0/24", DOCUMENTATION),
        ("192.88.99.0/24", RESERVED),
        ("192.168.0.0/16", PRIVATE),
        ("198.18.0.0/15", RESERVED),
        ("198.51.100.0/24", DOCUMENTATION),
        ("203.0.113.0/24", DOCUMENTATION),
        ("224.0.0.0/4", MULTICAST),
        ("255.255.255.255/32", "a broadcast address"),
        ("240.0.0.0/4", RESERVED),
    )
)
# Checked before the forms that embed an IPv4 address (::/96 holds :: and ::1).
_IPV6_DENY = tuple(
    (IPv6Network(net), why)
    for net, why in (
        ("::/128", UNSPECIFIED),
        ("::1/128", LOOPBACK),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/32", "a Teredo address"),
        ("2001::/23", RESERVED),
        ("2001:db8::/32", DOCUMENTATION),
        ("3fff::/20", DOCUMENTATION),
        ("fc00::/7", "a unique-local (private) address"),
        ("fe80::/10", LINK_LOCAL),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", MULTICAST),
    )
)
_NAT64 = IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_GLOBAL_UNICAST = IPv6Network("2000::/3")
_LOCALHOST = IPv4Address("127.0.0.1")

_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_NUMBER = re.compile(r"0x[0-9a-z]*|[0-9]+")
_DIGITS = {8: re.compile(r"[0-7]*"), 10: re.compile(r"[0-9]+"), 16: re.compile(r"[0-9a-f]*")}


class UnsafeUrl(ValueError):
    """A callback URL the gateway refuses to call; the message says why, fit for a 400 answer."""


#: Parsed callback URLs kept for their next use (each at most 2 KiB).
PARSED_URLS_KEPT = 1024
#: Addresses whose verdict a policy keeps; past it, it starts again.
VERDICTS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """A syntactically acceptable callback URL; `ip` is set when the host is an address literal."""

    url: str
    scheme: str
    host: str
    port: int
    path_and_query: str
    ip: IPAddress | None


@dataclass(frozen=True, slots=True)
class CheckedTarget:
    """Where a callback may go: the checked `address`, and `host` to present as Host and TLS name."""

    url: str
    scheme: str
    host: str
    port: int
    address: str
    path_and_query: str

    def ip_url(self) -> str:
        """The URL with the checked address as its host: connect here, never to a re-resolved name."""
        return f"{self.scheme}://{_bracketed(self.address)}{self._port_suffix()}{self.path_and_query}"

    def host_header(self) -> str:
        """The Host header for a request sent to :meth:`ip_url`."""
        return f"{_bracketed(self.host)}{self._port_suffix()}"

    def _port_suffix(self) -> str:
        return "" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}"


class AddressPolicy:
    """The deny list, less what the operator admits with CIDRs (`GENGATE_WEBHOOK_ALLOW`).

    An allowed CIDR admits the literal address only: allowing 127.0.0.0/8 admits 127.0.0.1,
    not `::ffff:127.0.0.1`, whose IPv6 form would have to be allowed on its own.
    """

    __slots__ = ("_verdicts", "allowed", "setting")

    def __init__(self, allowed: Iterable[IPNetwork] = (), *, setting: str = ALLOW_ENV + "={}") -> None:
        self.allowed = tuple(allowed)
        #: How the operator admits an address (`{}` stands for it): every refusal names it, so
        #: whoever reads a refusal learns the way round it without the documentation.
        self.setting = setting
        #: The verdicts given so far. A policy never changes once made, and an address's verdict
        #: walks two dozen networks in pure Python: most of a callback's cost in the SSRF check,
        #: asked at each submit and at each delivery of the same few receivers.
        self._verdicts: dict[IPAddress, str | None] = {}

    @classmethod
    def from_env_value(cls, value: str | None) -> AddressPolicy:
        """Parse comma-separated CIDRs (bare addresses too); empty or unset admits nothing extra."""
        items = [item.strip() for item in (value or "").split(",") if item.strip()]
        networks: list[IPNetwork] = []
        for item in items:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise ValueError(f"{ALLOW_ENV}: {item!r} is not an IP network (CIDR).") from exc
        return cls(networks)

    def refusal(self, ip: IPAddress) -> str | None:
        """Why `ip` may not be called (e.g. "a loopback address"), or None when it may."""
        if isinstance(ip, IPv6Address) and ip.scope_id:
            return "a scoped (zone-qualified) address"
        try:
            return self._verdicts[ip]
        except KeyError:
            pass
        why = self._judge(ip)
        if len(self._verdicts) >= VERDICTS_KEPT:
            self._verdicts.clear()
        self._verdicts[ip] = why
        return why

    def _judge(self, ip: IPAddress) -> str | None:
        if any(ip in network for network in self.allowed):
            return None
        denied = _denied(ip)
        return None if denied is None else denied[0]

    def allow_hint(self, ip: IPAddress) -> str:
        """`; ... can allow it with GENGATE_WEBHOOK_ALLOW=127.0.0.1 (or a range such as
        127.0.0.0/8)`: the address itself, and the listed range holding it when that range is
        what admits it too (not for IPv6 forms of an IPv4 host). Empty when nothing can."""
        if isinstance(ip, IPv6Address) and ip.scope_id:
            return ""
        denied = _denied(ip)
        network = None if denied is None else denied[1]
        wider = (
            f" (or a range such as {network})" if network is not None and network.num_addresses > 1 else ""
        )
        return f"; the gateway's operator can allow it with {self.setting.format(ip)}{wider}"

    def check_address(self, ip: IPAddress | str) -> None:
        """Raise :class:`UnsafeUrl` unless `ip` may be called."""
        address = ip if isinstance(ip, IPv4Address | IPv6Address) else ipaddress.ip_address(ip)
        why = self.refusal(address)
        if why is not None:
            raise UnsafeUrl(f"callback_url host {address} is {why}{self.allow_hint(address)}")


def _denied(ip: IPAddress) -> tuple[str, IPNetwork | None] | None:
    """The deny-list reason for `ip` and the listed network holding it; IPv6 forms that reach an
    IPv4 host are judged by that host (and no listed network admits them)."""
    if isinstance(ip, IPv4Address):
        return _first_match(ip, _IPV4_DENY)
    found = _first_match(ip, _IPV6_DENY)
    if found is not None:
        return found
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        form, inner = embedded
        inner_found = _first_match(inner, _IPV4_DENY)
        return None if inner_found is None else (f"{form} form of {inner}, {inner_found[0]}", None)
    return None if ip in _GLOBAL_UNICAST else (RESERVED, None)


def _first_match(ip: IPAddress, table: Iterable[tuple[IPNetwork, str]]) -> tuple[str, IPNetwork] | None:
    return next(((why, network) for network, why in table if ip in network), None)


def _embedded_ipv4(ip: IPv6Address) -> tuple[str, IPv4Address] | None:
    """The IPv4 host that IPv4-mapped, 6to4, NAT64 and IPv4-compatible addresses reach."""
    if ip.ipv4_mapped is not None:
        return "an IPv4-mapped", ip.ipv4_mapped
    if ip.sixtofour is not None:
        return "a 6to4", ip.sixtofour
    low32 = IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64:
        return "a NAT64", low32
    if ip in _IPV4_COMPATIBLE:
        return "an IPv4-compatible", low32
    return None


def parse_callback_url(url: str, *, max_length: int = 2048) -> ParsedUrl:
    """Split and normalise `url` without any DNS; raise :class:`UnsafeUrl` saying what is wrong.

    Only http(s), no user information, no whitespace or control characters; the fragment is
    dropped. Numeric hosts such as `127.1` or `0x7f.1` are IPv4 addresses to libc and browsers,
    so they are read as addresses here too and can never pass as names.

    A task's URL is parsed at its submit and again at each delivery, and most tasks of a client
    share one: the answers for the last URLs are kept (a parse is pure, its result frozen), which
    saves a per-character scan each time.
    """
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("callback_url must be a non-empty string")
    if len(url) > max_length:
        raise UnsafeUrl(f"callback_url is longer than {max_length} characters")
    return _parse_checked_length(url)


@functools.lru_cache(maxsize=PARSED_URLS_KEPT)
def _parse_checked_length(url: str) -> ParsedUrl:
    if any(unicodedata.category(char)[0] in "CZ" for char in url):
        raise UnsafeUrl("callback_url must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise UnsafeUrl("callback_url is not a valid URL") from exc
    if parts.scheme not in DEFAULT_PORTS:
        raise UnsafeUrl("callback_url must use http or https")
    if "@" in parts.netloc:
        raise UnsafeUrl("callback_url must not contain user information (user@host)")
    host_text, bracketed, port_text = _split_netloc(parts.netloc)
    port = _parse_port(port_text, DEFAULT_PORTS[parts.scheme])
    if not host_text:
        raise UnsafeUrl("callback_url has no host")
    ip: IPAddress | None
    if bracketed:
        ip = _parse_ipv6_literal(host_text)
        host = str(ip)
    else:
        host, ip = _parse_host(host_text)
    path_and_query = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    port_suffix = "" if port == DEFAULT_PORTS[parts.scheme] else f":{port}"
    normalised = f"{parts.scheme}://{_bracketed(host)}{port_suffix}{path_and_query}"
    return ParsedUrl(normalised, parts.scheme, host, port, path_and_query, ip)


def _split_netloc(netloc: str) -> tuple[str, bool, str]:
    """`(host, bracketed, port_text)` of an authority without user information."""
    if netloc.startswith("["):
        host, bracket, rest = netloc[1:].partition("]")
        if not bracket:
            raise UnsafeUrl("callback_url has an unclosed '[' in its host")
    else:
        host, colon, port = netloc.partition(":")
        rest = colon + port
    if rest and not rest.startswith(":"):
        raise UnsafeUrl("callback_url has text after its host that is not a port")
    return host, netloc.startswith("["), rest[1:]


def _parse_port(text: str, default: int) -> int:
    if not text:
        return default
    if not _PORT.fullmatch(text) or not 0 < int(text) < 65536:
        raise UnsafeUrl("callback_url has an invalid port (1-65535)")
    return int(text)


def _parse_ipv6_literal(text: str) -> IPv6Address:
    if "%" in text:
        raise UnsafeUrl("callback_url must not use an IPv6 zone identifier")
    try:
        return IPv6Address(text)
    except ValueError as exc:
        raise UnsafeUrl(f"callback_url host [{text}] is not a valid IPv6 address") from exc


def _parse_host(text: str) -> tuple[str, IPv4Address | None]:
    """`(host, ip)` for a name or IPv4 host: names IDNA-encoded and lower-case, numbers as addresses."""
    try:
        name = text.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise UnsafeUrl("callback_url host is not a valid host name") from exc
    name = name.removesuffix(".")
    labels = name.split(".")
    if _NUMBER.fullmatch(labels[-1]):
        ip = _parse_ipv4_number(labels)
        if ip is None:
            raise UnsafeUrl(f"callback_url host {name} is neither an IPv4 address nor a host name")
        return str(ip), ip
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise UnsafeUrl("callback_url host is not a valid host name")
    return name, None


def _parse_ipv4_number(labels: Sequence[str]) -> IPv4Address | None:
    """inet_aton (and WHATWG URL) rules: 1-4 parts in decimal, 0x-hex or 0-octal; the last fills."""
    if len(labels) > 4:
        return None
    numbers: list[int] = []
    for label in labels:
        if label.startswith("0x"):
            base, digits = 16, label[2:]
        elif len(label) > 1 and label.startswith("0"):
            base, digits = 8, label[1:]
        else:
            base, digits = 10, label
        if not _DIGITS[base].fullmatch(digits):
            return None
        numbers.append(int(digits, base) if digits else 0)
    *head, last = numbers
    if any(number > 255 for number in head) or last >= 256 ** (4 - len(head)):
        return None
    return IPv4Address(sum(number << (8 * (3 - i)) for i, number in enumerate(head)) + last)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def system_resolver(host: str) -> list[str]:
    """Every address the platform resolver (getaddrinfo, off the event loop) answers for `host`."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve_and_check(
    url: str,
    policy: AddressPolicy,
    *,
    resolver: Resolver | None = None,
    timeout_s: float = RESOLVE_TIMEOUT_S,
) -> CheckedTarget:
    """Parse `url`, resolve its host once, and refuse it if any address is unsafe.

    Every answer is checked, since whoever controls a name can mix a public record with a
    private one; the first is chosen. `localhost` and `*.localhost` are loopback by definition
    (RFC 6761) and never asked of DNS.
    """
    parsed = parse_callback_url(url)
    if parsed.ip is not None:
        policy.check_address(parsed.ip)
        address = parsed.host  # the literal, as the parse normalised it
    else:
        addresses = await _resolve_once(parsed.host, resolver or system_resolver, timeout_s)
        for ip in addresses:
            why = policy.refusal(ip)
            if why is not None:
                raise UnsafeUrl(
                    f"callback_url host {parsed.host} resolves to {ip}, {why}{policy.allow_hint(ip)}"
                )
        address = str(addresses[0])
    return CheckedTarget(
        url=parsed.url,
        scheme=parsed.scheme,
        host=parsed.host,
        port=parsed.port,
        address=address,
        path_and_query=parsed.path_and_query,
    )


@functools.lru_cache(maxsize=VERDICTS_KEPT)
def _answer_address(answer: str) -> IPAddress:
    """A resolver's answer as an address: the same few answers come back at every delivery."""
    return ipaddress.ip_address(answer)


async def _resolve_once(host: str, resolver: Resolver, timeout_s: float) -> list[IPAddress]:
    if host == "localhost" or host.endswith(".localhost"):
        return [_LOCALHOST]
    # A cache's answer at hand needs neither a timeout nor a wait (a timer each, else).
    remembered = getattr(resolver, "remembered", None)
    answers = remembered(host) if remembered is not None else None
    try:
        if answers is None:
            async with asyncio.timeout(timeout_s):
                answers = await resolver(host)
    except TimeoutError as exc:
        raise UnsafeUrl(f"callback_url host {host} could not be resolved in time") from exc
    except OSError as exc:
        raise UnsafeUrl(f"callback_url host {host} does not resolve") from exc
    try:
        addresses = [_answer_address(answer) for answer in dict.fromkeys(answers)]
    except ValueError as exc:
        raise UnsafeUrl(f"callback_url host {host} resolves to something that is not an address") from exc
    if not addresses:
        raise UnsafeUrl(f"callback_url host {host} does not resolve")
    return addresses
