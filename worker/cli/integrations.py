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

from models.clock import ensure_utc
from models.queries import MAX_PAGE_SIZE, IntegrationQuery
from models.serializers import (
    IntegrationDto,
)
from models.status import Provider, Status, parse_enum
from worker.cli import actions, configure
from worker.cli.context import CliContext, emit, failures, pass_context, table
from worker.operator import HISTORY_LIMIT, RUNS_LIMIT


def moment(value: datetime | None) -> str | None:
    """A time for people: UTC, to the second."""
    return None if value is None else ensure_utc(value).strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def integrations() -> None:
    """List, inspect and act on integrations."""


@integrations.command("list")
@click.option("--status", "statuses", multiple=True, help="Only this status (repeatable).")
@click.option("--provider", "providers", multiple=True, help="Only this provider (repeatable).")
@click.option("--environment", help="Only this environment id.")
@click.option("--organization", help="Only this organization id.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, MAX_PAGE_SIZE))
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
    """List integrations, newest first (deleted ones too, as the audit view)."""
    with failures(as_json):
        query = IntegrationQuery(
            providers=tuple(parse_enum(Provider, p, what="provider") for p in providers),
            statuses=tuple(parse_enum(Status, s, what="status") for s in statuses),
            workspace_id=environment,
            organization_id=organization,
            include_deleted=True,
        )
        found = cli.operator.list_integrations(query, view="dto", limit=limit).items
    emit(found, as_json=as_json, human=lambda: _listing(found))


def _listing(found: Sequence[IntegrationDto]) -> str:
    if not found:
        return "no integrations match"
    rows = [
        {
            "id": dto["id"],
            "name": dto["name"],
            "provider": dto["providerId"],
            "status": dto["status"],
            "api status": dto["apiStatus"],
            "health": dto["lateness"],
            "next sync": _at(dto["nextSyncAt"]),
            "last data": _at(dto["dataLastReceivedAt"]),
        }
        for dto in found
    ]
    columns = ["id", "name", "provider", "status", "api status", "health", "next sync", "last data"]
    return table(rows, columns)


@integrations.command()
@click.argument("integration_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def show(cli: CliContext, integration_id: str, as_json: bool) -> None:
    """Show one integration, its status history and its recent sync runs."""
    with failures(as_json):
        operator = cli.operator
        payload = {
            "integration": operator.get(integration_id, "dto"),
            "history": operator.history(integration_id, limit=HISTORY_LIMIT),
            "runs": operator.runs(integration_id, limit=RUNS_LIMIT),
        }
    emit(payload, as_json=as_json, human=lambda: _details(payload))


def _at(value: str | None) -> str | None:
    return moment(datetime.fromisoformat(value)) if value else None


def _details(payload: dict[str, Any]) -> str:
    dto: IntegrationDto = payload["integration"]
    sections = [_summary(dto), _history(payload["history"]), _runs(payload["runs"])]
    return "\n\n".join(sections)


def _summary(dto: IntegrationDto) -> str:
    def at(key: str) -> str | None:
        value = dto.get(key)
        return _at(value) if isinstance(value, str) else None

    fields: list[tuple[str, str | None]] = [
        ("id", dto["id"]),
        (
            "status",
            f"{dto['status']} (api {dto['apiStatus']}, setup {dto['setupStatus']}, "
            f"qa {dto['qaStatus'] or '-'})",
        ),
        ("health", dto["lateness"]),
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
