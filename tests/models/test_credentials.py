"""Credentials at rest (SPEC §7): the sealed format, key rotation, and never leaking."""

from __future__ import annotations

import base64
import copy
import logging
import os
import pickle
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from models.credentials import (
    KEYS_ENV_VAR,
    Credentials,
    Keyring,
    RotationReport,
    rotate_all,
    verify_keyring,
)
from models.db import make_engine, make_sessionmaker
from models.errors import CredentialKeyError, DecryptionFailed, InvalidCredentials
from models.schema import Base, Environment, Integration

SECRET = "sk_live_TOPSECRET_4242"
FIELDS = {"api_key": SECRET, "account_id": "acct_SECRET_77"}
OLD_KEY = bytes(range(32))
NEW_KEY = bytes(range(100, 132))
STRANGER_KEY = bytes(range(200, 232))
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def key_texts(*keys: bytes) -> list[str]:
    """Every printable form of the keys, to assert none of them appears anywhere."""
    return [form for key in keys for form in (b64(key), base64.urlsafe_b64encode(key).decode())]


def assert_no_secrets(text: str, *keys: bytes) -> None:
    for secret in [*FIELDS.values(), *key_texts(*keys)]:
        assert secret not in text


# --- sealing and opening -----------------------------------------------------------------


def test_sealed_credentials_open_to_the_same_fields() -> None:
    keyring = Keyring([NEW_KEY])
    assert keyring.open(keyring.seal(FIELDS)) == Credentials(FIELDS)


def test_each_seal_uses_a_fresh_random_iv() -> None:
    keyring = Keyring([NEW_KEY])
    first, second = keyring.seal(FIELDS), keyring.seal(FIELDS)
    assert first != second
    assert base64.b64decode(first)[:12] != base64.b64decode(second)[:12]


def test_sealed_format_is_base64_of_iv_ciphertext_and_tag_that_plain_aesgcm_opens() -> None:
    # given
    plaintext = Credentials(FIELDS).to_json().encode()
    # when
    raw = base64.b64decode(Keyring([NEW_KEY]).seal(FIELDS), validate=True)
    # then
    assert len(raw) == 12 + len(plaintext) + 16
    assert AESGCM(NEW_KEY).decrypt(raw[:12], raw[12:], None) == plaintext


def test_value_sealed_by_another_system_with_plain_aesgcm_opens() -> None:
    iv = os.urandom(12)
    token = b64(iv + AESGCM(NEW_KEY).encrypt(iv, b'{"api_key":"sk_live_TOPSECRET_4242"}', None))
    assert Keyring([NEW_KEY]).open(token)["api_key"] == SECRET


def test_old_key_still_opens_after_rotation_and_reseal_moves_to_newest() -> None:
    # given a value sealed before the rotation
    old_token = Keyring([OLD_KEY]).seal(FIELDS)
    rotated = Keyring([NEW_KEY, OLD_KEY])
    # then
    assert rotated.open(old_token) == FIELDS
    assert rotated.needs_rotation(old_token)
    resealed = rotated.reseal(old_token)
    assert not rotated.needs_rotation(resealed)
    assert Keyring([NEW_KEY]).open(resealed) == FIELDS


def test_value_sealed_under_newest_key_needs_no_rotation() -> None:
    keyring = Keyring([NEW_KEY, OLD_KEY])
    assert not keyring.needs_rotation(keyring.seal(FIELDS))


def test_value_no_configured_key_opens_raises_decryption_failed() -> None:
    token = Keyring([STRANGER_KEY]).seal(FIELDS)
    with pytest.raises(DecryptionFailed, match="none of the 2 configured credential keys"):
        Keyring([NEW_KEY, OLD_KEY]).open(token)
    with pytest.raises(DecryptionFailed):
        Keyring([NEW_KEY]).reseal(token)


