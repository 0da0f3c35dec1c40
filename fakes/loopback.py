"""HTTP on loopback for the fakes: requests and responses as a handler sees them, and the server.

`LoopbackServer` is a real HTTP/1.1 server (keep-alive, so a client's pool is
exercised) on 127.0.0.1 and an ephemeral port, answering each request with one
handler in a daemon thread. `fakes.server.FakeServer` builds providers'
fakes on it.

Only the standard library may be imported here: the fakes ship with the
distribution for the demo.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Enough backlog for a benchmark's burst of concurrent connections.
REQUEST_QUEUE_SIZE = 1024
# Idle keep-alive connections are dropped after this: longer than any test, so a client
# never races the fake closing a pooled connection. Closing the client ends them sooner.
IDLE_TIMEOUT = 120.0


@dataclass(frozen=True)
class Request:
    """A request as a route handler sees it (header names lower-case)."""

    method: str
    path: str
    query: Mapping[str, str]  # last value wins for a repeated name
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = b""
    path_params: Mapping[str, str] = field(default_factory=dict)

    @property
    def bearer_token(self) -> str | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))


@dataclass(frozen=True)
class Response:
    """What a route (or the failure script) answers."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    # Instead of `body`: parts written (and flushed) one by one as the iterable yields them,
    # for slow or endless bodies; `headers` then name the Content-Length, if any.
    stream: Iterable[bytes] | None = field(default=None, repr=False)

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        body = json.dumps(payload).encode()
        return cls(status, body, {"Content-Type": "application/json", **(headers or {})})


Handler = Callable[[Request], Response]


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.1:<ephemeral port> answering with `handle`.

    An exception the handler raises is kept in `errors` and answered 599, for the test
    to see rather than a hung client.
    """

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.errors: list[BaseException] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake server is not running; use it as a context manager")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._httpd = _HTTPServer(("127.0.0.1", 0), _RequestHandler)
        self._httpd.loopback = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd, self._thread = None, None

    def answer(self, request: Request) -> Response:
        try:
            return self.handle(request)
        except Exception as exc:  # noqa: BLE001 - a fake's bug: reported to the test, answered 599
            self.errors.append(exc)
            return Response(599, repr(exc).encode())


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = REQUEST_QUEUE_SIZE
    loopback: LoopbackServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hung up (timeouts in tests); anything else is a real error."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a client's pool is exercised
    disable_nagle_algorithm = True  # headers and body go out as separate small writes
    timeout = IDLE_TIMEOUT
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log; the fake keeps its own."""

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        response = self.server.loopback.answer(request)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.stream is None:
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
            return
        if "Content-Length" not in response.headers:
            self.close_connection = True  # the body ends when the connection does
        self.end_headers()
        for part in response.stream:
            self.wfile.write(part)
            self.wfile.flush()
