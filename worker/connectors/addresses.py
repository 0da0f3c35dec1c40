"""Customer-supplied hosts (a WooCommerce store, a Shopify shop) may only be public addresses.

Without this guard a customer could point a connector at the worker's own network:
loopback, a cloud metadata address (169.254.169.254), a private range, often
spelled in a numeric trick (`2130706433`, `0177.0.0.1`, `0x7f.1`, `::ffff:127.0.0.1`).
Two checks:

- at create (`refuse_literal`, from `validate_credentials`): a host written as an
  address in any of those spellings, or a name that is local by definition
  (`localhost`, `*.localhost`), must be public;
- at connect (`pin`, for every request of a session with a customer host): the host
  is resolved, every address must be public, and the request is sent to one of those
  checked addresses (the `Host` header and TLS SNI keep the name, so certificates are
  verified as usual). Resolving once and connecting to what was checked leaves no
  gap for a DNS answer that changes in between (rebinding). A request to any other
  host than the session's (an absolute next-page link elsewhere) is refused; the
  client never follows redirects (a 3xx is a `RequestRejected`).

`allow_loopback` (SYNCWORKER_ALLOW_LOOPBACK_HOSTS) lets loopback through, for the
fakes on 127.0.0.1 in tests and the demo; nothing else non-public is ever allowed.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from typing import Final, NamedTuple

import httpx

from worker.connectors.errors import BlockedHost, TransientError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Host name -> the addresses it resolves to (text), for a port.
Resolver = Callable[[str, int], list[str]]
# What `socket.inet_aton` reads as an IPv4 address: decimal, octal, hex, short forms.
NUMERIC_HOST: Final = re.compile(r"(?:0x[0-9a-f]*|\d+)(?:\.(?:0x[0-9a-f]*|\d+)){0,3}\.?", re.I)
LOCAL_NAMES: Final = ("localhost", ".localhost")


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for `host` (every family)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def literal_address(host: str) -> Address | None:
    """The address `host` spells, in any notation a resolver accepts, else None (a name).

    Raises `ValueError` for a numeric-looking host that is no address.
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not NUMERIC_HOST.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        raise ValueError("not a valid address") from None


def allowed(address: Address, *, allow_loopback: bool) -> bool:
    """Whether a connector may connect to `address`: public, or loopback when allowed."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            address = mapped
    if address.is_loopback:
        return allow_loopback
    return address.is_global and not address.is_multicast


def refuse_literal(host: str, *, allow_loopback: bool) -> str | None:
    """Why `host` cannot be a customer's host, judged without resolving it; None if it may."""
    name = host.strip().lower().rstrip(".")
    if name.endswith(LOCAL_NAMES):
        return None if allow_loopback else "is a local host name"
    try:
        address = literal_address(name)
    except ValueError:
        return "is not a valid host"
    if address is not None and not allowed(address, allow_loopback=allow_loopback):
        return "is not a public address"
    return None


class Pinned(NamedTuple):
    """A request's URL with its host replaced by a checked address, and what keeps the name."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, str]


def pin(
    url: httpx.URL, base_host: str, endpoint: str, *, allow_loopback: bool, resolve: Resolver
) -> Pinned:
    """Resolve `url`'s host, check every address, and aim the request at a checked one."""
    host = url.host
    if host != base_host:
        raise BlockedHost(f"{endpoint}: refused a request to another host than the store's")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        found = resolve(host, port)
    except OSError as exc:
        raise TransientError(f"{endpoint}: the host did not resolve") from exc
    addresses = [ipaddress.ip_address(text.partition("%")[0]) for text in found]
    if not addresses or not all(allowed(a, allow_loopback=allow_loopback) for a in addresses):
        raise BlockedHost(f"{endpoint}: the host resolves to an address that is not public")
    netloc = host if url.port is None else f"{host}:{url.port}"
    return Pinned(
        url.copy_with(host=str(addresses[0])),
        {"Host": netloc},
        {"sni_hostname": host},
    )
