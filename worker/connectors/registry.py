"""Which connector serves which provider.

`connector_for` is the one way the worker gets a connector; every provider of
`models.status.Provider` has one (a test holds the registry to that).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from models.status import Provider
from worker.connectors.app_store_connect import AppStoreConnectConnector
from worker.connectors.base import Connector
from worker.connectors.google_play import GooglePlayConnector
from worker.connectors.paddle import PaddleConnector
from worker.connectors.revenuecat import RevenueCatConnector
from worker.connectors.shopify import ShopifyConnector
from worker.connectors.stripe import StripeConnector
from worker.connectors.superwall import SuperwallConnector
from worker.connectors.whop import WhopConnector
from worker.connectors.woocommerce import WooCommerceConnector

ConnectorFactory = Callable[..., Connector]

CONNECTORS: Mapping[Provider, ConnectorFactory] = {
    Provider.STRIPE: StripeConnector,
    Provider.SHOPIFY: ShopifyConnector,
    Provider.WHOP: WhopConnector,
    Provider.PADDLE: PaddleConnector,
    Provider.WOOCOMMERCE: WooCommerceConnector,
    Provider.REVENUECAT: RevenueCatConnector,
    Provider.APP_STORE_CONNECT: AppStoreConnectConnector,
    Provider.GOOGLE_PLAY_CONSOLE: GooglePlayConnector,
    Provider.SUPERWALL: SuperwallConnector,
}


def connector_for(provider: Provider, *, base_url: str | None = None, **options: Any) -> Connector:
    """A new connector for `provider`; `base_url` None means the provider's real API.

    `options` go to the connector's constructor (e.g. `http=HttpOptions(...)`,
    `page_size=...`). The caller owns the connector and closes it.
    """
    return CONNECTORS[provider](base_url=base_url, **options)
