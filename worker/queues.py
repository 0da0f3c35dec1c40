"""How many messages wait on each of the app's queues, read straight from the broker.

Two brokers are supported, the two this project runs on:

- Redis: kombu keeps a queue as a list named after it, plus one list per priority
  step above 0 named `<queue><sep><step>` (sep `\\x06\\x16`, steps 0, 3, 6, 9 unless
  the transport options say otherwise); the depth is the sum of their LLENs.
- the embedded SQLAlchemy broker (`sqla+<url>`): kombu keeps messages in
  `kombu_message` joined to `kombu_queue`; a delivered message stays with
  `visible = false`, so only visible ones count.

An unreachable broker, or one of another kind, reads as None for every queue: the
status overview says "unknown" rather than failing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import redis
from celery import Celery
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

Depths = dict[str, int | None]

# kombu's redis transport defaults (kombu.transport.redis: Channel.sep, PRIORITY_STEPS).
REDIS_PRIORITY_SEP: Final = "\x06\x16"
REDIS_PRIORITY_STEPS: Final = (0, 3, 6, 9)
# An overview must answer quickly even when the broker does not.
CONNECT_TIMEOUT_S: Final = 2.0
SQLA_PREFIXES: Final = ("sqla+", "sqlalchemy+")


def queue_depths(app: Celery) -> Depths:
    """Messages waiting on each queue the app consumes; None where the broker cannot say."""
    names = [queue.name for queue in app.conf.task_queues or ()]
    url = str(app.conf.broker_url or "")
    options: Mapping[str, Any] = app.conf.broker_transport_options or {}
    if url.startswith(("redis://", "rediss://")):
        return _redis_depths(url, names, options)
    if url.startswith(SQLA_PREFIXES):
        return _sqla_depths(url.split("+", 1)[1], names, options)
    return dict.fromkeys(names)


def _redis_depths(url: str, names: Sequence[str], options: Mapping[str, Any]) -> Depths:
    sep = str(options.get("sep", REDIS_PRIORITY_SEP))
    steps = sorted(options.get("priority_steps", REDIS_PRIORITY_STEPS))
    prefix = str(options.get("global_keyprefix", ""))
    keys = {name: [_priority_key(prefix + name, sep, step) for step in steps] for name in names}
    client = redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S
    )
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                for key in keys[name]:
                    pipe.llen(key)
            lengths = iter(pipe.execute())
    except (redis.RedisError, OSError):
        return dict.fromkeys(names)
    finally:
        client.close()
    return {name: sum(int(next(lengths)) for _ in keys[name]) for name in names}


def _priority_key(queue: str, sep: str, step: int) -> str:
    return f"{queue}{sep}{step}" if step else queue


def _sqla_depths(url: str, names: Sequence[str], options: Mapping[str, Any]) -> Depths:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return dict.fromkeys(names)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not Path(database).exists():
            return dict.fromkeys(names, 0)  # nothing was ever published: kombu creates it
    queue_table = str(options.get("queue_tablename", "kombu_queue"))
    message_table = str(options.get("message_tablename", "kombu_message"))
    try:
        engine = create_engine(parsed)
    except (SQLAlchemyError, ImportError):  # ImportError: the URL names a driver not installed
        return dict.fromkeys(names)
    try:
        counts = _visible_counts(engine, queue_table, message_table)
    except SQLAlchemyError:
        return dict.fromkeys(names)
    finally:
        engine.dispose()
    return {name: counts.get(name, 0) for name in names}


def _visible_counts(engine: Engine, queue_table: str, message_table: str) -> dict[str, int]:
    """Visible messages per queue name; empty when kombu has not created its tables yet."""
    with engine.connect() as connection:
        tables = inspect(connection)
        if not (tables.has_table(queue_table) and tables.has_table(message_table)):
            return {}
        quote = engine.dialect.identifier_preparer.quote
        rows = connection.execute(
            text(
                f"SELECT q.name, COUNT(m.id) FROM {quote(queue_table)} q "  # noqa: S608 - names from config, quoted
                f"JOIN {quote(message_table)} m ON m.queue_id = q.id "
                "WHERE m.visible = :visible GROUP BY q.name"
            ),
            {"visible": True},
        )
        return {str(name): int(count) for name, count in rows}
