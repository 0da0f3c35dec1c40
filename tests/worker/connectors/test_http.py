"""The shared HTTP layer: retries, backoff, Retry-After, classification, no leaked secrets."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from typing import Any

import pytest

from fakes.server import FakeServer, Request, Response
from tests.worker.conftest import LogLines
from tests.worker.connectors.conftest import NOW, RecordingSleep
from worker.budget import LocalBudget
from worker.connectors.errors import (
    AuthFailed,
    MalformedResponse,
    RequestRejected,
    TransientError,
)
from worker.connectors.http import (
    BearerAuth,
    HttpOptions,
    ProviderClient,
    ProviderSession,
    RetryPolicy,
    paced,
)
from worker.connectors.responses import require

TOKEN = "sk_test_SECRETTOKEN123456"


def _echo(request: Request) -> Response:
    return Response.json(
        {"method": request.method, "query": dict(request.query), "body": request.body.decode()}
    )


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        fake.route("GET", "/items", lambda _: Response.json({"items": [1, 2]}))
        fake.route("GET", "/report", lambda _: Response(200, b"a\tb\n1\t2\n"))
        fake.route("POST", "/token", _echo)
        fake.route(
            "GET",
            "/budget/{reset}",
            lambda r: Response.json(
                {},
                headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": r.path_params["reset"]},
            ),
        )
        yield fake


@pytest.fixture
def make_session(
    server: FakeServer, http_options: HttpOptions
) -> Iterator[Callable[..., ProviderSession]]:
    """Sessions against the fake (or `base_url`), with a bearer token; clients closed after."""
    clients: list[ProviderClient] = []

    def create(base_url: str | None = None, **changes: Any) -> ProviderSession:
        options = HttpOptions(**{**http_options.__dict__, **changes})
        client = ProviderClient(base_url or server.url, options=options)
        clients.append(client)
        return client.authorized(BearerAuth(TOKEN))

    yield create
    for client in clients:
        client.close()


def test_backoff_is_full_jitter_below_an_exponential_ceiling_capped() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=5.0)
    assert [policy.backoff(n, lambda: 1.0) for n in range(6)] == [0.5, 1, 2, 4, 5, 5]
    assert [policy.backoff(n, lambda: 0.5) for n in range(6)] == [0.25, 0.5, 1, 2, 2.5, 2.5]


def test_server_errors_are_retried_with_growing_jittered_delays(
    server: FakeServer, make_session: Callable[..., ProviderSession], sleep: RecordingSleep
) -> None:
    # given four 503s and a jitter source that draws 1.0, 0.5, 0.25, 1.0
    draws = iter([1.0, 0.5, 0.25, 1.0])
    server.fail_next(4, status=503)
    session = make_session(retry=RetryPolicy(attempts=5), random=lambda: next(draws))
    # when
    payload = session.get_json("/items")
    # then the fifth attempt succeeds after waits below 0.5, 1, 2, 4 s
    assert payload == {"items": [1, 2]}
    assert sleep.delays == [0.5, 0.5, 0.5, 4.0]
    assert len(server.requests_to("/items")) == 5


def test_server_error_then_success_returns_the_data(
    server: FakeServer, make_session: Callable[..., ProviderSession], sleep: RecordingSleep
) -> None:
    server.fail_next(1, status=500)
    assert make_session().get_json("/items") == {"items": [1, 2]}
    assert sleep.delays == [0.5]


def test_retry_after_seconds_is_honoured(
    server: FakeServer, make_session: Callable[..., ProviderSession], sleep: RecordingSleep
) -> None:
    server.rate_limit_next(1, retry_after=2)
    assert make_session().get_json("/items") == {"items": [1, 2]}
    assert sleep.delays == [2.0]


def test_retry_after_http_date_is_honoured(
    server: FakeServer, make_session: Callable[..., ProviderSession], sleep: RecordingSleep
) -> None:
    server.rate_limit_next(1, retry_after=formatdate(NOW + 3, usegmt=True))
    assert make_session().get_json("/items") == {"items": [1, 2]}
    assert sleep.delays == [3.0]


def test_rate_limit_headers_pace_a_429_without_retry_after(
    server: FakeServer, make_session: Callable[..., ProviderSession], sleep: RecordingSleep
) -> None:
    server.rate_limit_next(
        1, retry_after=None, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": "4"}
    )
    assert make_session().get_json("/items") == {"items": [1, 2]}
    assert sleep.delays == [4.0]


@pytest.mark.parametrize("reset", ["-5", "nan", "inf"])
def test_a_wait_no_clock_can_keep_falls_back_to_the_backoff(
    server: FakeServer,
    make_session: Callable[..., ProviderSession],
    sleep: RecordingSleep,
    reset: str,
) -> None:
    # time.sleep raises on a negative, NaN or infinite wait: a provider's is never trusted
    server.rate_limit_next(
        1, retry_after=None, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": reset}
    )
    assert make_session().get_json("/items") == {"items": [1, 2]}
    assert sleep.delays == [0.5]


def test_retry_after_beyond_the_cap_goes_back_to_the_task_at_once(
    server: FakeServer, make_session: Callable[..., ProviderSession], sleep: RecordingSleep
) -> None:
    server.rate_limit_next(1, retry_after=120)
    with pytest.raises(TransientError) as raised:
        make_session().get_json("/items")
    assert raised.value.retry_after == 120.0
    assert sleep.delays == []
    assert len(server.requests_to("/items")) == 1


def test_exhausted_retries_raise_transient_error_carrying_retry_after(
    server: FakeServer, make_session: Callable[..., ProviderSession], sleep: RecordingSleep
) -> None:
    server.rate_limit_next(3, retry_after=1)
    with pytest.raises(TransientError, match=r"GET /items: 429 Too Many Requests") as raised:
        make_session().get_json("/items")
    assert raised.value.retry_after == 1.0
    assert "after 3 attempts" in str(raised.value)
    assert sleep.delays == [1.0, 1.0]


def test_a_spent_budget_pauses_the_next_call_until_reset_capped(
    server: FakeServer, make_session: Callable[..., ProviderSession], sleep: RecordingSleep
) -> None:
    session = make_session()
    session.get_json("/budget/2")
    assert sleep.delays == []  # the last call of a sync never waits
    session.get_json(f"/budget/{int(NOW) + 100}")  # an epoch reset, 100 s away
    session.get_json("/items")
    assert sleep.delays == [2.0, 5.0]


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_raise_auth_failed_without_retry(
    status: int, server: FakeServer, make_session: Callable[..., ProviderSession]
) -> None:
    server.fail_next(1, status=status)
    with pytest.raises(AuthFailed, match=f"GET /items: {status}"):
        make_session().get_json("/items")
    assert len(server.requests) == 1


def test_a_revoked_token_raises_auth_failed(
    server: FakeServer, make_session: Callable[..., ProviderSession]
) -> None:
    server.revoke(TOKEN)
    with pytest.raises(AuthFailed):
        make_session().get_json("/items")


def test_other_client_errors_are_rejected_without_retry(
    server: FakeServer, make_session: Callable[..., ProviderSession]
) -> None:
    with pytest.raises(RequestRejected, match="GET /missing: 404") as raised:
        make_session().get_json("/missing")
    assert raised.value.status == 404
    assert len(server.requests) == 1


def test_sessions_with_their_own_hosts_share_one_pool_and_name_only_the_path(
    server: FakeServer, http_options: HttpOptions
) -> None:
    # given a client without a host of its own, serving two integrations' hosts
    server.route("GET", "/shop/items", lambda _: Response.json({"items": ["in a sub-folder"]}))
    with ProviderClient(options=http_options) as client:
        store = client.authorized(BearerAuth(TOKEN), base_url=server.url)
        sub_folder = client.authorized(BearerAuth(TOKEN), base_url=f"{server.url}/shop/")
        # when
        answers = [store.get_json("/items"), sub_folder.get_json("/items")]
        with pytest.raises(RequestRejected) as raised:
            store.get_json("/missing?api_key=secret", {"page": 2})
    # then each went to its own host and path, and the error names neither host nor query
    assert answers == [{"items": [1, 2]}, {"items": ["in a sub-folder"]}]
    assert [r.path for r in server.requests] == ["/items", "/shop/items", "/missing"]
    assert str(raised.value) == "GET /missing: 404 Not Found"


def test_get_json_with_headers_gives_the_body_its_headers_and_links(
    server: FakeServer, make_session: Callable[..., ProviderSession]
) -> None:
    link = '<https://shop.test/orders.json?page_info=abc>; rel="next"'
    headers = {"Link": link, "X-WP-TotalPages": "3"}
    server.route("GET", "/orders", lambda _: Response.json([{"id": 1}], headers=headers))
    body, received, links = make_session().get_json_with_headers("/orders")
    assert (body, received["x-wp-totalpages"]) == ([{"id": 1}], "3")
    assert links["next"]["url"] == "https://shop.test/orders.json?page_info=abc"


def test_invalid_json_raises_malformed_response_naming_the_endpoint(
    server: FakeServer, make_session: Callable[..., ProviderSession]
) -> None:
    server.malformed_next(1)
    with pytest.raises(MalformedResponse, match="GET /items: response body is not valid JSON"):
        make_session().get_json("/items")


def test_require_names_the_endpoint_and_the_key() -> None:
    with pytest.raises(MalformedResponse, match="GET /x: missing key 'data'"):
        require({}, "data", list, endpoint="GET /x")
    with pytest.raises(MalformedResponse, match="key 'has_more' should be a boolean, got a string"):
        require({"has_more": "yes"}, "has_more", bool, endpoint="GET /x")
    with pytest.raises(MalformedResponse, match="should be an integer, got a boolean"):
        require({"created": True}, "created", int, endpoint="GET /x")


def test_connection_refused_is_transient(
    make_session: Callable[..., ProviderSession], sleep: RecordingSleep
) -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientError, match="GET /items: ConnectError"):
        make_session(f"http://127.0.0.1:{port}").get_json("/items")
    assert len(sleep.delays) == 2


def test_a_timeout_is_transient(
    server: FakeServer, make_session: Callable[..., ProviderSession]
) -> None:
    server.latency(2.0)
    session = make_session(timeout=0.05, retry=RetryPolicy(attempts=2))
    with pytest.raises(TransientError, match="GET /items: ReadTimeout") as raised:
        session.get_json("/items")
    assert raised.value.retry_after is None


def test_bytes_forms_and_json_bodies_round_trip(
    make_session: Callable[..., ProviderSession],
) -> None:
    session = make_session()
    assert session.get_bytes("/report") == b"a\tb\n1\t2\n"
    assert session.post_form("/token", {"grant_type": "x"})["body"] == "grant_type=x"
    assert session.post_json("/token", {"a": 1})["body"] == '{"a":1}'


def test_error_messages_and_logs_never_contain_the_token(
    server: FakeServer,
    make_session: Callable[..., ProviderSession],
    caplog: pytest.LogCaptureFixture,
    json_logs: LogLines,
) -> None:
    # json_logs reads the production pipeline's output, which no logger cached by an
    # earlier test can bypass (structlog's capture_logs can be)
    session = make_session()
    server.fail_next(3, status=500)
    server.malformed_next(1)
    messages = []
    for _ in range(2):
        with pytest.raises((TransientError, MalformedResponse)) as raised:
            session.get_json("/items", {"api_key": TOKEN})
        messages.append(str(raised.value))
    server.revoke(TOKEN)
    with pytest.raises(AuthFailed) as auth:
        session.get_json("/items")
    messages.append(str(auth.value))
    logs = json_logs()
    assert [line["event"] for line in logs] == ["http.retry"] * 2  # the 500s' two retries
    captured = " ".join([*messages, repr(logs), caplog.text, repr(session)])
    assert TOKEN not in captured
    assert all(r.headers["authorization"] == "[redacted]" for r in server.requests)


def test_the_fake_serves_concurrent_requests_in_parallel(
    server: FakeServer, make_session: Callable[..., ProviderSession]
) -> None:
    # given 100 requests in flight at once, each answered after 200 ms; ten clients, since
    # one httpx pool slows down super-linearly with a hundred threads queued on it
    server.latency(0.2)
    sessions = [make_session(max_connections=10) for _ in range(10)]
    started = time.perf_counter()
    # when
    with ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(lambda n: sessions[n % 10].get_json("/items"), range(100)))
    # then they overlapped instead of queueing (sequentially: 20 s)
    assert answers == [{"items": [1, 2]}] * 100
    assert time.perf_counter() - started < 3.0


def test_every_request_of_a_paced_sync_spends_from_its_budget(
    make_session: Callable[..., ProviderSession], sleep: RecordingSleep
) -> None:
    # given a budget of 2 requests per second with a burst of 2, on a clock that stands still
    budget = LocalBudget(monotonic=lambda: 100.0)
    session = make_session()

    # when one sync makes four requests
    with paced(lambda: budget.reserve("stripe:acme", 2.0, 2)):
        for _ in range(4):
            session.get_json("/items")

    # then the burst goes out at once and the rest wait for their slots
    assert sleep.delays == [0.5, 1.0]


def test_a_budget_wait_longer_than_the_cap_goes_back_to_the_task(
    server: FakeServer, make_session: Callable[..., ProviderSession]
) -> None:
    with paced(lambda: 42.0), pytest.raises(TransientError) as raised:
        make_session().get_json("/items")
    assert raised.value.retry_after == 42.0
    assert server.requests_to("/items") == []


def test_requests_outside_a_paced_sync_are_not_throttled(
    make_session: Callable[..., ProviderSession], sleep: RecordingSleep
) -> None:
    with paced(lambda: 42.0):
        pass
    make_session().get_json("/items")
    assert sleep.delays == []
