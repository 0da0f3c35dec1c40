"""Errors raised by the data model and the lifecycle.

    SyncWorkerError
    ├── InvalidValue              bad input: unknown provider, empty filters, malformed field
    ├── IntegrationNotFound       no integration with that id
    ├── TransitionNotAllowed      a trigger that does not apply to the current status
    │   └── SyncsPaused           a sync asked for while the status pauses syncing
    ├── DuplicateIntegration      identifier or primary flag already taken in the environment
    ├── SchemaOutdated            the database lacks this code's migrations
    └── CredentialsError          encryption keys or ciphertexts
        ├── CredentialKeyError    missing or malformed key configuration
        ├── DecryptionFailed      no configured key opens a ciphertext
        └── InvalidCredentials    credentials that do not match the provider's required fields

Messages name the integration, its status and the trigger where they apply, and
never contain a secret. `worker.errors` draws the whole hierarchy, the worker's too.
"""

from __future__ import annotations

from typing import Final

# How much of a caller's integration id an error repeats (a UUID has 36 characters).
SHOWN_ID_CHARS: Final = 64


class SyncWorkerError(Exception):
    """Raised for any error of this project; the base of the hierarchy."""


class InvalidValue(SyncWorkerError, ValueError):
    """Raised when an input value is not one the model accepts."""


class IntegrationNotFound(SyncWorkerError, LookupError):
    """Raised when no integration has the requested id."""

    def __init__(self, integration_id: object) -> None:
        text = str(integration_id)
        # An id comes from outside: quoted when it is odd, and never echoed at length.
        plain = text.isprintable() and " " not in text and len(text) <= SHOWN_ID_CHARS
        cut = "..." if len(text) > SHOWN_ID_CHARS else ""
        shown = text if plain else repr(text[:SHOWN_ID_CHARS]) + cut
        super().__init__(f"integration {shown} not found")
        self.integration_id = integration_id


class TransitionNotAllowed(SyncWorkerError):
    """Raised when a trigger does not apply to an integration's current status."""

    def __init__(self, integration_id: object, status: str, trigger: str) -> None:
        super().__init__(
            f"integration {integration_id} is {status!s}: trigger {trigger!s} does not apply"
        )
        self.integration_id = integration_id
        self.status = status
        self.trigger = trigger


class SyncsPaused(TransitionNotAllowed):
    """Raised when a sync is asked for while the integration's status pauses syncing."""

    def __init__(self, integration_id: object, status: str) -> None:
        super().__init__(integration_id, status, "sync_now")
        self.args = (f"integration {integration_id} is {status!s}: syncs are paused",)


class SyncInProgress(TransitionNotAllowed):
    """Raised when a resync is asked for while a sync of the integration is running."""

    def __init__(self, integration_id: object, status: str, run_id: object) -> None:
        super().__init__(integration_id, status, "resync")
        self.args = (
            f"integration {integration_id} is syncing now (run {run_id}); "
            "resync once that sync has finished",
        )


class DuplicateIntegration(SyncWorkerError):
    """Raised when an identifier or the primary flag is already taken in an environment."""


class SchemaOutdated(SyncWorkerError):
    """Raised when the database's schema lacks this code's newest migration (or any)."""


class CredentialsError(SyncWorkerError):
    """Raised for problems with credential keys or ciphertexts."""


class CredentialKeyError(CredentialsError):
    """Raised when the encryption keys are missing or malformed."""


class DecryptionFailed(CredentialsError):
    """Raised when no configured key can decrypt a stored ciphertext."""


class InvalidCredentials(CredentialsError, InvalidValue):
    """Raised when credentials lack a field their provider requires or have a malformed one."""
