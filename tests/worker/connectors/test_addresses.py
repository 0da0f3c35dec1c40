"""No SSRF: customer-supplied hosts must be public, at create and at connect time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from fakes.server import FakeServer, Response
from models.errors import InvalidCredentials
from models.status import SyncOutcome
from tests.worker.connectors.conftest import RecordingSink
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.errors import BlockedHost, RequestRejected
from worker.connectors.http import HttpOptions, ProviderClient
from worker.connectors.woocommerce import WooCommerceConnector
from worker.settings import Settings

KEYS = {"consumer_key": "ck_test", "consumer_secret": "cs_test"}


def _woo(**options: object) -> WooCommerceConnector:
    return WooCommerceConnector(http=HttpOptions(sleep=lambda _: None, **options))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "store_url",
    [
        "https://127.0.0.1",
        "https://2130706433",  # 127.0.0.1 as one decimal number
        "https://0177.0.0.1",  # octal
        "https://0x7f.1",  # hex, short form
        "https://[::1]",
        "https://[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
        "https://169.254.169.254",  # cloud metadata, link-local
        "https://[fe80::1]",
        "https://10.0.0.5:8443",
        "https://192.168.1.1",
        "https://172.16.0.1",
        "https://100.64.0.1",  # carrier-grade NAT
        "https://0.0.0.0",
        "https://localhost",
        "https://store.localhost",
    ],
)
def test_a_non_public_store_url_is_refused_at_create_without_quoting_it(store_url: str) -> None:
    with _woo() as connector, pytest.raises(InvalidCredentials) as refused:
        connector.validate_credentials({"store_url": store_url, **KEYS})

    assert "store_url's host" in str(refused.value)
    assert store_url.removeprefix("https://") not in str(refused.value)


@pytest.mark.parametrize("store_url", ["https://shop.example.com", "https://93.184.216.34:8443"])
def test_a_public_store_url_is_accepted(store_url: str) -> None:
    with _woo() as connector:
        assert connector.validate_credentials({"store_url": store_url, **KEYS})["store_url"]


def test_loopback_is_accepted_only_when_allowed() -> None:
    with _woo(allow_loopback=True) as connector:
        valid = connector.validate_credentials({"store_url": "https://127.0.0.1:8443", **KEYS})
    assert valid["store_url"] == "https://127.0.0.1:8443"
    with _woo(allow_loopback=True) as connector, pytest.raises(InvalidCredentials):
        connector.validate_credentials({"store_url": "https://169.254.169.254", **KEYS})


@pytest.mark.parametrize("resolved", [["10.0.0.7"], ["93.184.216.34", "169.254.169.254"]])
def test_a_store_resolving_to_a_private_address_fails_the_sync_unconnected(
    make_context: Callable[..., SyncContext], resolved: list[str]
) -> None:
    # given a public-looking name whose DNS answers (any of) a private address
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return resolved

    ctx = make_context({"store_url": "https://store.example", **KEYS})
    with _woo(resolve=resolve) as connector:
        result = run_sync(connector, ctx, RecordingSink())

    # then the sync fails naming why, and no connection was attempted
    assert result.outcome is SyncOutcome.FAILED
    assert result.error is not None
    assert "GET /wp-json/wc/v3/orders: the host resolves to an address that is not public" in (
        result.error
    )
    assert asked[0] == ("store.example", 443)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with FakeServer() as server:
        server.route(
            "GET", "/ping", lambda request: Response.json({"host": request.headers["host"]})
        )
        yield server


def _customer_client(fake: FakeServer, **options: object) -> tuple[ProviderClient, str]:
    """A client for customer hosts, and a base URL naming the fake as `shop.test`."""
    port = fake.url.rpartition(":")[2]
    http = HttpOptions(resolve=lambda *_: ["127.0.0.1"], **options)  # type: ignore[arg-type]
    return ProviderClient(options=http, customer_hosts=True), f"http://shop.test:{port}"


def test_a_connection_goes_to_the_checked_address_keeping_the_name(fake: FakeServer) -> None:
    # given a name resolving to loopback, allowed for the fakes
    client, base_url = _customer_client(fake, allow_loopback=True)
    with client:
        session = client.authorized(base_url=base_url, customer_host=True)
        # then the request reaches that address under its own name
        assert session.get_json("/ping") == {"host": base_url.removeprefix("http://")}


def test_loopback_is_refused_at_connect_unless_allowed(fake: FakeServer) -> None:
    client, base_url = _customer_client(fake)
    with client, pytest.raises(BlockedHost, match="GET /ping: the host resolves to an address"):
        client.authorized(base_url=base_url, customer_host=True).get_json("/ping")
    assert fake.requests == []


def test_a_link_to_another_host_is_refused(fake: FakeServer) -> None:
    client, base_url = _customer_client(fake, allow_loopback=True)
    with client, pytest.raises(BlockedHost, match="another host"):
        session = client.authorized(base_url=base_url, customer_host=True)
        session.get_json("http://169.254.169.254/latest/meta-data")


def test_a_redirect_is_never_followed() -> None:
    sent: list[httpx.Request] = []

    def redirect(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/"})

    options = HttpOptions(transport=httpx.MockTransport(redirect))
    with ProviderClient(options=options) as client:
        session = client.authorized(base_url="https://store.example", customer_host=True)
        with pytest.raises(RequestRejected, match="302"):
            session.get_json("/wp-json/wc/v3/orders")
    assert len(sent) == 1


def test_the_loopback_setting_reaches_the_connectors_options() -> None:
    assert not Settings.from_env({}).http_options(4).allow_loopback
    allowed = Settings.from_env({"SYNCWORKER_ALLOW_LOOPBACK_HOSTS": "true"})
    assert allowed.http_options(4).allow_loopback
