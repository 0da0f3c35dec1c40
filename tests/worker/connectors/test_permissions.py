"""A 403 on one stream is a warning naming it; only a key allowed nowhere is auth_failed."""

from __future__ import annotations

from collections.abc import Callable

from fakes.stripe import FakeStripe
from models.status import SyncOutcome
from tests.worker.connectors.conftest import RecordingSink
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.stripe import STREAMS, StripeConnector

KEY = "rk_test_restricted"


def test_a_403_on_one_stream_is_a_warning_naming_the_missing_permission(
    fake_stripe: FakeStripe,
    make_stripe: Callable[..., StripeConnector],
    make_context: Callable[..., SyncContext],
) -> None:
    # given a restricted key that may read everything but charges
    fake_stripe.add_account(KEY, customers=3, subscriptions=2, invoices=2, charges=4)
    fake_stripe.fail_next(1, status=403, path="/v1/charges")
    sink = RecordingSink()

    # when it syncs
    result = run_sync(make_stripe(), make_context({"secret_key": KEY}), sink)

    # then the other streams are stored and the warning names the stream and the 403
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.records == 7
    (warning,) = result.warnings
    assert warning.startswith("charges: GET /v1/charges: 403 Forbidden")
    assert "lacks this permission" in warning


def test_a_key_denied_on_every_stream_is_auth_failed(
    fake_stripe: FakeStripe,
    make_stripe: Callable[..., StripeConnector],
    make_context: Callable[..., SyncContext],
) -> None:
    fake_stripe.add_account(KEY, customers=3)
    fake_stripe.fail_next(len(STREAMS), status=403)

    result = run_sync(make_stripe(), make_context({"secret_key": KEY}), RecordingSink())

    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert result.error is not None and result.error.count("403 Forbidden") == len(STREAMS)


def test_a_401_is_still_auth_failed_at_once(
    fake_stripe: FakeStripe,
    make_stripe: Callable[..., StripeConnector],
    make_context: Callable[..., SyncContext],
) -> None:
    fake_stripe.add_account(KEY, customers=3)
    fake_stripe.revoke(KEY)

    result = run_sync(make_stripe(), make_context({"secret_key": KEY}), RecordingSink())

    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert len(fake_stripe.requests) == 1
