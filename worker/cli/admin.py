"""Administration commands: schema migrations, credential keys, the lifecycle chart."""

from __future__ import annotations

import click

from models import migrate
from models.credentials import Keyring, rotate_all
from models.lifecycle import LIFECYCLE
from worker.cli.context import CliContext, emit, failures, pass_context


@click.group()
def db() -> None:
    """Database schema migrations."""


@db.command()
@pass_context
def upgrade(cli: CliContext) -> None:
    """Apply every pending migration (run on each release)."""
    with failures():
        engine = cli.unchecked_runtime.engine
        before = migrate.current(engine)
        migrate.upgrade(engine)
        click.echo(f"database at revision {migrate.current(engine)} (was {before or 'empty'})")


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def current(cli: CliContext, as_json: bool) -> None:
    """Show the database's revision and the newest this code ships."""
    with failures(as_json):
        revision, head = migrate.current(cli.unchecked_runtime.engine), migrate.head()
    payload = {"current": revision, "head": head, "upToDate": revision == head}
    emit(payload, as_json=as_json, human=lambda: f"current {revision or 'empty'}, head {head}")


@click.group()
def credentials() -> None:
    """Credential encryption keys."""


@credentials.command("generate-key")
def generate_key() -> None:
    """Print a new random AES-256 key for SYNCWORKER_CREDENTIAL_KEYS."""
    click.echo(Keyring.generate_key())


@credentials.command()
@click.option("--batch-size", default=500, show_default=True, help="Rows per transaction.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def rotate(cli: CliContext, batch_size: int, as_json: bool) -> None:
    """Re-encrypt every integration's credentials under the newest configured key.

    Put the new key first in SYNCWORKER_CREDENTIAL_KEYS, keep the old ones after it,
    run this, then drop the old keys.
    """
    with failures(as_json):
        runtime = cli.runtime
        with runtime.sessions() as session, session.begin():
            report = rotate_all(session, runtime.keyring, batch_size=batch_size)
    payload = {
        "scanned": report.scanned,
        "rotated": report.rotated,
        "alreadyCurrent": report.already_current,
        "failedIds": [str(i) for i in report.failed_ids],
    }
    emit(
        payload,
        as_json=as_json,
        human=lambda: (
            f"rotated {report.rotated} of {report.scanned} credentials "
            f"({report.already_current} already current, {len(report.failed_ids)} unreadable)"
        ),
    )
    if report.failed_ids:
        raise SystemExit(1)


@click.group()
def lifecycle() -> None:
    """The integration lifecycle."""


@lifecycle.command()
def diagram() -> None:
    """Print the lifecycle's state chart as Mermaid text, drawn from the code."""
    click.echo(LIFECYCLE.diagram(), nl=False)


COMMANDS = (db, credentials, lifecycle)
