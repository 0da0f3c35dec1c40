"""Fixtures for CLI tests: the real `syncworker` command on a real database and broker.

`invoke` runs the command group through click's CliRunner with a fresh CliContext
per call (a context's runtime is closed when its command ends), configured like a
deployment: the test database, a SQLite broker and a data dir under tmp_path, a
credential key, and Stripe pointed at a local fake. Every output it produced is
checked, after the test, for the credentials' secret values.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner, Result
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from fakes.stripe import FakeStripe
from models.credentials import Keyring
from models.schema import Integration
from worker.cli import main
from worker.cli.context import CliContext
from worker.logs import configure_logging
from worker.settings import Settings

SECRET_KEY = "sk_test_CLIsecretValue0000000001"
OTHER_SECRET_KEY = "sk_test_CLIsecretValue0000000002"
SECRETS = (SECRET_KEY, OTHER_SECRET_KEY, "CLIsecretValue")
TEST_KEY = Keyring.generate_key()

FILTERS = '{"objects": ["customers"]}'
UNKNOWN_ID = str(uuid.UUID(int=1))

Invoke = Callable[..., Result]


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        fake.add_account(SECRET_KEY, customers=3)
        fake.add_account(OTHER_SECRET_KEY, customers=1)
        yield fake


@pytest.fixture
def cli_env(engine: Engine, tmp_path: Path, fake_stripe: FakeStripe) -> dict[str, str]:
    """The SYNCWORKER_* environment of the command under test; tests may change it."""
    return {
        "SYNCWORKER_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "SYNCWORKER_DATA_DIR": str(tmp_path / "data"),
        "SYNCWORKER_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "SYNCWORKER_CREDENTIAL_KEYS": f"test:{TEST_KEY}",
        "SYNCWORKER_STRIPE_BASE_URL": fake_stripe.url,
        "SYNCWORKER_LOG_FORMAT": "json",
    }


@pytest.fixture
def invoke(
    cli_env: dict[str, str], restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Invoke]:
    """Run `syncworker <args>`; `input` feeds stdin. Asserts no secret was ever printed.

    Logging is configured as in production (JSON lines on the command's stderr), with
    logger caching off so no logger keeps the pipeline after `restore_logging` undoes it.
    """

    def configure(log_format: str, level: str) -> None:
        configure_logging(log_format, level)
        structlog.configure(cache_logger_on_first_use=False)

    # `worker.cli.main` the attribute is the command group; the module is in sys.modules.
    monkeypatch.setattr(importlib.import_module("worker.cli.main"), "configure_logging", configure)
    runner = CliRunner()
    results: list[Result] = []

    def run(*args: str, input: str | None = None) -> Result:
        context = CliContext(lambda: Settings.from_env(dict(cli_env)))
        result = runner.invoke(main, list(args), obj=context, input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        results.append(result)
        return result

    yield run
    for result in results:
        assert_no_secret(result)


def assert_no_secret(result: Result) -> None:
    printed = result.stdout + result.stderr
    for secret in SECRETS:
        assert secret not in printed, f"a secret was printed by {result!r}"


def as_json(result: Result) -> Any:
    """The command's stdout parsed as JSON (logs go to stderr)."""
    return json.loads(result.stdout)


def one_line_error(result: Result) -> str:
    """The one-line reason a failed command printed on stderr."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def credentials_file(tmp_path: Path) -> Path:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"secret_key": SECRET_KEY}))
    return path


def create_stripe(invoke: Invoke, credentials_file: Path, *extra: str) -> str:
    """Create a Stripe integration with credentials and filters through the CLI; its id."""
    result = invoke(
        "integrations", "create", "--environment", "env-cli", "--organization", "org-cli",
        "--name", "Acme", "--identifier", f"acme-{uuid.uuid4().hex[:6]}",
        "--provider", "stripe", "--credentials-file", str(credentials_file), "--json", *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return str(as_json(result)["integration"]["id"])


def status_of(sessions: sessionmaker[Session], integration_id: str) -> str:
    with sessions() as session:
        return session.get_one(Integration, uuid.UUID(integration_id)).status
