"""The one HTTP layer every connector speaks through: pooling, retries, error classification.

A connector owns one `ProviderClient` (one `httpx.Client`, so one connection
pool, per connector instance) and, per sync, binds the integration's
credentials with `ProviderClient.authorized(...)`, which returns a
`ProviderSession` with `get_json`, `get_json_with_headers`, `get_bytes`,
`post_form` and `post_json`. Providers with a host per customer (a Shopify shop,
a WooCommerce store) give the session that host as its `base_url`: the one pool
serves every customer.

Classification happens here and nowhere else:

- 2xx: returned (JSON decoded by the `*_json` calls, else `MalformedResponse`).
- 401: `AuthFailed`, at once; 403: `PermissionDenied` (an `AuthFailed`), at once: the
  key authenticated but lacks a permission, which `sync_streams` reports per stream.
- timeouts, connection errors, 408, 429, 5xx: retried with exponential backoff
  and full jitter, honouring `Retry-After` (seconds or HTTP-date) and, for 429,
  the provider's rate-limit headers (`worker.connectors.rate_limits`); after
  `RetryPolicy.attempts` tries, or as soon as the server asks for a wait longer
  than `RetryPolicy.max_delay`, `TransientError(retry_after=...)` goes to the
  task, which retries later.
- any other status: `RequestRejected`, carrying the provider's error code.

Every body is streamed through `worker.connectors.bodies.read_body`, within the
request's total deadline (`HttpOptions.request_deadline`, clipped to what is left of
the sync's) and a decoded-size cap. Inside a sync, each request also spends from the
sync's limits (`worker.connectors.limits`: deadline, page budget, a cursor that must
move).

Before every attempt the client spends from the request budget bound to the
current sync (`paced`): the worker binds each customer key's cluster-wide token
bucket there, so every process shares one budget per key.

Messages name `METHOD /path` only: never the host a session adds, the query
string, a header or the provider's free-text message, so secrets cannot leak
into them. The provider's error code and reason phrase are cleaned
(`worker.connectors.redaction.clean_detail`: bounded, printable, keys redacted).
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, NamedTuple

import httpx
import structlog

from worker.backoff import Backoff
from worker.connectors.addresses import GuardedTransport, Resolver, system_resolver
from worker.connectors.bodies import ACCEPT_ENCODING, MIB, read_body
from worker.connectors.errors import (
    AuthFailed,
    BlockedHost,
    PermissionDenied,
    RequestRejected,
    RequestTimedOut,
    TransientError,
)
from worker.connectors.limits import SyncBudget, current_budget
from worker.connectors.rate_limits import (
    RateLimitHook,
    parse_retry_after,
    rate_limit_wait,
    sane_wait,
)
from worker.connectors.redaction import clean_detail
from worker.connectors.responses import ErrorDetail, decode_json

log = structlog.get_logger(__name__)

# A minute for one page: providers answer in well under a second; a slow report download
# gets many times that, and a body still arriving after it is being trickled.
DEFAULT_REQUEST_DEADLINE_S: Final = 60.0
# Decoded bytes one response may hold (SYNCWORKER_MAX_RESPONSE_MB): a page of 100-250
# objects is well under 1 MiB, a day's report a few MiB. A body is held twice at most while
# it is joined, and a threads worker runs 64 syncs: 16 MiB keeps the worst case near 2 GiB.
DEFAULT_MAX_RESPONSE_BYTES: Final = 16 * MIB


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long the client retries transient failures in-process."""

    attempts: int = 3  # a few tries absorb blips; longer outages go back to the task's retry
    base_delay: float = 0.5  # the first backoff ceiling, doubled per retry
    max_delay: float = 5.0  # never block a worker longer than this per wait

    def backoff(self, retry: int, random: Callable[[], float]) -> float:
        """Full jitter below the capped exponential ceiling (`worker.backoff`)."""
        return Backoff(self.base_delay, self.max_delay).delay(retry, rand=random)


