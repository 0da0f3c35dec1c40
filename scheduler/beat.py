"""The beat schedule as data: one dispatch tick per provider, plus the maintenance sweeps.

Built from the provider policies, never listed by hand, so a new provider or a
changed queue needs no edit here. Task names are strings: the worker registers
the tasks under these names, and the scheduler never imports Celery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from models.status import Provider
from scheduler.providers import ProviderPolicy

DISPATCH_TASK: Final = "syncworker.dispatch"
SYNC_TASK: Final = "syncworker.sync"
ESCALATE_TASK: Final = "syncworker.sweep.auth_escalation"
DEV_INACTIVITY_TASK: Final = "syncworker.sweep.dev_inactivity"
REAP_TASK: Final = "syncworker.sweep.reap_abandoned"
DELIVER_EVENTS_TASK: Final = "syncworker.events.deliver"
LATENESS_TASK: Final = "syncworker.sweep.lateness"
INCIDENTS_TASK: Final = "syncworker.sweep.incidents"
RECOVERY_PROBES_TASK: Final = "syncworker.sweep.recovery_probes"
REPORT_BACKFILL_TASK: Final = "syncworker.sweep.report_backfill"

# The queue for the scheduler's own short tasks (ticks, sweeps, event delivery), kept apart
# from the provider queues so a backlog of syncs never delays a tick.
CONTROL_QUEUE: Final = "syncworker.control"


@dataclass(frozen=True)
class Cadence:
    """How often the beat runs each kind of job."""

    # A tick every 15 s keeps the dispatch lag well under a minute; an empty tick costs
    # one index probe.
    tick: timedelta = timedelta(seconds=15)
    # The 72-hour rule is checked every 5 minutes: escalations land within 5 minutes of due.
    auth_escalation: timedelta = timedelta(minutes=5)
    # The 14-day rule has day-scale precision; hourly is plenty.
    dev_inactivity: timedelta = timedelta(hours=1)
    # Abandoned runs are found a minute after their lease lapses.
    reap: timedelta = timedelta(minutes=1)
    deliver_events: timedelta = timedelta(seconds=10)
    # Lateness is measured in sync intervals (15 minutes at the least): a minute is prompt.
    lateness: timedelta = timedelta(minutes=1)
    # Incidents open within a minute of the failures that make one, and close as promptly.
    incidents: timedelta = timedelta(minutes=1)
    # Each integration is probed once a day at most; an hourly run finds the ones due.
    recovery_probes: timedelta = timedelta(hours=1)
    # Late report rows are re-read daily, within each provider's lookback window.
    report_backfill: timedelta = timedelta(days=1)


def build_schedule(
    policies: Mapping[Provider, ProviderPolicy], cadence: Cadence | None = None
) -> dict[str, dict[str, Any]]:
    """Celery's `beat_schedule` mapping for these policies."""
    cadence = cadence or Cadence()
    # Each entry expires before the next run is due, so a beat that outran a stopped worker
    # does not leave a pile of stale ticks to run back to back.
    schedule: dict[str, dict[str, Any]] = {
        f"dispatch-{provider.value}": _entry(DISPATCH_TASK, cadence.tick, provider.value)
        for provider in policies
    }
    schedule["sweep-auth-escalation"] = _entry(ESCALATE_TASK, cadence.auth_escalation)
    schedule["sweep-dev-inactivity"] = _entry(DEV_INACTIVITY_TASK, cadence.dev_inactivity)
    schedule["sweep-reap-abandoned"] = _entry(REAP_TASK, cadence.reap)
    schedule["deliver-events"] = _entry(DELIVER_EVENTS_TASK, cadence.deliver_events)
    schedule["sweep-lateness"] = _entry(LATENESS_TASK, cadence.lateness)
    schedule["sweep-incidents"] = _entry(INCIDENTS_TASK, cadence.incidents)
    schedule["sweep-recovery-probes"] = _entry(RECOVERY_PROBES_TASK, cadence.recovery_probes)
    schedule["sweep-report-backfill"] = _entry(REPORT_BACKFILL_TASK, cadence.report_backfill)
    return schedule


def _entry(task: str, every: timedelta, *args: Any) -> dict[str, Any]:
    seconds = every.total_seconds()
    return {
        "task": task,
        "schedule": seconds,
        "args": args,
        "options": {"queue": CONTROL_QUEUE, "expires": seconds},
    }
