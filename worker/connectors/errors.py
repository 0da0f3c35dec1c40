"""Errors raised by connectors, the shared HTTP layer and webhook ingestion.

They are a branch of the project's one hierarchy (`worker.errors` draws all of it):

    SyncWorkerError                 (models.errors)
    └── ConnectorError
        ├── AuthFailed              401, a revoked or wrong key            -> auth_failed
        │   └── PermissionDenied    403: the key works but may not read this -> a warning naming
        │                           the stream, auth_failed only when no stream is allowed
        ├── TransientError          timeouts, connection errors, 429, 5xx  -> retry, then failed
        │   └── RequestTimedOut     a body still arriving at the request's total deadline
        ├── ConfigurationError      filters or configuration unusable      -> failed
        │   ├── InvalidFilters      filters naming what the connector lacks (an InvalidValue too)
        │   └── BlockedHost         a customer's host that is, or resolves to, a non-public address
        ├── SyncLimitExceeded       a sync ran out of time or pages        -> see below
        │   ├── SyncDeadlineExceeded    past SYNCWORKER_SYNC_DEADLINE
        │   └── PageBudgetExceeded      past SYNCWORKER_SYNC_MAX_PAGES requests
        ├── ProviderError           an answer that retrying will not fix   -> failed
        │   ├── MalformedResponse   bad JSON, a missing key, a wrong type
        │   │   └── ResponseTooDeep     JSON nested deeper than MAX_JSON_DEPTH
        │   ├── ResponseTooLarge    a body decoding past SYNCWORKER_MAX_RESPONSE_MB
        │   ├── PaginationStalled   the same page asked for twice in one sync (a stuck cursor)
        │   └── RequestRejected     any other 4xx (with the provider's error code)
        └── WebhookRejected         a delivery failing verification/parsing -> nothing stored

`worker.connectors.base.run_sync` maps these to a `SyncResult`; only
`TransientError` escapes it, for the task to retry. A `SyncLimitExceeded` stops the
whole sync: `succeeded_with_warnings` naming the limit when pages were stored (their
cursors were too, so the next sync carries on from there), else `failed`. A
`ProviderError` on one stream skips that stream with a warning. `WebhookRejected` is raised
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


class PermissionDenied(AuthFailed):
    """Raised when the provider answers 403: the credential lacks a permission for one endpoint."""


class TransientError(ConnectorError):
    """Raised when a timeout, connection error, 429 or 5xx outlived the in-process retries."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestTimedOut(TransientError):
    """Raised when a response is still arriving at its total deadline (a trickling body)."""


class ConfigurationError(ConnectorError):
    """Raised when an integration's filters or configuration cannot be used by its connector."""


class InvalidFilters(ConfigurationError, InvalidValue):
    """Raised when filters use a key or name a stream their provider's connector does not have.

    Refused when the filters are set (bad input), and a sync on stored ones fails with it.
    """


class SyncLimitExceeded(ConnectorError):
    """Raised when a sync reaches one of its limits (`worker.connectors.limits.SyncLimits`)."""


class SyncDeadlineExceeded(SyncLimitExceeded):
    """Raised when a sync has run longer than its wall-clock deadline."""


class PageBudgetExceeded(SyncLimitExceeded):
    """Raised when a sync has made as many requests as its page budget allows."""


class BlockedHost(ConfigurationError):
    """Raised when a customer-supplied host is, or resolves to, an address that is not public."""


class ProviderError(ConnectorError):
    """Raised when the provider's answer cannot be used and asking again will not help."""


class MalformedResponse(ProviderError):
    """Raised when a response is not the documented shape: bad JSON, missing key, wrong type."""


class ResponseTooDeep(MalformedResponse):
    """Raised when a JSON body nests arrays or objects deeper than any provider's documents."""


class ResponseTooLarge(ProviderError):
    """Raised when a response body decodes to more bytes than the per-request cap."""


class PaginationStalled(ProviderError):
    """Raised when a sync asks for the same page twice: the provider's cursor did not move."""


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
