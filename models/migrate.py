"""Schema migrations: `syncworker db upgrade` applies the Alembic revisions in `migrations/`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine

from models.errors import SchemaOutdated

MIGRATIONS = Path(__file__).with_name("migrations")


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database's schema up to `revision`."""
    config = _config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database's schema back to `revision`."""
    config = _config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def revision(engine: Engine, message: str) -> None:
    """Write a new revision from the difference between the models and the database."""
    config = _config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)


def current(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty (or missing SQLite) database."""
    if _missing_file(engine):
        return None
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_current(engine: Engine) -> None:
    """Raise SchemaOutdated unless the database has this code's newest migration.

    A database at a revision this code does not know (a newer release migrated it) passes:
    migrations are written to keep the previous release working. An embedded SQLite file
    that does not exist yet is reported without being created.
    """
    where = engine.url.render_as_string(hide_password=True)
    upgrade_hint = "run `syncworker db upgrade`"
    if _missing_file(engine):
        raise SchemaOutdated(f"there is no database at {where} yet: {upgrade_hint}")
    revision, newest = current(engine), head()
    if revision is None:
        raise SchemaOutdated(f"the database at {where} has no schema yet: {upgrade_hint}")
    if revision != newest and _is_ancestor(revision, newest):
        raise SchemaOutdated(
            f"the database at {where} is at revision {revision}, this code needs {newest}: "
            f"{upgrade_hint}"
        )


def _missing_file(engine: Engine) -> bool:
    """Whether the engine is SQLite on a file that does not exist (yet)."""
    database = engine.url.database
    on_file = engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
    return on_file and not Path(str(database)).exists()


def _is_ancestor(revision: str, newest: str | None) -> bool:
    """Whether `revision` is one of this code's revisions before `newest`."""
    scripts = ScriptDirectory.from_config(_config_without_engine())
    try:
        return any(
            script.revision == revision
            for script in scripts.walk_revisions("base", newest or "heads")
        )
    except CommandError:
        return False


def head() -> str | None:
    """The newest revision this code ships."""
    return ScriptDirectory.from_config(_config_without_engine()).get_current_head()


def _config_without_engine() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config
