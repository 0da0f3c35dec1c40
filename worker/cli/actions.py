"""Lifecycle actions on one integration: sync, resolve-qa, deactivate, reactivate, delete.

Also api-request, the host application's call that resets the dev idle clock. Each
is a thin layer over `worker.operator.Operator` and answers with seed 003's
`{ok, message}`. A change that asks for a sync (QA resolved, reactivated) makes the
integration due at once, so the next beat tick dispatches it; only `sync` publishes
to the broker itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from models.serializers import ActionResult
from models.status import SUCCESSES
from worker.cli.context import CliContext, emit, failures, pass_context
from worker.operator import Operator
from worker.sync import Finished

JSON_HELP = "Machine-readable output."
ACTOR_HELP = "Who acts, for the audit trail."


def report(result: ActionResult, *, as_json: bool) -> None:
    """Print an action's answer; a refused action exits 1."""
    if as_json:
        emit(result.to_dict(), as_json=True)
    elif result.ok:
        click.echo(result.message or "done")
    else:
        click.echo(f"error: {result.message}", err=True)
    if not result.ok:
        sys.exit(1)


@click.command()
@click.argument("integration_id")
@click.option("--inline", is_flag=True, help="Run the sync in this process and wait for it.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@pass_context
def sync(cli: CliContext, integration_id: str, inline: bool, as_json: bool) -> None:
    """Push a sync now: publish it on the provider's queue, or run it here with --inline.

    --inline exits 1 unless the sync ran and succeeded (with or without warnings).
    """
    if inline:
        _sync_inline(cli, integration_id, as_json=as_json)
        return
    with failures(as_json):
        result = cli.operator.sync_now(integration_id)
    report(result, as_json=as_json)


def _sync_inline(cli: CliContext, integration_id: str, *, as_json: bool) -> None:
    with failures(as_json):
        done = cli.operator.sync_inline(integration_id)
        status = cli.operator.get(integration_id, "dto")["status"]
    if not isinstance(done, Finished):
        message = f"sync of integration {integration_id} skipped: {done.reason}"
        report(ActionResult(False, message), as_json=as_json)
        return
    result = done.result
    payload = {
        "ok": result.outcome in SUCCESSES,
        "runId": str(done.run_id),
        "outcome": result.outcome.value,
        "records": result.records,
        "warnings": list(result.warnings),
        "error": result.error,
        "applied": done.change is not None,
        "status": status,
    }
    emit(payload, as_json=as_json, human=lambda: _outcome(integration_id, payload))
    if not payload["ok"]:
        sys.exit(1)


def _outcome(integration_id: str, payload: dict[str, Any]) -> str:
    lines = [
        f"sync of integration {integration_id}: {payload['outcome']}",
        f"  records   {payload['records']}",
        f"  warnings  {len(payload['warnings'])}",
    ]
    lines += [f"    - {warning}" for warning in payload["warnings"]]
    lines.append(f"  error     {payload['error'] or '-'}")
    late = "" if payload["applied"] else " (result arrived late: status unchanged)"
    lines.append(f"  status    {payload['status']}{late}")
    return "\n".join(lines)


OperatorAction = Callable[[Operator, str, str], ActionResult]


def _action(name: str, act: OperatorAction, summary: str) -> click.Command:
    """A command that fires one lifecycle trigger on one integration."""

    @click.command(name, help=summary)
    @click.argument("integration_id")
    @click.option("--actor", default="operator", show_default=True, help=ACTOR_HELP)
    @click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
    @pass_context
    def command(cli: CliContext, integration_id: str, actor: str, as_json: bool) -> None:
        with failures(as_json):
            result = act(cli.operator, integration_id, actor)
        report(result, as_json=as_json)

    return command


resolve_qa = _action(
    "resolve-qa",
    lambda op, i, actor: op.resolve_qa(i, actor=actor),
    "Sign off quality assurance: the integration becomes active with a sync due.",
)
deactivate = _action(
    "deactivate",
    lambda op, i, actor: op.deactivate(i, actor=actor),
    "Pause an integration (inactive); reactivate brings it back.",
)
reactivate = _action(
    "reactivate",
    lambda op, i, actor: op.reactivate(i, actor=actor),
    "Bring an inactive integration back: active with a sync due, or setup without filters.",
)


@click.command()
@click.argument("integration_id")
@click.option("--by", required=True, help="Who deletes it: kept as deletedBy and in the audit.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@pass_context
def delete(cli: CliContext, integration_id: str, by: str, as_json: bool) -> None:
    """Delete an integration for good: credentials wiped, syncs stopped. Cannot be undone."""
    with failures(as_json):
        result = cli.operator.delete(integration_id, actor=by)
    report(result, as_json=as_json)


@click.command("api-request")
@click.argument("integration_id")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@pass_context
def api_request(cli: CliContext, integration_id: str, as_json: bool) -> None:
    """Record an API request, as the host application does (resets the dev idle clock)."""
    with failures(as_json):
        recorded = cli.operator.record_api_request(integration_id)
    message = (
        f"API request recorded for integration {integration_id}"
        if recorded
        else f"integration {integration_id} already has a later API request recorded"
    )
    report(ActionResult(True, message), as_json=as_json)


COMMANDS = (
    sync,
    resolve_qa,
    deactivate,
    reactivate,
    delete,
    api_request,
)
