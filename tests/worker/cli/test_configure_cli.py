"""`syncworker integrations create`, `set-credentials` and `configure-filters`.

Human and --json output, and the failure paths: unknown provider or id, malformed
or incomplete credentials (never echoed), missing or malformed filters.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from models.schema import Environment
from tests.conftest import START, IntegrationFactory
from tests.worker.cli.conftest import (
    FILTERS,
    OTHER_SECRET_KEY,
    SECRET_KEY,
    UNKNOWN_ID,
    Invoke,
    as_json,
    one_line_error,
)

# create


def test_create_with_credentials_from_stdin_and_filters_is_active_in_a_new_environment(
    invoke: Invoke, sessions: sessionmaker[Session]
) -> None:
    result = invoke(
        "integrations", "create", "--environment", "env-new", "--organization", "org-9",
        "--environment-kind", "development", "--name", "Dev Stripe", "--identifier", "dev",
        "--provider", "stripe", "--filters", FILTERS, "--credentials-file", "-", "--primary",
        "--actor", "bob", "--json",
        input=json.dumps({"secret_key": SECRET_KEY}),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    payload = as_json(result)
    assert payload["ok"] is True
    assert payload["message"].endswith("created in active; sync queued")
    dto = payload["integration"]
    assert (dto["status"], dto["primary"], dto["organizationId"]) == ("active", True, "org-9")
    assert dto["credentials"] == {"present": True}
    assert dto["nextSyncAt"] is not None
    with sessions() as session:
        assert session.get_one(Environment, "env-new").kind == "development"


def test_create_without_filters_is_in_setup_in_an_existing_environment(
    invoke: Invoke, make_integration: IntegrationFactory
) -> None:
    make_integration()  # creates env-production of org-1

    result = invoke(
        "integrations", "create", "--environment", "env-production", "--name", "Shop",
        "--identifier", "shop", "--provider", "shopify",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("integration ")
    assert result.stdout.strip().endswith("created in setup")


def test_create_in_a_missing_environment_needs_an_organization(
    invoke: Invoke, sessions: sessionmaker[Session]
) -> None:
    result = invoke(
        "integrations", "create", "--environment", "env-typo", "--name", "X",
        "--identifier", "x", "--provider", "stripe",
    )  # fmt: skip

    assert "environment 'env-typo' does not exist" in one_line_error(result)
    with sessions() as session:
        assert session.get(Environment, "env-typo") is None


def test_create_with_an_unknown_provider_fails_and_creates_nothing(
    invoke: Invoke, sessions: sessionmaker[Session]
) -> None:
    args = ["integrations", "create", "--environment", "env-x", "--organization", "org-x"]
    args += ["--name", "X", "--identifier", "x", "--provider", "stripey"]

    human = invoke(*args)
    machine = invoke(*args, "--json")

    assert "unknown provider 'stripey'; expected one of: revenuecat, stripe" in (
        one_line_error(human)
    )
    assert machine.exit_code == 1
    assert as_json(machine)["ok"] is False
    with sessions() as session:
        assert session.get(Environment, "env-x") is None


def test_create_with_invalid_credentials_names_the_field_and_creates_nothing(
    invoke: Invoke, tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"secret_key": "CLIsecretValue-without-prefix"}))

    result = invoke(
        "integrations", "create", "--environment", "env-x", "--organization", "org-x",
        "--name", "X", "--identifier", "x", "--provider", "stripe",
        "--credentials-file", str(bad),
    )  # fmt: skip

    assert "secret_key must start with sk_ or rk_" in one_line_error(result)
    with sessions() as session:
        assert session.get(Environment, "env-x") is None


# set-credentials


def test_set_credentials_from_a_file_revives_an_auth_failing_integration(
    invoke: Invoke, make_integration: IntegrationFactory, credentials_file: Path
) -> None:
    failing = make_integration(status="auth_failing", auth_failing_since=START)
    invalid = make_integration(status="credentials_invalid")

    human = invoke(
        "integrations", "set-credentials", str(failing.id), "--from-file", str(credentials_file)
    )
    machine = invoke(
        "integrations", "set-credentials", str(invalid.id), "--from-file", "-", "--json",
        input=json.dumps({"secret_key": OTHER_SECRET_KEY}),
    )  # fmt: skip

    assert human.exit_code == 0, human.output
    assert "moved from auth_failing to active; sync queued" in human.stdout
    assert as_json(machine) == {
        "ok": True,
        "message": f"integration {invalid.id} moved from credentials_invalid to active; "
        "sync queued",
    }


def test_set_credentials_with_malformed_json_names_the_position_never_the_content(
    invoke: Invoke, make_integration: IntegrationFactory, tmp_path: Path
) -> None:
    integration = make_integration()
    broken = tmp_path / "broken.json"
    broken.write_text('{"secret_key": "' + SECRET_KEY + '" "account_id": 1}')

    human = invoke(
        "integrations", "set-credentials", str(integration.id), "--from-file", str(broken)
    )
    machine = invoke(
        "integrations", "set-credentials", str(integration.id), "--from-file", str(broken), "--json"
    )

    assert one_line_error(human) == (
        "error: the credentials file is not valid JSON (Expecting ',' delimiter at line 1 "
        "column 51)"
    )
    assert machine.exit_code == 1
    assert as_json(machine)["ok"] is False


def test_set_credentials_without_a_required_field_names_it(
    invoke: Invoke, make_integration: IntegrationFactory
) -> None:
    integration = make_integration()

    result = invoke(
        "integrations", "set-credentials", str(integration.id), "--from-file", "-", "--json",
        input=json.dumps({"account_id": "acct_1"}),
    )  # fmt: skip

    assert result.exit_code == 1
    assert as_json(result) == {
        "ok": False,
        "message": "stripe credentials: secret_key is required (non-empty text)",
    }


@pytest.mark.parametrize(
    "pasted",
    [json.dumps({"secret_key": SECRET_KEY}), SECRET_KEY],
    ids=["json", "bare-secret"],
)
def test_set_credentials_never_echoes_a_secret_pasted_in_place_of_the_path(
    invoke: Invoke, make_integration: IntegrationFactory, pasted: str
) -> None:
    integration = make_integration()

    result = invoke("integrations", "set-credentials", str(integration.id), "--from-file", pasted)

    assert one_line_error(result) == (
        "error: cannot read the credentials file: No such file or directory"
    )


def test_set_credentials_takes_no_secret_as_an_argument(invoke: Invoke) -> None:
    result = invoke("integrations", "set-credentials", "--help")

    assert result.exit_code == 0
    options = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  --")]
    assert options == ["--from-file", "--actor", "--json", "--help"]


def test_set_credentials_of_an_unknown_integration_fails(
    invoke: Invoke, credentials_file: Path
) -> None:
    result = invoke(
        "integrations", "set-credentials", UNKNOWN_ID, "--from-file", str(credentials_file)
    )

    assert one_line_error(result) == f"error: integration {UNKNOWN_ID} not found"


# configure-filters


def test_configure_filters_activates_an_integration_in_setup(
    invoke: Invoke, make_integration: IntegrationFactory, tmp_path: Path
) -> None:
    inline = make_integration(status="setup", filters={"placeholder": True})
    from_file = make_integration(status="setup", filters={"placeholder": True})
    filters_file = tmp_path / "filters.json"
    filters_file.write_text(FILTERS)

    human = invoke("integrations", "configure-filters", str(inline.id), "--filters", FILTERS)
    machine = invoke(
        "integrations",
        "configure-filters",
        str(from_file.id),
        "--filters-file",
        str(filters_file),
        "--json",
    )

    assert human.exit_code == 0, human.output
    assert "moved from setup to active; sync queued" in human.stdout
    assert as_json(machine)["message"].endswith("moved from setup to active; sync queued")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ([], "exactly one of --filters or --filters-file"),
        (["--filters", "{"], "--filters is not valid JSON"),
        (["--filters", "[1]"], "--filters must hold a JSON object, not list"),
        (["--filters", "{}"], "filters must be a non-empty JSON object"),
    ],
)
def test_configure_filters_rejects_missing_or_malformed_filters(
    invoke: Invoke, make_integration: IntegrationFactory, args: list[str], reason: str
) -> None:
    integration = make_integration()

    result = invoke("integrations", "configure-filters", str(integration.id), *args)

    assert reason in one_line_error(result)
