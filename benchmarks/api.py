"""How fast the Integrations API answers, against a bare FastAPI route in the same run.

    .venv/bin/python benchmarks/api.py [--database-url URL] [--quick]

100,000 integrations are bulk-inserted into PostgreSQL (one workspace), and three apps
are served, each by real uvicorn in a process of its own (one process, as `syncworker
api` runs): the API, the API with the verified-key cache off, and a bare FastAPI app
whose one route returns a constant. This process loads them over HTTP/1.1 keep-alive
with a small asyncio client (raw streams: an HTTP library would cost the client more
than the bare route costs the server, and flatter every ratio). Served over real HTTP
rather than in-process ASGI, because that is what a host application meets: the
socket, the HTTP parsing and uvicorn's event loop are part of every request.

- `get`: `GET /v1/integrations/{id}`, random ids, a workspace key;
- `list_page`: `GET /v1/integrations?limit=100`, at random depths by cursor (keyset:
  a page costs the same at row 100 and row 99,900);
- `bare`: `GET /bare`, the baseline.

Rates: CONNECTIONS concurrent connections for a few seconds per round, rounds
interleaved, medians. Latency p50: one connection, one request at a time (no queueing).
The database (default `bench_api` on the local server, created if missing; or
BENCH_DATABASE_URL) has its `public` schema DROPPED and recreated: never point it at a
database you care about. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import uvicorn
from bench_database import fresh_postgres_schema  # a sibling: the scripts run as files
from fastapi import FastAPI
from sqlalchemy import Engine, text

# This file is benchmarks/api.py and a script's folder leads sys.path, so `import api`
# would import this file again: drop the folder (bench_database is imported already).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from api.app import create_api  # noqa: E402 - after the sys.path fix above
from models.api_keys import Role, create_key  # noqa: E402
from models.credentials import Keyring  # noqa: E402
from models.db import make_sessionmaker  # noqa: E402
from models.queries import encode_cursor  # noqa: E402
from worker.operator import Operator  # noqa: E402
from worker.runtime import Runtime  # noqa: E402
from worker.settings import Settings  # noqa: E402

DEFAULT_DATABASE_URL: Final = "postgresql://postgres@127.0.0.1:5432/bench_api"
WORKSPACE: Final = "ws-bench"
HOST: Final = "127.0.0.1"
# Enough connections to keep one uvicorn process busy while some wait on PostgreSQL, few
# enough that the client's own loop is not what is measured.
CONNECTIONS: Final = 8
PAGE: Final = 100
TARGET_GET_OVER_BARE: Final = 0.3
TARGET_LIST_PAGE_MS_P50: Final = 20.0
NOW: Final = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PROVIDERS: Final = [
    "stripe", "revenuecat", "app_store_connect", "shopify", "google_play_console",
    "whop", "paddle", "woocommerce", "superwall",
]  # fmt: skip
STATUSES: Final = ["active", "sync_warnings", "sync_failing", "setup", "inactive"]


@dataclass(frozen=True)
class Scale:
    stored: int
    round_s: float
    rounds: int
    latency_requests: int


FULL: Final = Scale(stored=100_000, round_s=4.0, rounds=3, latency_requests=300)
QUICK: Final = Scale(stored=100_000, round_s=1.5, rounds=1, latency_requests=60)


def seed(engine: Engine, count: int) -> None:
    """Bulk-insert `count` integrations in WORKSPACE, one second apart, every provider."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO environments (id, organization_id, name, kind) "
                "VALUES (:env, 'org-bench', 'bench', 'production')"
            ),
            {"env": WORKSPACE},
        )
        connection.execute(
            text("""
                INSERT INTO integrations (
                    id, organization_id, environment_id, name, identifier, provider, status,
                    configurations, filters, "primary", conditions, status_changed_at,
                    created_at, updated_at)
                SELECT gen_random_uuid(), 'org-bench', :env, 'bench ' || n, 'bench-' || n,
                    (CAST(:providers AS text[]))[1 + n % 9],
                    (CAST(:statuses AS text[]))[1 + n % 5],
                    '{}', '{"objects": ["customers"]}', false, '[]', :now,
                    :now - make_interval(secs => n), :now
                FROM generate_series(1, :count) AS n
            """),
            {
                "env": WORKSPACE,
                "providers": PROVIDERS,
                "statuses": STATUSES,
                "now": NOW,
                "count": count,
            },
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE integrations"))


def targets(engine: Engine, samples: int) -> tuple[list[str], list[str | None]]:
    """Random integration ids, and list cursors at random depths (None: the first page)."""
    with engine.connect() as connection:
        ids = [str(i) for i in connection.scalars(
            text("SELECT id FROM integrations ORDER BY random() LIMIT :n"), {"n": samples}
        )]  # fmt: skip
        rows = connection.execute(
            text(
                "SELECT created_at, id FROM integrations WHERE status <> 'deleted' "
                "ORDER BY random() LIMIT :n"
            ),
            {"n": samples},
        ).all()
    cursors: list[str | None] = [None, *(encode_cursor(at, key) for at, key in rows)]
    return ids, cursors


def bench_settings(database_url: str, data_dir: Path, key_cache_ttl_s: int) -> Settings:
    return Settings.from_env(
        {
            "SYNCWORKER_DATABASE_URL": database_url,
            "SYNCWORKER_BROKER_URL": "redis://127.0.0.1:6379/15",  # never contacted: reads only
            "SYNCWORKER_DATA_DIR": str(data_dir),
            "SYNCWORKER_CREDENTIAL_KEYS": f"bench:{os.environ['BENCH_CREDENTIAL_KEY']}",
            "SYNCWORKER_API_KEY_CACHE_TTL": str(key_cache_ttl_s),
            "SYNCWORKER_LOG_LEVEL": "WARNING",
        }
    )


def serve(which: str, port: int, database_url: str) -> None:
    """The child process: serve one app with uvicorn until terminated."""
    if which == "bare":
        app = FastAPI()

        @app.get("/bare")
        def bare() -> dict[str, bool]:
            return {"ok": True}

    else:
        ttl = 0 if which == "api-uncached" else 5
        runtime = Runtime.from_settings(bench_settings(database_url, Path(tempfile.mkdtemp()), ttl))
        app = create_api(runtime, Operator(runtime))
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


class Servers:
    """The three apps, each in a uvicorn child process on a port of its own."""

    def __init__(self, database_url: str) -> None:
        self.ports: dict[str, int] = {}
        self._children: list[subprocess.Popen[bytes]] = []
        self._database_url = database_url

    def __enter__(self) -> Servers:
        for which in ("bare", "api", "api-uncached"):
            port = self.ports[which] = _free_port()
            command = [sys.executable, __file__, "--serve", which, "--port", str(port)]
            command += ["--database-url", self._database_url]
            self._children.append(subprocess.Popen(command))  # noqa: S603 - this script
        for port in self.ports.values():
            asyncio.run(_wait_for(port))
        return self

    def __exit__(self, *_: object) -> None:
        for child in self._children:
            child.terminate()
        for child in self._children:
            child.wait(timeout=30)


def _free_port() -> int:
    """A port nothing listens on now (the child binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


async def _wait_for(port: int) -> None:
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise SystemExit(f"no server answered on port {port}")


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> float:
    """Send one request on a keep-alive connection, read the whole answer; seconds taken."""
    started = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = head[9:12]
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    if status != b"200":
        raise SystemExit(f"HTTP {status.decode()}: {body[:200]!r}")
    return time.perf_counter() - started


def _requests(paths: Sequence[str], key: str) -> Iterator[bytes]:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    while True:
        path = random.choice(paths)
        yield f"GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n".encode()


async def _load(port: int, paths: Sequence[str], key: str, seconds: float, conns: int) -> int:
    """Requests completed in `seconds` over `conns` keep-alive connections."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def connection() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(HOST, port)
        requests = _requests(paths, key)
        while time.perf_counter() < deadline:
            await _one(reader, writer, next(requests))
            done += 1
        writer.close()

    await asyncio.gather(*(connection() for _ in range(conns)))
    return done


def rate(port: int, paths: Sequence[str], key: str, seconds: float) -> float:
    """Requests per second over CONNECTIONS connections, after a short warm-up."""
    asyncio.run(_load(port, paths, key, 0.3, CONNECTIONS))
    started = time.perf_counter()
    done = asyncio.run(_load(port, paths, key, seconds, CONNECTIONS))
    return done / (time.perf_counter() - started)


def p50_ms(port: int, paths: Sequence[str], key: str, count: int) -> float:
    """Median latency of one request at a time on one connection."""

    async def measure() -> list[float]:
        reader, writer = await asyncio.open_connection(HOST, port)
        requests = _requests(paths, key)
        for _ in range(10):
            await _one(reader, writer, next(requests))
        taken = [await _one(reader, writer, next(requests)) for _ in range(count)]
        writer.close()
        return taken

    return statistics.median(asyncio.run(measure())) * 1000


def prepare(database_url: str, scale: Scale) -> tuple[str, list[str], list[str]]:
    """Seed the database; a workspace key, get-one paths and list-page paths."""
    engine = fresh_postgres_schema(database_url)
    seed(engine, scale.stored)
    with make_sessionmaker(engine)() as session, session.begin():
        key = create_key(session, role=Role.WORKSPACE, workspace_id=WORKSPACE, now=NOW).key
    ids, cursors = targets(engine, 2000)
    engine.dispose()
    gets = [f"/v1/integrations/{i}" for i in ids]
    pages = [f"/v1/integrations?limit={PAGE}" + (f"&after={c}" if c else "") for c in cursors]
    return key, gets, pages


def run(database_url: str, scale: Scale) -> dict[str, Any]:
    os.environ.setdefault("BENCH_CREDENTIAL_KEY", Keyring.generate_key())
    key, gets, pages = prepare(database_url, scale)
    rates: dict[str, list[float]] = {}
    with Servers(database_url) as servers:
        api, uncached, bare = (
            servers.ports["api"],
            servers.ports["api-uncached"],
            servers.ports["bare"],
        )
        for _ in range(scale.rounds):
            for name, port, paths, auth in (
                ("bare", bare, ["/bare"], ""),
                ("get", api, gets, key),
                ("list_page", api, pages, key),
                ("get_uncached_key", uncached, gets, key),
            ):
                rates.setdefault(name, []).append(rate(port, paths, auth, scale.round_s))
        list_ms = p50_ms(api, pages, key, scale.latency_requests)
        get_ms = p50_ms(api, gets, key, scale.latency_requests)
        bare_ms = p50_ms(bare, ["/bare"], "", scale.latency_requests)
    median = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "stored": scale.stored,
        "connections": CONNECTIONS,
        "rounds": scale.rounds,
        "bare_rps": round(median["bare"], 1),
        "get_rps": round(median["get"], 1),
        "list_page_rps": round(median["list_page"], 1),
        "get_uncached_key_rps": round(median["get_uncached_key"], 1),
        "get_over_bare": round(median["get"] / median["bare"], 3),
        "list_page_over_bare": round(median["list_page"] / median["bare"], 3),
        "get_uncached_key_over_bare": round(median["get_uncached_key"] / median["bare"], 3),
        "list_page_ms_p50": round(list_ms, 2),
        "get_ms_p50": round(get_ms, 2),
        "bare_ms_p50": round(bare_ms, 2),
    }


