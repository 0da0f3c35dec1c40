"""The embedded SQLite database: created owner-only, and only when first used."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from models import migrate
from models.db import make_engine


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask (022): files are world-readable unless created otherwise."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_the_embedded_database_and_its_folder_are_readable_by_the_owner_only(
    tmp_path: Path,
) -> None:
    database = tmp_path / "data" / "syncworker.db"
    engine = make_engine(f"sqlite:///{database}")

    migrate.upgrade(engine)
    engine.dispose()

    assert mode(database.parent) == 0o700
    files = sorted(database.parent.iterdir())
    assert database in files
    for file in files:  # the database and its -wal and -shm companions
        assert mode(file) == 0o600, file.name


def test_making_an_engine_creates_nothing_until_it_is_used(tmp_path: Path) -> None:
    database = tmp_path / "data" / "syncworker.db"

    engine = make_engine(f"sqlite:///{database}")

    assert not database.parent.exists()
    assert migrate.current(engine) is None  # reading the revision of nothing creates nothing
    assert not database.parent.exists()
