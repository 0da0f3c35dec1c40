"""Against the hostile provider (`fakes.hostile`), every sync ends, classified, bounded.

Real HTTP on loopback through the Stripe connector: each of the fake's modes must end
in an outcome with a one-line reason (or a `TransientError` for the task to retry),
never hang, never raise anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from fakes.hostile import HEALTHY_OBJECTS, MODES, FakeHostile
from models.status import SyncOutcome
from models.sync_runs import SyncResult
from tests.worker.connectors.conftest import RecordingSink
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.bodies import MIB
from worker.connectors.errors import TransientError
from worker.connectors.http import HttpOptions, RetryPolicy
from worker.connectors.limits import SyncLimits
from worker.connectors.stripe import StripeConnector


@pytest.fixture(scope="module")
def hostile() -> Iterator[FakeHostile]:
    with FakeHostile(trickle_s=0.05, large_mib=3) as fake:
        yield fake


def _sync(
    hostile: FakeHostile,
    make_context: Callable[..., SyncContext],
    mode: str,
    *,
    by_key: bool = False,
    limits: SyncLimits | None = None,
    sink: RecordingSink | None = None,
) -> SyncResult:
    options = HttpOptions(
        retry=RetryPolicy(attempts=1),
        request_deadline=0.3,
        max_response_bytes=2 * MIB,
        sleep=lambda _: None,
    )
    base_url = hostile.url if by_key else hostile.url_for(mode)
    key = hostile.key_for(mode) if by_key else "sk_test_any"
    ctx = make_context({"secret_key": key}, filters={"objects": ["customers"]})
    with StripeConnector(base_url=base_url, http=options) as connector:
        return run_sync(
            connector, replace(ctx, limits=limits or SyncLimits()), sink or RecordingSink()
        )


@pytest.mark.parametrize("by_key", [False, True])
def test_the_healthy_mode_syncs_its_objects_by_path_or_by_key(
    hostile: FakeHostile, make_context: Callable[..., SyncContext], by_key: bool
) -> None:
    result = _sync(hostile, make_context, "healthy", by_key=by_key)

    assert result.outcome is SyncOutcome.SUCCEEDED
    assert result.records == HEALTHY_OBJECTS


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("same_cursor", "pagination cursor did not move"),
        ("gzip_bomb", "decodes to more than 2 MiB"),
        ("large_body", "decodes to more than 2 MiB"),
        ("deep_json", "nests deeper than 64 levels"),
        ("garbage", "not valid JSON"),
    ],
)
def test_a_hostile_answer_fails_the_sync_with_a_reason_naming_it(
    hostile: FakeHostile, make_context: Callable[..., SyncContext], mode: str, reason: str
) -> None:
    result = _sync(hostile, make_context, mode)

    assert result.outcome is SyncOutcome.FAILED
    assert reason in (result.error or "")


def test_endless_pages_stop_at_the_page_budget_keeping_what_was_stored(
    hostile: FakeHostile, make_context: Callable[..., SyncContext]
) -> None:
    sink = RecordingSink()
    result = _sync(hostile, make_context, "endless", limits=SyncLimits(max_pages=4), sink=sink)

    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert len(sink.pages) == 4
    assert "SYNCWORKER_SYNC_MAX_PAGES" in result.warnings[-1]


def test_a_trickled_body_ends_at_the_request_deadline_as_a_transient_error(
    hostile: FakeHostile, make_context: Callable[..., SyncContext]
) -> None:
    with pytest.raises(TransientError, match=r"not complete within 0\.3 s"):
        _sync(hostile, make_context, "slow_body")


def test_every_mode_is_served() -> None:
    assert len(set(MODES)) == len(MODES) == 10


def test_a_key_forbidden_everywhere_is_auth_failed(
    hostile: FakeHostile, make_context: Callable[..., SyncContext]
) -> None:
    result = _sync(hostile, make_context, "forbidden")

    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert "403 Forbidden (permission_error/restricted_key_permission)" in (result.error or "")
