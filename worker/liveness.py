"""Beat liveness (SPEC §11): is the beat ticking, are the sweeps on time, is anything stuck?

`check` answers for `syncworker health`, a probe for Kubernetes or cron: each problem
is one short line, none means healthy.

- the database answers, and the broker does (its queue depths are readable);
- the beat is not silent: some provider tick ran within `SILENT_AFTER_TICKS` ticks;
- no sweep is overdue: each ran within `OVERDUE_AFTER_RUNS` of its periods;
- no queue's oldest message has waited longer than the threshold.

Every job's expected period comes from the app's own beat schedule, scaled by the app
clock's speed (marks are written in app-clock time; the demo's clock runs fast).
`LivenessCollector` serves the same facts as metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from celery import Celery
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from models.schema import SchedulerMark
from scheduler.beat import DISPATCH_TASK
from scheduler.marks import marks
from worker.metrics import COLLECT_CACHE_S, Cached
from worker.queues import oldest_ages, queue_depths
from worker.runtime import Runtime, settings_of

# The beat is silent once no provider ticked for this many tick periods.
SILENT_AFTER_TICKS: Final = 4
# A sweep is overdue once it missed this many of its periods in a row.
OVERDUE_AFTER_RUNS: Final = 3


@dataclass(frozen=True)
class Job:
    """One beat schedule entry: its mark's name and its period in app-clock time."""

    name: str
    every: timedelta

    @property
    def is_tick(self) -> bool:
        return self.name.startswith("tick:")


def jobs(app: Celery) -> list[Job]:
    """Every scheduled job of the app, named as its task marks it."""
    speed = settings_of(app).clock_speed
    found = []
    for entry in (app.conf.beat_schedule or {}).values():
        every = timedelta(seconds=float(entry["schedule"]) * speed)
        task = str(entry["task"])
        if task == DISPATCH_TASK:
            found.append(Job(f"tick:{entry['args'][0]}", every))
        elif ".sweep." in task:
            found.append(Job(f"sweep:{task.rsplit('.', 1)[1]}", every))
    return found


def expected_every(app: Celery, name: str) -> timedelta | None:
    """How often the job marked `name` is expected, in app-clock time; None if unscheduled."""
    return next((job.every for job in jobs(app) if job.name == name), None)


@dataclass(frozen=True)
class Report:
    """What the probe found: problems (empty when healthy) and the facts behind them."""

    problems: tuple[str, ...]
    facts: Mapping[str, Any]

    @property
    def healthy(self) -> bool:
        return not self.problems


def check(runtime: Runtime, app: Celery, *, max_queue_age_s: float) -> Report:
    """Probe the database, the broker, the beat, the sweeps and the queues."""
    problems: list[str] = []
    now = runtime.clock.now()
    try:
        with runtime.sessions() as session:
            recorded = marks(session)
    except SQLAlchemyError as exc:
        return Report((f"database unreachable: {_brief(exc)}",), {"database": False})
    problems += _beat_problems(jobs(app), recorded, now)
    depths = queue_depths(app)
    broker = any(depth is not None for depth in depths.values())
    ages = oldest_ages(app) if broker else {}
    if not broker:
        problems.append("broker unreachable: no queue depth could be read")
    for queue, age in sorted(ages.items()):
        if age is not None and age > max_queue_age_s:
            limit = f"{max_queue_age_s:.0f}s"
            problems.append(f"queue {queue}: oldest message waiting {age:.0f}s (limit {limit})")
    facts = {"database": True, "broker": broker, "oldestMessageAgeSeconds": ages}
    return Report(tuple(problems), facts)


def _beat_problems(
    scheduled: Sequence[Job], recorded: Mapping[str, SchedulerMark], now: datetime
) -> list[str]:
    problems = []
    ticks = [job for job in scheduled if job.is_tick]
    if ticks:
        newest = max((recorded[j.name].at for j in ticks if j.name in recorded), default=None)
        silent_after = min(j.every for j in ticks) * SILENT_AFTER_TICKS
        if newest is None:
            problems.append("beat silent: no provider tick has ever run")
        elif now - newest > silent_after:
            problems.append(f"beat silent: last tick {_seconds(now - newest)} ago")
    for job in scheduled:
        if job.is_tick:
            continue
        last = recorded.get(job.name)
        if last is not None and now - last.at > job.every * OVERDUE_AFTER_RUNS:
            problems.append(
                f"{job.name} overdue: last ran {_seconds(now - last.at)} ago, "
                f"every {_seconds(job.every)}"
            )
    return problems


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():.0f}s"


def _brief(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


class LivenessCollector(Collector):
    """Beat runs, missed runs, period and last-run age per job; the oldest message's age per
    queue; whether the database and the broker answer. Each `syncworker health` check has
    its metric: an alert compares a job's age with its period, a queue's age with a limit."""

    def __init__(
        self,
        runtime: Runtime,
        app: Celery,
        *,
        ttl_s: float = COLLECT_CACHE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime
        self._app = app
        # Read at most every `ttl_s`, however often (and by how many) it is scraped.
        self._cache = Cached(ttl_s, monotonic)

    def describe(self) -> Iterable[Metric]:
        return []  # nothing to read at registration: the database is asked when scraped

    def collect(self) -> Iterable[Metric]:
        families: list[Metric] = self._cache.get(self._read)
        return families

    def _read(self) -> list[Metric]:
        # Counts kept in the database since the deployment began: counters (`_total` on the
        # wire), so rate() and increase() work on them across scrapes and restarts.
        runs = CounterMetricFamily("syncworker_beat_runs", "Recorded runs per job", labels=["job"])
        missed = CounterMetricFamily(
            "syncworker_beat_missed_runs",
            "Runs a job skipped (expected = runs + missed)",
            labels=["job"],
        )
        age = GaugeMetricFamily(
            "syncworker_beat_last_run_age_seconds",
            "App-clock seconds since each job ran",
            labels=["job"],
        )
        try:
            with self._runtime.sessions() as session:
                recorded = marks(session)
        except SQLAlchemyError:
            return [GaugeMetricFamily("syncworker_database_up", "Database answers", value=0)]
        now = self._runtime.clock.now()
        for name, found in sorted(recorded.items()):
            runs.add_metric([name], found.runs)
            missed.add_metric([name], found.missed)
            age.add_metric([name], (now - found.at).total_seconds())
        oldest = GaugeMetricFamily(
            "syncworker_queue_oldest_message_age_seconds",
            "Seconds the oldest waiting message of each queue has waited",
            labels=["queue"],
        )
        for queue, seconds in sorted(oldest_ages(self._app).items()):
            if seconds is not None:
                oldest.add_metric([queue], seconds)
        every = GaugeMetricFamily(
            "syncworker_beat_expected_every_seconds",
            "How often each job is expected (app-clock seconds)",
            labels=["job"],
        )
        for name, found in sorted(recorded.items()):
            if found.every_s is not None:
                every.add_metric([name], found.every_s)
        up = GaugeMetricFamily("syncworker_database_up", "Database answers", value=1)
        broker = any(depth is not None for depth in queue_depths(self._app).values())
        broker_up = GaugeMetricFamily(
            "syncworker_broker_up", "Broker answers (queue depths readable)", value=int(broker)
        )
        return [runs, missed, age, every, oldest, up, broker_up]
