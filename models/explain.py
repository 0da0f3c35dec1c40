"""Explain: why an integration has its status, what happens next and when (SPEC §11).

One answer built from the row, its latest status change, its latest attempt with an
error, and its provider's open incident:

- the status, since when, and the rule and event that set it;
- what comes next, each with its moment and the time left: the next sync (or why syncs
  are paused), the 72-hour escalation of `auth_failing`, the 14-day rule of a
  development integration, the moments it turns late and overdue;
- whether a provider incident covers it (its failures then count toward nothing);
- the last error, in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from models.changes import subject_of
from models.health import LatenessRule, fresh_since, lateness_of
from models.incidents import IncidentDto, incident_dto, open_incident
from models.lifecycle import AUTH_ESCALATION_AFTER, DEV_INACTIVITY_AFTER, LIFECYCLE
from models.schema import Integration, StatusChange, SyncRun
from models.status import SYNCING_STATUSES, EnvironmentKind, Status, Trigger

# The last error is shown on one line, this long at most; the run keeps all of it.
ERROR_CHARS: Final = 200

# What each trigger means, in the words of SPEC §4.
RULES: Final[dict[str, str]] = {
    Trigger.CREATED: "created; active at once when filters were given, else in setup",
    Trigger.CONFIGURE_FILTERS: "filters configured: setup is complete, syncing starts",
    Trigger.SYNC_SUCCEEDED: "a sync succeeded",
    Trigger.SYNC_SUCCEEDED_WITH_WARNINGS: "a sync succeeded with warnings (the first: QA)",
    Trigger.SYNC_FAILED: "a sync failed (the first sync: QA)",
    Trigger.SYNC_AUTH_FAILED: "a sync failed on authentication",
    Trigger.RESOLVE_QA: "an operator resolved quality assurance",
    Trigger.EXPIRE_CREDENTIALS: "every sync failed on authentication for 72 hours",
    Trigger.UPDATE_CREDENTIALS: "new credentials arrived",
    Trigger.DEACTIVATE: "deactivated by a user",
    Trigger.DEACTIVATE_IDLE: "a development integration had no API request for 14 days",
    Trigger.REACTIVATE: "reactivated by a user",
    Trigger.DELETE: "deleted",
}
# Why syncs are paused, per non-syncing status.
PAUSED: Final[dict[Status, str]] = {
    Status.SETUP: "waiting for filters to be configured",
    Status.QUALITY_ASSURANCE: "waiting for an operator to resolve quality assurance",
    Status.CREDENTIALS_INVALID: "waiting for new credentials",
    Status.INACTIVE: "deactivated; reactivate to resume",
    Status.DELETED: "deleted",
}


class NextStep(TypedDict):
    """Something that will happen, when, and how long until then (None: no fixed time)."""

    what: str
    at: str | None
    inSeconds: float | None


class Explanation(TypedDict):
    id: str
    status: str
    statusSince: str
    setBy: dict[str, str | None] | None
    lateness: str
    next: list[NextStep]
    incident: IncidentDto | None
    lastError: str | None


@dataclass(frozen=True)
class Timing:
    """What the explanation needs besides the row: now, the interval, the lateness rule."""

    now: datetime
    interval: timedelta
    rule: LatenessRule


def explain(session: Session, integration: Integration, timing: Timing) -> Explanation:
    """Why the integration stands where it does, and what comes next."""
    change = _latest_change(session, integration)
    incident = open_incident(session, integration.provider)
    status = integration.status_enum
    return {
        "id": str(integration.id),
        "status": status.value,
        "statusSince": integration.status_changed_at.isoformat(),
        "setBy": None if change is None else _set_by(change),
        "lateness": lateness_of(
            integration, timing.interval, now=timing.now, rule=timing.rule
        ).value,
        "next": _next_steps(integration, timing, covered=incident is not None),
        "incident": None if incident is None else incident_dto(incident),
        "lastError": _last_error(session, integration),
    }


def _set_by(change: StatusChange) -> dict[str, str | None]:
    return {
        "trigger": change.trigger,
        "rule": RULES.get(change.trigger, change.trigger),
        "reason": change.reason,
        "actor": change.actor,
        "at": change.at.isoformat(),
        "syncRunId": str(change.sync_run_id) if change.sync_run_id else None,
    }


def _next_steps(integration: Integration, timing: Timing, *, covered: bool) -> list[NextStep]:
    status = integration.status_enum
    now = timing.now
    steps: list[NextStep] = []
    if status in SYNCING_STATUSES:
        steps.append(_step("next sync", integration.next_sync_at, now))
    else:
        steps.append({"what": f"syncs paused: {PAUSED[status]}", "at": None, "inSeconds": None})
    if status is Status.AUTH_FAILING and integration.auth_failing_since is not None:
        what = "credentials_invalid, unless a sync succeeds or new credentials arrive"
        if covered:
            what += " (the clock is held while the provider's incident lasts)"
        steps.append(_step(what, integration.auth_failing_since + AUTH_ESCALATION_AFTER, now))
    subject = subject_of(integration)
    if (
        integration.environment.environment_kind is EnvironmentKind.DEVELOPMENT
        and status in LIFECYCLE.sources(Trigger.DEACTIVATE_IDLE)
    ):
        at = subject.last_activity + DEV_INACTIVITY_AFTER
        steps.append(_step("inactive, unless an API request arrives first", at, now))
    if status in SYNCING_STATUSES:
        since = fresh_since(integration)
        for flag, after in (
            ("late", timing.rule.late_after),
            ("overdue", timing.rule.overdue_after),
        ):
            at = since + timing.interval * after
            if at > now:
                steps.append(_step(f"{flag}, unless a sync succeeds first", at, now))
    return steps


def _step(what: str, at: datetime | None, now: datetime) -> NextStep:
    if at is None:
        return {"what": what, "at": None, "inSeconds": None}
    return {"what": what, "at": at.isoformat(), "inSeconds": max((at - now).total_seconds(), 0)}


def _latest_change(session: Session, integration: Integration) -> StatusChange | None:
    return session.scalars(
        select(StatusChange)
        .where(StatusChange.integration_id == integration.id)
        .order_by(StatusChange.at.desc(), StatusChange.id.desc())
        .limit(1)
    ).first()


def _last_error(session: Session, integration: Integration) -> str | None:
    error = session.scalars(
        select(SyncRun.error)
        .where(SyncRun.integration_id == integration.id, SyncRun.error.is_not(None))
        .order_by(SyncRun.started_at.desc())
        .limit(1)
    ).first()
    if not error:
        return None
    line = " ".join(error.split())
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "…"
