"""A page deep in a list is found through the index on PostgreSQL, not by scanning to it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, event, text

from models.db import make_sessionmaker
from models.queries import IntegrationQuery, encode_cursor, list_integrations


def test_a_cursor_is_an_index_condition_not_a_filter(pg_engine: Engine) -> None:
    cursor = encode_cursor(datetime(2026, 3, 1, tzinfo=UTC), uuid.UUID(int=7))
    executed: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        executed.append((args[2], args[3]))

    event.listen(pg_engine, "before_cursor_execute", capture)
    try:
        with make_sessionmaker(pg_engine)() as session:
            list_integrations(session, IntegrationQuery(workspace_id="ws-a"), after=cursor)
    finally:
        event.remove(pg_engine, "before_cursor_execute", capture)
    statement, parameters = executed[-1]

    with pg_engine.connect() as connection:
        # An empty table would be scanned anyway: ask for the plan an index allows.
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        raw = connection.connection.driver_connection
        assert raw is not None
        plan = "\n".join(row[0] for row in raw.execute("EXPLAIN " + statement, parameters))

    index_conditions = [line for line in plan.splitlines() if "Index Cond" in line]
    assert any("ROW(created_at, id) <" in line for line in index_conditions), plan
