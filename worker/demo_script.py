"""The demo's cast: one integration per behaviour, and the script that drives the fakes.

Each scenario names an integration, how it is created, and timed steps (in
simulated hours) that change what its fake provider answers or act as an
operator would. The fakes are the same local API servers the tests use.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from models.status import Provider
from tests.fakes.stripe import FakeStripe

# Far more failures than a demo can use up: "from now on", until cleared.
FOREVER: Final = 10**9


@dataclass(frozen=True)
class Fakes:
    """The running fake provider APIs, one per provider the cast uses."""

    stripe: FakeStripe

    def base_urls(self) -> dict[Provider, str]:
        return {Provider.STRIPE: self.stripe.url}


class Stage(Protocol):
    """What a scenario step may use: the fakes and operator actions on its integration."""

    @property
    def fakes(self) -> Fakes: ...

    def integration_id(self, name: str) -> str: ...
    def operator_action(self, action: str, name: str, **kwargs: Any) -> None: ...
    def api_request(self, name: str) -> None: ...


Step = tuple[float, str, Callable[[Stage], object]]


@dataclass(frozen=True)
class Scenario:
    """One demo integration: how it starts and what happens to it, hour by hour."""

    name: str
    provider: Provider
    environment: str  # "production" or "development"
    credentials: dict[str, str]
    filters: dict[str, Any] | None
    prepare: Callable[[Fakes], None]
    steps: tuple[Step, ...] = field(default=())


def _stripe_account(key: str, **counts: int) -> Callable[[Fakes], None]:
    def prepare(fakes: Fakes) -> None:
        fakes.stripe.add_account(key, **({"customers": 120, "subscriptions": 40} | counts))

    return prepare


def _broken_from_start(key: str) -> Callable[[Fakes], None]:
    def prepare(fakes: Fakes) -> None:
        fakes.stripe.add_account(key, customers=30)
        fakes.stripe.malformed_next(FOREVER, credential=key)

    return prepare


FILTERS: Final = {"objects": ["customers", "subscriptions", "invoices"]}
KEYS: Final = {
    "healthy": "sk_test_demo_healthy",
    "warnings": "sk_test_demo_warnings",
    "flaky": "sk_test_demo_flaky",
    "expired-key": "sk_test_demo_expiring",
    "expired-key-new": "sk_test_demo_renewed",
    "broken-first-sync": "sk_test_demo_broken",
    "idle-dev": "sk_test_demo_idle",
    "busy-dev": "sk_test_demo_busy",
    "waiting-setup": "sk_test_demo_setup",
    "deleted": "sk_test_demo_deleted",
}


def _creds(name: str) -> dict[str, str]:
    return {"secret_key": KEYS[name]}


def _renew_key(stage: Stage) -> None:
    stage.fakes.stripe.add_account(KEYS["expired-key-new"], customers=140)
    renewed = {"secret_key": KEYS["expired-key-new"]}
    stage.operator_action("set_credentials", "expired-key", credentials=renewed)


def _fix_and_resolve_qa(stage: Stage) -> None:
    stage.fakes.stripe.clear_script(credential=KEYS["broken-first-sync"])
    stage.operator_action("resolve_qa", "broken-first-sync")


def _api_request(stage: Stage) -> None:
    stage.api_request("busy-dev")


SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario(
        "healthy",
        Provider.STRIPE,
        "production",
        _creds("healthy"),
        FILTERS,
        _stripe_account(KEYS["healthy"], invoices=60),
        steps=(
            (
                50,
                "new customers arrive at Stripe",
                lambda s: s.fakes.stripe.add_objects(KEYS["healthy"], "customers", 25),
            ),
        ),
    ),
    Scenario(
        "warnings",
        Provider.STRIPE,
        "production",
        _creds("warnings"),
        FILTERS,
        _stripe_account(KEYS["warnings"]),
        steps=(
            (
                8,
                "Stripe's invoices endpoint starts answering garbage for this account",
                lambda s: s.fakes.stripe.malformed_next(
                    FOREVER, path="/v1/invoices", credential=KEYS["warnings"]
                ),
            ),
            (
                70,
                "the invoices endpoint recovers",
                lambda s: s.fakes.stripe.clear_script(credential=KEYS["warnings"]),
            ),
        ),
    ),
    Scenario(
        "flaky",
        Provider.STRIPE,
        "production",
        _creds("flaky"),
        FILTERS,
        _stripe_account(KEYS["flaky"]),
        steps=(
            (
                20,
                "Stripe answers 503 for this account",
                lambda s: s.fakes.stripe.fail_next(FOREVER, 503, credential=KEYS["flaky"]),
            ),
            (34, "Stripe is back", lambda s: s.fakes.stripe.clear_script(credential=KEYS["flaky"])),
        ),
    ),
    Scenario(
        "expired-key",
        Provider.STRIPE,
        "production",
        _creds("expired-key"),
        FILTERS,
        _stripe_account(KEYS["expired-key"]),
        steps=(
            (
                24,
                "the customer rolls their Stripe key; ours is revoked",
                lambda s: s.fakes.stripe.revoke(KEYS["expired-key"]),
            ),
            (
                130,
                "the customer pastes a new key",
                _renew_key,
            ),
        ),
    ),
    Scenario(
        "broken-first-sync",
        Provider.STRIPE,
        "production",
        _creds("broken-first-sync"),
        FILTERS,
        _broken_from_start(KEYS["broken-first-sync"]),
        steps=(
            (
                40,
                "engineering fixes the data problem and resolves QA",
                _fix_and_resolve_qa,
            ),
        ),
    ),
    Scenario(
        "idle-dev",
        Provider.STRIPE,
        "development",
        _creds("idle-dev"),
        FILTERS,
        _stripe_account(KEYS["idle-dev"], customers=20),
    ),
    Scenario(
        "busy-dev",
        Provider.STRIPE,
        "development",
        _creds("busy-dev"),
        FILTERS,
        _stripe_account(KEYS["busy-dev"], customers=20),
        steps=tuple((float(hour), "", _api_request) for hour in range(12, 400, 24)),
    ),
    Scenario(
        "waiting-setup",
        Provider.STRIPE,
        "production",
        _creds("waiting-setup"),
        None,
        _stripe_account(KEYS["waiting-setup"]),
        steps=(
            (
                10,
                "the customer configures filters",
                lambda s: s.operator_action("configure_filters", "waiting-setup", filters=FILTERS),
            ),
        ),
    ),
    Scenario(
        "deleted",
        Provider.STRIPE,
        "production",
        _creds("deleted"),
        FILTERS,
        _stripe_account(KEYS["deleted"]),
        steps=(
            (
                30,
                "an operator deletes the integration",
                lambda s: s.operator_action("delete", "deleted"),
            ),
        ),
    ),
)


def start_fakes(stack: ExitStack) -> Fakes:
    """Start one local fake per provider the cast uses, closed with the stack."""
    fakes = Fakes(stripe=stack.enter_context(FakeStripe()))
    for scenario in SCENARIOS:
        scenario.prepare(fakes)
    return fakes
