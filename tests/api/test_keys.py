"""The verified-key cache: one query per read, and a revoked key stops within the TTL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event

from models.api_keys import revoke_key
from models.clock import ManualClock
from tests.api.conftest import WORKSPACE, AddIntegration, Api


def revoke(api: Api, key: str) -> None:
    with api.runtime.sessions() as session, session.begin():
        assert revoke_key(session, key.split("_")[1], now=api.runtime.clock.now())


def test_a_revoked_key_is_refused_once_the_ttl_has_passed(
    api: Api, add_integration: AddIntegration, clock: ManualClock
) -> None:
    integration_id = add_integration()
    path, headers = f"/v1/integrations/{integration_id}", api.headers(WORKSPACE)
    ttl = timedelta(seconds=api.runtime.settings.api_key_cache_ttl_s)
    assert api.client.get(path, headers=headers).status_code == 200

    revoke(api, api.keys[WORKSPACE])
    clock.advance(ttl - timedelta(milliseconds=1))
    within = api.client.get(path, headers=headers)
    clock.advance(timedelta(milliseconds=1))
    after = api.client.get(path, headers=headers)

    assert within.status_code == 200
    assert after.status_code == 401
    assert after.json()["message"] == "the API key is not valid or was revoked"


def test_a_cached_key_costs_no_query_and_a_wrong_secret_is_never_served_from_it(
    api: Api, add_integration: AddIntegration
) -> None:
    integration_id = add_integration()
    path, headers = f"/v1/integrations/{integration_id}", api.headers(WORKSPACE)
    api.client.get(path, headers=headers)
    statements: list[str] = []
    engine = api.runtime.engine

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        api.client.get(path, headers=headers)
        cached = list(statements)
        forged = api.keys[WORKSPACE][:-4] + "AAAA"
        refused = api.client.get(path, headers={"Authorization": f"Bearer {forged}"})
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert not any("api_keys" in statement for statement in cached)
    assert len([s for s in cached if s.startswith("SELECT")]) == 1  # the integration only
    assert refused.status_code == 401
