"""Every sync ends, bounded: deadline, page budget, moving cursor, request deadline, size, depth.

The provider is an `httpx.MockTransport` (a real transport: the requests go through
the real client code), answering Stripe-shaped lists; time is a manual monotonic
clock the transport moves, never a real wait.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from models.status import SyncOutcome
from tests.worker.connectors.conftest import RecordingSink
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.bodies import MIB
from worker.connectors.errors import (
    RequestRejected,
    RequestTimedOut,
    ResponseTooDeep,
    ResponseTooLarge,
    TransientError,
)
from worker.connectors.http import HttpOptions, ProviderClient, RetryPolicy
from worker.connectors.limits import SyncLimits, bounded
from worker.connectors.responses import error_fields
from worker.connectors.stripe import StripeConnector
from worker.settings import Settings

KEY = {"secret_key": "sk_test_limits"}


@dataclass
class ManualMonotonic:
    """A monotonic clock that moves only when told."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def _page(first: int, has_more: bool = True) -> dict[str, Any]:
    data = [{"id": f"cus_{n:06d}", "created": 1_700_000_000 - n} for n in range(first, first + 2)]
    return {"object": "list", "data": data, "has_more": has_more}


def _stripe(handler: Callable[[httpx.Request], httpx.Response], **http: Any) -> StripeConnector:
    options = HttpOptions(
        transport=httpx.MockTransport(handler), sleep=lambda _: None, random=lambda: 1.0, **http
    )
    return StripeConnector(base_url="https://stripe.test", http=options)


def _context(make_context: Callable[..., SyncContext], limits: SyncLimits) -> SyncContext:
    return replace(make_context(KEY, filters={"objects": ["customers"]}), limits=limits)


def test_a_cursor_that_does_not_move_fails_the_stream_naming_it(
    make_context: Callable[..., SyncContext],
) -> None:
    # given a provider answering has_more with the same page (the same cursor) forever
    requests: list[httpx.Request] = []

    def same_page(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json=_page(1))

    # when a sync runs against it
    with _stripe(same_page) as connector:
        result = run_sync(connector, _context(make_context, SyncLimits()), RecordingSink())

    # then it stops at the first repeated page, failed, naming the stuck cursor
    assert result.outcome is SyncOutcome.FAILED
    assert "cursor did not move" in (result.error or "")
    assert len(requests) == 2


def test_a_sync_past_its_page_budget_stops_and_keeps_what_it_stored(
    make_context: Callable[..., SyncContext],
) -> None:
    # given a provider with a new cursor on every page, forever
    pages = iter(range(1, 10_000, 2))

    def endless(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_page(next(pages)))

    sink = RecordingSink()
    with _stripe(endless) as connector:
        result = run_sync(connector, _context(make_context, SyncLimits(max_pages=3)), sink)

    # then the sync stops after 3 requests: the 3 stored pages are kept, the limit named
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.records == 6 and len(sink.pages) == 3
    assert any("SYNCWORKER_SYNC_MAX_PAGES" in warning for warning in result.warnings)
    assert sink.cursors["customers"]["starting_after"] == "cus_000006"  # the next sync resumes


def test_a_sync_past_its_deadline_stops_with_what_it_stored(
    make_context: Callable[..., SyncContext],
) -> None:
    # given pages that each take 6 s of a 10 s deadline
    clock = ManualMonotonic()
    pages = iter(range(1, 10_000, 2))

    def slow(_: httpx.Request) -> httpx.Response:
        clock.now += 6
        return httpx.Response(200, json=_page(next(pages)))

    sink = RecordingSink()
    limits = SyncLimits(deadline_s=10, monotonic=clock)
    with _stripe(slow, monotonic=clock) as connector:
        result = run_sync(connector, _context(make_context, limits), sink)

    # then the third request is never sent: two pages kept, the deadline named
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert len(sink.pages) == 2
    assert any("SYNCWORKER_SYNC_DEADLINE" in warning for warning in result.warnings)


def test_a_sync_that_stored_nothing_by_its_deadline_fails_naming_it(
    make_context: Callable[..., SyncContext],
) -> None:
    clock = ManualMonotonic()

    def slow(_: httpx.Request) -> httpx.Response:
        clock.now += 11
        return httpx.Response(500, json={"error": {"type": "api_error"}})

    limits = SyncLimits(deadline_s=10, monotonic=clock)
    with _stripe(slow, monotonic=clock) as connector:
        result = run_sync(connector, _context(make_context, limits), RecordingSink())

    assert result.outcome is SyncOutcome.FAILED
    assert "deadline of 10 s (SYNCWORKER_SYNC_DEADLINE)" in (result.error or "")


class Trickle(httpx.SyncByteStream):
    """A body that never ends, one byte per 5 s of the manual clock."""

    def __init__(self, clock: ManualMonotonic) -> None:
        self.clock = clock
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        while True:
            self.clock.now += 5
            self.sent += 1
            yield b" "


class Trickler:
    """A provider answering every request with a new `Trickle`, which it keeps."""

    def __init__(self) -> None:
        self.clock = ManualMonotonic()
        self.streams: list[Trickle] = []

    def __call__(self, _: httpx.Request) -> httpx.Response:
        self.streams.append(Trickle(self.clock))
        return httpx.Response(200, stream=self.streams[-1])

    def sent(self) -> list[int]:
        return [stream.sent for stream in self.streams]


