"""Where a webhook may be sent: a private address of the cluster is fine (this is an
intranet appliance), the appliance's own services and the machine itself are not, nor
link-local and cloud-metadata addresses (an attacker's way to read credentials).

Checked when a subscription is made and again at every delivery, on the addresses the
name resolves to *then*: the delivery connects to the address it checked (resolved
once), so a name that changes its answer between the check and the connection (DNS
rebinding) reaches nothing it was refused.  Every address a name resolves to must be
allowed, not just the first.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from signet.common.errors import SignetError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: getaddrinfo's shape, so tests may stand a name server in
Resolver = Callable[[str, int], list[str]]

MAX_URL = 2048
#: How long the appliance's own services' addresses are kept (seconds).
OWN_TTL = 30.0

#: Never a webhook target, whatever the settings.
_FORBIDDEN = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this host"
        "169.254.0.0/16",  # link-local, the cloud-metadata service (169.254.169.254)
        "100.100.100.200/32",  # Alibaba Cloud's metadata service
        "224.0.0.0/4",  # multicast
        "255.255.255.255/32",
        "::/128",
        "fe80::/10",  # link-local
        "fd00:ec2::254/128",  # AWS's IPv6 metadata service
        "ff00::/8",  # multicast
    )
)
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class TargetRefused(SignetError):
    status_code = 422
    code = "webhook_target_refused"


@dataclass(frozen=True)
class Target:
    """A checked URL and the one address a delivery connects to."""

    url: str
    scheme: str
    host: str
    port: int
    #: path and query, as sent in the request line
    target: str
    address: Address

    def connect_url(self) -> str:
        """The URL with the checked address in place of the name (the Host header and
        TLS's server name stay the name's)."""
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{self.scheme}://{host}:{self.port}{self.target}"


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class TargetPolicy:
    #: the appliance's own services (signer, storage, the portal's bind address) as
    #: URLs: refused by resolved address and port
    own_services: tuple[str, ...] = ()
    #: the portal's public URL: refused by name and port (not by address, since an
    #: ingress shared with other intranet applications has the same address and port)
    own_public: tuple[str, ...] = ()
    #: test-only: let a webhook reach loopback (a receiver beside the tests)
    allow_loopback: bool = False
    resolver: Resolver = system_resolver
    _cache: dict[str, tuple[float, set[tuple[Address, int]]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def check(self, url: str) -> Target:
        """The checked target of `url`; `TargetRefused` saying why not."""
        parts = _parse(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if (host.rstrip(".").lower(), port) in {_name_port(u) for u in self.own_public}:
            raise TargetRefused(f"{host} port {port} is the portal's public address: one of "
                                "the appliance's own services")  # fmt: skip
        addresses = self._resolve(host, port)
        own = self._own_endpoints()
        for address in addresses:
            self._refuse_address(address, port, own)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return Target(url, parts.scheme, host, port, target, addresses[0])

    def _resolve(self, host: str, port: int) -> list[Address]:
        literal = _literal(host)
        if literal is not None:
            return [literal]
        try:
            found = self.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise TargetRefused(f"the webhook host {host!r} does not resolve: {exc}") from None
        addresses = [_address(a) for a in found]
        if not addresses:
            raise TargetRefused(f"the webhook host {host!r} has no address")
        return addresses

    def _refuse_address(self, address: Address, port: int, own: set[tuple[Address, int]]) -> None:
        if any(address in network for network in _FORBIDDEN):
            raise TargetRefused(
                f"the webhook target resolves to {address}: link-local, metadata, multicast "
                "and unspecified addresses are never webhook targets"
            )
        if (address, port) in own:
            raise TargetRefused(
                f"the webhook target {address} port {port} is one of the appliance's own services"
            )
        if any(address in network for network in _LOOPBACK) and not self.allow_loopback:
            raise TargetRefused(
                f"the webhook target resolves to {address}: loopback is the appliance itself"
            )

    def _own_endpoints(self) -> set[tuple[Address, int]]:
        """The addresses and ports of the appliance's own services, resolved at most
        every `OWN_TTL` seconds (a delivery would otherwise cost four lookups more)."""
        cached = self._cache.get("own")
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        own = self._resolve_own()
        self._cache["own"] = (time.monotonic() + OWN_TTL, own)
        return own

    def _resolve_own(self) -> set[tuple[Address, int]]:
        own: set[tuple[Address, int]] = set()
        for url in self.own_services:
            parts = urlsplit(url)
            if not parts.hostname:
                continue
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                own.update((a, port) for a in self._resolve(parts.hostname, port))
            except TargetRefused:
                continue  # a service name this replica cannot resolve cannot be reached
        return own


def _parse(url: str) -> SplitResult:
    if len(url) > MAX_URL:
        raise TargetRefused(f"a webhook URL has at most {MAX_URL} characters")
    if any(ord(c) < 0x21 or c == "\x7f" for c in url):
        raise TargetRefused("a webhook URL has no spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise TargetRefused(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("a webhook URL is http:// or https://")
    if not parts.hostname:
        raise TargetRefused("a webhook URL names a host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("a webhook URL carries no credentials (they would be stored)")
    if parts.fragment:
        raise TargetRefused("a webhook URL has no fragment")
    return parts


def _name_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return (parts.hostname or "").rstrip(".").lower(), port


def _literal(host: str) -> Address | None:
    try:
        return _unmapped(ipaddress.ip_address(host))
    except ValueError:
        return None


def _address(text: str) -> Address:
    return _unmapped(ipaddress.ip_address(text.split("%", 1)[0]))


def _unmapped(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (``::ffff:169.254.169.254``) as the IPv4 it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
