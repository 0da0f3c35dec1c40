"""The `integrations` group: list and show here, the actions in `worker.cli.actions`.

Times in human output are UTC, `YYYY-MM-DD HH:MM:SS`; JSON output uses the
serialisers' DTOs (camelCase, ISO 8601), which never carry credentials.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.clock import ensure_utc
from models.db import as_uuid
from models.errors import IntegrationNotFound
from models.schema import Integration, StatusChange, SyncRun
from models.serializers import (
    IntegrationDto,
    integration_dto,
    qa_status,
    setup_status,
    status_change_dto,
    sync_run_dto,
)
from models.status import Provider, Status, parse_enum
from worker.cli import actions, configure
from worker.cli.context import CliContext, emit, failures, pass_context, table

HISTORY_LIMIT = 20  # enough to see how an integration got where it is
RUNS_LIMIT = 10  # the recent runs an operator reads to see why syncs fail


def moment(value: datetime | None) -> str | None:
    """A time for people: UTC, to the second."""
    return None if value is None else ensure_utc(value).strftime("%Y-%m-%d %H:%M:%S")


def load_integration(session: Session, integration_id: str) -> Integration:
    """The integration with this id, or IntegrationNotFound (also for a malformed id)."""
    integration = session.get(Integration, as_uuid(integration_id))
    if integration is None:
        raise IntegrationNotFound(integration_id)
    return integration


@click.group()
def integrations() -> None:
    """List, inspect and act on integrations."""


@integrations.command("list")
@click.option("--status", "statuses", multiple=True, help="Only this status (repeatable).")
@click.option("--provider", "providers", multiple=True, help="Only this provider (repeatable).")
@click.option("--environment", help="Only this environment id.")
@click.option("--organization", help="Only this organization id.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def list_(
    cli: CliContext,
    *,
    statuses: Sequence[str],
    providers: Sequence[str],
    environment: str | None,
    organization: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List integrations, newest first."""
    with failures(as_json):
        stmt = select(Integration).order_by(Integration.created_at.desc(), Integration.id)
        if statuses:
            wanted = [parse_enum(Status, s, what="status").value for s in statuses]
            stmt = stmt.where(Integration.status.in_(wanted))
        if providers:
            kinds = [parse_enum(Provider, p, what="provider").value for p in providers]
            stmt = stmt.where(Integration.provider.in_(kinds))
        if environment is not None:
            stmt = stmt.where(Integration.environment_id == environment)
        if organization is not None:
            stmt = stmt.where(Integration.organization_id == organization)
        with cli.runtime.sessions() as session:
            found = list(session.scalars(stmt.limit(limit)))
    emit([integration_dto(i) for i in found], as_json=as_json, human=lambda: _listing(found))


def _listing(found: Sequence[Integration]) -> str:
    if not found:
        return "no integrations match"
    rows = [
        {
            "id": str(i.id),
            "name": i.name,
            "provider": i.provider,
            "status": i.status,
            "api status": i.api_status.value,
            "next sync": moment(i.next_sync_at),
            "last data": moment(i.data_last_received_at),
        }
        for i in found
    ]
    columns = ["id", "name", "provider", "status", "api status", "next sync", "last data"]
    return table(rows, columns)