def test_a_trickling_body_ends_at_the_request_total_deadline() -> None:
    # given a body arriving one byte every 5 s, each read well within the read timeout
    trickle = Trickler()
    clock = trickle.clock
    options = HttpOptions(
        transport=httpx.MockTransport(trickle),
        retry=RetryPolicy(attempts=2),
        request_deadline=60,
        monotonic=clock,
        sleep=lambda _: None,
    )
    # when it is fetched
    with ProviderClient("https://slow.test", options=options) as client:
        api = client.authorized()
        with pytest.raises(TransientError, match="not complete within 60 s") as raised:
            api.get_json("/v1/customers")

    # then each attempt stops at the 60 s total deadline, and the give-up is transient
    assert isinstance(raised.value.__cause__, RequestTimedOut)
    assert trickle.sent() == [13, 13]


def test_a_request_deadline_is_clipped_to_what_is_left_of_the_sync() -> None:
    trickle = Trickler()
    clock = trickle.clock
    options = HttpOptions(
        transport=httpx.MockTransport(trickle), monotonic=clock, sleep=lambda _: None
    )
    with (
        ProviderClient("https://slow.test", options=options) as client,
        bounded(SyncLimits(deadline_s=20, monotonic=clock)),
        pytest.raises(Exception, match="SYNCWORKER_SYNC_DEADLINE"),
    ):
        client.authorized().get_json("/v1/customers")

    assert trickle.sent() == [5]


def _fetch(handler: Callable[[httpx.Request], httpx.Response], **options: Any) -> Any:
    """GET a JSON list from `handler` through the real client, reading Stripe-like errors."""
    http = HttpOptions(transport=httpx.MockTransport(handler), **options)
    detail = error_fields(("error", "code"))
    with ProviderClient("https://provider.test", options=http, error_detail=detail) as client:
        return client.authorized().get_json("/v1/customers")


class Chunks(httpx.SyncByteStream):
    """A body sent in chunks, counting how many were read."""

    def __init__(self, body: bytes, size: int = 64 * 1024) -> None:
        self.parts = [body[at : at + size] for at in range(0, len(body), size)]
        self.read = 0

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            self.read += 1
            yield part


def _bomb(decoded_mb: int) -> bytes:
    """A gzip body of about decoded_mb / 1000 MiB that inflates to `decoded_mb` MiB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * MIB
    return b"".join(packer.compress(block) for _ in range(decoded_mb)) + packer.flush()


def test_a_gzip_bomb_is_refused_at_the_decoded_cap_while_streaming() -> None:
    # given a ~200 KiB gzip body inflating to 200 MiB, and a 1 MiB cap
    body = Chunks(_bomb(200))

    def bomb(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=body)

    with pytest.raises(ResponseTooLarge, match="more than 1 MiB"):
        _fetch(bomb, max_response_bytes=MIB)

    # then it stopped in the first chunk of the compressed body, never inflating the rest
    assert len(body.parts) > 1 and body.read == 1


def test_a_body_within_the_cap_is_decoded_from_gzip() -> None:
    payload = gzip.compress(json.dumps({"data": [1, 2, 3]}).encode())

    def small(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=Chunks(payload, 7))

    assert _fetch(small, max_response_bytes=MIB) == {"data": [1, 2, 3]}


def test_a_plain_body_past_the_cap_is_refused() -> None:
    def large(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Chunks(b"[" + b"1," * MIB + b"1]"))

    with pytest.raises(ResponseTooLarge):
        _fetch(large, max_response_bytes=MIB)


@pytest.mark.parametrize("depth", [65, 100_000])
def test_deeply_nested_json_is_a_classified_error_not_a_recursion_error(depth: int) -> None:
    def deep(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"[" * depth + b"]" * depth)

    with pytest.raises(ResponseTooDeep, match="deeper than 64 levels"):
        _fetch(deep)


def test_a_deeply_nested_error_body_still_classifies_the_status() -> None:
    def deep(_: httpx.Request) -> httpx.Response:
        return httpx.Response(400, content=b"[" * 100_000 + b"]" * 100_000)

    with pytest.raises(RequestRejected, match="400 Bad Request"):
        _fetch(deep)


def test_a_sync_given_deep_json_fails_its_stream_with_a_reason(
    make_context: Callable[..., SyncContext],
) -> None:
    def deep(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"[" * 100_000 + b"]" * 100_000)

    with _stripe(deep) as connector:
        result = run_sync(connector, _context(make_context, SyncLimits()), RecordingSink())

    assert result.outcome is SyncOutcome.FAILED
    assert "nests deeper than 64 levels" in (result.error or "")


def test_the_sync_deadline_stays_below_the_task_time_limit() -> None:
    assert Settings.from_env({}).sync_limits.deadline_s == 240
    short = Settings.from_env({"SYNCWORKER_TASK_TIME_LIMIT": "100"})
    assert short.sync_limits.deadline_s == 80
    limits = Settings.from_env({"SYNCWORKER_SYNC_DEADLINE": "30", "SYNCWORKER_SYNC_MAX_PAGES": "7"})
    assert (limits.sync_limits.deadline_s, limits.sync_limits.max_pages) == (30, 7)
