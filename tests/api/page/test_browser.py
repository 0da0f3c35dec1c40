"""The integrations page in a real browser: Debian's chromium, driven by Playwright.

The real app is served by uvicorn on a loopback port in a thread of the test, over the
real database. The browser is the system's (`/usr/bin/chromium`, or `TEST_BROWSER`); no
browser is ever downloaded. It is headless, sandboxed from the network (every request
that is not to the app is aborted and counted: the page must need nothing from
elsewhere) and starts from a fresh profile.

The browser tests skip only where no chromium is installed and `TEST_BROWSER` is unset;
`.ci/run` installs chromium and sets `TEST_BROWSER`, so in CI they always run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route, sync_playwright

from api.serving import BackgroundServer
from models.status import SyncOutcome
from tests.api.conftest import AddIntegration, Api, Sync

SYSTEM_CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A step waits this long for the page before the test fails (a loopback app answers in ms).
STEP_TIMEOUT_MS: Final = 15_000
# Screenshots are taken at a desktop width, so the list's columns show as an operator sees them.
VIEWPORT: Final = {"width": 1280, "height": 900}

pytestmark = pytest.mark.parametrize("engine", ["postgres"], indirect=True)


@pytest.fixture
def chromium() -> Path:
    """The system chromium: TEST_BROWSER, else Debian's; skipped where there is none."""
    configured = os.environ.get("TEST_BROWSER")
    if configured:
        path = Path(configured)
        if not os.access(path, os.X_OK):
            pytest.fail(f"TEST_BROWSER={configured} is not an executable browser")
        return path
    if not SYSTEM_CHROMIUM.exists():
        pytest.skip("no chromium: `apt-get install chromium` or set TEST_BROWSER")
    return SYSTEM_CHROMIUM


@pytest.fixture
def served(api: Api) -> Iterator[str]:
    """The real app (API and page) served by uvicorn on a free loopback port."""
    with BackgroundServer(api.client.app, host="127.0.0.1", port=0) as server:
        yield server.url


@pytest.fixture
def browser_page(chromium: Path, served: str, tmp_path: Path) -> Iterator[tuple[Page, list[str]]]:
    """A tab of a fresh headless chromium; the second item lists requests it was denied."""
    denied: list[str] = []
    app_host = urlsplit(served).netloc

    def only_the_app(route: Route) -> None:
        if urlsplit(route.request.url).netloc == app_host:
            route.continue_()
        else:
            denied.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(chromium),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=VIEWPORT,  # type: ignore[arg-type]
        )
        context.set_default_timeout(STEP_TIMEOUT_MS)
        context.route("**/*", only_the_app)
        try:
            yield context.new_page(), denied
        finally:
            context.close()


def test_an_operator_signs_in_opens_an_integration_in_qa_resolves_it_and_sees_it_active(
    api: Api,
    served: str,
    browser_page: tuple[Page, list[str]],
    *,
    add_integration: AddIntegration,
    sync: Sync,
    in_qa: Callable[..., str],
    tmp_path: Path,
) -> None:
    # given: a few integrations in several statuses, one waiting in quality assurance
    page, denied = browser_page
    add_integration(name="Healthy Co", provider="shopify")
    failing = add_integration(name="Flaky Payments")
    sync(failing, SyncOutcome.SUCCEEDED)
    sync(failing, SyncOutcome.FAILED, error="charges: 503 Service Unavailable from the provider")
    add_integration(name="Waiting Setup", provider="paddle", filters=None)
    broken = in_qa(name="Broken First Sync", error="customers: 500 Internal Server Error")

    # when: the operator signs in
    page.goto(f"{served}/ui/")
    assert page.url.startswith(f"{served}/ui/sign-in")
    page.get_by_label("Operator key").fill(api.keys["operator"])
    page.get_by_role("button", name="Sign in").click()

    # then: the list, every integration with its status
    page.wait_for_url(f"{served}/ui/")
    row = page.locator(f'tr[data-integration="{broken}"]')
    assert row.locator('[data-status="quality_assurance"]').inner_text() == "Quality assurance"
    assert page.locator("tr[data-integration]").count() == 4

    # when: they open the integration in QA and resolve it
    row.get_by_role("link", name="Broken First Sync").click()
    page.wait_for_url(f"{served}/ui/integrations/{broken}")
    assert page.locator(".status-now [data-status]").get_attribute("data-status") == (
        "quality_assurance"
    )
    assert "customers: 500 Internal Server Error" in page.locator(".runs").inner_text()
    page.get_by_role("button", name="Resolve QA").click()

    # then: it is active, the answer is shown, and the list agrees
    page.wait_for_url(f"{served}/ui/integrations/{broken}")
    assert page.locator(".status-now [data-status]").get_attribute("data-status") == "active"
    assert (
        "moved from quality_assurance to active; sync queued"
        in page.locator(".flash-ok").inner_text()
    )
    _screenshot(page, tmp_path, "integration-resolved.png")
    page.get_by_role("navigation").get_by_role("link", name="Integrations").click()
    assert row.locator("[data-status]").get_attribute("data-status") == "active"
    _screenshot(page, tmp_path, "integrations.png")
    assert denied == []


def test_the_overview_and_sign_out_work_in_the_browser(
    api: Api, served: str, browser_page: tuple[Page, list[str]], add_integration: AddIntegration
) -> None:
    page, denied = browser_page
    add_integration()
    page.goto(f"{served}/ui/overview")
    page.get_by_label("Operator key").fill(api.keys["operator"])
    page.get_by_role("button", name="Sign in").click()

    page.wait_for_url(f"{served}/ui/overview")
    assert "1 integrations by status" in page.locator("h2").first.inner_text()
    page.get_by_role("button", name="Sign out").click()

    page.wait_for_url(f"{served}/ui/sign-in")
    assert page.locator(".flash-ok").inner_text() == "signed out"
    page.goto(f"{served}/ui/overview")
    assert page.url.startswith(f"{served}/ui/sign-in")
    assert denied == []


def _screenshot(page: Page, tmp_path: Path, name: str) -> None:
    """Saved under the test's tmp dir, and to SYNCWORKER_SCREENSHOT_DIR when set."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    wanted = os.environ.get("SYNCWORKER_SCREENSHOT_DIR")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(wanted) / name)
