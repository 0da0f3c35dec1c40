"""Errors of the worker, and the one hierarchy every error of this project belongs to.

    SyncWorkerError                 models.errors: the base; catch it at an edge (CLI, API)
    ├── InvalidValue                bad input: unknown provider, empty filters, a bad setting
    │   ├── InvalidCredentials      credentials the provider's connector refuses
    │   └── InvalidFilters          filters the provider's connector refuses
    ├── IntegrationNotFound         no integration with that id
    ├── TransitionNotAllowed        a trigger that does not apply to the current status
    │   └── SyncsPaused             a sync asked for while the status pauses syncing
    ├── DuplicateIntegration        identifier or primary flag already taken
    ├── SchemaOutdated              the database lacks this code's migrations
    ├── CredentialsError            keys and ciphertexts
    │   ├── CredentialKeyError      missing or malformed key configuration
    │   ├── DecryptionFailed        no configured key opens a ciphertext
    │   └── InvalidCredentials
    ├── ConnectorError              worker.connectors.errors: talking to a provider
    │   ├── AuthFailed              401, a revoked or wrong key          -> auth_failed
    │   │   └── PermissionDenied    403 on one stream -> a warning; on every stream -> auth_failed
    │   ├── TransientError          timeouts, 429, 5xx (retry_after)     -> retried, then failed
    │   │   └── RequestTimedOut     a body still arriving at the request's total deadline
    │   ├── ConfigurationError      filters or configuration unusable    -> failed
    │   │   ├── InvalidFilters
    │   │   └── BlockedHost         a customer's host resolving to a non-public address
    │   ├── SyncLimitExceeded       a sync's deadline or page budget     -> failed, or
    │   │   ├── SyncDeadlineExceeded                   succeeded_with_warnings if it stored pages
    │   │   └── PageBudgetExceeded
    │   ├── ProviderError           an answer retrying will not fix      -> failed (the stream)
    │   │   ├── MalformedResponse
    │   │   │   └── ResponseTooDeep
    │   │   ├── ResponseTooLarge
    │   │   ├── PaginationStalled
    │   │   └── RequestRejected
    │   └── WebhookRejected         an inbound provider webhook failing verification
    ├── DeliveryFailed              worker.errors: a sink refused a status-change event
    ├── SignatureError              worker.errors: our own webhook's signature header is off
    ├── BrokerUnavailable           worker.errors: a sync could not be published right now
    └── ServiceUnavailable          worker.errors: the database, Redis or the broker failed

Messages say what and which (the integration, its status, the trigger, the endpoint)
and never carry a secret.
"""

from __future__ import annotations

from models.errors import SyncWorkerError


class DeliveryFailed(SyncWorkerError):
    """Raised when a sink did not accept an event; the outbox retries it after a backoff."""


class SignatureError(SyncWorkerError):
    """Raised when a webhook's signature header is missing, malformed, stale or wrong."""


class BrokerUnavailable(SyncWorkerError):
    """Raised when a sync asked for now cannot be published; the next beat tick sends it."""


class ServiceUnavailable(SyncWorkerError):
    """Raised when the database, Redis or the broker cannot be reached or refused a request."""
