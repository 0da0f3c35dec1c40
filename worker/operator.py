"""The operator service: everything an application or an operator does to integrations.

An embedding application needs nothing else, no session, table or serialiser:

- reads: one integration in the API view (seed 003) or the full DTO (seed 001), its
  sync states (seed 002), lists with filters and keyset pagination, its status
  history, its sync runs, the environments, the status overview;
- actions: create, set credentials, configure filters, sync now, resolve QA,
  deactivate, reactivate, delete, and the cheap API-request mark.

One error style: what cannot be done raises a `SyncWorkerError` (`IntegrationNotFound`,
`TransitionNotAllowed` or its `SyncsPaused`, `InvalidValue`, `InvalidCredentials`,
`DuplicateIntegration`, `BrokerUnavailable`) and changes nothing; what was done answers
an `ActionResult`
(ok) saying what happened, including whether a follow-up sync was published, and
publishing happens only after the change committed.

`scoped(workspace_id)` gives an operator that sees and acts on one workspace only:
another workspace's integration is not found, as if it did not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Literal, overload

import structlog
from kombu.exceptions import OperationalError
from sqlalchemy.orm import Session

from models import integrations as actions
from models import queries
from models.changes import Change
from models.db import as_uuid, lock_integration
from models.errors import IntegrationNotFound, InvalidValue, SyncsPaused
from models.explain import Explanation, Timing, explain
from models.health import Fields, Lateness, LatenessRule, interval_of, lateness_of
from models.incidents import IncidentDto, incident_dto, recent_incidents
from models.resync import resync
from models.schema import Environment, Integration
from models.serializers import (
    API_VIEW_COLUMNS,
    ActionResult,
    EnvironmentDto,
    IntegrationApiView,
    IntegrationDto,
    IntegrationStates,
    StatusChangeDto,
    SyncedRecordDto,
    SyncRunDto,
    describe_change,
    environment_dto,
    integration_api_view,
    integration_dto,
    integration_states,
    status_change_dto,
    sync_run_dto,
    synced_record_dto,
)
from models.status import SYNCING_STATUSES, EnvironmentKind, Provider, parse_enum
from models.sync_runs import Skipped
from scheduler.dispatch import claim_one, release
from worker.connectors.errors import ConfigurationError
from worker.connectors.webhooks import WEBHOOK_SECRET_FIELD, ingest_webhook
from worker.errors import BrokerUnavailable
from worker.overview import overview
from worker.runtime import Runtime
from worker.sync import Finished, sync_integration

log = structlog.get_logger(__name__)

# Enqueues one sync of an integration on its provider's queue.
RequestSync = Callable[[Provider, uuid.UUID], None]
# Messages waiting per queue, None where the broker cannot say.
QueueDepths = Callable[[], Mapping[str, int | None]]
View = Literal["api", "dto"]
# What `syncworker integrations show` and the API's detail read by default.
HISTORY_LIMIT: Final = 20
RUNS_LIMIT: Final = 10
INCIDENTS_LIMIT: Final = 20


@dataclass(frozen=True)
class Created:
    """A new integration's id and the action's answer."""

    integration_id: uuid.UUID
    result: ActionResult


class Operator:
    """Reads and actions over one runtime; `request_sync` publishes follow-up syncs."""

    def __init__(
        self,
        runtime: Runtime,
        request_sync: RequestSync | None = None,
        *,
        queue_depths: QueueDepths | None = None,
        broker_url: str = "",
        workspace_id: str | None = None,
    ) -> None:
        self._runtime = runtime
        self._request_sync = request_sync
        self._queue_depths = queue_depths
        self._broker_url = broker_url
        self.workspace_id = workspace_id

    def scoped(self, workspace_id: str) -> Operator:
        """The same service seeing and acting on one workspace's integrations only."""
        return Operator(
            self._runtime,
            self._request_sync,
            queue_depths=self._queue_depths,
            broker_url=self._broker_url,
            workspace_id=workspace_id,
        )

    # --- reads ------------------------------------------------------------------------

    @overload
    def get(self, integration_id: str, view: Literal["api"] = "api") -> IntegrationApiView: ...
    @overload
    def get(self, integration_id: str, view: Literal["dto"]) -> IntegrationDto: ...

    def get(self, integration_id: str, view: View = "api") -> IntegrationApiView | IntegrationDto:
        """One integration: seed 003's API view, or the full DTO of seed 001."""
        if view == "api":
            # One statement, so no transaction: autocommit spares a BEGIN and a ROLLBACK.
            engine = self._runtime.engine
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                row = queries.api_view_row(
                    connection, as_uuid(integration_id), workspace_id=self.workspace_id
                )
            if row is None:
                raise IntegrationNotFound(integration_id)
            return integration_api_view(row, lateness=self.lateness(row))
        with self._runtime.sessions() as session:
            integration = self._find(session, integration_id)
            return self._view(integration, view)

    def states(self, integration_id: str) -> IntegrationStates:
        """How syncing stands (seed 002's states endpoint): statuses and the last sync."""
        with self._runtime.sessions() as session:
            integration = self._find(session, integration_id)
            return integration_states(
                integration, queries.last_finished_run(session, integration.id)
            )

    @overload
    def list_integrations(
        self,
        query: queries.IntegrationQuery = ...,
        *,
        view: Literal["api"] = "api",
        after: str | None = None,
        limit: int = queries.DEFAULT_PAGE_SIZE,
    ) -> queries.Page[IntegrationApiView]: ...
    @overload
    def list_integrations(
        self,
        query: queries.IntegrationQuery = ...,
        *,
        view: Literal["dto"],
        after: str | None = None,
        limit: int = queries.DEFAULT_PAGE_SIZE,
    ) -> queries.Page[IntegrationDto]: ...

    def list_integrations(
        self,
        query: queries.IntegrationQuery = queries.IntegrationQuery(),  # noqa: B008 - frozen
        *,
        view: View = "api",
        after: str | None = None,
        limit: int = queries.DEFAULT_PAGE_SIZE,
    ) -> queries.Page[IntegrationApiView] | queries.Page[IntegrationDto]:
        """A page of integrations, newest first; `after` is the previous page's cursor."""
        if self.workspace_id is not None:
            query = queries.IntegrationQuery(
                **{**query.__dict__, "workspace_id": self.workspace_id}
            )
        only = () if view == "dto" else API_VIEW_COLUMNS
        with self._runtime.sessions() as session:
            page = queries.list_integrations(session, query, after=after, limit=limit, only=only)
            judge = self._judge()  # one instant, rule and interval table for the whole page
            if view == "dto":
                dtos = [integration_dto(i, lateness=judge(i)) for i in page.items]
                return queries.Page(dtos, page.next_cursor)
            views = [integration_api_view(i, lateness=judge(i)) for i in page.items]
            return queries.Page(views, page.next_cursor)

    def explain(self, integration_id: str) -> Explanation:
        """Why the integration has its status, what happens next and when (SPEC §11)."""
        settings = self._runtime.settings
        with self._runtime.sessions() as session:
            integration = self._find(session, integration_id)
            timing = Timing(
                self._runtime.clock.now(),
                interval_of(integration, settings.intervals()),
                settings.lateness_rule(),
            )
            return explain(session, integration, timing)

    def incidents(self, *, limit: int = INCIDENTS_LIMIT) -> list[IncidentDto]:
        """Provider incidents, newest first, open and closed (SPEC §11)."""
        with self._runtime.sessions() as session:
            return [incident_dto(i) for i in recent_incidents(session, limit=limit)]

    @property
    def lateness_rule(self) -> LatenessRule:
        """When an integration counts as late, and overdue (SPEC §11)."""
        return self._runtime.settings.lateness_rule()

    def lateness(self, integration: Fields) -> Lateness:
        """The integration's health flag now (SPEC §11), from its interval and the clock."""
        return self._judge()(integration)

    def _judge(self) -> Callable[[Fields], Lateness]:
        """Lateness as of now, with the settings' rule and intervals read once."""
        settings = self._runtime.settings
        intervals, rule, now = (
            settings.intervals(),
            settings.lateness_rule(),
            self._runtime.clock.now(),
        )

        def judge(integration: Fields) -> Lateness:
            return lateness_of(integration, interval_of(integration, intervals), now=now, rule=rule)

        return judge

    def _view(self, integration: Integration, view: View) -> IntegrationApiView | IntegrationDto:
        lateness = self.lateness(integration)
        if view == "dto":
            return integration_dto(integration, lateness=lateness)
        return integration_api_view(integration, lateness=lateness)

    def history(self, integration_id: str, *, limit: int = HISTORY_LIMIT) -> list[StatusChangeDto]:
        """The integration's status changes, newest first."""
        with self._runtime.sessions() as session:
            integration = self._find(session, integration_id)
            changes = queries.status_history(session, integration.id, limit=limit)
            return [status_change_dto(change) for change in changes]

    def runs(self, integration_id: str, *, limit: int = RUNS_LIMIT) -> list[SyncRunDto]:
        """The integration's sync attempts with their errors and warnings, newest first."""
        with self._runtime.sessions() as session:
            integration = self._find(session, integration_id)
            return [
                sync_run_dto(run) for run in queries.sync_runs(session, integration.id, limit=limit)
            ]

    def records(
        self,
        integration_id: str,
        stream: str,
        *,
        after: str | None = None,
        limit: int = queries.DEFAULT_PAGE_SIZE,
    ) -> queries.Page[SyncedRecordDto]:
        """A page of one stream's synced records; reading them is the host application's
        API request, so the two-week development rule sees an integration in use."""
        with self._runtime.sessions() as session, session.begin():
            integration = self._find(session, integration_id)
            page = queries.synced_records(session, integration.id, stream, after=after, limit=limit)
            actions.record_api_request(session, integration.id, now=self._runtime.clock.now())
            return queries.Page([synced_record_dto(r) for r in page.items], page.next_cursor)

    def environments(self, *, organization_id: str | None = None) -> list[EnvironmentDto]:
        """The environments (seed 003's workspaces) this operator sees."""
        with self._runtime.sessions() as session:
            found = queries.environments(session, organization_id=organization_id)
            return [
                environment_dto(e)
                for e in found
                if self.workspace_id is None or e.id == self.workspace_id
            ]

    def overview(self) -> dict[str, Any]:
        """The status overview: counts, queue depths, running and stuck syncs, beat marks."""
        depths = self._queue_depths() if self._queue_depths else {}
        return overview(self._runtime, depths, broker_url=self._broker_url)

    def provider_of(self, integration_id: str) -> Provider:
        with self._runtime.sessions() as session:
            return self._find(session, integration_id).provider_enum

    # --- actions ----------------------------------------------------------------------

    def ensure_environment(
        self, environment_id: str, *, organization_id: str | None = None, kind: str | None = None
    ) -> EnvironmentDto:
        """The environment, checked against what is asked; created when missing.

        Creating one needs its organization; `kind` defaults to production.
        """
        if self.workspace_id is not None and environment_id != self.workspace_id:
            raise InvalidValue(f"this key may only use environment {self.workspace_id}")
        with self._runtime.sessions() as session, session.begin():
            environment = session.get(Environment, environment_id)
            if environment is None:
                if organization_id is None:
                    raise InvalidValue(
                        f"environment {environment_id!r} does not exist; give its organization "
                        "(and kind) to create it"
                    )
                environment = actions.ensure_environment(
                    session,
                    environment_id,
                    organization_id=organization_id,
                    name=environment_id,
                    kind=kind or EnvironmentKind.PRODUCTION.value,
                )
            elif organization_id not in (None, environment.organization_id):
                raise InvalidValue(
                    f"environment {environment_id!r} belongs to organization "
                    f"{environment.organization_id!r}, not {organization_id!r}"
                )
            elif kind not in (None, environment.kind):
                raise InvalidValue(
                    f"environment {environment_id!r} is {environment.kind}, not {kind}"
                )
            return environment_dto(environment)

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
        if self.workspace_id is not None and environment_id != self.workspace_id:
            raise InvalidValue(f"this key may only create integrations in {self.workspace_id}")
        kind = parse_enum(Provider, provider, what="provider")
        if filters is not None:
            filters = self._runtime.connector(kind).validate_filters(filters)
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
        with self._runtime.sessions() as session, session.begin():
            change = actions.create_integration(
                session, spec, now=self._runtime.clock.now(), actor=actor
            )
        return Created(change.integration_id, self._answer(change))

    def set_credentials(
        self, integration_id: str, credentials: Mapping[str, Any], *, actor: str
    ) -> ActionResult:
        """Replace the credentials (validated, then sealed); a broken integration revives."""
        sealed = self._seal(self.provider_of(integration_id), credentials)
        return self._act(integration_id, actions.set_credentials, sealed, actor=actor)

    def configure_filters(
        self, integration_id: str, filters: Mapping[str, Any], *, actor: str
    ) -> ActionResult:
        """Set the filters; an integration in setup becomes active with its first sync."""
        checked = self._runtime.connector(self.provider_of(integration_id)).validate_filters(
            filters
        )
        return self._act(integration_id, actions.configure_filters, checked, actor=actor)

    def resolve_qa(self, integration_id: str, *, actor: str) -> ActionResult:
        """Sign off quality assurance: active again, with a sync at once."""
        return self._act(integration_id, actions.resolve_qa, actor=actor)

    def deactivate(self, integration_id: str, *, actor: str) -> ActionResult:
        return self._act(integration_id, actions.deactivate, actor=actor)

    def reactivate(self, integration_id: str, *, actor: str) -> ActionResult:
        return self._act(integration_id, actions.reactivate, actor=actor)

    def delete(self, integration_id: str, *, actor: str) -> ActionResult:
        """Soft-delete for good; `actor` becomes `deletedBy`."""
        return self._act(integration_id, actions.delete, actor=actor)

    def record_api_request(self, integration_id: str) -> bool:
        """The host application's cheap call on every API request; never changes status.

        False when a later request is already recorded. Raises IntegrationNotFound.
        """
        with self._runtime.sessions() as session, session.begin():
            self._find(session, integration_id)
            return actions.record_api_request(
                session, integration_id, now=self._runtime.clock.now()
            )

    def sync_now(self, integration_id: str) -> ActionResult:
        """Publish a sync at once; refused while syncing is paused.

        Raises BrokerUnavailable when the broker refuses: the integration stays due, so
        the next beat tick syncs it anyway.
        """
        with self._runtime.sessions() as session, session.begin():
            integration = self._find(session, integration_id, lock=True)
            status = integration.status_enum
            if status not in SYNCING_STATUSES:
                raise SyncsPaused(integration.id, status)
            integration.next_sync_at = self._runtime.clock.now()
        subject = f"integration {integration.id}"
        if self._request_sync is None:
            return ActionResult(True, f"{subject} is due; the next beat tick dispatches its sync")
        if not self._publish(self._request_sync, integration.id):
            raise BrokerUnavailable(
                f"the broker is unreachable; {subject} stays due and the next beat tick "
                "dispatches its sync"
            )
        return ActionResult(True, f"sync of {subject} queued")

    def receive_webhook(
        self, integration_id: str, provider: Provider, headers: Mapping[str, str], body: bytes
    ) -> int:
        """Verify and store one provider webhook delivery for the integration; the number of
        events stored, committed before this returns.

        Raises IntegrationNotFound (no such live integration of that provider),
        ConfigurationError (its credentials hold no `webhook_secret`) or WebhookRejected.
        """
        with self._runtime.sessions() as session:
            integration = self._find(session, integration_id)
            if integration.provider_enum is not provider or integration.deleted:
                raise IntegrationNotFound(integration_id)
            sealed = integration.credentials_encrypted
        opened = self._runtime.keyring.open(sealed) if sealed else None
        secret = opened.get(WEBHOOK_SECRET_FIELD) if opened else None
        if not secret:
            raise ConfigurationError(
                f"{provider} webhooks: integration {integration_id} has no "
                f"{WEBHOOK_SECRET_FIELD} among its credentials"
            )
        return ingest_webhook(
            self._runtime.sessions,
            integration.id,
            provider,
            headers,
            body,
            secret=secret,
            now=self._runtime.clock.now(),
        )

    def resync(
        self, integration_id: str, *, stream: str | None = None, backfill: bool = False
    ) -> ActionResult:
        """Restart a stream (or all) from scratch, or re-read the provider's lookback window.

        Stored records stay; the next sync upserts over them. Raises SyncInProgress while a
        sync runs, InvalidValue for a stream the provider lacks or a backfill it has none for.
        """
        now = self._runtime.clock.now()
        with self._runtime.sessions() as session, session.begin():
            integration = self._find(session, integration_id, lock=True)
            provider = integration.provider_enum
            streams = self._streams(provider, stream)
            lookback = self._lookback(provider) if backfill else None
            done = resync(session, integration, streams=streams, now=now, lookback=lookback)
            status = integration.status_enum
            if status in SYNCING_STATUSES:
                integration.next_sync_at = now
        subject = f"integration {integration.id}"
        told = [f"{', '.join(done.from_scratch)} restart from scratch"] if done.from_scratch else []
        if done.rewound:
            window = f"{lookback.total_seconds() / 86_400:g} days" if lookback else ""
            told.append(f"{', '.join(done.rewound)} re-read over the last {window}")
        what = f"{subject}: {'; '.join(told) or 'nothing stored to restart'}"
        if status not in SYNCING_STATUSES:
            return ActionResult(True, f"{what}; syncs are paused ({status}) until it resumes")
        if self._request_sync is not None and self._publish(self._request_sync, integration.id):
            return ActionResult(True, f"{what}; sync queued")
        return ActionResult(True, f"{what}; the next beat tick dispatches its sync")

    def _streams(self, provider: Provider, stream: str | None) -> tuple[str, ...]:
        # Every connector is an HttpConnector with its streams; the protocol does not say so.
        known: tuple[str, ...] = tuple(getattr(self._runtime.connector(provider), "streams", ()))
        if stream is None:
            return known
        if stream not in known:
            raise InvalidValue(
                f"{provider.value} has no stream {stream!r}; expected one of: {', '.join(known)}"
            )
        return (stream,)

    def _lookback(self, provider: Provider) -> timedelta:
        lookback = self._runtime.settings.providers[provider].lookback
        if lookback is None:
            raise InvalidValue(
                f"{provider.value} has no backfill lookback window; resync without --backfill "
                "restarts from scratch"
            )
        return lookback

    def sync_inline(self, integration_id: str) -> Finished | Skipped:
        """Run one sync in this process, for debugging one integration."""
        self.provider_of(integration_id)  # not found (or not this workspace's): nothing runs
        return sync_integration(self._runtime.sync_services, integration_id, task_id=None)

    # --- the machinery ----------------------------------------------------------------

    def _find(self, session: Session, integration_id: str, *, lock: bool = False) -> Integration:
        """The integration if this operator may see it; IntegrationNotFound otherwise."""
        if lock:
            integration: Integration | None = lock_integration(session, integration_id)
        else:
            integration = session.get(Integration, as_uuid(integration_id))
        if integration is None or (
            self.workspace_id is not None and integration.environment_id != self.workspace_id
        ):
            raise IntegrationNotFound(integration_id)
        return integration

    def _seal(self, provider: Provider, credentials: Mapping[str, Any]) -> str:
        connector = self._runtime.connector(provider)
        return self._runtime.keyring.seal(connector.validate_credentials(credentials))

    def _act(
        self,
        integration_id: str,
        action: Callable[..., Change],
        *args: Any,
        actor: str,
    ) -> ActionResult:
        """Run one lifecycle action under the row lock, commit, then publish its sync."""
        with self._runtime.sessions() as session, session.begin():
            self._find(session, integration_id, lock=True)
            change = action(
                session, integration_id, *args, now=self._runtime.clock.now(), actor=actor
            )
        return self._answer(change)

    def _answer(self, change: Change) -> ActionResult:
        """What an action did, in words, and what became of the sync it asks for."""
        message = describe_change(change)
        if change.sync_now:
            if self._request_sync is None:
                message += "; its sync is due and the next beat tick dispatches it"
            elif self._publish(self._request_sync, change.integration_id):
                message += "; sync queued"
            else:
                message += "; the broker is unreachable, so the next beat tick dispatches its sync"
        return ActionResult(True, message)

    def _publish(self, request_sync: RequestSync, integration_id: uuid.UUID) -> bool:
        """Publish one sync of a due integration, claimed first so no tick sends a second.

        False when the broker refused: the integration stays due and the next tick picks
        it up, so nothing is lost either way.
        """
        now = self._runtime.clock.now()
        with self._runtime.sessions() as session, session.begin():
            integration = lock_integration(session, integration_id)
            provider = integration.provider_enum
            claim_one(session, integration, self._runtime.settings.providers[provider], now=now)
        try:
            request_sync(provider, integration_id)
        except (OperationalError, OSError):  # the broker is down or unreachable
            with self._runtime.sessions() as session, session.begin():
                release(session, [integration_id], now=now)
            log.warning("sync.publish_failed", integration_id=str(integration_id))
            return False
        return True
