"""`syncworker demo` serves the integrations page while the tour runs.

The real tour (worker, beat, fakes, embedded default) on a fast clock, with the page served
beside it as the console script does; the test signs in with the printed key over real
HTTP while the tour runs and watches the cast's statuses on the list.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from api.cli import main
from api.demo import ServedPage, serve_page
from models.status import Status
from tests.api.conftest import Api
from tests.worker.conftest import restore_logging  # noqa: F401 - the fixture, used below
from worker.demo import run_tour
from worker.demo_script import FLEET, SCENARIOS
from worker.operator import Operator
from worker.runtime import Runtime

SPEED = 200_000.0
HOURS = 1400.0  # cut a slow machine's run short, as tests/worker/test_demo.py does
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# A list row's status: the first indicator after the row opens.
ROW_STATUS = re.compile(r'<tr data-integration="[^"]+">\s*<td><span [^>]*data-status="([a-z_]+)"')


@pytest.mark.usefixtures("restore_logging")
def test_the_demo_serves_the_page_and_its_statuses_move_while_the_tour_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given: the page beside the tour, as `syncworker demo` serves it
    served: list[ServedPage] = []
    beside = serve_page("127.0.0.1", 0)

    @contextmanager
    def recorded(runtime: Runtime, operator: Operator) -> Iterator[ServedPage]:
        with beside(runtime, operator) as page:
            served.append(page)
            yield page

    seen: list[set[str]] = []  # the statuses each look at the list showed

    def watched(_: Mapping[str, Sequence[Status]]) -> bool:
        """Look at the list while the tour runs; done once it showed a status move."""
        seen.append(_statuses_on_the_list(served[0]))
        return len(seen) > 1 and Status.QUALITY_ASSURANCE.value in set().union(*seen)

    # when
    run_tour(tmp_path / "demo", speed=SPEED, hours=HOURS, until=watched, beside=recorded)

    # then
    printed = capsys.readouterr().out
    page = served[0]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/ui/", page.url)
    assert f"watch it in a browser: {page.url}?refresh=3" in printed
    assert f"sign in with this operator key (the demo's data is throwaway): {page.key}" in printed
    assert "active" in set().union(*seen)
    assert "quality_assurance" in set().union(*seen)  # broken-first-sync's first sync failed
    with pytest.raises(httpx.ConnectError):  # the page stops with the tour
        httpx.get(page.url, timeout=2)


def _statuses_on_the_list(page: ServedPage) -> set[str]:
    """Sign in with the printed key and read the statuses on the list's rows."""
    with httpx.Client(follow_redirects=True, timeout=10) as client:
        form = client.get(page.url)
        token = CSRF.search(form.text).group(1)  # type: ignore[union-attr]
        listing = client.post(form.url, data={"key": page.key, "csrf_token": token, "next": "/ui/"})
    assert listing.status_code == 200, listing.text
    names = re.findall(r'<a href="/ui/integrations/[^"]+">([^<]+)</a>', listing.text)
    assert set(names) <= {s.name for s in SCENARIOS} | set(FLEET)
    return set(re.findall(ROW_STATUS, listing.text))


def test_the_console_scripts_demo_takes_the_pages_host_and_port() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"])

    assert result.exit_code == 0
    for option in ("--speed", "--hours", "--data-dir", "--host", "--port"):
        assert option in result.output
    assert "integrations page" in result.output


def test_a_port_that_is_not_a_port_is_refused_in_one_line() -> None:
    result = CliRunner().invoke(main, ["demo", "--port", "70000"])

    assert result.exit_code == 2
    assert "70000 is not in the range 0<=x<=65535" in result.output


def test_a_busy_port_falls_back_to_a_free_one_and_says_so(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        with serve_page("127.0.0.1", busy)(api.runtime, api.operator) as page:
            answer = httpx.get(page.url, timeout=5)

    printed = capsys.readouterr().out
    assert f"cannot listen on 127.0.0.1:{busy}" in printed
    assert "serving the page on a free port instead" in printed
    assert f":{busy}/" not in page.url
    assert answer.status_code == 303  # the page, asking to sign in
