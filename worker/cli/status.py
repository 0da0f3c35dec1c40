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
from typing import Any

import click

from worker.cli.context import CliContext, emit, failures, pass_context, table
from worker.cli.integrations import moment
from worker.operator import Operator


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
    lines += ["", _providers(view), "", _sweeps(view), "", incidents_text(view["incidents"])]
    return "\n".join(lines)


def incidents_text(incidents: list[dict[str, Any]]) -> str:
    """Provider incidents, newest first: open ones say so, closed ones when they ended."""
    if not incidents:
        return "provider incidents: none"
    rows = [
        {
            "provider": i["provider"],
            "kind": i["kind"],
            "state": "OPEN" if i["open"] else "closed",
            "opened": moment(datetime.fromisoformat(i["openedAt"])),
            "closed": moment(datetime.fromisoformat(i["closedAt"])) if i["closedAt"] else "-",
            "failing": f"{i['integrationsFailing']}/{i['integrationsSeen']}",
            "peak": i["peakFailing"],
            "backoff": f"{i['backoff']:g}x",
        }
        for i in incidents
    ]
    columns = ["provider", "kind", "state", "opened", "closed", "failing", "peak", "backoff"]
    return "provider incidents (newest first)\n" + table(rows, columns)


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
        operator = cli.operator  # a database without this code's schema: one line, exit 1
    if watch:
        _watch(operator, as_json=as_json, interval=interval)
        return
    with failures(as_json):
        view = operator.overview()
    emit(view, as_json=as_json, human=lambda: dashboard(view))


def _watch(operator: Operator, *, as_json: bool, interval: float) -> None:
    """Redraw the overview every `interval` seconds until Ctrl-C."""
    try:
        while True:
            with failures(as_json):
                view = operator.overview()
            if as_json:
                click.echo(json.dumps(view, default=str))
            else:
                click.clear()
                click.echo(dashboard(view))
            time.sleep(interval)
    except KeyboardInterrupt:
        return


COMMANDS = (status,)
