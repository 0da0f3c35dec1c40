"""The demo's cast: one integration per behaviour, each on its own provider, and its script.

Each scenario names an integration, its provider, how its account is opened in that
provider's fake (which hands back the credentials), and timed steps (in simulated hours)
that change what the fake answers or act as an operator would. The fakes are the same
local API servers the tests use.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Any, Final, Protocol, TypeVar

from fakes.app_store_connect import FakeAppStoreConnect, make_private_key
from fakes.google_play import FakeGooglePlay
from fakes.paddle import FakePaddle
from fakes.revenuecat import FakeRevenueCat
from fakes.server import FakeServer
from fakes.shopify import FakeShopify
from fakes.stripe import FakeStripe
from fakes.superwall import WEBHOOK_SECRET, FakeSuperwall, event, webhook
from fakes.whop import FakeWhop
from fakes.woocommerce import FakeWooCommerce
from models.status import Provider, Status
from worker.connectors.shopify import API_VERSION as SHOPIFY_API_VERSION

# Far more failures than a demo can use up: "from now on", until cleared.
FOREVER: Final = 10**9

F = TypeVar("F", bound=FakeServer)


@dataclass(frozen=True)
class Fakes:
    """The running fake provider APIs, one per provider, each named for its provider."""

    stripe: FakeStripe
    shopify: FakeShopify
    woocommerce: FakeWooCommerce
    paddle: FakePaddle
    revenuecat: FakeRevenueCat
    app_store_connect: FakeAppStoreConnect
    google_play_console: FakeGooglePlay
    whop: FakeWhop
    superwall: FakeSuperwall

    def by_provider(self) -> dict[Provider, FakeServer]:
        return {Provider(f.name): getattr(self, f.name) for f in fields(self)}

    def base_urls(self) -> dict[Provider, str]:
        return {provider: fake.url for provider, fake in self.by_provider().items()}


# Signs a webhook body as sent at the given (simulated) moment: the headers and the body.
Delivery = Callable[[datetime], tuple[dict[str, str], bytes]]


class Stage(Protocol):
    """What a scenario step may use: the fakes and operator actions on its integration."""

    @property
    def fakes(self) -> Fakes: ...

    def operator_action(self, action: str, name: str, **kwargs: Any) -> None: ...
    def api_request(self, name: str) -> None: ...
    def has_synced(self, name: str) -> bool: ...
    def incident_open(self, provider: Provider) -> bool: ...
    def webhook(self, name: str, delivery: Delivery, *, secret: str) -> None: ...


@dataclass(frozen=True)
class Step:
    """One event of a scenario: at `hour`, once its integration is where the step needs it.

    A fault the story means to follow a good first sync waits for that sync; a repair
    waits for the status it repairs. On a fast clock the worker's start-up alone can take
    hours of simulated time, and a sync can lag its schedule.
    """

    hour: float
    text: str  # printed when the step runs; empty for a quiet step
    action: Callable[[Stage], object]
    after: Status | None = None  # a status the integration must have reached
    after_first_sync: bool = False
    # Anything else the step waits for (the fleet's outage waits for its first syncs).
    when: Callable[[Stage], bool] | None = None


@dataclass(frozen=True)
class Scenario:
    """One demo integration: how it starts and what happens to it, hour by hour."""

    name: str
    provider: Provider
    # Opens the integration's account in its provider's fake; returns its credentials.
    account: Callable[[Fakes, date], dict[str, str]]
    steps: tuple[Step, ...] = ()
    environment: str = "production"  # or "development"
    in_setup: bool = False  # created without filters, so it waits in setup
    configurations: dict[str, Any] = field(default_factory=dict)
    on_created: Step | None = None  # runs right after creation, before the first sync

    @property
    def filters(self) -> dict[str, Any] | None:
        return None if self.in_setup else FILTERS[self.provider]


# Every stream of each provider (where it reads `filters["objects"]`); any filters leave setup.
FILTERS: Final[dict[Provider, dict[str, Any]]] = {
    Provider.STRIPE: {"objects": ["customers", "subscriptions", "invoices"]},
    Provider.SHOPIFY: {"objects": ["orders", "customers", "products"]},
    Provider.WOOCOMMERCE: {"objects": ["orders", "products", "customers"]},
    Provider.PADDLE: {"objects": ["transactions", "subscriptions", "customers"]},
    Provider.REVENUECAT: {"objects": ["customers", "subscriptions", "purchases"]},
    Provider.APP_STORE_CONNECT: {"objects": ["sales", "subscriptions"]},
    Provider.GOOGLE_PLAY_CONSOLE: {"objects": ["voided_purchases", "reviews"]},
    Provider.WHOP: {"objects": ["memberships", "payments"]},
    Provider.SUPERWALL: {"objects": ["events"]},
}
KEYS: Final = {
    "healthy": "sk_test_demo_healthy",
    "warnings": "shpat_demo_warnings",
    "flaky": "ck_demo_flaky",
    "flaky-secret": "cs_demo_flaky",
    "expired-key": "pdl_sdbx_apikey_demo_expiring",
    "expired-key-new": "pdl_sdbx_apikey_demo_renewed",
    "broken-first-sync": "sk_demo_broken",
    "idle-dev": "DEMOKEY001",
    "waiting-setup": "whop_demo_setup",
    "deleted": "sw_demo_deleted",
}
SHOPIFY_ORDERS: Final = f"/admin/api/{SHOPIFY_API_VERSION}/orders.json"
ISSUER_ID: Final = "69a6de70-03db-47e3-e053-5b8c7c11a4d1"
PLAY_ACCOUNT: Final = "sync@demo-project.iam.gserviceaccount.com"
PLAY_PACKAGE: Final = "com.example.busy"
# Two weeks of daily App Store reports, the newest three days old (final by then).
REPORT_DAYS: Final = range(3, 17)


def _stripe_account(fakes: Fakes, today: date) -> dict[str, str]:
    fakes.stripe.add_account(KEYS["healthy"], customers=120, subscriptions=40, invoices=60)
    return {"secret_key": KEYS["healthy"]}


def _shopify_shop(fakes: Fakes, today: date) -> dict[str, str]:
    fakes.shopify.add_shop(KEYS["warnings"], orders=60, customers=45, products=12)
    return {"shop_domain": "demo-warnings.myshopify.com", "access_token": KEYS["warnings"]}


def _woocommerce_store(fakes: Fakes, today: date) -> dict[str, str]:
    key, secret = KEYS["flaky"], KEYS["flaky-secret"]
    fakes.woocommerce.add_store(key, secret, orders=80, products=15, customers=50)
    url = "https://flaky-store.example.com"
    return {"store_url": url, "consumer_key": key, "consumer_secret": secret}


def _paddle_account(fakes: Fakes, key: str) -> dict[str, str]:
    fakes.paddle.add_account(key, transactions=45, subscriptions=20, customers=30)
    return {"api_key": key}


def _revenuecat_broken(fakes: Fakes, today: date) -> dict[str, str]:
    fakes.revenuecat.add_project(KEYS["broken-first-sync"], "proj_demo", customers=30)
    fakes.revenuecat.malformed_next(FOREVER, credential=KEYS["broken-first-sync"])
    return {"secret_key": KEYS["broken-first-sync"], "project_id": "proj_demo"}


def _app_store_team(fakes: Fakes, today: date) -> dict[str, str]:
    private_key = make_private_key()  # a fresh .p8 key (EC P-256) on every run
    fake, key_id, vendor = fakes.app_store_connect, KEYS["idle-dev"], "85000001"
    fake.add_team(key_id, ISSUER_ID, private_key, vendor)
    for back in REPORT_DAYS:
        fake.add_report(key_id, "SALES", today - timedelta(days=back), rows=4)
        fake.add_report(key_id, "SUBSCRIPTION", today - timedelta(days=back), rows=2)
    credentials = {"issuer_id": ISSUER_ID, "key_id": key_id, "private_key": private_key}
    return credentials | {"vendor_number": vendor}


def _play_app(fakes: Fakes, today: date) -> dict[str, str]:
    key_file = fakes.google_play_console.add_service_account(PLAY_ACCOUNT, PLAY_PACKAGE)
    fakes.google_play_console.add_reviews(PLAY_PACKAGE, 12)
    return {"service_account_json": key_file, "package_name": PLAY_PACKAGE}


def _whop_company(fakes: Fakes, today: date) -> dict[str, str]:
    fakes.whop.add_company(KEYS["waiting-setup"], "biz_demo_setup", memberships=25, payments=40)
    return {"api_key": KEYS["waiting-setup"], "company_id": "biz_demo_setup"}


def _superwall_key(fakes: Fakes, today: date) -> dict[str, str]:
    fakes.superwall.add_key(KEYS["deleted"])
    return {"api_key": KEYS["deleted"]}


def _superwall_event(at: datetime) -> tuple[dict[str, str], bytes]:
    body = event("evt_demo_renewal", at_ms=int(at.timestamp() * 1000))
    return webhook(body, sent_at=at), body


def _add_customers(stage: Stage) -> None:
    stage.fakes.stripe.add_objects(KEYS["healthy"], "customers", 25)


def _garbage_orders(stage: Stage) -> None:
    stage.fakes.shopify.malformed_next(FOREVER, path=SHOPIFY_ORDERS, credential=KEYS["warnings"])


def _orders_recover(stage: Stage) -> None:
    stage.fakes.shopify.clear_script(credential=KEYS["warnings"])


def _store_down(stage: Stage) -> None:
    stage.fakes.woocommerce.fail_next(FOREVER, 503, credential=KEYS["flaky"])


def _store_back(stage: Stage) -> None:
    stage.fakes.woocommerce.clear_script(credential=KEYS["flaky"])


def _revoke_key(stage: Stage) -> None:
    stage.fakes.paddle.revoke(KEYS["expired-key"])


def _new_key(stage: Stage) -> None:
    renewed = _paddle_account(stage.fakes, KEYS["expired-key-new"])
    stage.operator_action("set_credentials", "expired-key", credentials=renewed)


def _fix_qa(stage: Stage) -> None:
    stage.fakes.revenuecat.clear_script(credential=KEYS["broken-first-sync"])
    stage.operator_action("resolve_qa", "broken-first-sync")


def _configure_filters(stage: Stage) -> None:
    stage.operator_action("configure_filters", "waiting-setup", filters=FILTERS[Provider.WHOP])


def _delete(stage: Stage) -> None:
    stage.operator_action("delete", "deleted")


def _first_webhook(stage: Stage) -> None:
    stage.webhook("deleted", _superwall_event, secret=WEBHOOK_SECRET)


SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario(
        "healthy",
        Provider.STRIPE,
        _stripe_account,
        (Step(50, "new customers arrive", _add_customers),),
    ),
    Scenario(
        "warnings",
        Provider.SHOPIFY,
        _shopify_shop,
        (
            Step(8, "the orders endpoint answers garbage", _garbage_orders, after_first_sync=True),
            Step(70, "the orders endpoint recovers", _orders_recover, after=Status.SYNC_WARNINGS),
        ),
    ),
    Scenario(
        "flaky",
        Provider.WOOCOMMERCE,
        _woocommerce_store,
        (
            Step(20, "the store answers 503", _store_down, after_first_sync=True),
            # Down for a day: past twice its interval without a success, it turns late.
            Step(44, "the store is back", _store_back, after=Status.SYNC_FAILING),
        ),
    ),
    Scenario(
        "expired-key",
        Provider.PADDLE,
        lambda fakes, _: _paddle_account(fakes, KEYS["expired-key"]),
        (
            Step(
                24, "the customer's key rotation revokes ours", _revoke_key, after_first_sync=True
            ),
            Step(130, "the customer pastes a new key", _new_key, after=Status.CREDENTIALS_INVALID),
        ),
    ),
    Scenario(
        "broken-first-sync",
        Provider.REVENUECAT,
        _revenuecat_broken,
        (Step(40, "engineers fix it and resolve QA", _fix_qa, after=Status.QUALITY_ASSURANCE),),
    ),
    Scenario("idle-dev", Provider.APP_STORE_CONNECT, _app_store_team, environment="development"),
    Scenario(
        "busy-dev",
        Provider.GOOGLE_PLAY_CONSOLE,
        _play_app,
        # The host application calls the integration's API daily, for longer than tours run.
        tuple(Step(hour, "", lambda s: s.api_request("busy-dev")) for hour in range(12, 2000, 24)),
        environment="development",
    ),
    Scenario(
        "waiting-setup",
        Provider.WHOP,
        _whop_company,
        (Step(10, "the customer configures filters", _configure_filters),),
        in_setup=True,
    ),
    Scenario(
        "deleted",
        Provider.SUPERWALL,
        _superwall_key,
        (Step(30, "an operator deletes the integration", _delete),),
        # Superwall's data comes by webhook: counted fresh for longer than this one lives.
        configurations={"stale_after_hours": 72},
        on_created=Step(0, "a webhook event arrives", _first_webhook),
    ),
)


# A provider incident (SPEC §11): a fleet of Stripe customers whose keys the provider
# rejects all at once for two days. One incident event instead of ten alarms, and no key
# expires for it: the fleet's failures inside the incident count toward nothing.
FLEET: Final = tuple(f"fleet-{n:02d}" for n in range(1, 11))
OUTAGE_NAME: Final = "stripe outage"


def _fleet_key(name: str) -> str:
    return f"sk_test_demo_{name.replace('-', '_')}"


def fleet_accounts(fakes: Fakes) -> dict[str, dict[str, str]]:
    """Open each fleet customer's Stripe account; its credentials by name."""
    for name in FLEET:
        fakes.stripe.add_account(_fleet_key(name), customers=5)
    return {name: {"secret_key": _fleet_key(name)} for name in FLEET}


