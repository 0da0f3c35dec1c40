"""Signing in to the page: operator keys only, a signed cookie that never holds the key,
sessions that end (expiry, revocation, sign-out), forms that need their CSRF token."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from itsdangerous import URLSafeSerializer

from api.app import create_api
from api.page import site
from api.page.session import COOKIE, SALT, SIGNED_IN_TTL_S
from models.api_keys import revoke_key
from models.credentials import Keyring
from tests.api.conftest import WORKSPACE, AddIntegration, Api
from tests.api.page.conftest import csrf_of, post_form, sign_in
from worker.operator import Operator
from worker.runtime import Runtime
from worker.settings import Settings


def test_a_visitor_is_sent_to_sign_in_and_back_where_they_were_headed(
    api: Api, add_integration: AddIntegration
) -> None:
    wanted = f"/ui/integrations/{add_integration()}?refresh=5"

    first = api.client.get(wanted, follow_redirects=False)
    form = api.client.get(first.headers["location"])
    signed = api.client.post(
        "/ui/sign-in",
        data={"key": api.keys["operator"], "csrf_token": csrf_of(form), "next": wanted},
        follow_redirects=False,
    )

    assert first.status_code == 303
    assert first.headers["location"].startswith("/ui/sign-in?next=")
    assert f'name="next" value="{wanted}"' in form.text
    assert signed.status_code == 303
    assert signed.headers["location"] == wanted
    assert api.client.get(wanted).status_code == 200


def test_the_session_cookie_names_the_key_id_and_never_holds_the_key(api: Api) -> None:
    key = api.keys["operator"]

    response = sign_in(api.client, key)

    cookie = api.client.cookies[COOKIE]
    payload = URLSafeSerializer("unused", salt=SALT).loads_unsafe(cookie)[1]
    key_id, secret = key.split("_")[1], key.split("_", 2)[2]
    assert response.status_code == 303
    assert payload["k"] == key_id
    assert secret not in json.dumps(payload) and secret not in cookie


def test_the_cookie_is_httponly_samesite_lax_scoped_to_the_page_and_expires(api: Api) -> None:
    response = sign_in(api.client, api.keys["operator"])

    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/ui;" in cookie
    assert f"Max-Age={SIGNED_IN_TTL_S}" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back


def test_the_cookie_is_secure_when_the_page_is_served_over_https(api: Api) -> None:
    client = TestClient(api.client.app, base_url="https://ops.example")

    response = sign_in(client, api.keys["operator"])

    assert response.status_code == 303
    assert "; Secure" in response.headers["set-cookie"]


def test_a_workspace_key_is_refused_with_403_and_stays_signed_out(api: Api) -> None:
    response = sign_in(api.client, api.keys[WORKSPACE])

    assert response.status_code == 403
    assert "workspace key" in response.text and "needs an operator key" in response.text
    assert api.client.get("/ui/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "key", ["nonsense", "swk_000000000000_" + "A" * 43, "<script>alert(1)</script>"]
)
def test_a_key_that_does_not_verify_is_refused_with_401(api: Api, key: str) -> None:
    response = sign_in(api.client, key)

    assert response.status_code == 401
    assert "that key is not valid or was revoked" in response.text
    assert "<script>alert(1)" not in response.text
    assert api.client.get("/ui/", follow_redirects=False).status_code == 303


def test_a_revoked_key_is_refused_at_sign_in(api: Api) -> None:
    key = api.keys["operator"]
    _revoke(api, key)

    assert sign_in(api.client, key).status_code == 401


def test_signing_in_without_the_forms_csrf_token_is_refused_with_403(api: Api) -> None:
    api.client.get("/ui/sign-in")

    response = api.client.post(
        "/ui/sign-in", data={"key": api.keys["operator"]}, follow_redirects=False
    )

    assert response.status_code == 403
    assert "CSRF token is missing or stale" in response.text
    assert api.client.get("/ui/", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_session_at_the_next_request(api: Api) -> None:
    sign_in(api.client, api.keys["operator"])
    assert api.client.get("/ui/").status_code == 200

    _revoke(api, api.keys["operator"])
    response = api.client.get("/ui/overview", follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/sign-in")
    assert "your key was revoked" in api.client.get(response.headers["location"]).text


def test_signing_out_ends_the_session(api: Api) -> None:
    sign_in(api.client, api.keys["operator"])

    response = post_form(api.client, "/ui/sign-out")

    assert response.status_code == 303
    assert response.headers["location"] == "/ui/sign-in"
    assert api.client.get("/ui/", follow_redirects=False).status_code == 303


def test_a_cookie_signed_with_another_secret_is_ignored(api: Api) -> None:
    forged = URLSafeSerializer("x" * 48, salt=SALT).dumps(
        {"c": "t", "e": 9e12, "k": api.keys["operator"].split("_")[1], "f": []}
    )
    api.client.cookies.set(COOKIE, str(forged), path="/ui")

    assert api.client.get("/ui/", follow_redirects=False).status_code == 303


def test_a_session_ends_a_working_day_after_sign_in(api: Api) -> None:
    # given: the page mounted with a wall clock the test moves
    now = [1_000_000.0]
    app = FastAPI()
    site.mount(app, api.runtime, api.operator, wall=lambda: now[0])
    client = TestClient(app)
    sign_in(client, api.keys["operator"])
    now[0] += SIGNED_IN_TTL_S - 1
    assert client.get("/ui/", follow_redirects=False).status_code == 200

    # when
    now[0] += timedelta(seconds=1).total_seconds()

    # then
    assert client.get("/ui/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/ui/", "/v1/integrations", "/ui\\evil"]
)
def test_after_sign_in_the_page_never_sends_anywhere_but_itself(api: Api, target: str) -> None:
    form = api.client.get("/ui/sign-in")

    response = api.client.post(
        "/ui/sign-in",
        data={"key": api.keys["operator"], "csrf_token": csrf_of(form), "next": target},
        follow_redirects=False,
    )

    assert response.headers["location"] == "/ui/"


def test_without_a_session_secret_a_deployment_with_its_own_broker_refuses_the_page(
    tmp_path: Path, api: Api
) -> None:
    settings = Settings.from_env(
        {
            "SYNCWORKER_DATA_DIR": str(tmp_path / "deployed"),
            "SYNCWORKER_BROKER_URL": "redis://127.0.0.1:1/0",
            "SYNCWORKER_CREDENTIAL_KEYS": f"t:{Keyring.generate_key()}",
        }
    )
    runtime = Runtime(settings)
    client = TestClient(create_api(runtime, Operator(runtime)))

    page = client.get("/ui/")
    v1 = client.get("/v1/integrations/x")

    assert page.status_code == 503
    assert page.text.count("\n") == 1
    assert "SYNCWORKER_API_SESSION_SECRET is not set" in page.text
    assert v1.status_code == 401  # the API goes on working
    assert not (tmp_path / "deployed").exists()  # no secret was made up for it


def test_the_home_path_leads_to_the_page(api: Api) -> None:
    response = api.client.get("/", follow_redirects=False)

    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"


def _revoke(api: Api, key: str) -> None:
    key_id = re.split("_", key)[1]
    with api.runtime.sessions() as session, session.begin():
        assert revoke_key(session, key_id, now=api.runtime.clock.now())
