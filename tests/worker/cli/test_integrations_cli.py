"""`syncworker integrations list` and `show`, human and --json, and their failure paths."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from models.schema import SyncRun
from tests.conftest import START, IntegrationFactory
from tests.worker.cli.conftest import (
    FILTERS,
    UNKNOWN_ID,
    Invoke,
    as_json,
    create_stripe,
    one_line_error,
)

# list


def test_list_shows_integrations_newest_first(
    invoke: Invoke, make_integration: IntegrationFactory
) -> None:
    older = make_integration(name="Older", created_at=START - timedelta(days=1))
    newer = make_integration(name="Newer", status="quality_assurance")

    listed = as_json(invoke("integrations", "list", "--json"))
    human = invoke("integrations", "list")

    assert [i["id"] for i in listed] == [str(newer.id), str(older.id)]
    assert listed[0]["status"] == "quality_assurance"
    assert listed[0]["credentials"] == {"present": True}
    header, first, second = human.stdout.splitlines()
    assert header.split()[:5] == ["ID", "NAME", "PROVIDER", "STATUS", "API"]
    assert first.startswith(str(newer.id)) and "quality_assurance" in first
    assert second.startswith(str(older.id))


def test_list_filters_by_status_provider_environment_organization_and_limit(
    invoke: Invoke, make_integration: IntegrationFactory
) -> None:
    stripe = make_integration(provider="stripe")
    shopify = make_integration(provider="shopify", status="inactive")
    development = make_integration(kind="development")

    def ids(*args: str) -> set[str]:
        return {i["id"] for i in as_json(invoke("integrations", "list", "--json", *args))}

    assert ids("--status", "inactive") == {str(shopify.id)}
    assert ids("--provider", "shopify", "--provider", "stripe") == {
        str(stripe.id),
        str(shopify.id),
        str(development.id),
    }
    assert ids("--environment", "env-development") == {str(development.id)}
    assert len(ids("--organization", "org-1", "--limit", "2")) == 2
    assert ids("--organization", "org-other") == set()
    assert invoke("integrations", "list", "--status", "setup").stdout.strip() == (
        "no integrations match"
    )


def test_list_rejects_an_unknown_status_or_provider(invoke: Invoke) -> None:
    assert "unknown status 'paused'" in one_line_error(
        invoke("integrations", "list", "--status", "paused")
    )
    assert "unknown provider 'stripey'" in one_line_error(
        invoke("integrations", "list", "--provider", "stripey")
    )


# show


def test_show_gives_the_integration_its_history_and_recent_runs_with_errors(
    invoke: Invoke, credentials_file: Path, sessions: sessionmaker[Session]
) -> None:
    integration_id = create_stripe(invoke, credentials_file, "--filters", FILTERS)
    with sessions() as session, session.begin():
        session.add(
            SyncRun(
                integration_id=uuid.UUID(integration_id),
                started_at=START,
                finished_at=START + timedelta(seconds=5),
                outcome="succeeded_with_warnings",
                records_received=7,
                warnings=["invoices: field amount_due missing on 1 object"],
                error="charges: 503 after retries",
            )
        )
    invoke("integrations", "deactivate", integration_id, "--actor", "alice")

    shown = as_json(invoke("integrations", "show", integration_id, "--json"))
    human = invoke("integrations", "show", integration_id).stdout

    assert shown["integration"]["id"] == integration_id
    assert shown["integration"]["credentials"] == {"present": True}
    assert [(c["toStatus"], c["actor"]) for c in shown["history"]] == [
        ("inactive", "alice"),
        ("active", "operator"),
    ]
    (run,) = shown["runs"]
    assert run["recordsReceived"] == 7
    assert run["error"] == "charges: 503 after retries"
    assert run["warnings"] == ["invoices: field amount_due missing on 1 object"]
    assert "status         inactive (api inactive" in human
    assert "Status history (newest first" in human
    assert "deactivate" in human and "alice" in human
    assert "Recent sync runs (newest first" in human
    assert "error: charges: 503 after retries" in human
    assert "warning: invoices: field amount_due missing on 1 object" in human


@pytest.mark.parametrize("integration_id", [UNKNOWN_ID, "not-a-uuid"])
def test_show_of_an_unknown_id_fails_with_a_one_line_reason(
    invoke: Invoke, integration_id: str
) -> None:
    human = invoke("integrations", "show", integration_id)
    machine = invoke("integrations", "show", integration_id, "--json")

    assert one_line_error(human) == f"error: integration {integration_id} not found"
    assert machine.exit_code == 1
    assert as_json(machine) == {"ok": False, "message": f"integration {integration_id} not found"}


def test_list_and_show_give_each_integration_its_lateness_beside_the_status(
    invoke: Invoke, make_integration: IntegrationFactory
) -> None:
    # the CLI reads the wall clock: a success just now is on time, one at START long overdue
    fresh = make_integration(name="Fresh", last_success_at=datetime.now(UTC))
    stale = make_integration(name="Stale", last_success_at=START)

    listed = {i["id"]: i for i in as_json(invoke("integrations", "list", "--json"))}
    human = invoke("integrations", "show", str(stale.id)).stdout

    assert listed[str(fresh.id)]["lateness"] == "on_time"
    assert listed[str(stale.id)]["lateness"] == "overdue"
    assert listed[str(stale.id)]["status"] == "active"
    assert "health" in invoke("integrations", "list").stdout.splitlines()[0].lower()
    assert any(line.split() == ["health", "overdue"] for line in human.splitlines())
