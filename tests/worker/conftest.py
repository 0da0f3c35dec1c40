"""Fixtures for worker tests: the production logging pipeline, captured and then undone,
and settings over the test database."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import Engine

from models.credentials import Keyring
from worker.logs import QUIET_LOGGERS, configure_logging
from worker.settings import Settings

LogLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo `configure_logging` after the test: structlog's config and the root handlers.

    Logger caching stays off while the test runs: a logger cached under the production
    pipeline would keep it afterwards, and other tests' `capture_logs` would miss it.
    """
    root = logging.getLogger()
    before = [h for h in root.handlers if not _pytests(h)]
    level = root.level
    quiet = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    config = structlog.get_config()
    yield
    # pytest's own handlers of the current phase stay, so pytest can remove them itself.
    root.handlers[:] = [*before, *(h for h in root.handlers if _pytests(h) and h not in before)]
    root.setLevel(level)
    for name, quiet_level in quiet.items():
        logging.getLogger(name).setLevel(quiet_level)
    structlog.configure(**config)
    structlog.contextvars.clear_contextvars()


def _pytests(handler: logging.Handler) -> bool:
    """Whether pytest's logging plugin installed this handler (it adds and removes its own)."""
    return type(handler).__module__ == "_pytest.logging"


@pytest.fixture
def captured_stderr(restore_logging: None) -> Callable[[str], io.StringIO]:
    """Configure logging as a worker does, its stderr a buffer (not a tty); the buffer."""

    def configure(log_format: str = "auto") -> io.StringIO:
        # The handler keeps the stream it was given; pytest swaps its own per test phase.
        stderr = io.StringIO()
        with redirect_stderr(stderr):
            configure_logging(log_format, "INFO")
        structlog.configure(cache_logger_on_first_use=False)
        return stderr

    return configure


@pytest.fixture
def json_logs(captured_stderr: Callable[[str], io.StringIO]) -> LogLines:
    """The worker's log lines so far, parsed."""
    stderr = captured_stderr("auto")
    return lambda: [json.loads(line) for line in stderr.getvalue().splitlines()]


def worker_settings(engine: Engine, data_dir: Path, **env: str) -> Settings:
    """Settings over the test database with a fresh credential key; `env` adds SYNCWORKER_*."""
    return Settings.from_env(
        {
            "SYNCWORKER_DATABASE_URL": engine.url.render_as_string(hide_password=False),
            "SYNCWORKER_DATA_DIR": str(data_dir),
            "SYNCWORKER_CREDENTIAL_KEYS": f"t:{Keyring.generate_key()}",
            **env,
        }
    )
