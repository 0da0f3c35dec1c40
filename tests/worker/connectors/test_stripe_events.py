"""Stripe syncs changes, not only creations: the Events API after the initial listing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from fakes.stripe import FakeStripe
from models.status import SyncOutcome
from tests.worker.connectors.conftest import RecordingSink
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.stripe import StripeConnector

KEY = "sk_test_events"
MakeContext = Callable[..., SyncContext]


@pytest.fixture
def account(fake_stripe: FakeStripe) -> FakeStripe:
    fake_stripe.add_account(KEY, customers=5, charges=3, subscriptions=2)
    return fake_stripe


def _sync(
    connector: StripeConnector,
    make_context: MakeContext,
    objects: list[str],
    cursors: dict[str, Any] | None = None,
    later: timedelta = timedelta(0),
) -> tuple[Any, RecordingSink]:
    ctx = make_context({"secret_key": KEY}, cursors=cursors, filters={"objects": objects})
    sink = RecordingSink()
    result = run_sync(connector, replace(ctx, now=ctx.now + later), sink)
    return result, sink


def test_an_updated_customer_arrives_through_its_events(
    account: FakeStripe, make_stripe: Callable[..., StripeConnector], make_context: MakeContext
) -> None:
    # given a listed account, then one customer's email changes
    connector = make_stripe()
    _, first = _sync(connector, make_context, ["customers"])
    now_s = 1_767_225_600
    account.update_object(KEY, "customers", "cus_000002", at=now_s + 60, email="new@example.com")

    # when the next sync runs
    result, second = _sync(
        connector, make_context, ["customers"], first.cursors, timedelta(minutes=5)
    )

    # then the change is stored, though the customer's created did not move
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert second.records[("customers", "cus_000002")]["email"] == "new@example.com"
    assert account.requests_to("/v1/customers")[-1].query.get("created[gte]") is None


def test_a_refunded_charge_arrives_through_its_events(
    account: FakeStripe, make_stripe: Callable[..., StripeConnector], make_context: MakeContext
) -> None:
    connector = make_stripe()
    _, first = _sync(connector, make_context, ["charges"])
    account.update_object(
        KEY, "charges", "ch_000001", at=1_767_225_700, event_type="charge.refunded", refunded=True
    )

    _, second = _sync(connector, make_context, ["charges"], first.cursors, timedelta(minutes=5))

    assert second.records[("charges", "ch_000001")]["refunded"] is True
    assert account.requests_to("/v1/events")[-1].query["type"] == "charge.*"


def test_only_the_newest_state_of_an_object_is_stored_from_one_walk(
    account: FakeStripe, make_stripe: Callable[..., StripeConnector], make_context: MakeContext
) -> None:
    connector = make_stripe(page_size=1)
    _, first = _sync(connector, make_context, ["customers"])
    account.update_object(KEY, "customers", "cus_000003", at=1_767_225_700, email="a@example.com")
    account.update_object(KEY, "customers", "cus_000003", at=1_767_225_800, email="b@example.com")

    _, second = _sync(connector, make_context, ["customers"], first.cursors, timedelta(hours=1))

    assert second.ids("customers").count("cus_000003") == 1
    assert second.records[("customers", "cus_000003")]["email"] == "b@example.com"


def test_a_wildcard_match_of_another_object_is_not_stored_in_the_stream(
    account: FakeStripe, make_stripe: Callable[..., StripeConnector], make_context: MakeContext
) -> None:
    # given a subscription change: customer.subscription.updated matches customer.*
    connector = make_stripe()
    _, first = _sync(connector, make_context, ["customers"])
    account.update_object(KEY, "subscriptions", "sub_000001", at=1_767_225_700, status="past_due")

    _, second = _sync(connector, make_context, ["customers"], first.cursors, timedelta(hours=1))

    assert all(external_id.startswith("cus_") for external_id in second.ids("customers"))


def test_a_deleted_customer_is_stored_marked_deleted(
    account: FakeStripe, make_stripe: Callable[..., StripeConnector], make_context: MakeContext
) -> None:
    connector = make_stripe()
    _, first = _sync(connector, make_context, ["customers"])
    account.update_object(
        KEY, "customers", "cus_000004", at=1_767_225_700, event_type="customer.deleted"
    )

    _, second = _sync(connector, make_context, ["customers"], first.cursors, timedelta(hours=1))

    assert second.records[("customers", "cus_000004")]["deleted"] is True


def test_events_older_than_the_retention_relist_the_stream_in_full(
    account: FakeStripe, make_stripe: Callable[..., StripeConnector], make_context: MakeContext
) -> None:
    # given a stream whose last change sync is 40 days old
    connector = make_stripe()
    _, first = _sync(connector, make_context, ["customers"])
    account.clear_log()

    result, second = _sync(
        connector, make_context, ["customers"], first.cursors, timedelta(days=40)
    )

    # then it is listed in full again, with a warning, and follows events afterwards
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert "past Stripe's 30-day event retention; listed again in full" in result.warnings[0]
    assert account.requests_to("/v1/events") == []
    assert len(set(second.ids("customers"))) == 5
    assert second.cursors["customers"]["events"]["checked"] == 1_767_225_600 + 40 * 86_400


def test_a_cursor_from_before_events_is_listed_in_full_once(
    account: FakeStripe, make_stripe: Callable[..., StripeConnector], make_context: MakeContext
) -> None:
    legacy = {"customers": {"created_gte": 1_700_000_300, "skip_ids": ["cus_000005"]}}

    _, sink = _sync(make_stripe(), make_context, ["customers"], legacy)

    assert "created[gte]" not in account.requests_to("/v1/customers")[0].query
    assert len(sink.ids("customers")) == 5
    assert "events" in sink.cursors["customers"]