@integrations.command()
@click.argument("integration_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def show(cli: CliContext, integration_id: str, as_json: bool) -> None:
    """Show one integration, its status history and its recent sync runs."""
    with failures(as_json), cli.runtime.sessions() as session:
        integration = load_integration(session, integration_id)
        history = session.scalars(
            select(StatusChange)
            .where(StatusChange.integration_id == integration.id)
            .order_by(StatusChange.at.desc(), StatusChange.id.desc())
            .limit(HISTORY_LIMIT)
        ).all()
        runs = session.scalars(
            select(SyncRun)
            .where(SyncRun.integration_id == integration.id)
            .order_by(SyncRun.started_at.desc(), SyncRun.attempt.desc())
            .limit(RUNS_LIMIT)
        ).all()
        payload = {
            "integration": integration_dto(integration),
            "history": [status_change_dto(c) for c in history],
            "runs": [sync_run_dto(r) for r in runs],
        }
        extra = {"setup": setup_status(integration).value, "qa": qa_status(integration)}
    emit(payload, as_json=as_json, human=lambda: _details(payload, extra))


def _details(payload: dict[str, Any], extra: dict[str, Any]) -> str:
    dto: IntegrationDto = payload["integration"]
    sections = [_summary(dto, extra), _history(payload["history"]), _runs(payload["runs"])]
    return "\n\n".join(sections)


def _summary(dto: IntegrationDto, extra: dict[str, Any]) -> str:
    def at(key: str) -> str | None:
        value = dto.get(key)
        return moment(datetime.fromisoformat(value)) if isinstance(value, str) else None

    fields: list[tuple[str, str | None]] = [
        ("id", dto["id"]),
        (
            "status",
            f"{dto['status']} (api {dto['apiStatus']}, setup {extra['setup']}, "
            f"qa {extra['qa'] or '-'})",
        ),
        ("environment", f"{dto['environmentId']} (organization {dto['organizationId']})"),
        ("identifier", dto["identifier"]),
        ("primary", "yes" if dto["primary"] else "no"),
        ("filters", json.dumps(dto["filters"]) if dto["filters"] is not None else None),
        ("credentials", "present" if dto["credentials"]["present"] else "absent"),
        ("next sync", at("nextSyncAt")),
        ("last data", at("dataLastReceivedAt")),
        ("last api call", at("lastApiRequestAt")),
        ("auth failing", at("authFailingSince")),
        ("status since", at("statusChangedAt")),
        ("created", at("createdAt")),
    ]
    if dto["deleted"]:
        fields.append(("deleted", f"{at('deletedAt')} by {dto['deletedBy']}"))
    width = max(len(label) for label, _ in fields)
    lines = [f"{dto['name']} ({dto['providerId']})"]
    lines += [f"  {label.ljust(width)}  {value or '-'}" for label, value in fields]
    return "\n".join(lines)


def _history(history: list[dict[str, Any]]) -> str:
    if not history:
        return "Status history: none"
    rows = [
        {
            "at": moment(datetime.fromisoformat(c["at"])),
            "from": c["fromStatus"],
            "to": c["toStatus"],
            "trigger": c["trigger"],
            "actor": c["actor"],
            "reason": c["reason"],
        }
        for c in history
    ]
    title = f"Status history (newest first, last {HISTORY_LIMIT})"
    return title + "\n" + table(rows, ["at", "from", "to", "trigger", "actor", "reason"])


def _runs(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "Recent sync runs: none"
    rows, problems = [], []
    for run in runs:
        finished = run["finishedAt"]
        rows.append(
            {
                "run": run["id"][:8],
                "started": moment(datetime.fromisoformat(run["startedAt"])),
                "finished": moment(datetime.fromisoformat(finished)) if finished else "running",
                "outcome": run["outcome"],
                "records": run["recordsReceived"],
                "warnings": len(run["warnings"]),
                "status after": run["statusAfter"],
            }
        )
        if run["error"]:
            problems.append(f"  {run['id'][:8]}  error: {run['error']}")
        problems += [f"  {run['id'][:8]}  warning: {w}" for w in run["warnings"]]
    columns = ["run", "started", "finished", "outcome", "records", "warnings", "status after"]
    text = f"Recent sync runs (newest first, last {RUNS_LIMIT})\n" + table(rows, columns)
    if problems:
        text += "\n\nErrors and warnings\n" + "\n".join(problems)
    return text


for _command in configure.COMMANDS + actions.COMMANDS:
    integrations.add_command(_command)

COMMANDS = (integrations,)
