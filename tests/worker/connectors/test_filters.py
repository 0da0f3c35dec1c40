"""Each connector checks its filters when they are set, not on its first sync.

Filters a connector cannot use would otherwise be stored, and the first sync would fail on
them and send the integration to quality assurance. `validate_filters` refuses them with
`InvalidFilters` (bad input at the door, and what a sync on stored ones fails with).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from models.errors import InvalidValue
from models.status import Provider
from worker.connectors.base import Connector
from worker.connectors.errors import ConfigurationError, InvalidFilters
from worker.connectors.registry import connector_for

# Each provider's streams, as its sync reads `filters["objects"]`.
STREAMS = {
    Provider.STRIPE: ("customers", "subscriptions", "invoices", "charges"),
    Provider.REVENUECAT: ("customers", "subscriptions", "purchases"),
    Provider.APP_STORE_CONNECT: ("sales", "subscriptions"),
    Provider.SHOPIFY: ("orders", "customers", "products"),
    Provider.GOOGLE_PLAY_CONSOLE: ("voided_purchases", "reviews"),
    Provider.WHOP: ("memberships", "payments"),
    Provider.PADDLE: ("transactions", "subscriptions", "customers"),
    Provider.WOOCOMMERCE: ("orders", "products", "subscriptions", "customers"),
    Provider.SUPERWALL: ("events",),
}


@pytest.fixture(params=list(Provider), ids=lambda p: p.value)
def connector(request: pytest.FixtureRequest) -> Iterator[Connector]:
    made = connector_for(request.param, base_url="http://127.0.0.1:9")  # never called
    yield made
    made.close()


def test_every_provider_has_its_streams_listed_here() -> None:
    assert set(STREAMS) == set(Provider)


def test_filters_naming_some_of_the_providers_streams_are_accepted(connector: Connector) -> None:
    streams = STREAMS[connector.provider]

    assert connector.validate_filters({"objects": [streams[-1]]}) == {"objects": [streams[-1]]}
    assert connector.validate_filters({"objects": list(streams)}) == {"objects": list(streams)}
    assert connector.validate_filters({}) == {}  # no objects: every stream


def test_an_object_the_provider_lacks_is_refused_naming_it_and_the_choices(
    connector: Connector,
) -> None:
    provider = connector.provider
    with pytest.raises(InvalidFilters) as refused:
        connector.validate_filters({"objects": [STREAMS[provider][0], "nope"]})

    assert str(refused.value) == (
        f"{provider} filters: unknown objects ['nope']; expected some of {list(STREAMS[provider])}"
    )


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"objects": []}, "objects must be a non-empty list"),
        ({"objects": "customers"}, "objects must be a non-empty list"),
        ({"objects": None}, None),  # an explicit null means no choice: every stream
        ({"object": ["customers"]}, r"unknown keys \['object'\]; expected some of \['objects'\]"),
        ({"since": "2026-01-01"}, r"unknown keys \['since'\]"),
        ({"objects": [{"name": "x"}]}, r"unknown objects \[\{'name': 'x'\}\]"),
    ],
)
def test_malformed_filters_are_refused(
    connector: Connector, filters: dict[str, Any], message: str | None
) -> None:
    if message is None:
        assert connector.validate_filters(filters) == filters
        return
    with pytest.raises(InvalidFilters, match=message):
        connector.validate_filters(filters)


def test_a_long_list_of_unknown_names_is_cut_short_in_the_message(connector: Connector) -> None:
    names = [f"stream-{n}" for n in range(500)]

    with pytest.raises(InvalidFilters) as refused:
        connector.validate_filters({"objects": names})

    assert "and 495 more" in str(refused.value)
    assert len(str(refused.value)) < 400


def test_refused_filters_are_bad_input_at_the_door_and_a_configuration_error_in_a_sync() -> None:
    assert issubclass(InvalidFilters, InvalidValue)
    assert issubclass(InvalidFilters, ConfigurationError)
