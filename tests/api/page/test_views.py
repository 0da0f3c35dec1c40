"""The page's reads: the list with its indicators, filters and pages, an integration's
detail (what its status means, history, runs), the overview; all escaped, no secrets."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.page import views
from api.page.render import code_spans
from api.page.site import HEADERS
from api.page.statuses import STATUS_TEXTS
from models.clock import ManualClock
from models.status import Status, SyncOutcome
from scheduler.marks import mark
from tests.api.conftest import OTHER_WORKSPACE, WORKSPACE, AddIntegration, Api, Sync
from tests.conftest import incident_row

SECRET = "sk_test_PageNeverShowsThis0001"


def _rows(page: str) -> list[str]:
    """The integration ids of the list's rows, in order."""
    return re.findall(r'<tr data-integration="([^"]+)">', page)


def _statuses(page: str) -> list[str]:
    return re.findall(r'data-status="([a-z_]+)"', page)


def test_the_list_shows_each_integration_with_its_indicator_label_and_next_step(
    signed_in: TestClient, add_integration: AddIntegration, sync: Sync
) -> None:
    healthy = add_integration(name="Healthy Co")
    failing = add_integration(name="Failing Co")
    sync(failing, SyncOutcome.SUCCEEDED)
    sync(failing, SyncOutcome.FAILED, error="boom")

    page = signed_in.get("/ui/").text

    assert _rows(page) == [failing, healthy]  # newest first
    failing_text = STATUS_TEXTS[Status.SYNC_FAILING]
    assert 'class="badge tone-red" data-status="sync_failing"' in page
    assert f'shape-{failing_text.shape}"' in page
    assert f">{failing_text.label}</span>" in page
    assert code_spans(failing_text.next_steps[0]) in page
    assert "Healthy Co" in page and "Failing Co" in page


def test_every_status_has_its_own_indicator_label_and_seed_002s_description() -> None:
    texts = [STATUS_TEXTS[status] for status in Status]

    assert len({t.shape for t in texts}) == len(Status)
    assert len({t.label for t in texts}) == len(Status)
    assert STATUS_TEXTS[Status.SYNC_WARNINGS].description.startswith(
        "The last sync was successful with warnings."
    )
    for status in (Status.AUTH_FAILING, Status.CREDENTIALS_INVALID, Status.SETUP):
        assert STATUS_TEXTS[status].next_steps, status


def test_the_list_explains_all_nine_statuses_and_their_next_steps(signed_in: TestClient) -> None:
    page = signed_in.get("/ui/").text

    for status in Status:
        text = STATUS_TEXTS[status]
        assert code_spans(text.description) in page, status
        assert all(code_spans(step) in page for step in text.next_steps), status


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=sync_failing", ["failing"]),
        ("provider=shopify", ["other"]),
        ("api_status=connected", ["failing", "plain"]),
        (f"workspace={OTHER_WORKSPACE}", ["other"]),
        ("status=active&provider=stripe", ["plain"]),
    ],
)
def test_the_list_filters_by_status_provider_api_status_and_workspace(
    signed_in: TestClient,
    add_integration: AddIntegration,
    sync: Sync,
    query: str,
    expected: list[str],
) -> None:
    ids = {
        "plain": add_integration(),
        "failing": add_integration(),
        "other": add_integration(OTHER_WORKSPACE, provider="shopify", filters=None),
    }
    sync(ids["failing"], SyncOutcome.SUCCEEDED)
    sync(ids["failing"], SyncOutcome.FAILED, error="boom")

    page = signed_in.get(f"/ui/?{query}").text

    assert sorted(_rows(page)) == sorted(ids[name] for name in expected)


def test_an_unknown_filter_value_is_a_422_naming_the_valid_ones(signed_in: TestClient) -> None:
    response = signed_in.get("/ui/?status=broken")

    assert response.status_code == 422
    assert "unknown status &#39;broken&#39;; expected one of: setup, active" in response.text


