"""Serving an ASGI app with uvicorn in a background thread, for as long as a `with` lasts.

The demo serves the page beside its tour this way. The socket is bound before the thread
starts, so a busy port fails at once, in the caller, with a one-line reason, and port 0
gets a free port whose number `url` tells.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Final

import uvicorn
from starlette.types import ASGIApp

from models.errors import InvalidValue

# How long to wait for uvicorn to start answering, and to finish the requests in flight.
START_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 10.0
POLL_S: Final = 0.01


class BackgroundServer:
    """uvicorn serving `app` on host:port in a daemon thread, inside a `with` block."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.url = ""  # `http://host:port` once bound, with the port really bound

    def __enter__(self) -> BackgroundServer:
        return self if self._thread is not None else self.start()

    def start(self) -> BackgroundServer:
        """Bind, start serving, and return once uvicorn answers.

        Raises InvalidValue, one line, when the address cannot be bound (a busy port).
        """
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        try:
            self._socket = socket.create_server((self._host, self._port), family=family)
        except OSError as exc:
            raise InvalidValue(
                f"cannot listen on {self._host}:{self._port}: {exc.strerror or exc}"
            ) from None
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.url = f"http://{host}:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(self._app, log_config=None, access_log=False, lifespan="off")
        server = self._server = uvicorn.Server(config)
        thread = self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._socket]}, name="page-server", daemon=True
        )
        thread.start()
        if not _started(server, thread):
            self.close()
            raise RuntimeError(f"the server on {self.url} did not start")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, let requests in flight finish, release the port."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
        if self._socket is not None:
            self._socket.close()


def _started(server: uvicorn.Server, thread: threading.Thread) -> bool:
    """Wait until uvicorn answers; False if it died or took too long."""
    waited = threading.Event()
    for _ in range(int(START_TIMEOUT_S / POLL_S)):
        if server.started:
            return True
        if not thread.is_alive():
            return False
        waited.wait(POLL_S)
    return False
