"""API keys: made once and shown once, stored as a digest, checked in constant time.

A key reads `swk_<id>_<secret>`: the id (12 hex characters) finds the row, the secret
(32 random bytes, base64url) proves possession. Only the SHA-256 digest of the secret
is stored: a 256-bit random secret cannot be guessed from its digest, so a slow
password hash would buy nothing and cost every request. Digests are compared with
`hmac.compare_digest`, and an unknown id still costs one comparison, so timing tells
nothing about which ids exist.

Roles: an `operator` key sees and acts on everything and may resolve QA; a
`workspace` key sees and acts on one workspace (environment) only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.errors import InvalidValue
from models.schema import ApiKey, Environment

PREFIX: Final = "swk"
ID_BYTES: Final = 6  # 12 hex characters: the public half, unique among a deployment's keys
SECRET_BYTES: Final = 32  # 256 bits: beyond guessing, so a plain digest is enough
_SHAPE: Final = re.compile(rf"{PREFIX}_([0-9a-f]{{{ID_BYTES * 2}}})_([A-Za-z0-9_-]{{43}})")
# An unknown id is compared against this, so it costs what a known one does.
_NO_DIGEST: Final = "0" * 64
MAX_LABEL_CHARS: Final = 200


class Role(StrEnum):
    """What a key may do."""

    OPERATOR = "operator"
    WORKSPACE = "workspace"


@dataclass(frozen=True)
class Principal:
    """Who a verified key speaks for: its id, role and, for a workspace key, the workspace."""

    key_id: str
    role: Role
    workspace_id: str | None

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR


@dataclass(frozen=True)
class IssuedKey:
    """A key just made: `key` is the whole key, shown once and never stored."""

    principal: Principal
    key: str = ""

    def __repr__(self) -> str:
        return f"IssuedKey(principal={self.principal!r}, key=***)"


def create_key(
    session: Session,
    *,
    role: Role,
    workspace_id: str | None = None,
    label: str | None = None,
    now: datetime,
) -> IssuedKey:
    """Make a key; a workspace key names an existing workspace, an operator key none."""
    if (role is Role.WORKSPACE) != (workspace_id is not None):
        raise InvalidValue("a workspace key names one workspace; an operator key names none")
    if workspace_id is not None and session.get(Environment, workspace_id) is None:
        raise InvalidValue(f"unknown workspace {workspace_id!r}")
    if label is not None and (len(label) > MAX_LABEL_CHARS or not label.isprintable()):
        raise InvalidValue(f"a key's label is printable text of at most {MAX_LABEL_CHARS}")
    key_id = secrets.token_hex(ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    session.add(
        ApiKey(
            id=key_id,
            secret_digest=digest(secret),
            role=role.value,
            workspace_id=workspace_id,
            label=label,
            created_at=now,
        )
    )
    return IssuedKey(Principal(key_id, role, workspace_id), f"{PREFIX}_{key_id}_{secret}")


def verify_key(session: Session, presented: str) -> Principal | None:
    """Who a presented key speaks for, or None: malformed, unknown or revoked alike."""
    shape = _SHAPE.fullmatch(presented)
    if shape is None:
        return None
    key_id, secret = shape.groups()
    row = session.get(ApiKey, key_id)
    stored = row.secret_digest if row is not None else _NO_DIGEST
    matches = hmac.compare_digest(digest(secret), stored)
    if row is None or not matches or row.revoked_at is not None:
        return None
    return Principal(row.id, Role(row.role), row.workspace_id)


def live_principal(session: Session, key_id: str) -> Principal | None:
    """Who a key speaks for while it stays unrevoked, by its id alone (for a signed session
    that remembers the key's id, never the key)."""
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    return Principal(row.id, Role(row.role), row.workspace_id)


def revoke_key(session: Session, key_id: str, *, now: datetime) -> bool:
    """Revoke a key from now on; False when there is no such key or it was revoked already."""
    row = session.get(ApiKey, key_id, with_for_update=True)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now
    return True


def list_keys(session: Session) -> Sequence[ApiKey]:
    """Every key, newest first (digests included: the caller shows only the public part)."""
    return session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)).all()


def digest(secret: str) -> str:
    """The stored form of a key's secret (or of a whole presented key): its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()
