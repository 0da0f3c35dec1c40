"""The vocabulary of the lifecycle: statuses, sync outcomes, triggers, providers.

Every string value here is part of the contract (SPEC §4): they are stored in
the database, written to the audit trail and returned by the API.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from models.errors import InvalidValue


class Status(StrEnum):
    """The nine statuses an integration moves between."""

    SETUP = "setup"
    ACTIVE = "active"
    SYNC_WARNINGS = "sync_warnings"
    SYNC_FAILING = "sync_failing"
    QUALITY_ASSURANCE = "quality_assurance"
    AUTH_FAILING = "auth_failing"
    CREDENTIALS_INVALID = "credentials_invalid"
    INACTIVE = "inactive"
    DELETED = "deleted"


# The scheduler dispatches syncs for these statuses only; every other status pauses syncing.
SYNCING_STATUSES: frozenset[Status] = frozenset(
    {Status.ACTIVE, Status.SYNC_WARNINGS, Status.SYNC_FAILING, Status.AUTH_FAILING}
)
# The same, as the column stores them, in a stable order (for `status IN (...)` queries).
SYNCING_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in SYNCING_STATUSES))


class SyncOutcome(StrEnum):
    """How one sync attempt ended."""

    SUCCEEDED = "succeeded"
    SUCCEEDED_WITH_WARNINGS = "succeeded_with_warnings"
    FAILED = "failed"
    AUTH_FAILED = "auth_failed"


# The outcomes that count as a successful sync (data arrived, the integration is on time).
SUCCESSES: frozenset[SyncOutcome] = frozenset(
    {SyncOutcome.SUCCEEDED, SyncOutcome.SUCCEEDED_WITH_WARNINGS}
)


class Trigger(StrEnum):
    """Everything that can move an integration, as written to the audit trail."""

    CREATED = "created"
    CONFIGURE_FILTERS = "configure_filters"
    SYNC_SUCCEEDED = "sync_succeeded"
    SYNC_SUCCEEDED_WITH_WARNINGS = "sync_succeeded_with_warnings"
    SYNC_FAILED = "sync_failed"
    SYNC_AUTH_FAILED = "sync_auth_failed"
    RESOLVE_QA = "resolve_qa"
    EXPIRE_CREDENTIALS = "expire_credentials"
    UPDATE_CREDENTIALS = "update_credentials"
    DEACTIVATE = "deactivate"
    DEACTIVATE_IDLE = "deactivate_idle"
    REACTIVATE = "reactivate"
    DELETE = "delete"


# Which trigger a sync outcome fires.
OUTCOME_TRIGGERS: dict[SyncOutcome, Trigger] = {
    SyncOutcome.SUCCEEDED: Trigger.SYNC_SUCCEEDED,
    SyncOutcome.SUCCEEDED_WITH_WARNINGS: Trigger.SYNC_SUCCEEDED_WITH_WARNINGS,
    SyncOutcome.FAILED: Trigger.SYNC_FAILED,
    SyncOutcome.AUTH_FAILED: Trigger.SYNC_AUTH_FAILED,
}


class Provider(StrEnum):
    """The nine providers an integration can connect to (seed 003's IntegrationProvider)."""

    REVENUECAT = "revenuecat"
    STRIPE = "stripe"
    APP_STORE_CONNECT = "app_store_connect"
    SHOPIFY = "shopify"
    GOOGLE_PLAY_CONSOLE = "google_play_console"
    WHOP = "whop"
    PADDLE = "paddle"
    WOOCOMMERCE = "woocommerce"
    SUPERWALL = "superwall"


class EnvironmentKind(StrEnum):
    """Whether an environment is production or development (the dev-inactivity rule)."""

    PRODUCTION = "production"
    DEVELOPMENT = "development"


class ApiStatus(StrEnum):
    """The API view of how syncing stands (seed 003's IntegrationStatus)."""

    CONNECTED = "connected"
    NOT_CONNECTED = "not_connected"
    INACTIVE = "inactive"


# The one documented mapping from the full status to the API view (SPEC §4); every
# serialiser goes through it.
API_STATUS: dict[Status, ApiStatus] = {
    Status.ACTIVE: ApiStatus.CONNECTED,
    Status.SYNC_WARNINGS: ApiStatus.CONNECTED,
    Status.SYNC_FAILING: ApiStatus.CONNECTED,
    Status.AUTH_FAILING: ApiStatus.CONNECTED,
    Status.QUALITY_ASSURANCE: ApiStatus.CONNECTED,
    Status.SETUP: ApiStatus.NOT_CONNECTED,
    Status.CREDENTIALS_INVALID: ApiStatus.NOT_CONNECTED,
    Status.INACTIVE: ApiStatus.INACTIVE,
    Status.DELETED: ApiStatus.INACTIVE,
}


E = TypeVar("E", bound=StrEnum)


def parse_enum(kind: type[E], value: str, *, what: str) -> E:
    """Turn a string into one of an enum's members, or raise naming the valid values."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise InvalidValue(f"unknown {what} {value!r}; expected one of: {allowed}") from None
