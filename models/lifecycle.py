"""The integration lifecycle: one `transitions` machine shared by every integration.

The machine is built once at import time from `TRANSITIONS`, the table a reader
can hold beside SPEC §4. Integrations are never added to it: each trigger is
fired on a small `Subject` that holds its own status and the facts the guards
read. Attaching is building that dataclass (no per-integration `Machine`, no
`add_model` bookkeeping that would leak), and the shared machine is stateless
between calls, so threads may fire at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, cast

from transitions import EventData, Machine, MachineError

from models.errors import TransitionNotAllowed
from models.status import SYNCING_STATUSES, EnvironmentKind, Status, Trigger

# Seed 002: every sync over the last three days failed on auth -> credentials invalid.
AUTH_ESCALATION_AFTER: Final = timedelta(hours=72)
# Seed 002: a development integration with no API request for two weeks goes inactive.
DEV_INACTIVITY_AFTER: Final = timedelta(days=14)

SYNCING: Final = [s for s in Status if s in SYNCING_STATUSES]  # in the table's order
NOT_DELETED: Final = [s for s in Status if s is not Status.DELETED]
LIVE: Final = [s for s in Status if s not in (Status.DELETED, Status.INACTIVE)]
CREDENTIALS_BROKEN: Final = [Status.AUTH_FAILING, Status.CREDENTIALS_INVALID]


@dataclass(slots=True)
class Subject:
    """An integration as the lifecycle sees it: its status and the facts its guards read."""

    integration_id: object
    state: str
    has_filters: bool
    environment_kind: EnvironmentKind
    created_at: datetime
    last_api_request_at: datetime | None = None
    auth_failing_since: datetime | None = None
    reactivated_at: datetime | None = None

    @property
    def last_activity(self) -> datetime:
        """When the integration last showed life: an API request, a reactivation, creation."""
        moments = (self.last_api_request_at, self.reactivated_at)
        return max((m for m in moments if m is not None), default=self.created_at)

    @property
    def status(self) -> Status:
        return Status(self.state)


def _subject(event: EventData) -> Subject:
    return cast(Subject, event.model)


# Guards: small named predicates over the subject and the event's keyword arguments
# (`now`, and `first_sync` for sync results).


def has_filters(event: EventData) -> bool:
    subject = _subject(event)
    return subject.has_filters


def first_sync(event: EventData) -> bool:
    return bool(event.kwargs.get("first_sync", False))


def auth_failing_for_three_days(event: EventData) -> bool:
    subject = _subject(event)
    since = subject.auth_failing_since
    return since is not None and event.kwargs["now"] - since >= AUTH_ESCALATION_AFTER


def in_development(event: EventData) -> bool:
    subject = _subject(event)
    return subject.environment_kind is EnvironmentKind.DEVELOPMENT


def idle_for_two_weeks(event: EventData) -> bool:
    return bool(event.kwargs["now"] - _subject(event).last_activity >= DEV_INACTIVITY_AFTER)


def _row(
    trigger: Trigger,
    source: Status | Sequence[Status],
    dest: Status | None,
    *,
    conditions: tuple[Any, ...] = (),
    unless: tuple[Any, ...] = (),
) -> dict[str, Any]:
    sources = [source] if isinstance(source, Status) else source
    return {
        "trigger": trigger.value,
        "source": [s.value for s in sources],
        "dest": dest.value if dest else None,
        "conditions": list(conditions),
        "unless": list(unless),
    }


T = Trigger
S = Status

# SPEC §4, row by row. Within one trigger the first row whose guards hold wins, so the
# first-sync QA rows come before the ordinary failure rows. `dest=None` keeps the status.
TRANSITIONS: Final = [
    _row(T.CONFIGURE_FILTERS, S.SETUP, S.ACTIVE),
    _row(T.SYNC_SUCCEEDED, SYNCING, S.ACTIVE),
    _row(T.SYNC_SUCCEEDED_WITH_WARNINGS, S.ACTIVE, S.QUALITY_ASSURANCE, conditions=(first_sync,)),
    _row(T.SYNC_SUCCEEDED_WITH_WARNINGS, SYNCING, S.SYNC_WARNINGS),
    _row(T.SYNC_FAILED, S.ACTIVE, S.QUALITY_ASSURANCE, conditions=(first_sync,)),
    _row(T.SYNC_FAILED, SYNCING, S.SYNC_FAILING),
    _row(T.SYNC_AUTH_FAILED, SYNCING, S.AUTH_FAILING),
    _row(T.RESOLVE_QA, S.QUALITY_ASSURANCE, S.ACTIVE),
    _row(
        T.EXPIRE_CREDENTIALS,
        S.AUTH_FAILING,
        S.CREDENTIALS_INVALID,
        conditions=(auth_failing_for_three_days,),
    ),
    _row(T.UPDATE_CREDENTIALS, CREDENTIALS_BROKEN, S.ACTIVE, conditions=(has_filters,)),
    _row(T.UPDATE_CREDENTIALS, CREDENTIALS_BROKEN, S.SETUP, unless=(has_filters,)),
    _row(T.UPDATE_CREDENTIALS, [s for s in NOT_DELETED if s not in CREDENTIALS_BROKEN], None),
    _row(T.DEACTIVATE, LIVE, S.INACTIVE),
    _row(T.DEACTIVATE_IDLE, LIVE, S.INACTIVE, conditions=(in_development, idle_for_two_weeks)),
    _row(T.REACTIVATE, S.INACTIVE, S.ACTIVE, conditions=(has_filters,)),
    _row(T.REACTIVATE, S.INACTIVE, S.SETUP, unless=(has_filters,)),
    _row(T.DELETE, NOT_DELETED, S.DELETED),
]

# Triggers after which a sync is queued at once (SPEC §4) when the integration ends up syncing.
SYNC_NOW_TRIGGERS: Final = frozenset(
    {T.CONFIGURE_FILTERS, T.RESOLVE_QA, T.UPDATE_CREDENTIALS, T.REACTIVATE}
)


def initial_status(*, filters_configured: bool) -> Status:
    """The status a new integration starts in: `setup` until filters are configured."""
    return Status.ACTIVE if filters_configured else Status.SETUP


def _track_auth_failing(event: EventData) -> None:
    """Set `auth_failing_since` on entering auth_failing, keep it while there, clear on leaving."""
    subject = _subject(event)
    if subject.state != Status.AUTH_FAILING:
        subject.auth_failing_since = None
    elif _source(event) != Status.AUTH_FAILING or subject.auth_failing_since is None:
        subject.auth_failing_since = event.kwargs["now"]


def _source(event: EventData) -> str | None:
    return event.transition.source if event.transition else None


class Lifecycle:
    """Fires lifecycle triggers on subjects through one shared machine."""

    def __init__(self) -> None:
        self._machine = Machine(
            model=None,
            states=[s.value for s in Status],
            initial=None,
            transitions=TRANSITIONS,
            auto_transitions=False,
            send_event=True,
            after_state_change=[_track_auth_failing],
        )
        self._sources = {
            name: frozenset(event.transitions) for name, event in self._machine.events.items()
        }

    def fire(self, subject: Subject, trigger: Trigger, *, now: datetime, **facts: Any) -> bool:
        """Apply `trigger`; True if a transition ran, False if its guards held it back.

        Raises TransitionNotAllowed when the trigger does not apply to the subject's status.
        """
        if not self.applies(subject, trigger):
            raise TransitionNotAllowed(subject.integration_id, subject.state, trigger)
        try:
            return bool(self._machine.events[trigger].trigger(subject, now=now, **facts))
        except MachineError as exc:  # defensive: the source check above should catch it first
            raise TransitionNotAllowed(subject.integration_id, subject.state, trigger) from exc

    def applies(self, subject: Subject, trigger: Trigger) -> bool:
        """Whether `trigger` has any row for the subject's current status."""
        return subject.state in self._sources[trigger]

    def sources(self, trigger: Trigger) -> frozenset[Status]:
        """The statuses from which `trigger` may fire."""
        return frozenset(Status(s) for s in self._sources[trigger])

    def diagram(self) -> str:
        """The machine's chart as Mermaid state-diagram text, drawn from `TRANSITIONS`."""
        lines = [
            "stateDiagram-v2",
            "    [*] --> setup: created (no filters)",
            "    [*] --> active: created (filters)",
        ]
        for row in TRANSITIONS:
            guards = [c.__name__ for c in row["conditions"]] + [
                f"not {c.__name__}" for c in row["unless"]
            ]
            label = row["trigger"] + (f" [{', '.join(guards)}]" if guards else "")
            for source in row["source"]:
                lines.append(f"    {source} --> {row['dest'] or source}: {label}")
        lines.append("    deleted --> [*]")
        return "\n".join(lines) + "\n"


LIFECYCLE: Final = Lifecycle()
