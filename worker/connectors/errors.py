"""Errors raised by connectors, the shared HTTP layer and webhook ingestion.

They are a branch of the project's one hierarchy (`worker.errors` draws all of it):

    SyncWorkerError                 (models.errors)
    └── ConnectorError
        ├── AuthFailed              401/403, a revoked or wrong key        -> auth_failed
        ├── TransientError          timeouts, connection errors, 429, 5xx  -> retry, then failed
        ├── ConfigurationError      filters or configuration unusable      -> failed
        │   └── InvalidFilters      filters naming what the connector lacks (an InvalidValue too)
        ├── ProviderError           an answer that retrying will not fix   -> failed
        │   ├── MalformedResponse   bad JSON, a missing key, a wrong type
        │   └── RequestRejected     any other 4xx (with the provider's error code)
        └── WebhookRejected         a delivery failing verification/parsing -> nothing stored

`worker.connectors.base.run_sync` maps these to a `SyncResult`; only
`TransientError` escapes it, for the task to retry. `WebhookRejected` is raised
by `worker.connectors.webhooks`, outside any sync. Messages name the endpoint
(method and path, never the query string) and what was wrong; they never carry
a header, a credential or the provider's free-text error message (Stripe's
echoes a masked key).
"""

from __future__ import annotations

from models.errors import InvalidValue, SyncWorkerError


class ConnectorError(SyncWorkerError):
    """Raised for any failure talking to a provider; the base of this hierarchy."""


class AuthFailed(ConnectorError):
    """Raised when the provider rejects the credentials (401, 403 or a revoked token)."""


class TransientError(ConnectorError):
    """Raised when a timeout, connection error, 429 or 5xx outlived the in-process retries."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigurationError(ConnectorError):
    """Raised when an integration's filters or configuration cannot be used by its connector."""


class InvalidFilters(ConfigurationError, InvalidValue):
    """Raised when filters use a key or name a stream their provider's connector does not have.

    Refused when the filters are set (bad input), and a sync on stored ones fails with it.
    """


class ProviderError(ConnectorError):
    """Raised when the provider's answer cannot be used and asking again will not help."""


class MalformedResponse(ProviderError):
    """Raised when a response is not the documented shape: bad JSON, missing key, wrong type."""


class RequestRejected(ProviderError):
    """Raised when the provider refuses a request with a 4xx other than 401, 403, 408 or 429.

    `code` is the provider's machine-readable error code (Google's `invalid_grant`, Stripe's
    `invalid_request_error/resource_missing`) when its client reads one, never free text:
    connectors branch on it rather than on the message.
    """

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class WebhookRejected(ConnectorError):
    """Raised when a webhook delivery fails verification or cannot be parsed; nothing is stored."""
