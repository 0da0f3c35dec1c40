"""No tracebacks from the CLI: outages, unmigrated data folders and hostile input are one line.

Each case exits 1 with one `error: ...` line (or `{ok: false, message}` with --json) and
changes nothing: no integration, environment, status change or file appears.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.schema import Environment, Integration, StatusChange, SyncRun
from tests.conftest import IntegrationFactory
from tests.worker.cli.conftest import UNKNOWN_ID, Invoke, as_json, one_line_error

DOWN_DATABASE = "postgresql://sync:hunter2@127.0.0.1:1/sync"
DOWN_REDIS = "redis://:hunter2@127.0.0.1:1/0"

COMMANDS = [
    ["integrations", "list"],
    ["integrations", "show", UNKNOWN_ID],
    ["integrations", "create", "--environment", "e", "--organization", "o", "--name", "N",
     "--identifier", "i", "--provider", "stripe"],
    ["integrations", "configure-filters", UNKNOWN_ID, "--filters", '{"objects": ["customers"]}'],
    ["integrations", "resolve-qa", UNKNOWN_ID],
    ["integrations", "deactivate", UNKNOWN_ID],
    ["integrations", "delete", UNKNOWN_ID, "--by", "op"],
    ["integrations", "sync", UNKNOWN_ID],
    ["integrations", "sync", UNKNOWN_ID, "--inline"],
    ["integrations", "api-request", UNKNOWN_ID],
    ["status"],
    ["db", "current"],
    ["db", "upgrade"],
    ["credentials", "rotate"],
]  # fmt: skip
IDS = [
    " ".join(command[:2]) + (" --inline" if "--inline" in command else "") for command in COMMANDS
]


def counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return {
            model.__name__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Environment, Integration, StatusChange, SyncRun)
        }


# -- outages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_a_database_that_is_down_is_one_line_naming_it_without_its_password(
    invoke: Invoke, cli_env: dict[str, str], command: list[str]
) -> None:
    cli_env["SYNCWORKER_DATABASE_URL"] = DOWN_DATABASE

    human = invoke(*command)

    line = one_line_error(human)
    assert line.startswith("error: the database at postgresql://sync:***@127.0.0.1:1/sync failed")
    assert "hunter2" not in human.output


def test_a_database_that_is_down_answers_ok_false_with_json(
    invoke: Invoke, cli_env: dict[str, str]
) -> None:
    cli_env["SYNCWORKER_DATABASE_URL"] = DOWN_DATABASE

    machine = invoke("integrations", "list", "--json")

    assert machine.exit_code == 1
    payload = as_json(machine)
    assert payload["ok"] is False
    assert payload["message"].startswith("the database at postgresql://sync:***@127.0.0.1:1/")


def test_redis_that_is_down_is_one_line_naming_it_and_the_sync_changes_nothing(
    invoke: Invoke,
    cli_env: dict[str, str],
    make_integration: IntegrationFactory,
    sessions: sessionmaker[Session],
) -> None:
    integration = make_integration()
    before = counts(sessions)
    cli_env["SYNCWORKER_REDIS_URL"] = DOWN_REDIS

    result = invoke("integrations", "sync", str(integration.id), "--inline")

    assert one_line_error(result).startswith("error: Redis at redis://:**@127.0.0.1:1/0 failed:")
    assert "hunter2" not in result.output
    assert counts(sessions) == before


def test_a_real_process_prints_one_line_and_no_traceback_when_the_database_is_down(
    tmp_path: Path,
) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWORKER_")}
    environ["SYNCWORKER_DATABASE_URL"] = DOWN_DATABASE
    syncworker = str(Path(sys.executable).with_name("syncworker"))

    done = subprocess.run(  # noqa: S603 - our own entry point
        [syncworker, "status"], env=environ, cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip

    assert done.returncode == 1
    assert done.stderr.startswith("error: the database at postgresql://sync:***@")
    assert done.stderr.count("\n") == 1, done.stderr
    assert list(tmp_path.iterdir()) == []


# -- a data folder without migrations -----------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [c for c in COMMANDS if c[:2] not in (["db", "current"], ["db", "upgrade"])],
    ids=[i for i in IDS if not i.startswith("db")],
)
def test_a_data_folder_without_a_database_says_to_migrate_and_creates_nothing(
    invoke: Invoke, cli_env: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    # given the embedded default on a data folder nothing has run in
    data = tmp_path / "fresh"
    cli_env.update(
        SYNCWORKER_DATA_DIR=str(data), SYNCWORKER_DATABASE_URL="", SYNCWORKER_BROKER_URL=""
    )

    result = invoke(*command)

    assert one_line_error(result) == (
        f"error: there is no database at sqlite:///{data / 'syncworker.db'} yet: "
        "run `syncworker db upgrade`"
    )
    assert not data.exists()


def test_db_current_of_a_data_folder_without_a_database_creates_nothing(
    invoke: Invoke, cli_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "fresh"
    cli_env.update(SYNCWORKER_DATA_DIR=str(data), SYNCWORKER_DATABASE_URL="")

    result = invoke("db", "current", "--json")

    assert result.exit_code == 0
    assert as_json(result)["current"] is None
    assert not data.exists()


# -- hostile input ------------------------------------------------------------------------------


def create(invoke: Invoke, *extra: str, **options: str) -> Any:
    values = {
        "environment": "env-h",
        "organization": "org-h",
        "name": "Acme",
        "identifier": "acme",
        "provider": "stripe",
        **options,
    }
    args = [item for key, value in values.items() for item in (f"--{key}", value)]
    return invoke("integrations", "create", *args, *extra)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "N" * 201}, "name must be at most 200 characters, got 201"),
        ({"identifier": "i" * 201}, "identifier must be at most 200 characters, got 201"),
        ({"identifier": "two words"}, "identifier must be non-empty text without spaces"),
        ({"environment": "e" * 65}, "environment id must be at most 64 characters, got 65"),
        ({"organization": "o" * 65}, "organization id must be at most 64 characters, got 65"),
        ({"actor": "a" * 65}, "actor must be at most 64 characters, got 65"),
        ({"filters": '{"objects": NaN}'}, "--filters is not valid JSON (NaN is not a JSON number)"),
        ({"filters": '{"objects": 1e999}'}, "--filters holds a number too large to read"),
        ({"filters": "[" * 100_000 + "]" * 100_000}, "--filters is nested too deeply to be read"),
        ({"filters": '{"objects": ["nope"]}'}, "stripe filters: unknown objects ['nope']"),
        ({"filters": '{"since": "2026-01-01"}'}, "stripe filters: unknown keys ['since']"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_hostile_input_to_create_is_one_line_and_creates_nothing(
    invoke: Invoke, sessions: sessionmaker[Session], options: dict[str, str], message: str
) -> None:
    before = counts(sessions)

    result = create(invoke, **options)

    line = one_line_error(result)
    assert message in line
    assert len(line) < 300
    assert counts(sessions) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"secret_key": NaN}', "the credentials file is not valid JSON (NaN is not a JSON"),
        ('{"secret_key": ' + "[" * 50_000 + "]" * 50_000 + "}", "is nested too deeply"),
        ('{"secret_key": 1' + "0" * 5000 + "}", "holds a number too large to read"),
        ('{"secret_key": "sk_test_' + "x" * 2_000_000 + '"}', "is larger than 1024 KiB"),
    ],
    ids=["nan", "deep", "huge-number", "huge-file"],
)
def test_a_hostile_credentials_file_is_one_line_and_creates_nothing(
    invoke: Invoke,
    sessions: sessionmaker[Session],
    tmp_path: Path,
    content: str,
    message: str,
) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(content)
    before = counts(sessions)

    result = create(invoke, "--credentials-file", str(path))

    assert message in one_line_error(result)
    assert counts(sessions) == before


@pytest.mark.parametrize(
    "filters",
    ['{"objects": ["nope"]}', '{"objects": [NaN]}', "[" * 100_000, '{"objects": []}'],
    ids=["unknown-object", "nan", "deep", "empty-objects"],
)
def test_configure_filters_refuses_bad_filters_and_the_integration_stays_in_setup(
    invoke: Invoke,
    make_integration: IntegrationFactory,
    sessions: sessionmaker[Session],
    filters: str,
) -> None:
    integration = make_integration(status="setup")
    with sessions() as session, session.begin():
        session.get_one(Integration, integration.id).filters = None
    before = counts(sessions)

    result = invoke("integrations", "configure-filters", str(integration.id), "--filters", filters)

    one_line_error(result)
    assert counts(sessions) == before
    with sessions() as session:
        stored = session.get_one(Integration, integration.id)
        assert (stored.status, stored.filters) == ("setup", None)


def test_an_over_long_actor_on_an_action_is_one_line_and_changes_nothing(
    invoke: Invoke, make_integration: IntegrationFactory, sessions: sessionmaker[Session]
) -> None:
    integration = make_integration()
    before = counts(sessions)

    result = invoke("integrations", "deactivate", str(integration.id), "--actor", "a" * 65)

    assert "actor must be at most 64 characters" in one_line_error(result)
    assert counts(sessions) == before


def test_an_over_long_integration_id_is_quoted_short(invoke: Invoke) -> None:
    result = invoke("integrations", "show", "x" * 10_000)

    line = one_line_error(result)
    assert line == "error: integration " + repr("x" * 64) + "... not found"


def test_json_output_of_hostile_input_is_one_json_object(invoke: Invoke) -> None:
    result = create(invoke, "--json", filters='{"objects": NaN}')

    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "ok": False,
        "message": "--filters is not valid JSON (NaN is not a JSON number)",
    }