def _outage(stage: Stage) -> None:
    for name in FLEET:
        stage.fakes.stripe.fail_next(FOREVER, 401, credential=_fleet_key(name))


def _outage_over(stage: Stage) -> None:
    for name in FLEET:
        stage.fakes.stripe.clear_script(credential=_fleet_key(name))


def _fleet_synced(stage: Stage) -> bool:
    return all(stage.has_synced(name) for name in FLEET)


OUTAGE: Final[tuple[Step, ...]] = (
    Step(
        60,
        "stripe answers 401 to every key of the fleet: an outage at stripe",
        _outage,
        when=_fleet_synced,
    ),
    # Two days on, and not before the outage was seen for what it is.
    Step(110, "stripe recovers", _outage_over, when=lambda s: s.incident_open(Provider.STRIPE)),
)


def start_fakes(stack: ExitStack) -> Fakes:
    """Start one local fake per provider, stopped with the stack."""

    def started(fake: F) -> F:
        fake.start()
        stack.callback(fake.stop)  # not `__exit__`: a handler's bug is reported, not raised
        return fake

    return Fakes(
        stripe=started(FakeStripe()),
        shopify=started(FakeShopify()),
        woocommerce=started(FakeWooCommerce()),
        paddle=started(FakePaddle()),
        revenuecat=started(FakeRevenueCat()),
        app_store_connect=started(FakeAppStoreConnect()),
        google_play_console=started(FakeGooglePlay()),
        whop=started(FakeWhop()),
        superwall=started(FakeSuperwall()),
    )
