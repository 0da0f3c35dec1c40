"""The `status` command: the operator's overview of integrations, queues, syncs and the beat.

One screen answers "is it working?": how many integrations stand in each status
and at each provider, how many sync messages wait on each queue, which syncs run
and which are stuck (their lease lapsed and the reaper has not closed them yet),
when each provider's beat tick last ran and when each sweep last ran.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import click
from celery import Celery
from kombu.utils.url import maybe_sanitize_url
from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from models.integrations import count_by_status_and_provider
from models.schema import SchedulerMark, SyncRun
from models.status import Status
from scheduler.marks import marks
from worker.app import create_app
from worker.cli.context import CliContext, emit, failures, pass_context, table
from worker.cli.integrations import moment
from worker.queues import queue_depths
from worker.runtime import Runtime

SWEEPS: Final = ("auth_escalation", "dev_inactivity", "reap_abandoned")
STUCK_SHOWN: Final = 10  # the oldest stuck runs listed; the count covers them all


def overview(runtime: Runtime, app: Celery) -> dict[str, Any]:
    """Everything the status screen shows, as plain data (the --json form)."""
    now = runtime.clock.now()
    depths = queue_depths(app)
    with runtime.sessions() as session:
        integrations = _integrations(session)
        syncs = _syncs(session, now)
        recorded = marks(session)
        ticks = {
            p.value: _mark(recorded.get(f"tick:{p.value}"), now) for p in runtime.settings.providers
        }
        sweeps = {name: _mark(recorded.get(f"sweep:{name}"), now) for name in SWEEPS}
    providers = {
        provider.value: {
            "queue": policy.queue,
            "depth": depths.get(policy.queue),
            "integrations": integrations["byProvider"].get(provider.value, 0),
            "lastTick": ticks[provider.value],
        }
        for provider, policy in runtime.settings.providers.items()
    }
    return {
        "at": now.isoformat(),
        "broker": maybe_sanitize_url(str(app.conf.broker_url)),
        "brokerReachable": any(depth is not None for depth in depths.values()),
        "integrations": integrations,
        "queues": depths,
        "providers": providers,
        "syncs": syncs,
        "sweeps": sweeps,
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


def ago(seconds: float | None) -> str:
    """A duration for people: 42s, 7m 5s, 3h 20m, 2d 4h."""
    if seconds is None:
        return "never"
    whole = max(int(seconds), 0)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h ago"
    if hours:
        return f"{hours}h {minutes}m ago"
    return f"{minutes}m {secs}s ago" if minutes else f"{secs}s ago"


def dashboard(view: Mapping[str, Any]) -> str:
    """The human form of `overview`."""
    at = moment(datetime.fromisoformat(view["at"]))
    counts = view["integrations"]
    statuses = " · ".join(f"{s} {n}" for s, n in counts["byStatus"].items() if n) or "none"
    syncs = view["syncs"]
    lines = [
        f"syncworker status at {at} UTC",
        f"broker        {view['broker']}"
        + ("" if view["brokerReachable"] else "  (unreachable: queue depths unknown)"),
        f"integrations  {counts['total']}: {statuses}",
        f"syncs         {syncs['running']} running · {syncs['stuck']} stuck (lease lapsed)",
    ]
    lines += [
        f"  stuck run {r['id'][:8]} of integration {r['integrationId']}, lease lapsed "
        + ago(_seconds_since(view["at"], r["leaseExpiresAt"]))
        for r in syncs["stuckRuns"]
    ]
    lines += ["", _providers(view), "", _sweeps(view)]
    return "\n".join(lines)


def _providers(view: Mapping[str, Any]) -> str:
    rows = []
    for provider, row in view["providers"].items():
        tick = row["lastTick"] or {}
        rows.append(
            {
                "provider": provider,
                "integrations": row["integrations"],
                "queue": row["queue"],
                "waiting": "?" if row["depth"] is None else row["depth"],
                "last tick": ago(tick.get("agoSeconds")),
                "dispatched": (tick.get("detail") or {}).get("dispatched"),
            }
        )
    others = {q: d for q, d in view["queues"].items() if q not in {r["queue"] for r in rows}}
    text = table(rows, ["provider", "integrations", "queue", "waiting", "last tick", "dispatched"])
    for queue, depth in others.items():
        text += f"\n{queue}: {'?' if depth is None else depth} waiting"
    return text


def _sweeps(view: Mapping[str, Any]) -> str:
    rows = [
        {
            "sweep": name,
            "last run": ago((mark or {}).get("agoSeconds")),
            "changed": ((mark or {}).get("detail") or {}).get("changed"),
        }
        for name, mark in view["sweeps"].items()
    ]
    return table(rows, ["sweep", "last run", "changed"])


def _seconds_since(now: str, then: str | None) -> float | None:
    if then is None:
        return None
    return (datetime.fromisoformat(now) - datetime.fromisoformat(then)).total_seconds()


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--watch", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option(
    "--interval",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.2),
    help="Seconds between refreshes with --watch.",
)
@pass_context
def status(cli: CliContext, as_json: bool, watch: bool, interval: float) -> None:
    """Overview: integrations per status and provider, queue depths, syncs, the beat.

    With --watch --json, one JSON object per line per refresh.
    """
    with failures(as_json):
        runtime = cli.runtime
        app = create_app(cli.settings, runtime=runtime)
    try:
        if watch:
            _watch(runtime, app, as_json=as_json, interval=interval)
        else:
            with failures(as_json):
                view = overview(runtime, app)
            emit(view, as_json=as_json, human=lambda: dashboard(view))
    finally:
        app.close()


def _watch(runtime: Runtime, app: Celery, *, as_json: bool, interval: float) -> None:
    """Redraw the overview every `interval` seconds until Ctrl-C."""
    try:
        while True:
            with failures(as_json):
                view = overview(runtime, app)
            if as_json:
                click.echo(json.dumps(view, default=str))
            else:
                click.clear()
                click.echo(dashboard(view))
            time.sleep(interval)
    except KeyboardInterrupt:
        return


COMMANDS = (status,)
