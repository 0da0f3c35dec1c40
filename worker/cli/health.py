"""Health beyond status (SPEC §11) on the command line.

- `syncworker health`: a liveness probe in one line, for Kubernetes or a cron check.
  Exit 0 with `ok: ...` when the database and broker answer, the beat ticks, every
  sweep is on time and no queue's oldest message waited past the threshold; exit 1
  with `unhealthy: ...` naming every problem otherwise (`worker.liveness`).
- `syncworker integrations explain ID`: why this status, what happens next and when.
- `syncworker integrations resync ID [--stream S] [--backfill]`: restart from scratch
  (or re-read the provider's lookback window) without deleting stored data.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

import click

from models.errors import SyncWorkerError
from models.explain import Explanation
from worker.cli.actions import report
from worker.cli.context import CliContext, emit, failures, pass_context
from worker.cli.integrations import integrations, moment
from worker.cli.status import ago
from worker.liveness import check
from worker.outages import OUTAGES, unavailable


@click.command()
@click.option(
    "--max-queue-age",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds a queue's oldest message may wait [default: SYNCWORKER_HEALTH_MAX_QUEUE_AGE].",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def health(cli: CliContext, max_queue_age: float | None, as_json: bool) -> None:
    """Probe the database, broker, beat, sweeps and queues; exit 1 on any problem."""
    try:
        runtime, app = cli.runtime, cli.app
        limit = max_queue_age or cli.settings.health_max_queue_age_s
        report = check(runtime, app, max_queue_age_s=limit)
    except SyncWorkerError as exc:
        _answer(False, [str(exc)], {}, as_json=as_json)
    except OUTAGES as exc:
        _answer(False, [str(unavailable(exc, cli.settings_read))], {}, as_json=as_json)
    _answer(report.healthy, list(report.problems), dict(report.facts), as_json=as_json)


def _answer(healthy: bool, problems: list[str], facts: dict[str, object], *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"ok": healthy, "problems": problems, **facts}, default=str))
    elif healthy:
        click.echo("ok: database and broker answer, beat ticking, sweeps on time, queues moving")
    else:
        click.echo("unhealthy: " + "; ".join(problems))
    sys.exit(0 if healthy else 1)


@click.command()
@click.argument("integration_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def explain(cli: CliContext, integration_id: str, as_json: bool) -> None:
    """Why the integration has its status, what happens next and when."""
    with failures(as_json):
        found = cli.operator.explain(integration_id)
    emit(found, as_json=as_json, human=lambda: explanation_text(found))


def explanation_text(found: Explanation) -> str:
    """The human form of an explanation."""
    since = datetime.fromisoformat(found["statusSince"])
    lines = [f"{found['status']} since {moment(since)} UTC · data {found['lateness']}"]
    set_by = found["setBy"]
    if set_by is not None:
        why = f"  set by {set_by['trigger']} ({set_by['rule']}), actor {set_by['actor']}"
        lines.append(why + (f": {set_by['reason']}" if set_by["reason"] else ""))
    lines.append("next:")
    for step in found["next"]:
        when = ""
        if step["at"] is not None:
            left = ago(step["inSeconds"]).removesuffix(" ago")
            when = f" at {moment(datetime.fromisoformat(step['at']))} (in {left})"
        lines.append(f"  - {step['what']}{when}")
    incident = found["incident"]
    if incident is not None:
        lines.append(
            f"incident: {incident['provider']} failing on {incident['kind']} since "
            f"{moment(datetime.fromisoformat(incident['openedAt']))}; such failures count "
            "toward neither QA nor the 72-hour rule"
        )
    lines.append(f"last error: {found['lastError'] or 'none'}")
    return "\n".join(lines)


@click.command()
@click.argument("integration_id")
@click.option("--stream", help="Only this stream (default: every stream of the provider).")
@click.option(
    "--backfill",
    is_flag=True,
    help="Re-read only the provider's lookback window (late report data), not from scratch.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def resync(
    cli: CliContext, integration_id: str, stream: str | None, backfill: bool, as_json: bool
) -> None:
    """Restart a stream, or all, without deleting stored data; refused while a sync runs."""
    with failures(as_json):
        result = cli.operator.resync(integration_id, stream=stream, backfill=backfill)
    report(result, as_json=as_json)


COMMANDS = (health,)
# `explain` and `resync` belong to the `integrations` group (worker.cli.main imports this module).
integrations.add_command(explain)
integrations.add_command(resync)