def report(figures: dict[str, Any]) -> None:
    get_ok = figures["get_over_bare"] >= TARGET_GET_OVER_BARE
    list_ok = figures["list_page_ms_p50"] < TARGET_LIST_PAGE_MS_P50
    get_verdict = "ok" if get_ok else "MISSED"
    rows = [
        ("bare FastAPI route", f"{figures['bare_rps']:,.0f} req/s",
         f"p50 {figures['bare_ms_p50']:.2f} ms", ""),
        ("get one", f"{figures['get_rps']:,.0f} req/s", f"p50 {figures['get_ms_p50']:.2f} ms",
         f"{figures['get_over_bare']:.2f}x bare (>= {TARGET_GET_OVER_BARE}) {get_verdict}"),
        (f"list page of {PAGE}", f"{figures['list_page_rps']:,.0f} req/s",
         f"p50 {figures['list_page_ms_p50']:.2f} ms",
         f"{figures['list_page_over_bare']:.2f}x bare; p50 < {TARGET_LIST_PAGE_MS_P50:g} ms "
         f"{'ok' if list_ok else 'MISSED'}"),
        ("get one, key cache off", f"{figures['get_uncached_key_rps']:,.0f} req/s", "",
         f"{figures['get_uncached_key_over_bare']:.2f}x bare"),
    ]  # fmt: skip
    print(f"{figures['stored']:,} integrations stored; {CONNECTIONS} connections; "
          f"{figures['rounds']} round(s), medians")  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(json.dumps(figures))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--quick", action="store_true", help="shorter rounds, one round")
    parser.add_argument("--serve", choices=["api", "api-uncached", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.database_url)
        return
    report(run(args.database_url, QUICK if args.quick else FULL))


if __name__ == "__main__":
    main()
