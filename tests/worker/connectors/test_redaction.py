"""Provider error text is bounded, printable and free of keys before it is stored."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fakes.server import Response
from fakes.stripe import FakeStripe
from models.status import SyncOutcome
from tests.worker.connectors.conftest import RecordingSink
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.redaction import (
    MAX_DETAIL_CHARS,
    MAX_MESSAGE_CHARS,
    REDACTED,
    clean_detail,
    clean_message,
)
from worker.connectors.stripe import StripeConnector

KEY = "sk_live_" + "Zq9" * 10


@pytest.mark.parametrize(
    "code", ["invalid_request_error/resource_missing", "woocommerce_rest_authentication_error"]
)
def test_ordinary_error_codes_pass_unchanged(code: str) -> None:
    assert clean_detail(code) == code


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\x1b[2J\x1b]0;pwned\x07bad", "[2J]0;pwnedbad"),  # no ESC or BEL reaches a terminal
        ("nul\x00in\u202ecode", "nulincode"),  # NUL and a bidi override
        ("two\nlines", "two lines"),
        (f"Invalid API Key provided: {KEY}", f"Invalid API Key provided: {REDACTED}"),
        ("token a1b2c3d4e5f6a1b2c3d4e5f6a1b2", f"token {REDACTED}"),
        ("Bearer abc.def", REDACTED),
    ],
)
def test_details_lose_control_characters_and_keys(text: str, expected: str) -> None:
    assert clean_detail(text) == expected


def test_a_huge_detail_is_truncated() -> None:
    cleaned = clean_detail("x" * 1_000_000)
    assert len(cleaned) == MAX_DETAIL_CHARS and cleaned.endswith("…")
    assert len(clean_message("y" * 1_000_000)) == MAX_MESSAGE_CHARS


def test_only_a_bounded_prefix_of_a_huge_text_is_read() -> None:
    # a megabyte of NULs before the words: the cleaning never walks that far, and says so
    cleaned = clean_message("\x00" * 1_000_000 + "tail")
    assert cleaned == "…"
    assert clean_detail("\x00" * 1_000_000 + "tail") == "…"


def test_a_hostile_error_code_is_stored_bounded_clean_and_redacted(
    fake_stripe: FakeStripe,
    make_stripe: Callable[..., StripeConnector],
    make_context: Callable[..., SyncContext],
) -> None:
    # given a provider whose error code is a megabyte of escapes with the key echoed in it
    code = "\x1b[31m" + f"echo {KEY} " + "\x1b[0m" * 200_000
    fake_stripe.add_account("sk_test_hostile", customers=1)
    fake_stripe.route(
        "GET",
        "/v1/customers",
        lambda _: Response.json({"error": {"type": "invalid_request_error", "code": code}}, 400),
    )

    result = run_sync(
        make_stripe(),
        make_context({"secret_key": "sk_test_hostile"}, filters={"objects": ["customers"]}),
        RecordingSink(),
    )

    assert result.outcome is SyncOutcome.FAILED
    error = result.error or ""
    assert error.startswith("customers: GET /v1/customers: 400 Bad Request (invalid_request")
    assert len(error) <= MAX_MESSAGE_CHARS
    assert "\x1b" not in error and KEY not in error and REDACTED in error
