"""The `syncworker` command: the worker's commands plus `api` and `api-keys`.

The console script points here, so the CLI can serve the HTTP face while the worker
package never imports `api` (imports point api -> worker).
"""

from __future__ import annotations

import click

from api import demo
from api.app import serve
from models import migrate
from models.api_keys import Role, create_key, list_keys, revoke_key
from worker.cli.context import CliContext, emit, failures, pass_context, table
from worker.cli.main import main

JSON_HELP = "Machine-readable output."


def prepare_database(cli: CliContext) -> None:
    """Migrate the embedded default (a fresh clone has no database yet); elsewhere, check
    the schema is current (else one line: run `syncworker db upgrade`, the release step)."""
    engine = cli.unchecked_runtime.engine
    if cli.settings.embedded:
        migrate.upgrade(engine)
    migrate.require_current(engine)


@click.command("api")
@click.option("--host", help="Address to listen on (default SYNCWORKER_API_HOST, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default SYNCWORKER_API_PORT).")
@pass_context
def api(cli: CliContext, host: str | None, port: int | None) -> None:
    """Serve the Integrations API, the webhook receiver and the integrations page."""
    settings = cli.settings
    with failures():
        prepare_database(cli)
    host, port = host or settings.api_host, port or settings.api_port
    click.echo(f"syncworker API on http://{host}:{port} (OpenAPI at /openapi.json, docs at /docs)")
    serve(settings, host=host, port=port)


@click.group("api-keys")
def api_keys() -> None:
    """Keys to the HTTP API: made and shown once, stored as a digest."""


@api_keys.command("create")
@click.option("--workspace", help="A workspace key: sees and acts on this workspace only.")
@click.option("--operator", "is_operator", is_flag=True, help="An operator key: sees all.")
@click.option("--label", help="What the key is for (shown in `api-keys list`).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@pass_context
def create(
    cli: CliContext, workspace: str | None, is_operator: bool, label: str | None, as_json: bool
) -> None:
    """Make a key and print it once; it cannot be shown again."""
    with failures(as_json):
        if is_operator == (workspace is not None):
            raise click.UsageError("give exactly one of --workspace W or --operator")
        role = Role.OPERATOR if is_operator else Role.WORKSPACE
        prepare_database(cli)
        runtime = cli.runtime
        with runtime.sessions() as session, session.begin():
            issued = create_key(
                session, role=role, workspace_id=workspace, label=label, now=runtime.clock.now()
            )
    payload = {
        "ok": True,
        "id": issued.principal.key_id,
        "role": role.value,
        "workspaceId": workspace,
        "key": issued.key,
    }
    emit(payload, as_json=as_json, human=lambda: f"{issued.key}\n(shown once: store it now)")


@api_keys.command("list")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@pass_context
def list_(cli: CliContext, as_json: bool) -> None:
    """Every key's id, role, workspace and state; never a secret."""
    with failures(as_json), cli.runtime.sessions() as session:
        rows = [
            {
                "id": key.id,
                "role": key.role,
                "workspaceId": key.workspace_id,
                "label": key.label,
                "createdAt": key.created_at.isoformat(),
                "revokedAt": key.revoked_at.isoformat() if key.revoked_at else None,
            }
            for key in list_keys(session)
        ]
    columns = ["id", "role", "workspaceId", "label", "createdAt", "revokedAt"]
    emit(rows, as_json=as_json, human=lambda: table(rows, columns) if rows else "no keys")


@api_keys.command("revoke")
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@pass_context
def revoke(cli: CliContext, key_id: str, as_json: bool) -> None:
    """Revoke a key at once (by its id, the part after `swk_`)."""
    with failures(as_json):
        runtime = cli.runtime
        with runtime.sessions() as session, session.begin():
            done = revoke_key(session, key_id, now=runtime.clock.now())
    if not done:
        message = f"no live key {key_id!r}"
        emit({"ok": False, "message": message}, as_json=as_json, human=lambda: f"error: {message}")
        raise SystemExit(1)
    emit({"ok": True, "message": f"key {key_id} revoked"}, as_json=as_json)


main.add_command(api)
main.add_command(api_keys)
main.add_command(demo.demo)  # the worker's demo, with the integrations page served beside it

__all__ = ["main"]
