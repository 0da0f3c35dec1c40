"""Which connector serves which provider.

`connector_for` is the one way the worker gets a connector. A provider whose
connector is not written yet gets a `NotImplementedConnector`, whose every
sync fails loudly rather than succeeding with nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from models.errors import InvalidCredentials
from models.status import Provider, SyncOutcome
from worker.connectors.base import Connector, PageSink, SyncContext, SyncResult
from worker.connectors.stripe import StripeConnector

ConnectorFactory = Callable[..., Connector]

CONNECTORS: Mapping[Provider, ConnectorFactory] = {
    Provider.STRIPE: StripeConnector,
}


def connector_for(provider: Provider, *, base_url: str | None = None, **options: Any) -> Connector:
    """A new connector for `provider`; `base_url` None means the provider's real API.

    `options` go to the connector's constructor (e.g. `http=HttpOptions(...)`,
    `page_size=...`). The caller owns the connector and closes it.
    """
    factory = CONNECTORS.get(provider)
    if factory is None:
        return NotImplementedConnector(provider)
    return factory(base_url=base_url, **options)


class NotImplementedConnector:
    """Stands in for a provider without a connector: accepts credentials, fails every sync."""

    required_credentials: tuple[str, ...] = ()

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def validate_credentials(self, raw: Mapping[str, Any]) -> dict[str, str]:
        """Any non-empty mapping of text fields to text values."""
        if not raw:
            raise InvalidCredentials(f"{self.provider} credentials: at least one field is required")
        for name, value in raw.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise InvalidCredentials(f"{self.provider} credentials: {name!s} must be text")
        return dict(raw)

    def sync(self, ctx: SyncContext, sink: PageSink) -> SyncResult:
        return SyncResult(
            SyncOutcome.FAILED, error=f"connector for {self.provider} is not implemented yet"
        )

    def close(self) -> None:
        """Nothing to release."""
