"""The beat's scheduler: in memory, every job due the moment beat starts, no file written."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from celery.beat import ScheduleEntry
from celery.schedules import crontab, schedule
from kombu.utils.imports import symbol_by_name

from scheduler.beat import Cadence, build_schedule
from scheduler.providers import DEFAULT_POLICIES
from worker.app import create_app
from worker.beat import due_at_start
from worker.settings import Settings


def test_every_job_is_due_the_moment_beat_starts_and_no_schedule_file_is_written(
    tmp_path: Path,
) -> None:
    # given the app beat runs, in a folder beat could write to
    app = create_app(Settings.from_env({"SYNCWORKER_DATA_DIR": str(tmp_path / "data")}))

    # when its configured scheduler starts
    scheduler = symbol_by_name(app.conf.beat_scheduler)(app, lazy=False)

    # then every tick and sweep is due now, and nothing was written anywhere
    names = set(build_schedule(DEFAULT_POLICIES, Cadence()))
    assert names <= set(scheduler.schedule)
    assert all(scheduler.schedule[name].is_due().is_due for name in names)
    assert not (tmp_path / "data").exists()
    assert list(Path.cwd().glob("celerybeat-schedule*")) == []


def test_after_its_first_run_a_job_waits_its_whole_interval() -> None:
    app = create_app(Settings.from_env({"SYNCWORKER_BROKER_URL": "redis://localhost/0"}))
    entry = ScheduleEntry(name="tick", task="t", schedule=schedule(timedelta(seconds=15)), app=app)

    due_at_start(entry)
    assert entry.is_due().is_due
    ran = next(entry)

    assert not ran.is_due().is_due
    assert 14 < ran.is_due().next <= 15


def test_calendar_entries_keep_their_own_time() -> None:
    app = create_app(Settings.from_env({"SYNCWORKER_BROKER_URL": "redis://localhost/0"}))
    daily = ScheduleEntry(name="daily", task="t", schedule=crontab(minute="0", hour="4"), app=app)
    before = daily.last_run_at

    due_at_start(daily)

    assert daily.last_run_at == before
