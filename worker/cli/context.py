"""What every command shares: the lazily built runtime, human or JSON output, failures.

A domain error becomes a one-line reason on stderr (or `{ok: false, message}` with
--json) and exit code 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import click
from celery import Celery

from models.errors import SyncWorkerError
from worker.app import create_app
from worker.operator import Operator
from worker.queues import queue_depths
from worker.runtime import Runtime, publisher_of
from worker.settings import Settings


class CliContext:
    """What commands share: settings read once, a runtime built on first use."""

    def __init__(self, settings_factory: Callable[[], Settings] = Settings.from_env) -> None:
        self._settings_factory = settings_factory

    @cached_property
    def settings(self) -> Settings:
        return self._settings_factory()

    @cached_property
    def runtime(self) -> Runtime:
        return Runtime.from_settings(self.settings)

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
        if "runtime" in self.__dict__:
            self.runtime.close()


pass_context = click.make_pass_decorator(CliContext, ensure=True)


def emit(payload: Any, *, as_json: bool, human: Callable[[], str] | None = None) -> None:
    """Print `payload` as JSON, or the human rendering of it."""
    if as_json or human is None:
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        click.echo(human())


@contextmanager
def failures(as_json: bool = False) -> Iterator[None]:
    """Turn a domain error into a one-line reason (or {ok: false}) and exit code 1."""
    try:
        yield
    except SyncWorkerError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "message": str(exc)}))
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain text table with a header row, columns as wide as their widest cell."""
    cells = [
        [str(row.get(c, "") if row.get(c) is not None else "-") for c in columns] for row in rows
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)
