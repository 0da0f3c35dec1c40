"""What operators and the host application do to integrations, as one service.

Each action validates its input, changes the integration in one transaction
through `models.integrations`, and only after the commit enqueues the sync the
change asks for. The CLI and the demo are thin layers over this.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from kombu.exceptions import OperationalError
from sqlalchemy.orm import Session

from models import integrations as actions
from models.changes import Change
from models.db import lock_integration
from models.serializers import ActionResult, action_result_for
from models.status import SYNCING_STATUSES, Provider, parse_enum
from models.sync_runs import Skipped
from scheduler.dispatch import claim_one, release
from worker.connectors.base import Connector
from worker.runtime import Runtime
from worker.sync import Finished, sync_integration

log = structlog.get_logger(__name__)

# Enqueues one sync of an integration on its provider's queue.
RequestSync = Callable[[Provider, uuid.UUID], None]


@dataclass(frozen=True)
class Created:
    """A new integration's id and the action's answer."""

    integration_id: uuid.UUID
    result: ActionResult


class Operator:
    """Operator and user actions over one runtime; `request_sync` publishes follow-up syncs."""

    def __init__(self, runtime: Runtime, request_sync: RequestSync | None = None) -> None:
        self._runtime = runtime
        self._request_sync = request_sync

    def create(
        self,
        *,
        environment_id: str,
        name: str,
        identifier: str,
        provider: str,
        credentials: Mapping[str, Any] | None = None,
        filters: Mapping[str, Any] | None = None,
        actor: str,
        **options: Any,
    ) -> Created:
        """Create an integration; credentials are validated for the provider and sealed."""
        kind = parse_enum(Provider, provider, what="provider")
        sealed = self._seal(kind, credentials) if credentials else None
        spec = actions.NewIntegration(
            environment_id=environment_id,
            name=name,
            identifier=identifier,
            provider=kind.value,
            credentials_sealed=sealed,
            filters=filters,
            **options,
        )
        change = self._apply(
            lambda s: actions.create_integration(
                s, spec, now=self._runtime.clock.now(), actor=actor
            )
        )
        return Created(change.integration_id, action_result_for(change))

    def set_credentials(
        self, integration_id: str, credentials: Mapping[str, Any], *, actor: str
    ) -> ActionResult:
        """Replace the credentials (validated, then sealed); a broken integration revives."""
        provider = self.provider_of(integration_id)
        sealed = self._seal(provider, credentials)
        return self._act(
            lambda s: actions.set_credentials(
                s, integration_id, sealed, now=self._runtime.clock.now(), actor=actor
            )
        )

    def configure_filters(
        self, integration_id: str, filters: Mapping[str, Any], *, actor: str
    ) -> ActionResult:
        return self._act(
            lambda s: actions.configure_filters(
                s, integration_id, filters, now=self._runtime.clock.now(), actor=actor
            )
        )

    def resolve_qa(self, integration_id: str, *, actor: str) -> ActionResult:
        return self._act(
            lambda s: actions.resolve_qa(
                s, integration_id, now=self._runtime.clock.now(), actor=actor
            )
        )

    def deactivate(self, integration_id: str, *, actor: str) -> ActionResult:
        return self._act(
            lambda s: actions.deactivate(
                s, integration_id, now=self._runtime.clock.now(), actor=actor
            )
        )

    def reactivate(self, integration_id: str, *, actor: str) -> ActionResult:
        return self._act(
            lambda s: actions.reactivate(
                s, integration_id, now=self._runtime.clock.now(), actor=actor
            )
        )

    def delete(self, integration_id: str, *, actor: str) -> ActionResult:
        return self._act(
            lambda s: actions.delete(s, integration_id, now=self._runtime.clock.now(), actor=actor)
        )

    def record_api_request(self, integration_id: str) -> bool:
        """The host application's cheap call on every API request; never changes status."""
        with self._runtime.sessions() as session, session.begin():
            return actions.record_api_request(
                session, integration_id, now=self._runtime.clock.now()
            )

    def sync_now(self, integration_id: str) -> ActionResult:
        """Enqueue a sync at once; refused while syncing is paused."""
        with self._runtime.sessions() as session, session.begin():
            integration = lock_integration(session, integration_id)
            status = integration.status_enum
            if status in SYNCING_STATUSES:
                integration.next_sync_at = self._runtime.clock.now()
        if status not in SYNCING_STATUSES:
            return ActionResult(
                False, f"integration {integration_id} is {status}: syncs are paused"
            )
        if self._request_sync is None:
            return ActionResult(
                True, f"integration {integration_id} is due; the next tick syncs it"
            )
        if self._publish(integration.id):
            return ActionResult(True, f"sync of integration {integration_id} queued")
        return ActionResult(
            False,
            f"the broker is unreachable; integration {integration_id} stays due and the "
            "next tick syncs it",
        )

    def sync_inline(self, integration_id: str) -> Finished | Skipped:
        """Run one sync in this process, for debugging one integration."""
        return sync_integration(self._runtime.sync_services, integration_id, task_id=None)

    def provider_of(self, integration_id: str) -> Provider:
        with self._runtime.sessions() as session:
            return lock_integration(session, integration_id).provider_enum

    def _seal(self, provider: Provider, credentials: Mapping[str, Any]) -> str:
        connector: Connector = self._runtime.connector(provider)
        return self._runtime.keyring.seal(connector.validate_credentials(credentials))

    def _apply(self, action: Callable[[Session], Change]) -> Change:
        with self._runtime.sessions() as session, session.begin():
            change = action(session)
        if change.sync_now:
            self._publish(change.integration_id)
        return change

    def _publish(self, integration_id: uuid.UUID) -> bool:
        """Publish one sync of a due integration, claimed first so no tick sends a second.

        False when there is no publisher or the broker refused: the integration stays due
        and the next tick picks it up, so nothing is lost either way.
        """
        if self._request_sync is None:
            return False
        now = self._runtime.clock.now()
        with self._runtime.sessions() as session, session.begin():
            integration = lock_integration(session, integration_id)
            provider = integration.provider_enum
            claim_one(session, integration, self._runtime.settings.providers[provider], now=now)
        try:
            self._request_sync(provider, integration_id)
        except (OperationalError, OSError):  # the broker is down or unreachable
            with self._runtime.sessions() as session, session.begin():
                release(session, [integration_id], now=now)
            log.warning("sync.publish_failed", integration_id=str(integration_id))
            return False
        return True

    def _act(self, action: Callable[[Session], Change]) -> ActionResult:
        return action_result_for(self._apply(action))
