"""A credential sent to the API never comes back: not in any answer, error or log line."""

from __future__ import annotations

import json

import pytest
from httpx2 import Response

from tests.api.conftest import OTHER_WORKSPACE, WORKSPACE, AddIntegration, Api
from worker.logs import configure_logging

SECRET = "sk_test_NeverInAnyAnswer9f3e1"
# The same secret where validation refuses it: wrong prefix, unknown field, wrong type.
HOSTILE_CREDENTIALS: list[object] = [
    {"secret_key": SECRET},
    {"secret_key": "xx" + SECRET},
    {"secret_key": SECRET, "password": SECRET},
    {"secret_key": [SECRET]},
    SECRET,
    {"secret_key": SECRET * 2000},
]


def requests_carrying_the_secret(api: Api, mine: str, theirs: str) -> list[Response]:
    headers = api.headers(WORKSPACE)
    answers = []
    for number, credentials in enumerate(HOSTILE_CREDENTIALS):
        body = {
            "name": "Acme",
            "identifier": f"acme-{number}",
            "provider": "stripe",
            "credentials": credentials,
        }
        answers.append(api.client.post("/v1/integrations", json=body, headers=headers))
        for target in (mine, theirs, "not-an-id"):
            answers.append(
                api.client.put(
                    f"/v1/integrations/{target}/credentials",
                    json={"credentials": credentials},
                    headers=headers,
                )
            )
    malformed = '{"credentials": {"secret_key": "' + SECRET + '"'
    answers.append(
        api.client.put(
            f"/v1/integrations/{mine}/credentials",
            content=malformed,
            headers=headers | {"Content-Type": "application/json"},
        )
    )
    answers.append(
        api.client.put(
            f"/v1/integrations/{mine}/credentials",
            json={"credentials": {"secret_key": SECRET}},
            headers={"Authorization": f"Bearer {SECRET}"},
        )
    )
    return answers


def test_a_credential_sent_in_a_request_appears_in_no_response_or_log(
    api: Api, add_integration: AddIntegration, capsys: pytest.CaptureFixture[str]
) -> None:
    # given JSON logs at debug, as production writes them
    configure_logging("json", "DEBUG")
    mine, theirs = add_integration(), add_integration(OTHER_WORKSPACE)

    # when the secret is sent every way a client can send it, valid or not
    answers = requests_carrying_the_secret(api, mine, theirs)
    views = [
        api.client.get(f"/v1/integrations/{mine}/full", headers=api.headers("operator")),
        api.client.get("/v1/integrations", headers=api.headers("operator")),
    ]

    # then it was accepted where valid, refused elsewhere, and echoed nowhere
    statuses = {answer.status_code for answer in answers}
    assert {200, 201, 401, 404, 422} <= statuses, statuses
    logs = capsys.readouterr()
    assert "/credentials" in logs.err  # the log did capture the requests
    for text in [logs.out, logs.err, *(a.text for a in answers + views)]:
        assert SECRET not in text
        assert SECRET[8:] not in text
    for answer in answers:
        assert set(json.loads(answer.text)) <= {"ok", "message", "id"}
