"""`syncworker health`: a liveness probe in one line, for Kubernetes or a cron check.

Exit 0 with `ok: ...` when the database and broker answer, the beat ticks, every sweep
is on time and no queue's oldest message waited past the threshold; exit 1 with
`unhealthy: ...` naming every problem otherwise (`worker.liveness`).
"""

from __future__ import annotations

import json
import sys

import click

from models.errors import SyncWorkerError
from worker.cli.context import CliContext, pass_context
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


COMMANDS = (health,)
