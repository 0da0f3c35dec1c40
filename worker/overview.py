"""The status overview: integrations per status and provider, queues, syncs, the beat.

One view answers "is it working?": how many integrations stand in each status and
at each provider, how many sync messages wait on each queue, which syncs run and
which are stuck (their lease lapsed and the reaper has not closed them yet), when
each provider's beat tick last ran and when each sweep last ran, and the provider
incidents open now or closed recently (SPEC §11). The CLI's
`syncworker status` and the API's overview both show it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from kombu.utils.url import maybe_sanitize_url
from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from models.incidents import incident_dto, recent_incidents
from models.integrations import count_by_status_and_provider
from models.schema import SchedulerMark, SyncRun
from models.status import Status
from scheduler.marks import marks
from worker.runtime import Runtime

SWEEPS: Final = (
    "auth_escalation",
    "dev_inactivity",
    "reap_abandoned",
    "lateness",
    "incidents",
    "recovery_probes",
    "report_backfill",
)
STUCK_SHOWN: Final = 10  # the oldest stuck runs listed; the count covers them all
INCIDENTS_SHOWN: Final = 10  # the newest provider incidents, open or closed


def overview(
    runtime: Runtime, depths: Mapping[str, int | None], *, broker_url: str
) -> dict[str, Any]:
    """Everything the status screen shows, as plain data (the --json form).

    `depths` are the queues' waiting messages (`worker.queues.queue_depths`), None
    where the broker could not say.
    """
    now = runtime.clock.now()
    with runtime.sessions() as session:
        integrations = _integrations(session)
        syncs = _syncs(session, now)
        recorded = marks(session)
        ticks = {
            p.value: _mark(recorded.get(f"tick:{p.value}"), now) for p in runtime.settings.providers
        }
        sweeps = {name: _mark(recorded.get(f"sweep:{name}"), now) for name in SWEEPS}
        incidents = [incident_dto(i) for i in recent_incidents(session, limit=INCIDENTS_SHOWN)]
    providers = {
        provider.value: {
            "queue": policy.queue,
            "depth": depths.get(policy.queue),
            "integrations": integrations["byProvider"].get(provider.value, 0),
            "lastTick": ticks[provider.value],
            "incident": next(
                (i for i in incidents if i["provider"] == provider.value and i["open"]), None
            ),
        }
        for provider, policy in runtime.settings.providers.items()
    }
    return {
        "at": now.isoformat(),
        "broker": maybe_sanitize_url(broker_url),
        "brokerReachable": any(depth is not None for depth in depths.values()),
        "integrations": integrations,
        "queues": depths,
        "providers": providers,
        "syncs": syncs,
        "sweeps": sweeps,
        "incidents": incidents,
    }


def _integrations(session: Session) -> dict[str, Any]:
    by_status = dict.fromkeys((s.value for s in Status), 0)
    by_provider: dict[str, int] = {}
    for (status, provider), count in count_by_status_and_provider(session).items():
        by_status[status] = by_status.get(status, 0) + count
        by_provider[provider] = by_provider.get(provider, 0) + count
    return {"total": sum(by_status.values()), "byStatus": by_status, "byProvider": by_provider}


def _syncs(session: Session, now: datetime) -> dict[str, Any]:
    """Unfinished runs: running while their lease holds, stuck once it lapsed."""
    unfinished = SyncRun.finished_at.is_(None)
    lapsed = or_(SyncRun.lease_expires_at.is_(None), SyncRun.lease_expires_at <= now)
    state = case((lapsed, "stuck"), else_="running")
    rows = session.execute(select(state, func.count()).where(unfinished).group_by(state))
    counts: dict[str, int] = {kind: count for kind, count in rows}
    stuck = session.scalars(
        select(SyncRun)
        .where(unfinished, lapsed)
        .order_by(SyncRun.lease_expires_at)
        .limit(STUCK_SHOWN)
    ).all()
    return {
        "running": counts.get("running", 0),
        "stuck": counts.get("stuck", 0),
        "stuckRuns": [
            {
                "id": str(run.id),
                "integrationId": str(run.integration_id),
                "startedAt": run.started_at.isoformat(),
                "leaseExpiresAt": _iso(run.lease_expires_at),
            }
            for run in stuck
        ],
    }


def _mark(recorded: SchedulerMark | None, now: datetime) -> dict[str, Any] | None:
    if recorded is None:
        return None
    ago = (now - recorded.at).total_seconds()
    return {"at": recorded.at.isoformat(), "agoSeconds": round(ago, 1), "detail": recorded.detail}


def _iso(moment_: datetime | None) -> str | None:
    return None if moment_ is None else moment_.isoformat()
