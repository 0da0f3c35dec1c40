"""The API's wire types: seed 003's names and shapes, as OpenAPI publishes them.

`WorkspaceIntegration`, `IntegrationActionResult`, `IntegrationProvider` and
`IntegrationStatus` are seed 003's types, named as it names them (a host application
generates its client from `/openapi.json`); `tests/api/test_openapi.py` compares them to
the seed's TypeScript field for field. `WorkspaceIntegration` adds the two sync-view
details SPEC §4 asks for (`setupStatus`, `qaStatus`). The rest are this API's own: request
bodies, pages, and the operator's views, whose fields the serialisers in
`models/serializers.py` already type.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

T = TypeVar("T")

# A request body's free-form JSON (credentials, filters, configurations): the model
# layer (models/inputs.py) bounds its depth and size; this bounds the keys up front.
MAX_OBJECT_KEYS: Final = 100


class IntegrationProvider(StrEnum):
    """Integration provider identifier (seed 003)."""

    REVENUECAT = "revenuecat"
    STRIPE = "stripe"
    APP_STORE_CONNECT = "app_store_connect"
    SHOPIFY = "shopify"
    GOOGLE_PLAY_CONSOLE = "google_play_console"
    WHOP = "whop"
    PADDLE = "paddle"
    WOOCOMMERCE = "woocommerce"
    SUPERWALL = "superwall"


class IntegrationStatus(StrEnum):
    """Integration connection status (seed 003)."""

    CONNECTED = "connected"
    NOT_CONNECTED = "not_connected"
    INACTIVE = "inactive"


class IntegrationActionResult(BaseModel):
    """Result of an integration action (add, remove, etc.)"""

    ok: bool = Field(description="Whether the action was successful")
    message: str | None = Field(
        default=None,
        description="Optional message describing the result or error",
        examples=["Integration added successfully"],
    )


class WorkspaceIntegration(BaseModel):
    """A workspace integration configuration"""

    id: str = Field(description="Unique integration identifier")
    workspaceId: str = Field(description="Workspace identifier this integration belongs to")
    provider: IntegrationProvider = Field(description="Integration provider type")
    status: IntegrationStatus = Field(description="Current status of the integration")
    # In the schema because seed 003 has it; never set, so the routes (which leave unset
    # fields out) never send it, and `_never_exposed` refuses a value outright.
    credentialsEncrypted: str | None = Field(
        default=None,
        description="Encrypted credentials for the integration (base64 iv+ciphertext). "
        "Never exposed in API responses for security.",
    )
    dataLastReceivedAt: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="ISO 8601 timestamp of when data was last received from this integration",
    )
    createdAt: str = Field(
        json_schema_extra={"format": "date-time"},
        description="ISO 8601 timestamp of when the integration was created",
    )
    updatedAt: str = Field(
        json_schema_extra={"format": "date-time"},
        description="ISO 8601 timestamp of when the integration was last updated",
    )
    setupStatus: str = Field(description="incomplete | first_sync_pending | completed")
    qaStatus: str | None = Field(description="pending | passed, or null: never in QA")
    lateness: str = Field(
        description="on_time | late | overdue: the last successful sync against 2x and 5x "
        "the sync interval, whatever the status says (SPEC §11)"
    )

    @field_validator("credentialsEncrypted")
    @classmethod
    def _never_exposed(cls, value: str | None) -> None:
        if value is not None:
            raise ValueError("credentials are never part of an answer")


class IntegrationAdded(IntegrationActionResult):
    """What adding an integration answers: the action's result and the new id."""

    id: str = Field(description="The new integration's id")


class NewIntegration(BaseModel):
    """An integration to add. Credentials are write-only: validated, sealed, never echoed."""

    model_config = ConfigDict(extra="forbid")

    workspaceId: str | None = Field(
        default=None, description="The workspace; a workspace key's own when left out"
    )
    name: str
    identifier: str = Field(description="Unique within the workspace")
    provider: IntegrationProvider
    credentials: dict[str, Any] | None = Field(default=None, max_length=MAX_OBJECT_KEYS)
    filters: dict[str, Any] | None = Field(
        default=None,
        max_length=MAX_OBJECT_KEYS,
        description="Left out, the integration waits in setup until filters are configured",
    )
    configurations: dict[str, Any] = Field(default_factory=dict, max_length=MAX_OBJECT_KEYS)
    primary: bool = False


class CredentialsUpdate(BaseModel):
    """New credentials for an integration (write-only)."""

    model_config = ConfigDict(extra="forbid")

    credentials: dict[str, Any] = Field(max_length=MAX_OBJECT_KEYS)


class FiltersUpdate(BaseModel):
    """The integration's filters, checked against its provider's streams and filter keys."""

    model_config = ConfigDict(extra="forbid")

    filters: dict[str, Any] = Field(max_length=MAX_OBJECT_KEYS)


class Page(BaseModel, Generic[T]):
    """One page of a list; pass `nextCursor` as `after` for the next (null: the last)."""

    items: list[T]
    nextCursor: str | None


class IntegrationPage(Page[WorkspaceIntegration]):
    """A page of integrations, newest first."""


class SyncedRecord(BaseModel):
    """One object a sync (or a webhook) brought in."""

    stream: str
    externalId: str
    data: dict[str, Any]
    firstSeenAt: str
    updatedAt: str


class SyncedRecordPage(Page[SyncedRecord]):
    """A page of one stream's records, by external id."""
