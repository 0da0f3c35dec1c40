"""The operator service on its own, as an embedding application uses it: reads, actions,
one error style, workspace scoping and honest answers about follow-up syncs."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from kombu.exceptions import OperationalError
from sqlalchemy import Engine

from models.clock import ManualClock
from models.credentials import Keyring
from models.errors import (
    DuplicateIntegration,
    IntegrationNotFound,
    InvalidCredentials,
    InvalidValue,
    SyncsPaused,
    TransitionNotAllowed,
)
from models.queries import IntegrationQuery
from models.status import ApiStatus, Provider, Status
from worker.errors import BrokerUnavailable
from worker.operator import Operator
from worker.runtime import Runtime
from worker.settings import Settings

SECRET = "sk_test_OperatorSecret000000001"
PUBLISHED = list[tuple[Provider, uuid.UUID]]


@pytest.fixture
def runtime(engine: Engine, tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    settings = Settings.from_env(
        {
            "SYNCWORKER_DATABASE_URL": engine.url.render_as_string(hide_password=False),
            "SYNCWORKER_DATA_DIR": str(tmp_path),
            "SYNCWORKER_CREDENTIAL_KEYS": f"t:{Keyring.generate_key()}",
        }
    )
    runtime = Runtime(settings, clock)
    yield runtime
    runtime.close()


@pytest.fixture
def published() -> PUBLISHED:
    return []


@pytest.fixture
def operator(runtime: Runtime, published: PUBLISHED) -> Operator:
    return Operator(runtime, lambda provider, key: published.append((provider, key)))


Add = Callable[..., str]


@pytest.fixture
def add(operator: Operator) -> Add:
    """Create an integration through the operator (a new workspace as needed); its id."""

    def create(workspace: str = "ws-a", **fields: object) -> str:
        operator.ensure_environment(workspace, organization_id="org-1")
        spec: dict[str, object] = {
            "name": "Acme",
            "identifier": f"acme-{uuid.uuid4().hex[:8]}",
            "provider": "stripe",
            "filters": {"objects": ["customers"]},
            "credentials": {"secret_key": SECRET},
            **fields,
        }
        created = operator.create(environment_id=workspace, actor="alice", **spec)  # type: ignore[arg-type]
        return str(created.integration_id)

    return create


# --- reads ----------------------------------------------------------------------------


def test_get_returns_the_api_view_or_the_full_dto_never_the_credentials(
    operator: Operator, add: Add
) -> None:
    integration_id = add()

    api = operator.get(integration_id)
    dto = operator.get(integration_id, "dto")

    assert api["id"] == integration_id and api["workspaceId"] == "ws-a"
    assert api["status"] == ApiStatus.CONNECTED
    assert "credentialsEncrypted" not in api
    assert dto["status"] == Status.ACTIVE and dto["credentials"] == {"present": True}
    assert SECRET not in repr(api) + repr(dto)


def test_states_report_the_last_finished_sync(operator: Operator, add: Add) -> None:
    integration_id = add()

    states = operator.states(integration_id)

    assert states == {
        "id": integration_id,
        "status": "connected",
        "setupStatus": "first_sync_pending",
        "qaStatus": None,
        "lastSyncOutcome": None,
        "lastSyncAt": None,
        "dataLastReceivedAt": None,
    }


def test_list_pages_by_keyset_newest_first_without_gaps_or_repeats(
    operator: Operator, add: Add, clock: ManualClock
) -> None:
    created = []
    for _ in range(7):
        created.append(add())
        clock.advance(timedelta(seconds=1))

    seen: list[str] = []
    cursor = None
    while True:
        page = operator.list_integrations(after=cursor, limit=3)
        seen += [item["id"] for item in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert seen == list(reversed(created))


def test_list_filters_by_provider_status_api_status_and_hides_deleted(
    operator: Operator, add: Add
) -> None:
    stripe = add()
    setup = add(provider="paddle", filters=None, credentials=None)
    gone = add()
    operator.delete(gone, actor="alice")

    by_provider = operator.list_integrations(IntegrationQuery(providers=(Provider.PADDLE,)))
    by_api = operator.list_integrations(IntegrationQuery(api_statuses=(ApiStatus.NOT_CONNECTED,)))
    live = operator.list_integrations()
    everything = operator.list_integrations(IntegrationQuery(include_deleted=True))
    deleted = operator.list_integrations(IntegrationQuery(statuses=(Status.DELETED,)))

    assert [i["id"] for i in by_provider.items] == [setup]
    assert [i["id"] for i in by_api.items] == [setup]
    assert {i["id"] for i in live.items} == {stripe, setup}
    assert {i["id"] for i in everything.items} == {stripe, setup, gone}
    assert [i["id"] for i in deleted.items] == [gone]


@pytest.mark.parametrize("cursor", ["garbage", "e30", "W10", "x" * 500])
def test_a_cursor_we_did_not_make_is_refused_by_name(operator: Operator, cursor: str) -> None:
    with pytest.raises(InvalidValue, match="cursor is not one this API returned"):
        operator.list_integrations(after=cursor)


def test_history_and_runs_are_newest_first(operator: Operator, add: Add) -> None:
    integration_id = add()
    operator.deactivate(integration_id, actor="bob")

    history = operator.history(integration_id)

    assert [(h["toStatus"], h["actor"]) for h in history] == [
        ("inactive", "bob"),
        ("active", "alice"),
    ]
    assert operator.runs(integration_id) == []


# --- one error style ------------------------------------------------------------------


def test_refused_actions_raise_and_change_nothing(operator: Operator, add: Add) -> None:
    integration_id = add()

    with pytest.raises(TransitionNotAllowed, match="is active: trigger resolve_qa"):
        operator.resolve_qa(integration_id, actor="alice")
    with pytest.raises(IntegrationNotFound):
        operator.deactivate(str(uuid.uuid4()), actor="alice")
    with pytest.raises(IntegrationNotFound):
        operator.get("not-a-uuid")
    with pytest.raises(InvalidCredentials):
        operator.set_credentials(integration_id, {"secret_key": "nope"}, actor="alice")
    with pytest.raises(DuplicateIntegration):
        add(identifier=operator.get(integration_id, "dto")["identifier"])

    assert [h["toStatus"] for h in operator.history(integration_id)] == ["active"]


def test_sync_now_on_a_paused_integration_raises_syncs_paused(operator: Operator, add: Add) -> None:
    integration_id = add()
    operator.deactivate(integration_id, actor="alice")

    with pytest.raises(SyncsPaused, match=f"integration {integration_id} is inactive"):
        operator.sync_now(integration_id)


# --- honest answers about syncs -------------------------------------------------------


def test_actions_publish_the_sync_they_ask_for_and_say_so(
    operator: Operator, add: Add, published: PUBLISHED
) -> None:
    integration_id = add()
    operator.deactivate(integration_id, actor="alice")

    result = operator.reactivate(integration_id, actor="alice")

    assert result.ok
    assert result.message == (
        f"integration {integration_id} moved from inactive to active; sync queued"
    )
    assert published[-1] == (Provider.STRIPE, uuid.UUID(integration_id))


def test_without_a_publisher_the_answer_says_the_next_tick_dispatches(
    runtime: Runtime, add: Add
) -> None:
    integration_id = add()
    offline = Operator(runtime)
    offline.deactivate(integration_id, actor="alice")

    result = offline.reactivate(integration_id, actor="alice")

    assert result.message is not None
    assert "sync queued" not in result.message
    assert result.message.endswith("its sync is due and the next beat tick dispatches it")


def test_an_unreachable_broker_is_named_and_the_integration_stays_due(
    runtime: Runtime, add: Add, clock: ManualClock
) -> None:
    integration_id = add()

    def refuse(provider: Provider, key: uuid.UUID) -> None:
        raise OperationalError("connection refused")

    with pytest.raises(BrokerUnavailable, match="stays due"):
        Operator(runtime, refuse).sync_now(integration_id)
    assert Operator(runtime).get(integration_id, "dto")["nextSyncAt"] == clock.now().isoformat()


# --- workspace scope ------------------------------------------------------------------


def test_a_scoped_operator_sees_and_acts_on_its_workspace_only(
    operator: Operator, add: Add
) -> None:
    mine, theirs = add("ws-a"), add("ws-b")
    scoped = operator.scoped("ws-a")

    assert [i["id"] for i in scoped.list_integrations().items] == [mine]
    assert [e["id"] for e in scoped.environments()] == ["ws-a"]
    for read in (scoped.get, scoped.states, scoped.history, scoped.runs, scoped.sync_now):
        with pytest.raises(IntegrationNotFound):
            read(theirs)
    for act in (scoped.deactivate, scoped.delete, scoped.resolve_qa):
        with pytest.raises(IntegrationNotFound):
            act(theirs, actor="mallory")
    with pytest.raises(IntegrationNotFound):
        scoped.record_api_request(theirs)
    with pytest.raises(InvalidValue, match="only create integrations in ws-a"):
        scoped.create(environment_id="ws-b", name="x", identifier="x", provider="stripe", actor="m")
    assert operator.get(theirs, "dto")["status"] == Status.ACTIVE


def test_ensure_environment_creates_once_and_refuses_a_mismatch(operator: Operator) -> None:
    created = operator.ensure_environment("ws-dev", organization_id="org-1", kind="development")
    again = operator.ensure_environment("ws-dev")

    assert (
        created
        == again
        == {
            "id": "ws-dev",
            "organizationId": "org-1",
            "name": "ws-dev",
            "kind": "development",
        }
    )
    with pytest.raises(InvalidValue, match="belongs to organization 'org-1'"):
        operator.ensure_environment("ws-dev", organization_id="org-2")
    with pytest.raises(InvalidValue, match="does not exist"):
        operator.ensure_environment("ws-missing")


def test_record_api_request_marks_the_integration_without_changing_status(
    operator: Operator, add: Add, clock: ManualClock
) -> None:
    integration_id = add()
    clock.advance(timedelta(hours=1))

    assert operator.record_api_request(integration_id)
    dto = operator.get(integration_id, "dto")
    assert dto["lastApiRequestAt"] == clock.now().isoformat()
    assert dto["status"] == Status.ACTIVE


def test_filters_the_connector_refuses_are_refused_before_anything_is_written(
    operator: Operator, add: Add
) -> None:
    integration_id = add(filters=None)

    with pytest.raises(InvalidValue, match="unknown objects"):
        add(identifier="refused", filters={"objects": ["nope"]})
    with pytest.raises(InvalidValue, match="unknown objects"):
        operator.configure_filters(integration_id, {"objects": ["nope"]}, actor="alice")

    assert [i["id"] for i in operator.list_integrations().items] == [integration_id]
    assert operator.get(integration_id, "dto")["status"] == Status.SETUP
