"""What every command shares: the lazily built runtime, human or JSON output, failures.

A domain error, and a database, Redis or broker that fails, becomes a one-line reason on
stderr (or `{ok: false, message}` with --json) and exit code 1; the transaction it
interrupted is rolled back, so nothing changed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any, Final, NoReturn

import click
from celery import Celery

from models import migrate
from models.errors import SyncWorkerError
from worker.app import create_app
from worker.operator import Operator
from worker.outages import OUTAGES, reported, unavailable
from worker.queues import queue_depths
from worker.runtime import Runtime, publisher_of
from worker.settings import Settings

# A command does one thing at a time (a --watch refresh, one inline sync): a few pooled
# connections are plenty.
CLI_SLOTS: Final = 4


class CliContext:
    """What commands share: settings read once, a runtime built on first use."""

    def __init__(self, settings_factory: Callable[[], Settings] = Settings.from_env) -> None:
        self._settings_factory = settings_factory
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self._settings_factory()
        return self._settings

    @property
    def settings_read(self) -> Settings | None:
        """The settings, if a command got as far as reading them."""
        return self._settings

    @cached_property
    def unchecked_runtime(self) -> Runtime:
        """The runtime, on whatever schema the database has (`db upgrade`, `db current`)."""
        return Runtime.from_settings(self.settings, slots=CLI_SLOTS)

    @cached_property
    def runtime(self) -> Runtime:
        """The runtime, on a database at this code's schema (else SchemaOutdated)."""
        runtime = self.unchecked_runtime
        with reported(self.settings):
            migrate.require_current(runtime.engine)
        return runtime

    @cached_property
    def app(self) -> Celery:
        """A Celery app to publish on and read queue depths from; it connects on first use."""
        return create_app(self.settings, runtime=self.runtime)

    @cached_property
    def operator(self) -> Operator:
        """The operator service, publishing the syncs its actions ask for on the broker."""
        return Operator(
            self.runtime,
            publisher_of(self.app).sync_now,
            queue_depths=lambda: queue_depths(self.app),
            broker_url=str(self.app.conf.broker_url),
        )

    def close(self) -> None:
        if "app" in self.__dict__:
            self.app.close()
        if "unchecked_runtime" in self.__dict__:
            self.unchecked_runtime.close()


pass_context = click.make_pass_decorator(CliContext, ensure=True)


def emit(payload: Any, *, as_json: bool, human: Callable[[], str] | None = None) -> None:
    """Print `payload` as JSON, or the human rendering of it."""
    if as_json or human is None:
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        click.echo(human())


@contextmanager
def failures(as_json: bool = False) -> Iterator[None]:
    """Turn a domain error or an outage into a one-line reason (or {ok: false}) and exit 1."""
    try:
        yield
    except SyncWorkerError as exc:
        fail(str(exc), as_json=as_json)
    except OUTAGES as exc:
        fail(str(unavailable(exc, _settings_of_command())), as_json=as_json)
    except OSError as exc:  # a data folder or file that cannot be made or read
        where = f": {exc.filename}" if exc.filename else ""
        fail(f"{exc.strerror or exc}{where}", as_json=as_json)


def fail(message: str, *, as_json: bool) -> NoReturn:
    """Print the one-line reason (or {ok: false, message}) and exit 1."""
    if as_json:
        click.echo(json.dumps({"ok": False, "message": message}))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _settings_of_command() -> Settings | None:
    context = click.get_current_context(silent=True)
    cli = context.find_object(CliContext) if context is not None else None
    return cli.settings_read if cli is not None else None


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain text table with a header row, columns as wide as their widest cell."""
    cells = [
        [str(row.get(c, "") if row.get(c) is not None else "-") for c in columns] for row in rows
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)