@dataclass(frozen=True)
class HttpOptions:
    """Everything about the HTTP layer a deployment or a test may change."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 15.0  # connect/read seconds; far below the sync task's time limit
    # One request's total seconds, body included (SYNCWORKER_REQUEST_DEADLINE): the per-read
    # timeout alone lets a body trickle in forever.
    request_deadline: float = DEFAULT_REQUEST_DEADLINE_S
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_connections: int = 20  # per connector instance, i.e. per worker process and provider
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = _random.random
    wall_clock: Callable[[], float] = time.time  # epoch seconds, for HTTP-dates and resets
    monotonic: Callable[[], float] = time.monotonic  # for request deadlines
    # Customer hosts on loopback (SYNCWORKER_ALLOW_LOOPBACK_HOSTS): only tests and the demo.
    allow_loopback: bool = False
    resolve: Resolver = system_resolver
    transport: httpx.BaseTransport | None = None


class HeaderAuth(httpx.Auth):
    """Headers computed per request (signed JWTs, HMAC signatures), with a repr hiding them."""

    def __init__(self, headers: Callable[[httpx.Request], Mapping[str, str]]) -> None:
        self._headers = headers

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self._headers(request))
        yield request

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>)"


class BearerAuth(HeaderAuth):
    """`Authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        super().__init__(lambda _: {"Authorization": f"Bearer {token}"})


class _Failure(NamedTuple):
    reason: str
    retry_after: float | None
    cause: BaseException | None = None


# Reserves one request from the current sync's budget; the seconds to wait before sending.
Pacer = Callable[[], float]
_PACER: ContextVar[Pacer | None] = ContextVar("syncworker_request_pacer", default=None)


@contextmanager
def paced(pacer: Pacer) -> Iterator[None]:
    """Spend `pacer`'s budget before every request made in this context (one sync)."""
    token = _PACER.set(pacer)
    try:
        yield
    finally:
        _PACER.reset(token)


class ProviderClient:
    """One provider's connection pool, retry policy and error classification."""

    def __init__(
        self,
        base_url: str = "",
        *,
        options: HttpOptions | None = None,
        headers: Mapping[str, str] | None = None,
        rate_limit: RateLimitHook = rate_limit_wait,
        error_detail: ErrorDetail | None = None,
        customer_hosts: bool = False,
    ) -> None:
        """`base_url` "": each session names its host; `error_detail` None: no detail.

        `customer_hosts`: the hosts are customers' (a Shopify shop, a WooCommerce store), so
        every connection goes only to checked public addresses (`GuardedTransport`).
        """
        self.options = options = options or HttpOptions()
        self.rate_limit = rate_limit
        self._error_detail = error_detail
        limits = httpx.Limits(
            max_connections=options.max_connections,
            max_keepalive_connections=options.max_connections,
        )
        transport = options.transport
        if transport is None and customer_hosts:
            transport = GuardedTransport(
                limits, allow_loopback=options.allow_loopback, resolve=options.resolve
            )
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})},
            timeout=httpx.Timeout(options.timeout),
            limits=limits,
            transport=transport,
            follow_redirects=False,
        )

    def authorized(
        self,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        base_url: str | None = None,
        customer_host: bool = False,
    ) -> ProviderSession:
        """A view of this client sending one integration's credentials; it shares the pool.

        `base_url`, when given, is that integration's own host (a Shopify shop, a
        WooCommerce store), used instead of the client's. `customer_host`: the customer
        named that host, so a request to any other host is refused.
        """
        return ProviderSession(self, auth, dict(headers or {}), base_url, customer_host)

    def request(
        self,
        method: str,
        path: str,
        *,
        base_url: str | None = None,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        customer_host: bool = False,
        **content: Any,
    ) -> httpx.Response:
        """Send one call, retrying transient failures; a 2xx response or an exception.

        `customer_host`: `base_url` is a customer's, so a request to another host is refused.
        """
        endpoint = f"{method} {path.partition('?')[0]}"
        url = join_url(base_url, path) if base_url else path
        budget = current_budget()
        if customer_host and base_url:
            _same_host(url, base_url, endpoint)
        attempt = 0
        while True:
            attempt += 1
            seconds = self._seconds_for(endpoint, budget)
            timeout = httpx.Timeout(min(self.options.timeout, seconds))
            request = self._http.build_request(
                method, url, headers=headers, timeout=timeout, **content
            )
            if budget is not None and attempt == 1:
                budget.spend(method, endpoint, str(request.url))
            self._pace(endpoint)
            try:
                response = self._send(request, auth, endpoint, seconds)
            except httpx.TransportError as exc:  # connection refused/reset, every timeout
                failure = _Failure(type(exc).__name__, None, exc)
            except BlockedHost as exc:  # from GuardedTransport, before any connection
                raise BlockedHost(f"{endpoint}: {exc}") from exc
            except RequestTimedOut as exc:
                failure = _Failure(f"not complete within {seconds:g} s", None, exc)
            else:
                found = self._classify(endpoint, response)
                if found is None:
                    return response
                failure = found
            self._wait_or_give_up(endpoint, failure, attempt)

    def _seconds_for(self, endpoint: str, budget: SyncBudget | None) -> float:
        """This attempt's total seconds: the request deadline, clipped to the sync's."""
        seconds = self.options.request_deadline
        if budget is not None:
            seconds = min(seconds, budget.check_deadline(endpoint))
        return seconds

    def _send(
        self, request: httpx.Request, auth: httpx.Auth | None, endpoint: str, seconds: float
    ) -> httpx.Response:
        """Send one attempt and read its body within `seconds` in all."""
        options = self.options
        deadline = options.monotonic() + seconds
        sent = auth or httpx.USE_CLIENT_DEFAULT
        response = self._http.send(request, auth=sent, stream=True)
        try:
            read_body(
                response,
                endpoint,
                limit=options.max_response_bytes,
                deadline=deadline,
                monotonic=options.monotonic,
            )
        finally:
            response.close()
        return response

    def _pace(self, endpoint: str) -> None:
        """Wait for the budget's next slot; a long wait goes back to the task as a retry."""
        pacer = _PACER.get()
        wait = pacer() if pacer is not None else 0.0
        if wait <= 0:
            return
        if wait > self.options.retry.max_delay:
            raise TransientError(
                f"{endpoint}: the request budget is spent for now", retry_after=wait
            )
        self.options.sleep(wait)

    def _classify(self, endpoint: str, response: httpx.Response) -> _Failure | None:
        status = response.status_code
        if 200 <= status < 300:
            return None
        found = self._error_detail(response) if self._error_detail else None
        detail = clean_detail(found) if found else None
        # The reason phrase is the server's own text too (`HTTP/1.1 403 <anything>`).
        reason = f"{status} {clean_detail(response.reason_phrase)}" + (
            f" ({detail})" if detail else ""
        )
        if status == 403:
            raise PermissionDenied(f"{endpoint}: {reason}: the credential lacks this permission")
        if status == 401:
            raise AuthFailed(f"{endpoint}: {reason}")
        if status in (408, 429) or status >= 500:
            return _Failure(reason, self._retry_after(response))
        raise RequestRejected(f"{endpoint}: {reason}", status=status, code=detail)

    def _retry_after(self, response: httpx.Response) -> float | None:
        now = self.options.wall_clock()
        asked = parse_retry_after(response.headers.get("retry-after"), now)
        if asked is None and response.status_code == 429:
            asked = self.rate_limit(response, now)
        return sane_wait(asked)

    def _wait_or_give_up(self, endpoint: str, failure: _Failure, attempt: int) -> None:
        policy = self.options.retry
        wait = failure.retry_after
        if wait is None:
            wait = policy.backoff(attempt - 1, self.options.random)
        # A server asking for more than the cap is better served by the task's own retry.
        if attempt >= policy.attempts or wait > policy.max_delay:
            raise TransientError(
                f"{endpoint}: {failure.reason} (gave up after {attempt} attempts)",
                retry_after=failure.retry_after,
            ) from failure.cause
        log.warning(
            "http.retry", endpoint=endpoint, reason=failure.reason, attempt=attempt, delay=wait
        )
        self.options.sleep(wait)

    def close(self) -> None:
        """Close the pool's connections."""
        self._http.close()

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class JsonResponse(NamedTuple):
    """A decoded JSON body with the headers that came with it (paging links, totals)."""

    body: Any
    headers: httpx.Headers
    links: dict[str | None, dict[str, str]]  # the `Link` header by rel, as httpx parses it


@dataclass
class ProviderSession:
    """Calls made with one integration's credentials, paced by the provider's rate limits."""

    _client: ProviderClient
    _auth: httpx.Auth | None = field(repr=False)
    _headers: dict[str, str] = field(repr=False)
    _base_url: str | None = None  # None: the client's
    _customer_host: bool = False  # `_base_url` is the customer's: no request goes elsewhere
    _pause: float = 0.0

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET a JSON document."""
        return self.get_json_with_headers(path, params).body

    def get_json_with_headers(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> JsonResponse:
        """GET a JSON document with its headers, for lists paged by `Link` or counted in one."""
        response = self.send("GET", path, params=params)
        return JsonResponse(decode_json(response, f"GET {path}"), response.headers, response.links)

    def get_bytes(self, path: str, params: Mapping[str, Any] | None = None) -> bytes:
        """GET a non-JSON body (a gzip report, a CSV) as raw bytes."""
        return self.send("GET", path, params=params).content

    def post_form(self, path: str, data: Mapping[str, str]) -> Any:
        """POST a form (OAuth token exchanges) and decode the JSON answer."""
        return decode_json(self.send("POST", path, data=data), f"POST {path}")

    def post_json(self, path: str, body: Any) -> Any:
        """POST a JSON body and decode the JSON answer."""
        return decode_json(self.send("POST", path, json=body), f"POST {path}")

    def send(self, method: str, path: str, **content: Any) -> httpx.Response:
        """One call, first waiting out a budget the previous answer said was spent."""
        options = self._client.options
        if self._pause > 0:
            options.sleep(self._pause)
            self._pause = 0.0
        response = self._client.request(
            method,
            path,
            base_url=self._base_url,
            customer_host=self._customer_host,
            auth=self._auth,
            headers=self._headers,
            **content,
        )
        wait = sane_wait(self._client.rate_limit(response, options.wall_clock()))
        if wait:
            self._pause = min(wait, options.retry.max_delay)
        return response


def join_url(base_url: str, path: str) -> str:
    """`path` under `base_url`, keeping its sub-folder as httpx's own base URL does."""
    if httpx.URL(path).is_absolute_url:
        return path
    return f"{base_url.rstrip('/')}/{path.lstrip('/')}"


def _same_host(url: str, base_url: str, endpoint: str) -> None:
    """Refuse a request on a customer's session to any other host than the customer's."""
    if httpx.URL(url).host != httpx.URL(base_url).host:
        raise BlockedHost(f"{endpoint}: refused a request to another host than the customer's")