def test_the_list_pages_by_cursor_and_keeps_its_filters(
    signed_in: TestClient, add_integration: AddIntegration, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    created = [add_integration() for _ in range(3)]
    add_integration(OTHER_WORKSPACE)

    first = signed_in.get(f"/ui/?workspace={WORKSPACE}").text
    next_link = html.unescape(re.search(r'href="([^"]+)">next page', first).group(1))  # type: ignore[union-attr]
    second = signed_in.get(next_link).text

    assert f"workspace={WORKSPACE}" in next_link and "after=" in next_link
    assert _rows(first) + _rows(second) == created[::-1]
    assert "next page" not in second
    assert "first page" in second


def test_the_detail_explains_the_status_and_shows_history_and_runs_with_errors_and_warnings(
    signed_in: TestClient, add_integration: AddIntegration, sync: Sync
) -> None:
    integration_id = add_integration(name="Acme")
    sync(integration_id, SyncOutcome.SUCCEEDED, records=3)
    sync(integration_id, SyncOutcome.SUCCEEDED_WITH_WARNINGS, warnings=("field plan unreadable",))
    sync(integration_id, SyncOutcome.FAILED, error="customers: 503 from the provider")

    page = signed_in.get(f"/ui/integrations/{integration_id}").text

    text = STATUS_TEXTS[Status.SYNC_FAILING]
    assert code_spans(text.description) in page
    assert all(code_spans(step) in page for step in text.next_steps)
    timeline = page.split('class="timeline"')[1].split("</ol>")[0]
    moves = ["sync_warnings", "sync_failing", "active", "sync_warnings", "active"]
    assert _statuses(timeline) == moves  # newest first: failing, warnings, created
    assert "<code>sync_failed</code>" in timeline
    runs = page.split('class="runs"')[1]
    assert "customers: 503 from the provider" in runs
    assert "<li>field plan unreadable</li>" in runs
    assert runs.index("customers: 503") < runs.index("field plan unreadable")  # newest first


def test_provider_texts_are_escaped_so_they_cannot_script_the_page(
    signed_in: TestClient, add_integration: AddIntegration, sync: Sync
) -> None:
    integration_id = add_integration(name="<img src=x onerror=alert(1)>")
    sync(integration_id, SyncOutcome.FAILED, error="<script>alert('pwned')</script>")

    detail = signed_in.get(f"/ui/integrations/{integration_id}").text
    listing = signed_in.get("/ui/").text

    for page in (detail, listing):
        assert "<img src=x" not in page
        assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in detail


def test_the_detail_never_shows_credentials(
    signed_in: TestClient, add_integration: AddIntegration
) -> None:
    integration_id = add_integration(credentials={"secret_key": SECRET})

    page = signed_in.get(f"/ui/integrations/{integration_id}").text

    assert SECRET not in page
    assert "<dt>credentials</dt><dd>present</dd>" in page


@pytest.mark.parametrize(
    ("outcomes", "buttons"),
    [
        ((), ["sync-now", "deactivate"]),
        ((SyncOutcome.FAILED,), ["resolve-qa", "deactivate"]),
    ],
)
def test_the_detail_offers_the_actions_that_apply_to_the_status(
    signed_in: TestClient,
    add_integration: AddIntegration,
    sync: Sync,
    outcomes: tuple[SyncOutcome, ...],
    buttons: list[str],
) -> None:
    integration_id = add_integration()
    for outcome in outcomes:
        sync(integration_id, outcome, error="boom")

    page = signed_in.get(f"/ui/integrations/{integration_id}").text

    assert re.findall(r'name="action" value="([a-z-]+)"', page) == buttons
    assert f"/ui/integrations/{integration_id}/delete" in page


def test_an_unknown_integration_is_a_404_page_naming_it(signed_in: TestClient) -> None:
    response = signed_in.get("/ui/integrations/7d3c9a56-0000-4000-8000-000000000000")

    assert response.status_code == 404
    assert "integration 7d3c9a56-0000-4000-8000-000000000000 not found" in response.text
    assert response.headers["content-type"].startswith("text/html")


def test_the_overview_counts_statuses_and_providers_and_shows_queues_and_ticks(
    signed_in: TestClient, add_integration: AddIntegration, sync: Sync
) -> None:
    add_integration()
    failing = add_integration(provider="shopify")
    sync(failing, SyncOutcome.SUCCEEDED)
    sync(failing, SyncOutcome.FAILED, error="boom")

    page = signed_in.get("/ui/overview").text

    assert "2 integrations by status" in page
    counts = dict(re.findall(r'data-status="([a-z_]+)".*?<strong>(\d+)</strong>', page))
    assert counts["active"] == "1" and counts["sync_failing"] == "1" and counts["setup"] == "0"
    assert '<a href="/ui/?provider=shopify">shopify</a>' in page
    assert "<code>sync.shopify</code>" in page
    assert "reap_abandoned" in page


def test_every_page_forbids_framing_scripts_and_caching(
    signed_in: TestClient, add_integration: AddIntegration
) -> None:
    for path in ("/ui/", "/ui/overview", f"/ui/integrations/{add_integration()}", "/ui/nope"):
        response = signed_in.get(path)
        for name, value in HEADERS.items():
            assert response.headers[name] == value, (path, name)


def test_the_stylesheet_is_served_from_the_page_itself(api: Api) -> None:
    page = api.client.get("/ui/sign-in").text
    sheet = re.search(r'<link rel="stylesheet" href="([^"]+)"', page).group(1)  # type: ignore[union-attr]

    response = api.client.get(sheet)

    assert sheet == "/ui/static/page.css"
    assert response.status_code == 200 and ".shape-diamond" in response.text
    assert re.search(r'(src|href)="(https?:)?//', page) is None  # nothing from elsewhere


def test_backticked_commands_show_as_code_and_everything_else_stays_text() -> None:
    shown = code_spans("run `sync <cmd> & more` then <b>stop</b>")

    assert shown == "run <code>sync &lt;cmd&gt; &amp; more</code> then &lt;b&gt;stop&lt;/b&gt;"


def test_the_overview_shows_each_sweeps_last_run_and_what_it_changed(
    api: Api, signed_in: TestClient
) -> None:
    with api.runtime.sessions() as session, session.begin():
        mark(session, "sweep:auth_escalation", now=api.runtime.clock.now(), changed=3)

    page = signed_in.get("/ui/overview").text

    sweeps = page.split("<h2>Sweeps</h2>")[1]
    ran = r"<td>auth_escalation</td><td><time[^>]*>0 s ago</time></td><td>changed 3</td>"
    assert re.search(ran, sweeps)
    assert "<td>dev_inactivity</td><td>never</td><td>-</td>" in sweeps


def test_the_list_and_detail_show_lateness_beside_the_status(
    signed_in: TestClient, api: Api, add_integration: AddIntegration, sync: Sync, clock: ManualClock
) -> None:
    integration = add_integration(name="Quiet Co")
    sync(integration, SyncOutcome.SUCCEEDED)
    clock.advance(timedelta(minutes=31))  # stripe syncs every 15 minutes: 2x is 30

    listing = signed_in.get("/ui/").text
    detail = signed_in.get(f"/ui/integrations/{integration}").text
    api_view = api.client.get(f"/v1/integrations/{integration}", headers=api.headers("operator"))

    assert 'class="lateness lateness-late">late</td>' in listing
    assert '<dd class="lateness"><strong>late</strong>' in detail
    assert "late after 2&times; the sync interval" in detail
    assert api_view.json()["lateness"] == "late"
    assert api_view.json()["status"] == "connected"


def test_the_overview_and_the_detail_show_an_open_provider_incident(
    signed_in: TestClient, api: Api, add_integration: AddIntegration, clock: ManualClock
) -> None:
    integration = add_integration(name="Covered Co")
    now = clock.now()
    with api.runtime.sessions() as session, session.begin():
        session.add(
            incident_row(
                now,
                integrations_seen=30,
                integrations_failing=29,
                peak_failing=29,
                last_seen=30,
                last_failing=29,
            )
        )

    overview = signed_in.get("/ui/overview").text
    detail = signed_in.get(f"/ui/integrations/{integration}").text

    assert 'class="incident-open"' in overview and "29 / 30 in 60 min" in overview
    assert '<dd class="incident"><strong>open</strong>' in detail
    assert "failing on auth for 29 of 30 integrations" in detail


def test_the_detail_view_explains_the_status_and_what_comes_next(
    signed_in: TestClient, add_integration: AddIntegration, sync: Sync
) -> None:
    integration = add_integration(name="Explained Co")
    sync(integration, SyncOutcome.SUCCEEDED)
    sync(integration, SyncOutcome.FAILED, error="GET /v1/customers: 500 Internal Server Error")

    detail = signed_in.get(f"/ui/integrations/{integration}").text

    assert '<section class="card explain" id="explain">' in detail
    assert "Why sync failing, and what next" in detail
    assert "<code>sync_failed</code>: a sync failed (the first sync: QA)" in detail
    assert "next sync" in detail and "late, unless a sync succeeds first" in detail
    assert "Last error: <code>GET /v1/customers: 500 Internal Server Error</code>" in detail
