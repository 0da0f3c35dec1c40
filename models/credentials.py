"""Sealing integration credentials at rest: AES-256-GCM under a keyring (SPEC §7).

A sealed value is base64(iv + ciphertext + tag): standard base64, a random 96-bit IV
per seal, the 16-byte GCM tag at the end, no associated data, the plaintext a JSON
object of strings. That is what other systems read in seed 003's
`credentialsEncrypted`, so they can open it with any AES-GCM implementation.

Several keys may be configured, newest first: the newest seals, every key opens,
and `rotate_all` re-seals old values under the newest. Neither a key nor a
credential value ever appears in a repr, a message or a traceback.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload

from models.errors import CredentialKeyError, DecryptionFailed, InvalidCredentials, InvalidValue
from models.schema import Integration

KEYS_ENV_VAR = "SYNCWORKER_CREDENTIAL_KEYS"
KEY_BYTES = 32  # AES-256
IV_BYTES = 12  # the 96-bit IV GCM is designed for
TAG_BYTES = 16  # the full GCM tag, appended to the ciphertext
# Labels are operators' bookkeeping and are printed; capping them below the 43 characters
# of a base64 key means a key pasted on the wrong side of the colon is never echoed.
_LABEL = re.compile(r"[A-Za-z0-9._-]{1,32}")
_MISSING_KEYS = (
    f"no credential keys configured: set {KEYS_ENV_VAR} to a comma-separated list of "
    "base64 keys, newest first (generate one with `syncworker credentials generate-key`)"
)


class _Unpicklable:
    """A holder of secrets: immutable, so copies are itself, and never pickled into a message."""

    __slots__ = ()

    def __reduce__(self) -> NoReturn:
        name = type(self).__name__
        raise TypeError(f"a {name} holds secrets and cannot be pickled; pass ids, not a {name}")

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self


class Credentials(_Unpicklable, Mapping[str, str]):
    """The decrypted fields of one integration's credentials; shows names, never values."""

    __slots__ = ("_fields",)
    _fields: dict[str, str]

    def __init__(self, fields: Mapping[str, str] | None = None, /, **more: str) -> None:
        merged: dict[Any, Any] = {**(fields or {}), **more}
        for name, value in merged.items():
            if not isinstance(name, str):
                raise InvalidCredentials("credential field names must be strings")
            if not isinstance(value, str):
                raise InvalidCredentials(f"credential field {name!r} must be a string")
        object.__setattr__(self, "_fields", merged)

    @classmethod
    def from_json(cls, text: str | bytes) -> Credentials:
        """Parse the plaintext of a sealed value; the text is never part of the error."""
        try:
            data = json.loads(text)
        except ValueError:
            data = None  # raised below, outside this block, so no error keeps the text
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise InvalidCredentials("decrypted credentials are not a JSON object of strings")
        return cls(data)

    def to_json(self) -> str:
        """The JSON text that is sealed: a compact object of the fields."""
        return json.dumps(self._fields, separators=(",", ":"))

    def __getitem__(self, name: str) -> str:
        return self._fields[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Credentials({', '.join(f'{name}=***' for name in self._fields)})"

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Credentials are immutable")


class Keyring(_Unpicklable):
    """The configured AES-256 keys, newest first: the newest seals, any of them opens."""

    __slots__ = ("_ciphers", "_labels")

    def __init__(self, keys: Sequence[bytes], *, labels: Sequence[str | None] = ()) -> None:
        if not keys:
            raise CredentialKeyError(_MISSING_KEYS)
        names = tuple(labels) or (None,) * len(keys)
        for position, (key, label) in enumerate(zip(keys, names, strict=True), start=1):
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise CredentialKeyError(
                    f"{_which(position, label)} is not {KEY_BYTES} bytes, as AES-256 needs"
                )
        self._ciphers = tuple(AESGCM(key) for key in keys)
        self._labels = names

    @classmethod
    def from_config(cls, value: str) -> Keyring:
        """Parse `label:base64key, base64key, ...` (newest first) as set in the environment."""
        keys: list[bytes] = []
        labels: list[str | None] = []
        for position, entry in enumerate(value.split(","), start=1):
            if entry.strip():
                label, key = _parse_entry(position, entry.strip())
                labels.append(label)
                keys.append(key)
        if not keys:
            raise CredentialKeyError(_MISSING_KEYS)
        return cls(keys, labels=labels)

    @staticmethod
    def generate_key() -> str:
        """A new random key, standard base64, ready for the key configuration."""
        return base64.b64encode(AESGCM.generate_key(bit_length=KEY_BYTES * 8)).decode("ascii")

    @property
    def labels(self) -> tuple[str | None, ...]:
        """The keys' labels, newest first; None for an unlabelled key."""
        return self._labels

    def __len__(self) -> int:
        return len(self._ciphers)

    def seal(self, creds: Mapping[str, str]) -> str:
        """Encrypt credentials under the newest key, with a fresh random IV."""
        return self._seal_bytes(Credentials(creds).to_json().encode("utf-8"))

    def open(self, token: str) -> Credentials:
        """Decrypt a sealed value, trying the newest key first, then the older ones."""
        return Credentials.from_json(self._unseal(token))

    def opens(self, token: str) -> bool:
        """Whether some configured key opens `token`."""
        try:
            self._unseal(token)
        except DecryptionFailed:
            return False
        return True

    def needs_rotation(self, token: str) -> bool:
        """Whether the newest key does not open `token` (also true when no key does)."""
        try:
            iv, body = _split(token)
        except DecryptionFailed:
            return True
        return _decrypt(self._ciphers[0], iv, body) is None

    def reseal(self, token: str) -> str:
        """Re-encrypt a sealed value under the newest key; the plaintext is kept byte for byte."""
        return self._seal_bytes(self._unseal(token))

    def _seal_bytes(self, plaintext: bytes) -> str:
        iv = os.urandom(IV_BYTES)
        sealed = iv + self._ciphers[0].encrypt(iv, plaintext, None)
        return base64.b64encode(sealed).decode("ascii")

    def _unseal(self, token: str) -> bytes:
        iv, body = _split(token)
        for cipher in self._ciphers:
            plaintext = _decrypt(cipher, iv, body)
            if plaintext is not None:
                return plaintext
        count = len(self._ciphers)
        raise DecryptionFailed(
            f"none of the {count} configured credential key{'s' * (count != 1)} opens this "
            f"ciphertext; check that {KEYS_ENV_VAR} includes the key it was sealed with"
        )

    def __repr__(self) -> str:
        return f"Keyring(keys={len(self._ciphers)}, labels={list(self._labels)!r})"


def _which(position: int, label: str | None) -> str:
    return f"credential key #{position}" + (f" ({label!r})" if label else "")


def _parse_entry(position: int, entry: str) -> tuple[str | None, bytes]:
    """Split one configured entry into its label and key; errors name the position only."""
    label: str | None = None
    material = entry
    if ":" in entry:  # base64 has no colon, so the first one ends the label
        raw_label, _, material = entry.partition(":")
        if not _LABEL.fullmatch(raw_label.strip()):
            raise CredentialKeyError(
                f"credential key #{position} has an invalid label "
                "(use up to 32 letters, digits, '.', '_' or '-')"
            )
        label = raw_label.strip()
    key = _b64decode(material.strip().replace("-", "+").replace("_", "/"), pad=True)
    if key is None:
        raise CredentialKeyError(f"{_which(position, label)} is not valid base64")
    if len(key) != KEY_BYTES:
        raise CredentialKeyError(
            f"{_which(position, label)} decodes to {len(key)} bytes; AES-256 needs {KEY_BYTES}"
        )
    return label, key


def _b64decode(text: str, *, pad: bool = False) -> bytes | None:
    """Decode standard base64, or None; the error is dropped so no traceback holds input."""
    if pad:
        text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _split(token: str) -> tuple[bytes, bytes]:
    raw = _b64decode(token)
    if raw is None or len(raw) < IV_BYTES + TAG_BYTES:
        raise DecryptionFailed("ciphertext is malformed: not base64 of an IV, ciphertext and tag")
    return raw[:IV_BYTES], raw[IV_BYTES:]


def _decrypt(cipher: AESGCM, iv: bytes, body: bytes) -> bytes | None:
    try:
        return cipher.decrypt(iv, body, None)
    except InvalidTag:
        return None


@dataclass(frozen=True)
class RotationReport:
    """What `rotate_all` did: rows scanned, re-sealed, already current, and unopenable."""

    scanned: int
    rotated: int
    already_current: int
    failed_ids: tuple[uuid.UUID, ...]


def rotate_all(session: Session, keyring: Keyring, *, batch_size: int = 500) -> RotationReport:
    """Re-seal every stored credential under the newest key, batch by batch, in id order.

    Rows are locked as they are read and flushed per batch; nothing is committed, so the
    caller's transaction decides. Rotation is idempotent: an interrupted run is rerun.
    Rows no key opens are reported in `failed_ids` and left as they are. `updated_at` is
    not touched: the credentials are the same, only their envelope changed.
    """
    if batch_size < 1:
        raise InvalidValue("batch_size must be at least 1")
    rotated = current = scanned = 0
    failed: list[uuid.UUID] = []
    after: uuid.UUID | None = None
    while batch := _next_batch(session, after, batch_size):
        for integration in batch:
            token = integration.credentials_encrypted or ""
            if not keyring.needs_rotation(token):
                current += 1
                continue
            try:
                integration.credentials_encrypted = keyring.reseal(token)
            except DecryptionFailed:
                failed.append(integration.id)
            else:
                rotated += 1
        scanned += len(batch)
        after = batch[-1].id
        session.flush()
    return RotationReport(scanned, rotated, current, tuple(failed))


def _next_batch(session: Session, after: uuid.UUID | None, size: int) -> Sequence[Integration]:
    # Keyset pagination: each batch starts after the last id seen, so the cost of a batch
    # does not grow with the table as OFFSET would.
    stmt = (
        select(Integration)
        .options(lazyload(Integration.environment))
        .where(Integration.credentials_encrypted.is_not(None))
        .order_by(Integration.id)
        .limit(size)
        .with_for_update(of=Integration)
    )
    if after is not None:
        stmt = stmt.where(Integration.id > after)
    return session.scalars(stmt).all()


def verify_keyring(session: Session, keyring: Keyring, *, sample: int = 20) -> None:
    """The start-up check: fail now if the keys cannot open recently updated credentials.

    Raises DecryptionFailed when any of the `sample` most recently updated ciphertexts is
    opened by no configured key; a database without credentials passes.
    """
    if sample < 1:
        raise InvalidValue("sample must be at least 1")
    stmt = (
        select(Integration.credentials_encrypted)
        .where(Integration.credentials_encrypted.is_not(None))
        .order_by(Integration.updated_at.desc(), Integration.id)
        .limit(sample)
    )
    tokens = session.scalars(stmt).all()
    unopened = sum(1 for token in tokens if token is not None and not keyring.opens(token))
    if unopened:
        raise DecryptionFailed(
            f"{unopened} of {len(tokens)} sampled credential ciphertexts are opened by none of "
            f"the {len(keyring)} configured keys: the keys configured do not match the "
            f"database; check {KEYS_ENV_VAR}"
        )
