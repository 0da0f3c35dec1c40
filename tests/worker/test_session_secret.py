"""The page's session secret: configured, or generated once and kept owner-only when embedded."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from models.errors import InvalidValue
from worker.settings import SESSION_KEY_FILE, Settings

CONFIGURED = "a-configured-session-secret-of-40-chars!"


def _settings(data_dir: Path, **env: str) -> Settings:
    return Settings.from_env({"SYNCWORKER_DATA_DIR": str(data_dir), **env})


def test_the_embedded_default_generates_the_secret_once_owner_only(tmp_path: Path) -> None:
    first = _settings(tmp_path / "data").session_secret()
    again = _settings(tmp_path / "data").session_secret()

    key_file = tmp_path / "data" / SESSION_KEY_FILE
    assert first == again
    assert len(first) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_configured_secret_is_used_as_is_and_never_shown(tmp_path: Path) -> None:
    settings = _settings(tmp_path, SYNCWORKER_API_SESSION_SECRET=CONFIGURED)

    assert settings.session_secret() == CONFIGURED
    assert CONFIGURED not in repr(settings)
    assert not (tmp_path / SESSION_KEY_FILE).exists()


def test_a_short_secret_is_refused_in_one_line_without_quoting_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidValue) as raised:
        _settings(tmp_path, SYNCWORKER_API_SESSION_SECRET="short-secret-123")

    assert str(raised.value) == (
        "SYNCWORKER_API_SESSION_SECRET must be printable text of at least 32 characters"
    )


def test_a_deployment_with_its_own_broker_must_configure_the_secret(tmp_path: Path) -> None:
    settings = _settings(tmp_path, SYNCWORKER_BROKER_URL="redis://127.0.0.1:6379/0")

    with pytest.raises(InvalidValue, match="SYNCWORKER_API_SESSION_SECRET is not set") as raised:
        settings.session_secret()

    assert "\n" not in str(raised.value)
    assert not (tmp_path / SESSION_KEY_FILE).exists()
