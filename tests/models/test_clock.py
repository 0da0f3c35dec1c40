"""The demo's accelerated clock: simulated time runs `speed` times faster, and can be held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models import clock as clock_module
from models.clock import AcceleratedClock

START = datetime(2026, 1, 1, tzinfo=UTC)


class Wall:
    """A stand-in for `time.monotonic` that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> Wall:
    fake = Wall()
    monkeypatch.setattr(clock_module.time, "monotonic", fake)
    return fake


def test_it_runs_speed_times_faster_than_the_wall(wall: Wall) -> None:
    clock = AcceleratedClock(3600, START)

    wall.now += 2

    assert clock.now() == START + timedelta(hours=2)


def test_held_time_stands_still_and_resumes_where_it_stopped(wall: Wall) -> None:
    clock = AcceleratedClock(3600, START)
    wall.now += 1
    clock.hold()
    clock.hold()  # holding twice is holding once

    wall.now += 5
    held_at = clock.now()
    clock.resume()
    wall.now += 1

    assert held_at == START + timedelta(hours=1)
    assert clock.now() == START + timedelta(hours=2)
    assert not clock.held


def test_resume_without_hold_changes_nothing(wall: Wall) -> None:
    clock = AcceleratedClock(60, START)
    clock.resume()

    wall.now += 1

    assert clock.now() == START + timedelta(minutes=1)
