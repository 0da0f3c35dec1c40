"""The app's queues: how they are declared and bound, and how many messages wait on each.

Each queue has its own direct exchange of the same name, bound with its name as the
routing key (what Celery itself declares for a queue it creates on demand), so a message
sent by exchange and routing key reaches exactly one queue. `celery -A worker list
bindings` shows one binding per queue.

Depths are read straight from the broker. Two brokers are supported, the two this project
runs on:

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
from kombu.entity import Exchange, Queue
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
# kombu's redis transport: the set of an exchange's bindings, and the set that keeps it
# from expiring (kombu.transport.redis: Channel.keyprefix_queue, keyprefix_binding_permanent).
# Each member is "<routing key><sep><pattern><sep><queue>".
REDIS_BINDING_KEYS: Final = ("_kombu.binding.%s", "_kombu.binding_permanent.%s")


def declare(names: Sequence[str]) -> list[Queue]:
    """One queue per distinct name, each on its own direct exchange, keyed by its name."""
    # kombu leaves these two unannotated.
    return [
        Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]
        for name in dict.fromkeys(names)
    ]


def prune_bindings(app: Celery) -> int:
    """Remove bindings the app does not declare from its exchanges' tables in Redis.

    Versions before each queue had its own exchange bound every queue to the control
    queue's exchange with the control queue's key, and kombu keeps a binding in Redis
    until it is deleted by hand: left there, every control task would still be copied
    to every queue. The number of bindings removed; 0 on another broker.
    """
    url = str(app.conf.broker_url or "")
    if not url.startswith(("redis://", "rediss://")):
        return 0
    options: Mapping[str, Any] = app.conf.broker_transport_options or {}
    sep = str(options.get("sep", REDIS_PRIORITY_SEP))
    prefix = str(options.get("global_keyprefix", ""))
    wanted: dict[str, set[str]] = {}
    for queue in app.conf.task_queues or ():
        exchange = queue.exchange.name if queue.exchange is not None else ""
        member = sep.join([queue.routing_key or "", "", queue.name])
        wanted.setdefault(exchange, set()).add(member)
    client = redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S
    )
    removed = 0
    try:
        for exchange, members in wanted.items():
            binding, permanent = (prefix + pattern % exchange for pattern in REDIS_BINDING_KEYS)
            found = {*client.smembers(binding), *client.smembers(permanent)}
            stale = [m for m in found if _text(m) not in members]
            if stale:
                removed += int(client.srem(binding, *stale))
                client.srem(permanent, *stale)
    finally:
        client.close()
    return removed


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


def _text(member: bytes | str) -> str:
    return member.decode("utf-8", "replace") if isinstance(member, bytes) else member


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