@pytest.mark.parametrize(
    "token",
    ["", "not base64 at all!", b64(b"too short for iv+tag"), "QUJD"],
    ids=["empty", "not-base64", "shorter-than-iv-and-tag", "three-bytes"],
)
def test_malformed_ciphertext_raises_decryption_failed(token: str) -> None:
    with pytest.raises(DecryptionFailed, match="ciphertext is malformed"):
        Keyring([NEW_KEY]).open(token)


def test_plaintext_that_is_not_an_object_of_strings_is_invalid_and_not_echoed() -> None:
    iv = os.urandom(12)
    token = b64(iv + AESGCM(NEW_KEY).encrypt(iv, SECRET.encode(), None))
    with pytest.raises(InvalidCredentials) as caught:
        Keyring([NEW_KEY]).open(token)
    assert_no_secrets("".join(traceback.format_exception(caught.value)), NEW_KEY)


# --- key configuration ---------------------------------------------------------------


def test_config_reads_labelled_and_unlabelled_keys_in_standard_or_urlsafe_base64() -> None:
    urlsafe_unpadded = base64.urlsafe_b64encode(OLD_KEY).decode().rstrip("=")
    keyring = Keyring.from_config(f" 2026-11:{b64(NEW_KEY)} , {urlsafe_unpadded},")
    assert keyring.labels == ("2026-11", None)
    assert keyring.open(Keyring([OLD_KEY]).seal(FIELDS)) == FIELDS
    assert not keyring.needs_rotation(Keyring([NEW_KEY]).seal(FIELDS))


def test_generated_key_is_a_valid_configuration() -> None:
    key = Keyring.generate_key()
    assert len(base64.b64decode(key)) == 32
    assert Keyring.from_config(key).open(Keyring.from_config(key).seal(FIELDS)) == FIELDS
    assert Keyring.generate_key() != key


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("not*base64*at*all", r"credential key #2 is not valid base64"),
        (b64(b"sixteen byte key"), r"credential key #2 decodes to 16 bytes"),
        (f"prod:{b64(OLD_KEY[:31])}", r"credential key #2 \('prod'\) decodes to 31 bytes"),
        (f"{b64(OLD_KEY)}:{b64(NEW_KEY)}", r"credential key #2 has an invalid label"),
        ("2026-11:", r"credential key #2 \('2026-11'\) decodes to 0 bytes"),
    ],
    ids=["bad-base64", "wrong-length", "labelled-wrong-length", "key-as-label", "label-only"],
)
def test_malformed_key_entry_is_named_by_position_never_by_value(entry: str, expected: str) -> None:
    with pytest.raises(CredentialKeyError, match=expected) as caught:
        Keyring.from_config(f"{b64(NEW_KEY)},{entry}")
    text = "".join(traceback.format_exception(caught.value))
    material = entry.partition(":")[2] if ":" in entry else entry
    assert not material or material not in text
    assert_no_secrets(text, NEW_KEY, OLD_KEY)


@pytest.mark.parametrize("config", ["", "  ", " , ,"])
def test_missing_key_config_says_which_variable_to_set_and_how_to_make_a_key(config: str) -> None:
    with pytest.raises(CredentialKeyError) as caught:
        Keyring.from_config(config)
    assert KEYS_ENV_VAR in str(caught.value)
    assert "syncworker credentials generate-key" in str(caught.value)


def test_keyring_needs_keys_of_exactly_32_bytes() -> None:
    with pytest.raises(CredentialKeyError, match="#2 is not 32 bytes"):
        Keyring([NEW_KEY, NEW_KEY[:16]])
    with pytest.raises(CredentialKeyError, match=KEYS_ENV_VAR):
        Keyring([])


# --- never leaking -------------------------------------------------------------------


