"""Recovery probes (SPEC §11) against the Stripe fake over real HTTP, on the manual clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from fakes.stripe import FakeStripe
from models.clock import ManualClock
from models.notices import CREDENTIALS_RECOVERED_EVENT
from models.schema import Integration, OutboxEvent, StatusChange
from tests.conftest import IntegrationFactory
from tests.worker.conftest import worker_settings
from worker.recovery import ProbeResult, run_recovery_probes
from worker.runtime import Runtime

KEY = "sk_test_RecoveryProbe0000000001"
DAY = timedelta(days=1)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        fake.add_account(KEY, customers=3)
        yield fake


def _runtime(
    engine: Engine, tmp_path: Path, clock: ManualClock, fake: FakeStripe, **env: str
) -> Runtime:
    settings = worker_settings(engine, tmp_path, SYNCWORKER_STRIPE_BASE_URL=fake.url, **env)
    return Runtime(settings, clock)


@pytest.fixture
def runtime(
    engine: Engine, tmp_path: Path, clock: ManualClock, fake: FakeStripe
) -> Iterator[Runtime]:
    runtime = _runtime(engine, tmp_path, clock, fake)
    yield runtime
    runtime.close()


def _invalid(
    make_integration: IntegrationFactory, runtime: Runtime, clock: ManualClock
) -> Integration:
    return make_integration(
        status="credentials_invalid",
        status_changed_at=clock.now(),
        credentials_encrypted=runtime.keyring.seal({"secret_key": KEY}),
    )


def _recovered_events(runtime: Runtime) -> list[OutboxEvent]:
    with runtime.sessions() as session:
        return list(
            session.scalars(
                select(OutboxEvent).where(OutboxEvent.kind == CREDENTIALS_RECOVERED_EVENT)
            )
        )


def test_a_still_revoked_key_changes_nothing_and_is_probed_again_a_day_later(
    runtime: Runtime, make_integration: IntegrationFactory, clock: ManualClock, fake: FakeStripe
) -> None:
    integration = _invalid(make_integration, runtime, clock)
    fake.revoke(KEY)

    [probed] = run_recovery_probes(runtime)
    assert probed.result is ProbeResult.REFUSED
    assert len(fake.requests) == 1  # one cheap request

    clock.advance(DAY - timedelta(seconds=1))
    assert run_recovery_probes(runtime) == []  # not due yet
    clock.advance(timedelta(seconds=1))  # exactly a day after the last probe: due
    assert [p.integration_id for p in run_recovery_probes(runtime)] == [integration.id]
    assert _recovered_events(runtime) == []


def test_a_re_enabled_key_is_announced_once_and_left_invalid_by_default(
    runtime: Runtime, make_integration: IntegrationFactory, clock: ManualClock, fake: FakeStripe
) -> None:
    integration = _invalid(make_integration, runtime, clock)

    [first] = run_recovery_probes(runtime)
    clock.advance(DAY)
    [second] = run_recovery_probes(runtime)

    assert first.result is second.result is ProbeResult.WORKS
    [event] = _recovered_events(runtime)
    assert event.payload["integrationId"] == str(integration.id)
    assert event.payload["moved"] is False
    with runtime.sessions() as session:
        assert session.get_one(Integration, integration.id).status == "credentials_invalid"


def test_with_the_setting_on_a_recovered_integration_goes_back_to_active_with_a_sync(
    engine: Engine,
    tmp_path: Path,
    clock: ManualClock,
    fake: FakeStripe,
    make_integration: IntegrationFactory,
) -> None:
    runtime = _runtime(engine, tmp_path, clock, fake, SYNCWORKER_RECOVER_CREDENTIALS="true")
    integration = _invalid(make_integration, runtime, clock)
    try:
        [probed] = run_recovery_probes(runtime)
        with runtime.sessions() as session:
            status = session.get_one(Integration, integration.id).status
            change = session.scalars(
                select(StatusChange)
                .where(StatusChange.integration_id == integration.id)
                .order_by(StatusChange.id.desc())
            ).first()
    finally:
        runtime.close()

    assert probed.change is not None and probed.change.sync_now
    assert status == "active" and change is not None
    assert (change.trigger, change.reason) == (
        "update_credentials",
        "the stored credentials work again (recovery probe)",
    )


def test_a_provider_that_cannot_answer_leaves_the_integration_as_it_was(
    runtime: Runtime, make_integration: IntegrationFactory, clock: ManualClock, fake: FakeStripe
) -> None:
    _invalid(make_integration, runtime, clock)
    fake.fail_next(100, status=503)

    [probed] = run_recovery_probes(runtime)

    assert probed.result is ProbeResult.UNKNOWN
    assert _recovered_events(runtime) == []
