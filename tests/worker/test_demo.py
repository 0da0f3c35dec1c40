"""The guided tour on a much faster clock: the same story, told in seconds.

A real worker and beat on the embedded default, the nine local fakes over HTTP; the
outcome is read from what `run_tour` returns (the database's view) and what it printed.
Assertions are on the statuses reached, never on the hours they were reached at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from models.status import Provider, Status
from worker.demo import label, run_tour
from worker.demo_script import FLEET

SPEED = 200_000.0
# The tour stops once every story is told, after about 400 simulated hours (7 s); a slow
# machine's run is cut at 1400 (25 s), before busy-dev's daily API requests end.
HOURS = 1400.0
# The incident's story: the outage starts at hour 60 at the soonest and the incident
# closes a day or two after stripe recovers (hour 110 at the soonest).
INCIDENT_SPEED = 20_000.0
INCIDENT_HOURS = 1400.0

A, W, F, Q = Status.ACTIVE, Status.SYNC_WARNINGS, Status.SYNC_FAILING, Status.QUALITY_ASSURANCE
# Each scenario's story: every status its integration moves to, in order.
STORIES: dict[str, tuple[Status, ...]] = {
    "healthy": (A,),
    "warnings": (A, W, A),
    "flaky": (A, F, A),
    "expired-key": (A, Status.AUTH_FAILING, Status.CREDENTIALS_INVALID, A),
    "broken-first-sync": (A, Q, A),
    "idle-dev": (A, Status.INACTIVE),
    "busy-dev": (A,),
    "waiting-setup": (Status.SETUP, A),
    "deleted": (A, Status.DELETED),
}


def _told(reached: Mapping[str, Sequence[Status]]) -> bool:
    return all(tuple(reached.get(name, ())) == story for name, story in STORIES.items())


# Simulated time stands still while the worker is behind, so a loaded machine tells the same
# story, only slower: allow it the time.
@pytest.mark.timeout(360)
def test_tour_shows_all_nine_statuses_and_ends_every_story_as_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    # when
    summary = run_tour(tmp_path / "demo", speed=SPEED, hours=HOURS, until=_told)

    # then
    printed = capsys.readouterr()
    assert summary.reached == set(Status)
    assert {e.name: e.reached for e in summary.endings} == STORIES
    assert {e.name: e.status for e in summary.endings} == {n: s[-1] for n, s in STORIES.items()}
    assert {e.provider for e in summary.endings} == set(Provider)
    assert summary.fake_errors == ()
    assert printed.err == ""
    story, table = printed.out.split("where everything ended up:")
    changes = [line for line in story.splitlines() if " -> " in line]
    assert changes
    names = [*STORIES, *FLEET]
    assert all(any(f"  {label(name)} " in line for name in names) for line in changes)
    assert sorted(line.split()[0] for line in table.strip().splitlines()) == sorted(STORIES)


def test_tour_shows_a_provider_incident_and_a_late_integration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    # when the tour runs (on a slower clock: the incident sweep must see the outage well
    # within the 72 hours a key needs to expire) until the incident has closed again
    printed: list[str] = []

    def incident_over(_: Mapping[str, Sequence[Status]]) -> bool:
        printed.append(capsys.readouterr().out)
        return "provider incident closed" in "".join(printed)

    run_tour(tmp_path / "demo", speed=INCIDENT_SPEED, hours=INCIDENT_HOURS, until=incident_over)

    # then one incident event for the fleet, a late flaky store, and no fleet key expired
    out = "".join(printed) + capsys.readouterr().out
    lines = out.splitlines()
    opened = [line for line in lines if "provider incident opened" in line]
    assert len(opened) == 1 and "stripe: provider incident opened (auth: " in opened[0]
    assert any("stripe: provider incident closed" in line for line in lines), out
    assert any(f"{label('flaky')}: late" in line for line in lines)
    fleet_moves = [line for line in lines if "fleet-" in line and " -> " in line]
    assert not any("credentials_invalid" in line for line in fleet_moves)