def test_credentials_are_an_immutable_mapping_of_strings() -> None:
    creds = Credentials(FIELDS)
    assert creds["api_key"] == SECRET
    assert creds.get("missing") is None
    assert list(creds) == ["api_key", "account_id"]
    assert len(creds) == 2
    assert creds == Credentials(api_key=SECRET, account_id="acct_SECRET_77")
    assert creds == FIELDS
    with pytest.raises(AttributeError):
        creds._fields = {}
    with pytest.raises(TypeError):
        vars(creds)
    with pytest.raises(InvalidCredentials, match="'api_key' must be a string"):
        Credentials({"api_key": 42})  # type: ignore[dict-item]


def test_credentials_show_field_names_never_values() -> None:
    creds = Credentials(FIELDS)
    assert repr(creds) == "Credentials(api_key=***, account_id=***)"
    assert str(creds) == repr(creds)
    assert f"{creds}" == repr(creds)
    assert_no_secrets(repr([creds, {"c": creds}]))


def test_keyring_shows_key_count_and_labels_never_key_material() -> None:
    keyring = Keyring.from_config(f"2026-11:{b64(NEW_KEY)},{b64(OLD_KEY)}")
    assert repr(keyring) == "Keyring(keys=2, labels=['2026-11', None])"
    assert_no_secrets(str(keyring), NEW_KEY, OLD_KEY)


def test_secrets_never_reach_logs_or_error_messages(caplog: pytest.LogCaptureFixture) -> None:
    # given
    keyring = Keyring([NEW_KEY, OLD_KEY])
    creds = keyring.open(keyring.seal(FIELDS))
    with pytest.raises(DecryptionFailed) as caught:
        Keyring([STRANGER_KEY]).open(keyring.seal(FIELDS))
    # when
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("syncworker.test").error(
            "creds=%s keyring=%r error=%s", creds, keyring, caught.value, exc_info=caught.value
        )
    # then
    assert "api_key=***" in caplog.text
    assert_no_secrets(caplog.text, NEW_KEY, OLD_KEY, STRANGER_KEY)


def test_a_failed_statement_never_shows_its_parameters(engine: Engine) -> None:
    # given a statement whose parameters carry a sealed secret and synced customer data
    secret, email = "v1:sealed-secret-do-not-show", "customer@example.com"
    failing = text("SELECT * FROM no_such_table WHERE a = :secret AND b = :email")

    # when the database rejects it
    with pytest.raises(DBAPIError) as raised, engine.connect() as connection:
        connection.execute(failing, {"secret": secret, "email": email})

    # then neither the error nor its traceback shows them, only that they were hidden
    shown = "".join(traceback.format_exception(raised.value))
    assert secret not in shown and email not in shown
    assert "parameters hidden" in shown


def test_pickling_a_keyring_or_credentials_raises() -> None:
    keyring = Keyring([NEW_KEY])
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(keyring)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Credentials(FIELDS))
    assert copy.deepcopy(keyring) is keyring


# --- rotating and verifying the database -------------------------------------------


AddIntegration = Callable[..., uuid.UUID]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path}/credentials.db")
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        session.add(Environment(id="env-1", organization_id="org-1", name="production"))
    yield sessions
    engine.dispose()


@pytest.fixture
def add_integration(db: sessionmaker[Session]) -> AddIntegration:
    """Insert an integration with the given sealed credentials; returns its id."""

    def create(sealed: str | None, *, updated_at: datetime = T0) -> uuid.UUID:
        integration_id = uuid.uuid4()
        with db() as session, session.begin():
            session.add(
                Integration(
                    id=integration_id,
                    organization_id="org-1",
                    environment_id="env-1",
                    name="Acme",
                    identifier=f"acme-{integration_id.hex[:8]}",
                    provider="stripe",
                    status="active",
                    credentials_encrypted=sealed,
                    status_changed_at=T0,
                    created_at=T0,
                    updated_at=updated_at,
                )
            )
        return integration_id

    return create


def stored(db: sessionmaker[Session], integration_id: uuid.UUID) -> Integration:
    with db() as session:
        return session.get_one(Integration, integration_id)


