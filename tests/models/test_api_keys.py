"""API keys: shown once, stored as a digest, verified only whole and unrevoked."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.api_keys import (
    Principal,
    Role,
    create_key,
    list_keys,
    live_principal,
    revoke_key,
    verify_key,
)
from models.clock import ManualClock
from models.errors import InvalidValue
from models.integrations import ensure_environment
from models.schema import ApiKey

Sessions = sessionmaker[Session]


@pytest.fixture
def workspace(sessions: Sessions) -> str:
    with sessions() as session, session.begin():
        ensure_environment(session, "ws-1", organization_id="org", name="ws", kind="production")
    return "ws-1"


def test_a_key_is_shown_once_and_only_its_digest_is_stored(
    sessions: Sessions, clock: ManualClock, workspace: str
) -> None:
    with sessions() as session, session.begin():
        issued = create_key(session, role=Role.WORKSPACE, workspace_id=workspace, now=clock.now())

    secret = issued.key.split("_", 2)[2]
    with sessions() as session:
        stored = session.scalars(select(ApiKey)).one()
        assert secret not in repr(stored.__dict__)
        assert verify_key(session, issued.key) == Principal(
            issued.principal.key_id, Role.WORKSPACE, workspace
        )
    assert issued.key not in repr(issued)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),  # the secret is wrong
        lambda key: key.replace("swk_", "swx_"),
        lambda key: key[:-5],
        lambda key: "",
        lambda key: key + "\x00",
        lambda key: "swk_000000000000_" + key.split("_", 2)[2],  # an unknown id
    ],
)
def test_anything_but_the_whole_key_verifies_as_nobody(
    sessions: Sessions, clock: ManualClock, mangle: object
) -> None:
    with sessions() as session, session.begin():
        issued = create_key(session, role=Role.OPERATOR, now=clock.now())

    with sessions() as session:
        assert verify_key(session, mangle(issued.key)) is None  # type: ignore[operator]


def test_a_revoked_key_verifies_as_nobody(sessions: Sessions, clock: ManualClock) -> None:
    with sessions() as session, session.begin():
        issued = create_key(session, role=Role.OPERATOR, label="ci", now=clock.now())
    with sessions() as session, session.begin():
        assert revoke_key(session, issued.principal.key_id, now=clock.now())
        assert not revoke_key(session, issued.principal.key_id, now=clock.now())

    with sessions() as session:
        assert verify_key(session, issued.key) is None
        assert [k.revoked_at for k in list_keys(session)] == [clock.now()]


@pytest.mark.parametrize(
    ("role", "workspace_id", "message"),
    [
        (Role.WORKSPACE, None, "a workspace key names one workspace"),
        (Role.OPERATOR, "ws-1", "an operator key names none"),
        (Role.WORKSPACE, "ws-missing", "unknown workspace 'ws-missing'"),
    ],
)
def test_a_key_must_name_its_workspace_exactly_when_it_is_a_workspace_key(
    sessions: Sessions,
    clock: ManualClock,
    workspace: str,
    *,
    role: Role,
    workspace_id: str | None,
    message: str,
) -> None:
    with sessions() as session, pytest.raises(InvalidValue, match=message):
        create_key(session, role=role, workspace_id=workspace_id, now=clock.now())


def test_a_key_id_names_its_principal_only_while_the_key_is_unrevoked(
    sessions: Sessions, clock: ManualClock
) -> None:
    with sessions() as session, session.begin():
        issued = create_key(session, role=Role.OPERATOR, now=clock.now())
    key_id = issued.principal.key_id

    with sessions() as session:
        assert live_principal(session, key_id) == issued.principal
        assert live_principal(session, "000000000000") is None
    with sessions() as session, session.begin():
        revoke_key(session, key_id, now=clock.now())
    with sessions() as session:
        assert live_principal(session, key_id) is None
