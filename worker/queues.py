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

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import redis
from celery import Celery
from kombu.entity import Exchange, Queue
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from worker.publish import SENT_AT_HEADER

Depths = dict[str, int | None]
Ages = dict[str, float | None]

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
    return _read_broker(app, redis_read=_redis_depths, sqla_read=_visible_counts, empty=0)


def oldest_ages(app: Celery) -> Ages:
    """Seconds the oldest waiting message of each queue has waited (0 when none waits);
    None where the broker cannot say, or the message carries no send time."""
    return _read_broker(app, redis_read=_redis_ages, sqla_read=_oldest_payloads, empty=0.0)


T = TypeVar("T")
RedisRead = Callable[[redis.Redis, Mapping[str, list[str]]], dict[str, T | None]]
SqlaRead = Callable[[Engine, str, str], dict[str, T]]


def _read_broker(
    app: Celery, *, redis_read: RedisRead[T], sqla_read: SqlaRead[T], empty: T
) -> dict[str, T | None]:
    """One read of the app's broker, per queue; None for every queue it cannot answer for."""
    names = [queue.name for queue in app.conf.task_queues or ()]
    url = str(app.conf.broker_url or "")
    options: Mapping[str, Any] = app.conf.broker_transport_options or {}
    if url.startswith(("redis://", "rediss://")):
        return _redis_read(url, names, options, redis_read)
    if url.startswith(SQLA_PREFIXES):
        return _sqla_read(url.split("+", 1)[1], names, options, sqla_read, empty)
    return dict.fromkeys(names)


def _redis_read(
    url: str, names: Sequence[str], options: Mapping[str, Any], read: RedisRead[T]
) -> dict[str, T | None]:
    sep = str(options.get("sep", REDIS_PRIORITY_SEP))
    steps = sorted(options.get("priority_steps", REDIS_PRIORITY_STEPS))
    prefix = str(options.get("global_keyprefix", ""))
    keys = {name: [_priority_key(prefix + name, sep, step) for step in steps] for name in names}
    client = redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S
    )
    try:
        return read(client, keys)
    except (redis.RedisError, OSError):
        return dict.fromkeys(names)
    finally:
        client.close()


def _redis_depths(client: redis.Redis, keys: Mapping[str, list[str]]) -> dict[str, int | None]:
    with client.pipeline(transaction=False) as pipe:
        for queue_keys in keys.values():
            for key in queue_keys:
                pipe.llen(key)
        lengths = iter(pipe.execute())
    return {name: sum(int(next(lengths)) for _ in queue_keys) for name, queue_keys in keys.items()}


def _redis_ages(client: redis.Redis, keys: Mapping[str, list[str]]) -> dict[str, float | None]:
    # kombu pushes on the left and pops on the right: each list's oldest is its last element.
    with client.pipeline(transaction=False) as pipe:
        for queue_keys in keys.values():
            for key in queue_keys:
                pipe.lindex(key, -1)
        oldest = iter(pipe.execute())
    return {
        name: _oldest_age([next(oldest) for _ in queue_keys]) for name, queue_keys in keys.items()
    }


def _oldest_age(payloads: Sequence[Any]) -> float | None:
    """The longest wait among these messages' payloads (None entries: an empty list)."""
    ages = [_age_of_payload(raw) for raw in payloads if raw is not None]
    if any(age is None for age in ages):
        return None
    return max((age for age in ages if age is not None), default=0.0)


def _age_of_payload(raw: Any) -> float | None:
    try:
        sent = json.loads(raw).get("headers", {}).get(SENT_AT_HEADER)
    except (ValueError, TypeError, AttributeError):
        return None
    return max(time.time() - float(sent), 0.0) if isinstance(sent, int | float) else None


def _text(member: bytes | str) -> str:
    return member.decode("utf-8", "replace") if isinstance(member, bytes) else member


def _priority_key(queue: str, sep: str, step: int) -> str:
    return f"{queue}{sep}{step}" if step else queue


def _sqla_read(
    url: str, names: Sequence[str], options: Mapping[str, Any], read: SqlaRead[T], empty: T
) -> dict[str, T | None]:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return dict.fromkeys(names)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not Path(database).exists():
            return dict.fromkeys(names, empty)  # nothing was ever published: kombu creates it
    queue_table = str(options.get("queue_tablename", "kombu_queue"))
    message_table = str(options.get("message_tablename", "kombu_message"))
    try:
        engine = create_engine(parsed)
    except (SQLAlchemyError, ImportError):  # ImportError: the URL names a driver not installed
        return dict.fromkeys(names)
    try:
        found = read(engine, queue_table, message_table)
    except SQLAlchemyError:
        return dict.fromkeys(names)
    finally:
        engine.dispose()
    return {name: found.get(name, empty) for name in names}


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


def _oldest_payloads(engine: Engine, queue_table: str, message_table: str) -> dict[str, float]:
    """The oldest visible message's age per queue name (queues with none are left out)."""
    with engine.connect() as connection:
        tables = inspect(connection)
        if not (tables.has_table(queue_table) and tables.has_table(message_table)):
            return {}
        quote = engine.dialect.identifier_preparer.quote
        queue, message = quote(queue_table), quote(message_table)
        rows = connection.execute(
            text(
                f"SELECT q.name, m.payload FROM {queue} q JOIN {message} m ON m.queue_id = q.id "  # noqa: S608 - names from config, quoted
                f"WHERE m.id = (SELECT MIN(o.id) FROM {message} o "
                "WHERE o.queue_id = q.id AND o.visible = :visible)"
            ),
            {"visible": True},
        )
        ages = {str(name): _age_of_payload(payload) for name, payload in rows}
    return {name: age for name, age in ages.items() if age is not None}
