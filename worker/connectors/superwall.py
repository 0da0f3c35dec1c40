"""The Superwall connector: checks the API key and how fresh the webhook data is.

Superwall's data (subscription and payment events) arrives by webhook, ingested by
`worker.connectors.webhooks`. A sync therefore fetches nothing; it

1. verifies the API key with one minimal authenticated call, `GET /v2/projects?limit=1` on
   `https://api.superwall.com` with `Authorization: Bearer <organization API key>`;
2. judges freshness from `ctx.data_last_received_at`: no webhook data for longer than
   `configurations["stale_after_hours"]` (default 48), or none ever, is a warning
   (`succeeded_with_warnings`) naming it.

Assumption, documented because the docs we could read publish no REST reference: the V2
endpoints (`/v2/projects`, `/v2/products?project_id=`), organization API keys as Bearer
tokens and cursor-paginated lists (`limit` 1-100, `starting_after`, `has_more`, items in
`data`) come from Superwall's own CLI reference (superwall/skills, `references/api.md`) and
from public clients of `api.superwall.com/v2`. `pk_` keys are the public SDK keys
(Settings > Keys), which the REST API does not take.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

import structlog

from models.clock import ensure_utc
from models.errors import InvalidCredentials
from models.status import Provider, SyncOutcome
from models.sync_runs import SyncResult
from worker.connectors.base import (
    HttpConnector,
    PageSink,
    SyncContext,
    credential,
    reject_unknown,
)
from worker.connectors.errors import ConfigurationError
from worker.connectors.http import BearerAuth, HttpOptions, ProviderClient
from worker.connectors.responses import error_fields, require
from worker.connectors.webhooks import STREAM as WEBHOOK_STREAM
from worker.connectors.webhooks import WEBHOOK_SECRET_FIELD, webhook_secret_credential

log = structlog.get_logger(__name__)

PROBE = "/v2/projects"
STALE_AFTER_HOURS = 48  # two days without one event means the webhook is likely broken


class SuperwallConnector(HttpConnector):
    """Verifies a Superwall API key and warns when webhook data stops arriving."""

    provider = Provider.SUPERWALL
    # Its data arrives by webhook, stored as one stream (worker.connectors.webhooks).
    streams: ClassVar[tuple[str, ...]] = (WEBHOOK_STREAM,)
    required_credentials: tuple[str, ...] = ("api_key",)
    default_base_url: ClassVar[str] = "https://api.superwall.com"

    def make_client(self, base_url: str, options: HttpOptions) -> ProviderClient:
        detail = error_fields(("error", "code"))  # never its message
        return ProviderClient(base_url, options=options, error_detail=detail)

    def validate_credentials(self, raw: Mapping[str, Any]) -> dict[str, str]:
        """An organization `api_key` (not a public `pk_` SDK key), and optionally the
        webhook endpoint's `webhook_secret` (`whsec_...`)."""
        reject_unknown(
            raw, (*self.required_credentials, WEBHOOK_SECRET_FIELD), provider=self.provider
        )
        key = credential(raw, "api_key", provider=self.provider)
        if key.startswith("pk_"):
            raise InvalidCredentials(
                "superwall credentials: api_key is a public SDK key (pk_); use an API key"
            )
        return {"api_key": key, **webhook_secret_credential(self.provider, raw)}

    def sync(self, ctx: SyncContext, sink: PageSink) -> SyncResult:
        credentials = self.validate_credentials(ctx.credentials)
        threshold = _threshold(ctx.configurations)
        api = self.client.authorized(BearerAuth(credentials["api_key"]))
        require(api.get_json(PROBE, {"limit": 1}), "data", list, endpoint=f"GET {PROBE}")
        warning = _staleness(ctx.data_last_received_at, ctx.now, threshold)
        log.info("sync.superwall_checked", integration_id=ctx.integration_id, stale=bool(warning))
        if warning:
            return SyncResult(SyncOutcome.SUCCEEDED_WITH_WARNINGS, warnings=(warning,))
        return SyncResult(SyncOutcome.SUCCEEDED)


def _threshold(configurations: Mapping[str, Any]) -> timedelta:
    """`stale_after_hours` (a positive number, default 48) as a duration."""
    hours = configurations.get("stale_after_hours", STALE_AFTER_HOURS)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours < 1e6:
        raise ConfigurationError(
            "superwall configurations: stale_after_hours must be a positive number of hours"
        )
    return timedelta(hours=hours)


def _staleness(last: datetime | None, now: datetime, threshold: timedelta) -> str | None:
    """A warning when webhook data never arrived or stopped longer than `threshold` ago."""
    hours = f"{threshold.total_seconds() / 3600:g}"
    if last is None:
        return (
            "webhooks: no Superwall webhook data has ever been received; "
            "check the webhook points at this integration"
        )
    quiet = ensure_utc(now) - ensure_utc(last)
    if quiet <= threshold:
        return None
    return (
        f"webhooks: no Superwall webhook data for {quiet.total_seconds() / 3600:.0f} hours "
        f"(last at {ensure_utc(last).isoformat()}); stale after {hours} hours"
    )
