"""The `syncworker` command group; each group of commands lives in its own module."""

from __future__ import annotations

import click

from worker.cli import admin, health, integrations, run, status
from worker.cli.context import CliContext, failures
from worker.logs import configure_logging


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Integration sync worker: Celery beat and workers that keep integrations in sync."""
    cli = ctx.ensure_object(CliContext)
    ctx.call_on_close(cli.close)
    with failures():  # a setting it cannot use: one line naming it, exit 1
        settings = cli.settings
    configure_logging(settings.log_format, settings.log_level)


for _module in (admin, run, integrations, status, health):
    for _command in _module.COMMANDS:
        main.add_command(_command)
