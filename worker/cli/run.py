"""Running the system: `run` (worker and beat together) and `demo` (a guided tour)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import structlog
from celery.beat import EmbeddedService

from models import migrate
from worker.app import create_app
from worker.cli.context import CliContext, failures, pass_context
from worker.demo import run_tour
from worker.outages import database_address
from worker.runtime import Runtime
from worker.settings import THREADS_CONCURRENCY

log = structlog.get_logger(__name__)


def run_worker_and_beat(app: Any, runtime: Runtime, *, concurrency: int, loglevel: str) -> None:
    """Start a threads-pool worker on every queue and beat in a thread, until interrupted.

    The worker is made first: its start-up checks end the process before beat sends anything.
    """
    queues = [q.name for q in app.conf.task_queues]
    beat = EmbeddedService(app, thread=True, scheduler_cls=app.conf.beat_scheduler)
    try:
        worker = app.Worker(
            pool="threads", concurrency=concurrency, queues=queues, loglevel=loglevel, quiet=True
        )
        beat.start()
        try:
            worker.start()
        finally:
            beat.stop()
    finally:
        runtime.close()


@click.command()
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 1000),
    help=f"Sync threads (default SYNCWORKER_CONCURRENCY, else {THREADS_CONCURRENCY}).",
)
@pass_context
def run(cli: CliContext, concurrency: int | None) -> None:
    """Run a worker and the beat in this process.

    With no configuration this is the embedded default: a SQLite database and a SQLite
    broker under ./.syncworker, migrated on start. In production run `celery -A worker
    worker` and `celery -A worker beat` as separate processes instead (see the README).
    """
    settings = cli.settings
    threads = concurrency or settings.worker_concurrency or THREADS_CONCURRENCY
    runtime = Runtime.from_settings(settings, slots=threads)
    with failures():
        if settings.embedded:
            migrate.upgrade(runtime.engine)
    app = create_app(settings, runtime=runtime)
    database = database_address(settings.database_url)
    log.info("run.starting", database=database, embedded=settings.embedded)
    run_worker_and_beat(app, runtime, concurrency=threads, loglevel=settings.log_level)


@click.command()
@click.option(
    "--speed",
    default=7200.0,
    show_default=True,
    help="Simulated seconds per real second (7200: one second is two hours).",
)
@click.option("--hours", default=350.0, show_default=True, help="Simulated hours to run.")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path(".syncworker/demo"),
    show_default=True,
    help="Where the demo's SQLite files go (wiped first).",
)
def demo(speed: float, hours: float, data_dir: Path) -> None:
    """Watch every status happen: scripted integrations on an accelerated clock."""
    run_tour(data_dir.absolute(), speed=speed, hours=hours)


COMMANDS = (run, demo)
