"""Credentials' characters are checked at create: no UnicodeEncodeError ever reaches a header."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from models.errors import InvalidCredentials
from models.status import Provider, SyncOutcome
from tests.worker.connectors.conftest import RecordingSink
from worker.connectors.base import SyncContext, credential, run_sync
from worker.connectors.stripe import StripeConnector
from worker.connectors.woocommerce import WooCommerceConnector


@pytest.mark.parametrize(
    "value",
    ["sk_test_clé", "sk_test_\u200bkey", "sk_test_a\x00b", "sk_test_a\nb", "sk_test_a b", "ключ"],
)
def test_a_credential_with_a_character_a_header_cannot_carry_is_refused(value: str) -> None:
    with pytest.raises(InvalidCredentials) as refused:
        credential({"secret_key": value}, "secret_key", provider=Provider.STRIPE)

    message = str(refused.value)
    assert message.startswith("stripe credentials: secret_key must be printable ASCII")
    assert value not in message


def test_surrounding_spaces_and_key_files_are_left_to_their_connectors() -> None:
    assert credential({"k": " sk_test_x "}, "k", provider=Provider.STRIPE) == " sk_test_x "
    pem = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"
    assert credential({"k": pem}, "k", provider=Provider.STRIPE, header_safe=False) == pem


def test_a_non_ascii_woocommerce_secret_is_refused_at_create_naming_the_field() -> None:
    raw = {
        "store_url": "https://shop.example.com",
        "consumer_key": "ck_1",
        "consumer_secret": "cs_é",
    }
    with (
        WooCommerceConnector() as connector,
        pytest.raises(InvalidCredentials, match="consumer_secret"),
    ):
        connector.validate_credentials(raw)


def test_a_stored_non_ascii_key_ends_the_sync_auth_failed_not_with_a_traceback(
    make_stripe: Callable[..., StripeConnector], make_context: Callable[..., SyncContext]
) -> None:
    # given a key stored before validation checked characters
    ctx = make_context({"secret_key": "sk_test_ключ"})

    result = run_sync(make_stripe(), ctx, RecordingSink())

    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert "secret_key must be printable ASCII" in (result.error or "")
