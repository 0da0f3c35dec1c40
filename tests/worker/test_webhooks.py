"""Our own webhooks' signatures fail closed: whatever a header holds, the answer is ours.

`verify_signature` is what a receiver calls on an untrusted request: it must answer
`SignatureError` (never OverflowError, ValueError or TypeError) for any header, and refuse
to verify with an empty secret at all.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.errors import InvalidValue
from worker.errors import SignatureError
from worker.webhooks import sign, verify_signature

SECRET = "whsec_test_0123456789"
BODY = b'{"id":"e1","type":"integration.status_changed"}'
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STAMP = int(NOW.timestamp())
GOOD = sign(SECRET, BODY, timestamp=STAMP)
DIGEST = GOOD.split("v1=", 1)[1]


def test_a_good_signature_verifies() -> None:
    verify_signature(SECRET, GOOD, BODY, now=NOW)
    verify_signature(SECRET, GOOD.encode(), BODY, now=NOW)  # a framework's raw header bytes


@pytest.mark.parametrize(
    "header",
    [
        f"t={'9' * 400},v1={DIGEST}",  # OverflowError in float arithmetic
        f"t={'9' * 5000},v1={DIGEST}",  # ValueError: more digits than int() converts
        f"t=\u0661\u0667\u0660\u0660,v1={DIGEST}",  # Arabic-Indic digits int() accepts
        f"t=\u00b2,v1={DIGEST}",  # a superscript isdigit() accepts and int() refuses
        f"t=+{STAMP},v1={DIGEST}",
        f"t={STAMP:_},v1={DIGEST}",  # int() reads 1_772_...
        f"t={STAMP},v1=\u00e9{DIGEST[1:]}",  # compare_digest raises TypeError on non-ASCII
        f"t={STAMP},v1={DIGEST.upper()}",
        f"t={STAMP},v1={DIGEST[:-1]}",
        f"t={STAMP}," + ",".join(f"v1={DIGEST[:-1]}0" for _ in range(2000)),  # far too long
        f"t={STAMP},v1={DIGEST}\x00",
        "t=,v1=",
        ",,,=,=",
        b"\xff\xfe",
        ["t=1", "v1=2"],
        12345,
    ],
)
def test_any_hostile_header_is_a_signature_error(header: Any) -> None:
    with pytest.raises(SignatureError):
        verify_signature(SECRET, header, BODY, now=NOW)


def test_a_body_that_is_not_bytes_is_a_signature_error() -> None:
    with pytest.raises(SignatureError, match="raw bytes"):
        verify_signature(SECRET, GOOD, BODY.decode(), now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", ["", None])
def test_an_empty_secret_is_a_configuration_error_even_for_a_matching_signature(
    secret: Any,
) -> None:
    # a signature anyone can make: HMAC with an empty key
    forged = f"t={STAMP},v1={_empty_key_digest()}"

    with pytest.raises(InvalidValue, match="signing secret is empty"):
        verify_signature(secret, forged, BODY, now=NOW)
    with pytest.raises(InvalidValue, match="signing secret is empty"):
        sign(secret, BODY, timestamp=STAMP)


def test_the_timestamp_window_still_holds() -> None:
    with pytest.raises(SignatureError, match="outside the tolerance"):
        verify_signature(SECRET, GOOD, BODY, now=NOW + timedelta(seconds=301))


def _empty_key_digest() -> str:
    return hmac.new(b"", f"{STAMP}.".encode() + BODY, hashlib.sha256).hexdigest()
