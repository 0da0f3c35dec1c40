"""Customer-supplied hosts (a WooCommerce store, a Shopify shop) may only be public addresses.

Without this guard a customer could point a connector at the worker's own network:
loopback, a cloud metadata address (169.254.169.254), a private range, often
spelled in a numeric trick (`2130706433`, `0177.0.0.1`, `0x7f.1`, `::ffff:127.0.0.1`).
Two checks:

- at create (`refuse_literal`, from `validate_credentials`): a host written as an
  address in any of those spellings, or a name that is local by definition
  (`localhost`, `*.localhost`), must be public;
- at connect (`GuardedTransport`, the transport of connectors whose hosts customers
  name): every new connection resolves its host, checks every address, and connects
  to a checked one. The URL keeps the name, so TLS verifies the certificate for it and
  pooled connections are kept per name; resolving once and connecting to what was
  checked leaves no gap for a DNS answer that changes in between (rebinding). A session
  on a customer host also refuses a request to any other host (an absolute next-page
  link elsewhere); the client never follows redirects (a 3xx is a `RequestRejected`).

`allow_loopback` (SYNCWORKER_ALLOW_LOOPBACK_HOSTS) lets loopback through, for the
fakes on 127.0.0.1 in tests and the demo; nothing else non-public is ever allowed.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from typing import Any, Final

import httpcore
import httpx

from worker.connectors.errors import BlockedHost

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
SocketOption = Any  # httpcore's socket option tuples
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


def checked_addresses(
    host: str, port: int, *, allow_loopback: bool, resolve: Resolver
) -> list[str]:
    """The addresses `host` resolves to, all allowed; `BlockedHost` if any is not."""
    try:
        found = resolve(host, port)
    except OSError as exc:
        raise httpcore.ConnectError("the host did not resolve") from exc
    addresses = [ipaddress.ip_address(text.partition("%")[0]) for text in found]
    if not addresses or not all(allowed(a, allow_loopback=allow_loopback) for a in addresses):
        raise BlockedHost("the host resolves to an address that is not public")
    return [str(address) for address in addresses]


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's sockets, opened only to checked addresses of the host asked for."""

    def __init__(self, *, allow_loopback: bool, resolve: Resolver) -> None:
        self.allow_loopback = allow_loopback
        self.resolve = resolve

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = checked_addresses(
            host, port, allow_loopback=self.allow_loopback, resolve=self.resolve
        )
        failure: httpcore.ConnectError | None = None
        for address in addresses:  # like socket.create_connection: the first that answers
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # noqa: S101 - addresses is never empty here
        raise failure


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport whose connections go through `GuardedBackend`."""

    def __init__(self, limits: httpx.Limits, *, allow_loopback: bool, resolve: Resolver) -> None:
        super().__init__(limits=limits)
        # httpx offers no way to pass a network backend: the pool it built is replaced by
        # the same pool over the guarded backend (httpcore's documented extension point).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allow_loopback=allow_loopback, resolve=resolve),
        )