def test_rotate_all_reseals_old_values_under_newest_key_and_reports_unopenable_ones(
    db: sessionmaker[Session], add_integration: AddIntegration
) -> None:
    # given two old, one current, one unopenable and one empty, across three batches
    old, new = Keyring([OLD_KEY]), Keyring([NEW_KEY])
    old_ids = [add_integration(old.seal(FIELDS)) for _ in range(2)]
    current_token = new.seal(FIELDS)
    current_id = add_integration(current_token)
    stranger_token = Keyring([STRANGER_KEY]).seal(FIELDS)
    stranger_id = add_integration(stranger_token)
    empty_id = add_integration(None)
    # when
    with db() as session, session.begin():
        report = rotate_all(session, Keyring([NEW_KEY, OLD_KEY]), batch_size=2)
    # then
    assert report == RotationReport(
        scanned=4, rotated=2, already_current=1, failed_ids=(stranger_id,)
    )
    for integration_id in old_ids:
        row = stored(db, integration_id)
        assert new.open(row.credentials_encrypted or "") == FIELDS
        assert row.updated_at == T0
    assert stored(db, current_id).credentials_encrypted == current_token
    assert stored(db, stranger_id).credentials_encrypted == stranger_token
    assert stored(db, empty_id).credentials_encrypted is None


def test_rotate_all_leaves_the_commit_to_the_caller(
    db: sessionmaker[Session], add_integration: AddIntegration
) -> None:
    old_token = Keyring([OLD_KEY]).seal(FIELDS)
    integration_id = add_integration(old_token)
    with db() as session:
        session.begin()
        assert rotate_all(session, Keyring([NEW_KEY, OLD_KEY])).rotated == 1
        session.rollback()
    assert stored(db, integration_id).credentials_encrypted == old_token


def test_verify_keyring_passes_on_a_database_without_credentials(
    db: sessionmaker[Session], add_integration: AddIntegration
) -> None:
    add_integration(None)
    with db() as session:
        verify_keyring(session, Keyring([NEW_KEY]))


def test_verify_keyring_passes_when_configured_keys_open_recent_values(
    db: sessionmaker[Session], add_integration: AddIntegration
) -> None:
    add_integration(Keyring([OLD_KEY]).seal(FIELDS))
    add_integration(Keyring([NEW_KEY]).seal(FIELDS))
    with db() as session:
        verify_keyring(session, Keyring([NEW_KEY, OLD_KEY]))


def test_verify_keyring_fails_at_start_when_keys_do_not_match_database(
    db: sessionmaker[Session], add_integration: AddIntegration
) -> None:
    # given a database sealed under a key that is no longer configured
    for _ in range(3):
        add_integration(Keyring([STRANGER_KEY]).seal(FIELDS))
    add_integration(Keyring([NEW_KEY]).seal(FIELDS))
    # when
    with db() as session, pytest.raises(DecryptionFailed) as caught:
        verify_keyring(session, Keyring([NEW_KEY]))
    # then
    message = str(caught.value)
    assert "3 of 4 sampled" in message
    assert "do not match the database" in message
    assert KEYS_ENV_VAR in message
    assert_no_secrets(message, NEW_KEY, STRANGER_KEY)


def test_verify_keyring_samples_only_the_most_recently_updated_values(
    db: sessionmaker[Session], add_integration: AddIntegration
) -> None:
    add_integration(Keyring([STRANGER_KEY]).seal(FIELDS), updated_at=T0 - timedelta(days=90))
    for _ in range(2):
        add_integration(Keyring([NEW_KEY]).seal(FIELDS))
    with db() as session:
        verify_keyring(session, Keyring([NEW_KEY]), sample=2)
        with pytest.raises(DecryptionFailed, match="1 of 3 sampled"):
            verify_keyring(session, Keyring([NEW_KEY]), sample=3)
