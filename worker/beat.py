"""The beat's scheduler: Celery's in-memory one, with every job due the moment beat starts.

Celery's default scheduler keeps each entry's last run in a shelve file, which needs a
writable data folder on the beat's host and, on a fresh host, a folder that exists. Nothing
here needs it: every job of the schedule (`scheduler.beat.build_schedule`) is idempotent and
cheap when there is nothing to do (a tick claims what is due, a sweep changes what its rule
finds), and the database records when each last ran (`scheduler.marks`). So the beat keeps
its schedule in memory and runs every job once at start, then on its cadence: a restart
never postpones a job by a whole interval, and a beat restarted more often than hourly still
runs the hourly sweep.
"""

from __future__ import annotations

from typing import Any, Final

from celery import beat, schedules

# What `beat_scheduler` names (and `celery -A worker beat` uses).
SCHEDULER: Final = "worker.beat:Scheduler"


class Scheduler(beat.Scheduler):  # type: ignore[misc]  # Celery ships no type hints
    """In memory, no schedule file; every interval entry is due at start."""

    def setup_schedule(self) -> None:
        super().setup_schedule()
        for entry in self.schedule.values():
            due_at_start(entry)


def due_at_start(entry: Any) -> None:
    """Make an interval entry due now: as if it last ran one interval ago."""
    if isinstance(entry.schedule, schedules.schedule):  # not crontab or solar: they keep time
        entry.last_run_at = entry.default_now() - entry.schedule.run_every
