"""`syncworker integrations` lifecycle actions, api-request and sync (queued and inline)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from fakes.stripe import FakeStripe
from models.schema import Integration
from tests.conftest import IntegrationFactory
from tests.worker.cli.conftest import (
    FILTERS,
    SECRET_KEY,
    UNKNOWN_ID,
    Invoke,
    as_json,
    create_stripe,
    one_line_error,
    status_of,
)

# resolve-qa, deactivate, reactivate, delete


def test_resolve_qa_activates_an_integration_in_quality_assurance(
    invoke: Invoke, make_integration: IntegrationFactory, sessions: sessionmaker[Session]
) -> None:
    integration = make_integration(status="quality_assurance")

    result = invoke("integrations", "resolve-qa", str(integration.id), "--json")

    assert as_json(result) == {
        "ok": True,
        "message": f"integration {integration.id} moved from quality_assurance to active; "
        "sync queued",
    }
    assert status_of(sessions, str(integration.id)) == "active"


def test_resolve_qa_on_an_active_integration_is_refused(
    invoke: Invoke, make_integration: IntegrationFactory
) -> None:
    integration = make_integration()
    reason = f"integration {integration.id} is active: trigger resolve_qa does not apply"

    human = invoke("integrations", "resolve-qa", str(integration.id))
    machine = invoke("integrations", "resolve-qa", str(integration.id), "--json")

    assert one_line_error(human) == f"error: {reason}"
    assert machine.exit_code == 1
    assert as_json(machine) == {"ok": False, "message": reason}


def test_deactivate_then_reactivate(
    invoke: Invoke, make_integration: IntegrationFactory, sessions: sessionmaker[Session]
) -> None:
    integration = make_integration()

    paused = invoke("integrations", "deactivate", str(integration.id), "--actor", "carol")
    resumed = invoke("integrations", "reactivate", str(integration.id), "--json")
    again = invoke("integrations", "reactivate", str(integration.id), "--json")

    assert paused.stdout.strip() == f"integration {integration.id} moved from active to inactive"
    assert as_json(resumed)["message"].endswith("moved from inactive to active; sync queued")
    assert again.exit_code == 1
    assert "trigger reactivate does not apply" in as_json(again)["message"]
    assert status_of(sessions, str(integration.id)) == "active"


def test_delete_requires_by_and_records_who_deleted(
    invoke: Invoke, make_integration: IntegrationFactory, sessions: sessionmaker[Session]
) -> None:
    integration = make_integration()

    missing = invoke("integrations", "delete", str(integration.id))
    deleted = invoke("integrations", "delete", str(integration.id), "--by", "dave", "--json")
    afterwards = invoke("integrations", "reactivate", str(integration.id))

    assert missing.exit_code == 2
    assert "Missing option '--by'" in missing.stderr
    assert as_json(deleted)["message"].endswith("moved from active to deleted")
    assert "is deleted: trigger reactivate does not apply" in one_line_error(afterwards)
    with sessions() as session:
        row = session.get_one(Integration, integration.id)
        assert (row.status, row.deleted_by, row.credentials_encrypted) == ("deleted", "dave", None)


ACTIONS = [
    ("resolve-qa", "quality_assurance", "active", ["--actor", "erin"]),
    ("deactivate", "sync_failing", "inactive", ["--actor", "erin"]),
    ("reactivate", "inactive", "active", ["--actor", "erin"]),
    ("delete", "auth_failing", "deleted", ["--by", "erin"]),
]


@pytest.mark.parametrize("action", ACTIONS, ids=[a[0] for a in ACTIONS])
def test_each_action_answers_in_words_or_as_json_and_records_the_actor(
    invoke: Invoke,
    make_integration: IntegrationFactory,
    action: tuple[str, str, str, list[str]],
) -> None:
    command, before, after, extra = action
    in_words = make_integration(status=before)
    as_data = make_integration(status=before)

    human = invoke("integrations", command, str(in_words.id), *extra)
    machine = invoke("integrations", command, str(as_data.id), *extra, "--json")

    assert human.exit_code == 0, human.output
    assert human.stdout.startswith(f"integration {in_words.id} moved from {before} to {after}")
    assert as_json(machine)["ok"] is True
    assert as_json(machine)["message"].startswith(
        f"integration {as_data.id} moved from {before} to {after}"
    )
    history = as_json(invoke("integrations", "show", str(as_data.id), "--json"))["history"]
    assert (history[0]["toStatus"], history[0]["actor"]) == (after, "erin")


@pytest.mark.parametrize("command", ["resolve-qa", "deactivate", "reactivate"])
def test_actions_on_an_unknown_integration_fail(invoke: Invoke, command: str) -> None:
    human = invoke("integrations", command, UNKNOWN_ID)
    machine = invoke("integrations", command, UNKNOWN_ID, "--json")

    assert one_line_error(human) == f"error: integration {UNKNOWN_ID} not found"
    assert as_json(machine) == {"ok": False, "message": f"integration {UNKNOWN_ID} not found"}


# api-request


def test_api_request_is_recorded_without_changing_the_status(
    invoke: Invoke, make_integration: IntegrationFactory, sessions: sessionmaker[Session]
) -> None:
    integration = make_integration(kind="development")

    human = invoke("integrations", "api-request", str(integration.id))
    machine = invoke("integrations", "api-request", str(integration.id), "--json")
    unknown = invoke("integrations", "api-request", UNKNOWN_ID)

    assert human.stdout.strip() == f"API request recorded for integration {integration.id}"
    assert as_json(machine)["ok"] is True
    assert one_line_error(unknown) == f"error: integration {UNKNOWN_ID} not found"
    with sessions() as session:
        row = session.get_one(Integration, integration.id)
        assert row.last_api_request_at is not None
        assert row.status == "active"


# sync


def test_sync_inline_runs_the_connector_and_reports_the_outcome(
    invoke: Invoke, credentials_file: Path
) -> None:
    integration_id = create_stripe(invoke, credentials_file, "--filters", FILTERS)

    machine = invoke("integrations", "sync", integration_id, "--inline", "--json")
    human = invoke("integrations", "sync", integration_id, "--inline")

    assert machine.exit_code == 0, machine.output
    payload = as_json(machine)
    assert (payload["ok"], payload["outcome"], payload["records"]) == (True, "succeeded", 3)
    assert (payload["warnings"], payload["error"], payload["status"]) == ([], None, "active")
    assert human.exit_code == 0, human.output
    assert f"sync of integration {integration_id}: succeeded" in human.stdout
    assert "status    active" in human.stdout


def test_sync_inline_on_a_revoked_key_exits_1_without_printing_the_key(
    invoke: Invoke, credentials_file: Path, fake_stripe: FakeStripe
) -> None:
    integration_id = create_stripe(invoke, credentials_file, "--filters", FILTERS)
    fake_stripe.revoke(SECRET_KEY)

    result = invoke("integrations", "sync", integration_id, "--inline", "--json")
    shown = invoke("integrations", "show", integration_id, "--json")

    assert result.exit_code == 1
    payload = as_json(result)
    assert (payload["outcome"], payload["status"]) == ("auth_failed", "auth_failing")
    assert payload["error"]
    assert as_json(shown)["runs"][0]["outcome"] == "auth_failed"


def test_sync_inline_of_a_paused_integration_is_skipped(
    invoke: Invoke, make_integration: IntegrationFactory
) -> None:
    integration = make_integration(status="inactive")

    result = invoke("integrations", "sync", str(integration.id), "--inline")

    assert "skipped: not syncing (inactive)" in one_line_error(result)


def test_sync_of_a_paused_or_unknown_integration_is_refused(
    invoke: Invoke, make_integration: IntegrationFactory
) -> None:
    integration = make_integration(status="quality_assurance")

    paused = invoke("integrations", "sync", str(integration.id), "--json")
    unknown = invoke("integrations", "sync", UNKNOWN_ID)
    unknown_inline = invoke("integrations", "sync", UNKNOWN_ID, "--inline")

    assert paused.exit_code == 1
    assert as_json(paused) == {
        "ok": False,
        "message": f"integration {integration.id} is quality_assurance: syncs are paused",
    }
    assert one_line_error(unknown) == f"error: integration {UNKNOWN_ID} not found"
    assert one_line_error(unknown_inline) == f"error: integration {UNKNOWN_ID} not found"


def test_sync_with_an_unreachable_broker_says_so_and_leaves_the_integration_due(
    invoke: Invoke, cli_env: dict[str, str], make_integration: IntegrationFactory
) -> None:
    integration = make_integration()
    cli_env["SYNCWORKER_BROKER_URL"] = "redis://127.0.0.1:1/0"

    result = invoke("integrations", "sync", str(integration.id))

    reason = one_line_error(result)
    assert f"the broker is unreachable; integration {integration.id}" in reason
    assert "stays due and the next beat tick dispatches its sync" in reason
