"""A base for fakes of provider APIs: a real HTTP/1.1 server on loopback.

Connectors under test (and the demo) point their base URL at `fake.url` and go
through the real HTTP layer. Each fake routes by method and path, logs every
request with its secrets redacted, and shares one failure script:

    with FakeStripe() as fake:
        fake.fail_next(1, status=500)           # next request gets a 500
        fake.rate_limit_next(2, retry_after=1)  # then two 429s with Retry-After
        fake.malformed_next(1, path="/v1/charges")
        fake.revoke("sk_test_x")                # that key gets 401 from now on

Adding a provider's fake is a subclass that registers routes and, where the
provider differs, overrides `credential_of`, `auth_error` and `error_response`:

    class FakeAcme(FakeServer):
        def __init__(self) -> None:
            super().__init__()
            self.route("GET", "/v1/things/{thing_id}", self._thing)

        def _thing(self, request: Request) -> Response:
            return Response.json({"id": request.path_params["thing_id"]})

The HTTP plumbing (`Request`, `Response`, the threaded server) lives in
`fakes.loopback`; both names are importable from here too. Only the
standard library and project code may be imported here: the fakes ship with the
distribution for the demo.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self

from fakes.loopback import Handler, LoopbackServer, Request, Response

__all__ = ["REDACTED", "FakeServer", "Handler", "Request", "Response"]

REDACTED = "[redacted]"


@dataclass
class _Scripted:
    remaining: int
    path: str | None
    respond: Callable[[Request], Response] | None = None
    transform: Callable[[Response], Response] | None = None
    credential: str | None = None  # only requests carrying this credential, when set


class FakeServer:
    """A provider API on 127.0.0.1:<ephemeral port>, run in a daemon thread."""

    secret_headers: frozenset[str] = frozenset({"authorization", "cookie", "x-api-key"})
    secret_params: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._lock = threading.Lock()
        self._script: list[_Scripted] = []
        self._revoked: set[str] = set()
        self._latency = 0.0
        self._log: list[Request] = []  # secrets replaced, bodies left out
        self._server = LoopbackServer(self.handle)
        self.errors = self._server.errors  # exceptions raised by route handlers
        self._stopping = threading.Event()

    def route(self, method: str, template: str, handler: Handler) -> None:
        """Serve `method template`, overriding earlier routes; `{name}` goes to `path_params`."""
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        self._routes.insert(0, (method.upper(), re.compile(f"^{pattern}$"), handler))

    def credential_of(self, request: Request) -> str | None:
        """The credential a request carries, checked against `revoke`d ones."""
        return request.bearer_token

    def auth_error(self, request: Request) -> Response:
        """The provider's answer to a missing, unknown or revoked credential."""
        return self.error_response(401, "unauthorized")

    def error_response(self, status: int, message: str) -> Response:
        """The provider's error body for `status`."""
        return Response.json({"error": message}, status=status)

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        *,
        path: str | None = None,
        credential: str | None = None,
    ) -> None:
        """Answer the next `count` requests (to `path`, by `credential`, if given) with `status`."""
        respond = lambda _: self.error_response(status, "fail")  # noqa: E731
        self._add(_Scripted(count, path, respond=respond, credential=credential))

    def rate_limit_next(
        self,
        count: int = 1,
        retry_after: float | str | None = 1,
        *,
        path: str | None = None,
        headers: Mapping[str, str] | None = None,
        credential: str | None = None,
    ) -> None:
        """Answer with 429; `retry_after` is seconds, an HTTP-date string, or None for none."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = str(retry_after)

        def respond(_: Request) -> Response:
            error = self.error_response(429, "rate limited")
            return Response(429, error.body, {**error.headers, **extra})

        self._add(_Scripted(count, path, respond=respond, credential=credential))

    def malformed_next(
        self, count: int = 1, *, path: str | None = None, credential: str | None = None
    ) -> None:
        """Answer 200 with a body that is not valid JSON."""
        broken = Response(200, b'{"data": [', {"Content-Type": "application/json"})
        self._add(_Scripted(count, path, respond=lambda _: broken, credential=credential))

    def drop_field_next(
        self,
        count: int,
        field_name: str,
        *,
        path: str | None = None,
        index: int | None = None,
        credential: str | None = None,
    ) -> None:
        """Remove a field from the objects of the response's lists (partial data).

        The lists are a bare JSON array (WooCommerce's) or the lists in a JSON object;
        `index` picks one object of each list.
        """
        transform = lambda r: _drop(r, field_name, index)  # noqa: E731
        self._add(_Scripted(count, path, transform=transform, credential=credential))

    def unrevoke(self, credential: str) -> None:
        """Accept a revoked credential again."""
        with self._lock:
            self._revoked.discard(credential)

    def clear_script(self, *, credential: str | None = None) -> None:
        """Forget scripted behaviours not yet used up (only `credential`'s, if given)."""
        with self._lock:
            self._script = [
                s for s in self._script if credential is not None and s.credential != credential
            ]

    def revoke(self, credential: str) -> None:
        """Answer every later request carrying this credential with `auth_error`."""
        with self._lock:
            self._revoked.add(credential)

    def latency(self, seconds: float) -> None:
        """Delay every answer by `seconds` (benchmarks, timeouts)."""
        with self._lock:
            self._latency = seconds

    def _add(self, scripted: _Scripted) -> None:
        with self._lock:
            self._script.append(scripted)

    def _take(self, request: Request) -> _Scripted | None:
        credential = self.credential_of(request)
        with self._lock:
            for scripted in self._script:
                if (
                    scripted.remaining > 0
                    and scripted.path in (None, request.path)
                    and scripted.credential in (None, credential)
                ):
                    scripted.remaining -= 1
                    return scripted
        return None

    @property
    def requests(self) -> list[Request]:
        """Every request so far, oldest first."""
        with self._lock:
            return list(self._log)

    def requests_to(self, path: str) -> list[Request]:
        return [logged for logged in self.requests if logged.path == path]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def handle(self, request: Request) -> Response:
        """Answer one request: latency, then the script, revocation, and the route."""
        with self._lock:
            self._log.append(self._redacted(request))
            delay = self._latency
        if delay:
            self._stopping.wait(delay)
        scripted = self._take(request)
        if scripted is not None and scripted.respond is not None:
            return scripted.respond(request)
        credential = self.credential_of(request)
        with self._lock:
            revoked = credential is not None and credential in self._revoked
        response = self.auth_error(request) if revoked else self._dispatch(request)
        if scripted is not None and scripted.transform is not None:
            response = scripted.transform(response)
        return response

    def _dispatch(self, request: Request) -> Response:
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                params = {**request.path_params, **match.groupdict()}
                return handler(replace(request, path_params=params))
        return self.error_response(404, f"no route for {request.method} {request.path}")

    def _redacted(self, request: Request) -> Request:
        secret_headers, secret_params = self.secret_headers, self.secret_params
        headers = {k: REDACTED if k in secret_headers else v for k, v in request.headers.items()}
        query = {k: REDACTED if k in secret_params else v for k, v in request.query.items()}
        return replace(request, query=query, headers=headers, body=b"")

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> None:
        self._stopping.clear()
        self._server.start()

    def stop(self) -> None:
        self._stopping.set()
        self._server.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if kind is None and self.errors:
            raise AssertionError(f"the fake's handlers raised: {self.errors!r}")


def append_new(
    lock: threading.Lock, objects: list[dict[str, Any]], count: int, make: Callable[[int], Any]
) -> list[str]:
    """Append `count` objects made by `make(number)`, numbered on from the last; their ids."""
    with lock:
        made = [make(len(objects) + n + 1) for n in range(count)]
        objects.extend(made)
    return [str(obj["id"]) for obj in made]


def _drop(response: Response, field_name: str, index: int | None) -> Response:
    payload = json.loads(response.body)
    values = payload.values() if isinstance(payload, dict) else [payload]
    for items in (value for value in values if isinstance(value, list)):
        for item in items if index is None else items[index : index + 1]:
            if isinstance(item, dict):
                item.pop(field_name, None)
    return Response(response.status, json.dumps(payload).encode(), response.headers)
