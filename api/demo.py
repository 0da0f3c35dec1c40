"""`syncworker demo` with the integrations page: watch the statuses move in a browser.

The worker's tour (`worker.demo.run_tour`) runs as before; beside it, once its runtime is
up, the API app (and so the page) is served by uvicorn in a thread over the tour's own
database and operator service, and an operator key is made for the page. The demo's data
is thrown away when the next demo starts, and the server listens on loopback unless told
otherwise, so its key is printed with the URL: a newcomer copies it into the sign-in form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import click
from starlette.types import ASGIApp

from api.app import create_api
from api.serving import BackgroundServer
from models.api_keys import Role, create_key
from models.errors import InvalidValue
from worker.cli.context import failures
from worker.cli.run import demo as worker_demo
from worker.demo import run_tour
from worker.operator import Operator
from worker.runtime import Runtime

DEFAULT_PORT: Final = 8000
# The printed URL reloads the list this often (seconds): the demo's statuses move fast.
REFRESH_S: Final = 3


@dataclass(frozen=True)
class ServedPage:
    """Where the demo's page is served and the operator key that signs in to it."""

    url: str  # the page's list, `http://host:port/ui/`
    key: str

    def __repr__(self) -> str:
        return f"ServedPage(url={self.url!r}, key=***)"


# What the tour runs beside it (`worker.demo.Beside`): the page, saying where it is.
PageBeside = Callable[[Runtime, Operator], AbstractContextManager[ServedPage]]


def serve_page(host: str, port: int) -> PageBeside:
    """What the tour runs beside it: the page on host:port (a free port if it is busy)."""

    @contextmanager
    def beside(runtime: Runtime, operator: Operator) -> Iterator[ServedPage]:
        with runtime.sessions() as session, session.begin():
            issued = create_key(
                session, role=Role.OPERATOR, label="demo page", now=runtime.clock.now()
            )
        with _started(create_api(runtime, operator), host, port) as server:
            page = ServedPage(f"{server.url}/ui/", issued.key)
            click.echo(
                f"watch it in a browser: {page.url}?refresh={REFRESH_S}\n"
                f"sign in with this operator key (the demo's data is throwaway): {page.key}\n"
            )
            yield page

    return beside


def _started(app: ASGIApp, host: str, port: int) -> BackgroundServer:
    """The server on `port`, or on a free one when that is taken (said, not failed)."""
    try:
        return BackgroundServer(app, host=host, port=port).start()
    except InvalidValue as busy:
        if port == 0:
            raise
        click.echo(f"{busy}; serving the page on a free port instead")
        return BackgroundServer(app, host=host, port=0).start()


def _demo(speed: float, hours: float, data_dir: Path, host: str, port: int) -> None:
    with failures():
        run_tour(data_dir.absolute(), speed=speed, hours=hours, beside=serve_page(host, port))


# The worker's `demo` with two more options; it replaces that command in `syncworker`.
demo = click.Command(
    "demo",
    callback=_demo,
    params=[
        *worker_demo.params,
        click.Option(["--host"], default="127.0.0.1", show_default=True, help="Page address."),
        click.Option(
            ["--port"],
            type=click.IntRange(0, 65535),
            default=DEFAULT_PORT,
            show_default=True,
            help="Page port (0: any free port; a busy one falls back to a free one).",
        ),
    ],
    help=f"{worker_demo.help}\n\nThe integrations page is served meanwhile: open its URL.",
)
