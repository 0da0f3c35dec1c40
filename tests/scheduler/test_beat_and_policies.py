"""The beat schedule as data, provider policies, their overrides and the settings (SPEC §5, §9)."""

from __future__ import annotations

import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from models.credentials import KEYS_ENV_VAR, Keyring
from models.errors import CredentialKeyError, InvalidValue
from models.status import Provider
from scheduler.beat import (
    CONTROL_QUEUE,
    DEV_INACTIVITY_TASK,
    DISPATCH_TASK,
    ESCALATE_TASK,
    INCIDENTS_TASK,
    LATENESS_TASK,
    REAP_TASK,
    RECOVERY_PROBES_TASK,
    REPORT_BACKFILL_TASK,
    Cadence,
    build_schedule,
)
from scheduler.beat import DELIVER_EVENTS_TASK as DELIVER_TASK
from scheduler.providers import DEFAULT_POLICIES, resolve_policies
from worker.app import create_app
from worker.settings import DEV_KEY_FILE, PROVIDER_SETTINGS, Settings

SettingsFactory = Callable[..., Settings]

MAINTENANCE = {
    "sweep-auth-escalation": ESCALATE_TASK,
    "sweep-dev-inactivity": DEV_INACTIVITY_TASK,
    "sweep-reap-abandoned": REAP_TASK,
    "deliver-events": DELIVER_TASK,
    "sweep-lateness": LATENESS_TASK,
    "sweep-incidents": INCIDENTS_TASK,
    "sweep-recovery-probes": RECOVERY_PROBES_TASK,
    "sweep-report-backfill": REPORT_BACKFILL_TASK,
}


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings read from a given environment, with the data dir under tmp_path."""

    def create(**env: str) -> Settings:
        return Settings.from_env({"SYNCWORKER_DATA_DIR": str(tmp_path / "data"), **env})

    return create


# --- the beat schedule -------------------------------------------------------------------


def test_schedule_has_one_dispatch_entry_per_provider_and_the_maintenance_sweeps() -> None:
    schedule = build_schedule(resolve_policies())

    dispatch = {name: entry for name, entry in schedule.items() if name.startswith("dispatch-")}
    assert set(dispatch) == {f"dispatch-{provider.value}" for provider in Provider}
    for provider in Provider:
        entry = dispatch[f"dispatch-{provider.value}"]
        assert entry["task"] == DISPATCH_TASK
        assert tuple(entry["args"]) == (provider.value,)
    assert {name: schedule[name]["task"] for name in MAINTENANCE} == MAINTENANCE
    assert len(schedule) == len(Provider) + len(MAINTENANCE)


def test_schedule_is_built_from_the_policies_so_each_policy_adds_an_entry() -> None:
    one = {Provider.STRIPE: DEFAULT_POLICIES[Provider.STRIPE]}
    two = {**one, Provider.PADDLE: DEFAULT_POLICIES[Provider.PADDLE]}

    assert set(build_schedule(one)) == {"dispatch-stripe", *MAINTENANCE}
    assert set(build_schedule(two)) == {"dispatch-stripe", "dispatch-paddle", *MAINTENANCE}


def test_every_entry_runs_on_the_control_queue_and_expires_before_its_next_run() -> None:
    for name, entry in build_schedule(resolve_policies()).items():
        options = entry["options"]
        assert options["queue"] == CONTROL_QUEUE, name
        assert 0 < options["expires"] <= entry["schedule"], name


def test_schedule_follows_the_cadence() -> None:
    cadence = Cadence(
        tick=timedelta(seconds=5),
        auth_escalation=timedelta(minutes=1),
        dev_inactivity=timedelta(minutes=30),
        reap=timedelta(seconds=20),
        deliver_events=timedelta(seconds=2),
    )

    schedule = build_schedule(resolve_policies(), cadence)

    assert schedule["dispatch-stripe"]["schedule"] == 5.0
    assert schedule["sweep-auth-escalation"]["schedule"] == 60.0
    assert schedule["sweep-dev-inactivity"]["schedule"] == 1800.0
    assert schedule["sweep-reap-abandoned"]["schedule"] == 20.0
    assert schedule["deliver-events"]["schedule"] == 2.0
    assert schedule["deliver-events"]["options"]["expires"] == 2.0


def test_default_tick_is_often_enough_to_keep_dispatch_lag_under_a_minute() -> None:
    assert Cadence().tick < timedelta(minutes=1)


# --- provider policies -------------------------------------------------------------------


def test_every_provider_has_a_default_policy_with_its_own_queue() -> None:
    assert set(DEFAULT_POLICIES) == set(Provider)
    for provider, policy in DEFAULT_POLICIES.items():
        assert policy.provider is provider
        assert policy.queue == f"sync.{provider.value}"
        assert policy.interval >= timedelta(minutes=1)
        assert policy.rate_per_s > 0
        assert policy.burst >= 1
    assert len({policy.queue for policy in DEFAULT_POLICIES.values()}) == len(Provider)


def test_overrides_change_interval_queue_rate_and_base_url_of_that_provider_only() -> None:
    policies = resolve_policies(
        {
            Provider.STRIPE: {
                "interval": timedelta(minutes=5),
                "queue": "sync.fast",
                "rate_per_s": 50.0,
                "burst": 80,
                "base_url": "http://127.0.0.1:9000",
            }
        }
    )

    stripe = policies[Provider.STRIPE]
    assert stripe.interval == timedelta(minutes=5)
    assert stripe.queue == "sync.fast"
    assert (stripe.rate_per_s, stripe.burst) == (50.0, 80)
    assert stripe.base_url == "http://127.0.0.1:9000"
    assert {p: v for p, v in policies.items() if p is not Provider.STRIPE} == {
        p: v for p, v in DEFAULT_POLICIES.items() if p is not Provider.STRIPE
    }


def test_overrides_do_not_change_the_defaults() -> None:
    resolve_policies({Provider.STRIPE: {"queue": "elsewhere"}})

    assert DEFAULT_POLICIES[Provider.STRIPE].queue == "sync.stripe"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"colour": "blue"}, r"unknown stripe policy setting\(s\): \['colour'\]"),
        ({"interval": timedelta(seconds=59)}, "stripe sync interval must be at least one minute"),
        ({"rate_per_s": 0.0}, "stripe rate limit must be positive"),
        ({"rate_per_s": -1.0}, "stripe rate limit must be positive"),
        ({"rate_per_s": float("nan")}, "stripe rate limit must be positive"),
        ({"burst": 0}, "stripe rate limit must be positive"),
    ],
    ids=[
        "unknown-field",
        "interval-too-short",
        "zero-rate",
        "negative-rate",
        "nan-rate",
        "no-burst",
    ],
)
def test_invalid_override_raises_invalid_value_naming_provider_and_setting(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidValue, match=message):
        resolve_policies({Provider.STRIPE: fields})


# --- settings from the environment -------------------------------------------------------


def test_settings_parse_provider_overrides_from_env_names(make_settings: SettingsFactory) -> None:
    settings = make_settings(
        SYNCWORKER_STRIPE_INTERVAL="300",
        SYNCWORKER_STRIPE_QUEUE="stripe-fast",
        SYNCWORKER_PADDLE_RATE="1.5",
        SYNCWORKER_PADDLE_BURST="5",
        SYNCWORKER_APP_STORE_CONNECT_INTERVAL="7200",
        SYNCWORKER_GOOGLE_PLAY_CONSOLE_BASE_URL="http://127.0.0.1:8081",
    )

    providers = settings.providers
    assert providers[Provider.STRIPE].interval == timedelta(minutes=5)
    assert providers[Provider.STRIPE].queue == "stripe-fast"
    assert (providers[Provider.PADDLE].rate_per_s, providers[Provider.PADDLE].burst) == (1.5, 5)
    assert providers[Provider.APP_STORE_CONNECT].interval == timedelta(hours=2)
    assert providers[Provider.GOOGLE_PLAY_CONSOLE].base_url == "http://127.0.0.1:8081"
    assert providers[Provider.SHOPIFY] == DEFAULT_POLICIES[Provider.SHOPIFY]


def test_settings_ignore_blank_overrides_and_other_variables(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(
        SYNCWORKER_STRIPE_QUEUE="  ", OTHER_STRIPE_QUEUE="x", SYNCWORKER_NOPE_QUEUE="y"
    )

    assert settings.providers == resolve_policies()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SYNCWORKER_STRIPE_BURST", "many", "SYNCWORKER_STRIPE_BURST must be a whole number"),
        ("SYNCWORKER_STRIPE_RATE", "fast", "SYNCWORKER_STRIPE_RATE must be a number from 0.001 "),
        ("SYNCWORKER_STRIPE_INTERVAL", "soon", "SYNCWORKER_STRIPE_INTERVAL must be a whole number"),
        ("SYNCWORKER_STRIPE_INTERVAL", "inf", "SYNCWORKER_STRIPE_INTERVAL must be a whole number"),
        ("SYNCWORKER_STRIPE_INTERVAL", "30", "SYNCWORKER_STRIPE_INTERVAL .* from 60 to 2592000"),
        ("SYNCWORKER_STRIPE_RATE", "0", "SYNCWORKER_STRIPE_RATE must be a number from 0.001"),
        ("SYNCWORKER_STRIPE_RATE", "nan", "SYNCWORKER_STRIPE_RATE must be a number from 0.001"),
        ("SYNCWORKER_STRIPE_BASE_URL", "ftp://x", "SYNCWORKER_STRIPE_BASE_URL must be a URL"),
        ("SYNCWORKER_CONCURRENCY", "lots", "SYNCWORKER_CONCURRENCY must be a whole number"),
        ("SYNCWORKER_CONCURRENCY", "0", "SYNCWORKER_CONCURRENCY .* from 1 to 1000, got '0'"),
        ("SYNCWORKER_CONCURRENCY", "-5", "SYNCWORKER_CONCURRENCY .* from 1 to 1000, got '-5'"),
        ("SYNCWORKER_LEASE_TTL", "0", "SYNCWORKER_LEASE_TTL must be a whole number from 2 "),
        ("SYNCWORKER_MAX_RETRIES", "-1", "SYNCWORKER_MAX_RETRIES must be a whole number from 0 "),
        ("SYNCWORKER_METRICS_PORT", "99999", "SYNCWORKER_METRICS_PORT .* from 0 to 65535"),
        ("SYNCWORKER_LOG_LEVEL", "loud", "SYNCWORKER_LOG_LEVEL must be one of debug"),
        ("SYNCWORKER_DATABASE_URL", "mysql://x", "SYNCWORKER_DATABASE_URL must be a URL"),
        ("SYNCWORKER_REDIS_URL", "redis://h:port", "SYNCWORKER_REDIS_URL is not a URL"),
        ("SYNCWORKER_TASK_EVENTS", "maybe", "SYNCWORKER_TASK_EVENTS must be true or false"),
        ("SYNCWORKER_VISIBILITY_TIMEOUT", "700", "TIMEOUT must be above SYNCWORKER_TASK_TIME"),
    ],
)
def test_invalid_setting_in_env_raises_invalid_value_naming_it(
    make_settings: SettingsFactory, name: str, value: str, message: str
) -> None:
    with pytest.raises(InvalidValue, match=message) as raised:
        make_settings(**{name: value})
    assert "\n" not in str(raised.value)


def test_secret_settings_are_never_quoted_in_errors(make_settings: SettingsFactory) -> None:
    with pytest.raises(InvalidValue, match="SYNCWORKER_WEBHOOK_URLS") as raised:
        make_settings(SYNCWORKER_WEBHOOK_URLS="https://ok.example/a,ftp://x/tok_s3cr3t")

    assert "tok_s3cr3t" not in str(raised.value)


def test_readme_states_every_setting_and_its_allowed_range() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith("| `SYNCWORKER_")]
    rows = {line.split("|")[1].strip(" `"): line for line in lines}

    for declared in Settings.variables():
        assert declared.variable in rows, declared.variable
        assert declared.parser.allowed in rows[declared.variable], declared.variable
    for suffix, (_, parser) in PROVIDER_SETTINGS.items():
        assert parser.allowed in rows[f"SYNCWORKER_<PROVIDER>_{suffix}"], suffix


def test_settings_default_to_embedded_sqlite_and_broker_under_the_data_dir(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings()

    data_dir = tmp_path / "data"
    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite:///{data_dir / 'syncworker.db'}"
    assert settings.broker_url == f"sqla+sqlite:///{data_dir / 'broker.db'}"
    assert settings.embedded
    assert settings.redis_url is None
    assert settings.providers == resolve_policies()


def test_default_data_dir_is_an_absolute_dot_dir_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    settings = Settings.from_env({})

    assert settings.data_dir == tmp_path / ".syncworker"
    assert settings.data_dir.is_absolute()


def test_settings_read_urls_and_numbers_from_env(make_settings: SettingsFactory) -> None:
    settings = make_settings(
        SYNCWORKER_DATABASE_URL="postgresql://db/sync",
        SYNCWORKER_BROKER_URL="redis://cache:6379/0",
        SYNCWORKER_REDIS_URL="redis://cache:6379/1",
        SYNCWORKER_CONCURRENCY="8",
        SYNCWORKER_MAX_RETRIES="2",
        SYNCWORKER_WEBHOOK_URLS="http://a.example/hook, ,http://b.example/hook",
        SYNCWORKER_LOG_LEVEL="debug",
    )

    assert settings.database_url == "postgresql://db/sync"
    assert settings.broker_url == "redis://cache:6379/0"
    assert not settings.embedded
    assert settings.redis_url == "redis://cache:6379/1"
    assert (settings.worker_concurrency, settings.max_retries) == (8, 2)
    assert settings.webhook_urls == ("http://a.example/hook", "http://b.example/hook")
    assert settings.log_level == "DEBUG"


def test_task_events_are_off_unless_turned_on(make_settings: SettingsFactory) -> None:
    assert not make_settings().task_events
    assert make_settings(SYNCWORKER_TASK_EVENTS="on").task_events
    assert make_settings(SYNCWORKER_TASK_EVENTS="true").task_events
    assert not make_settings(SYNCWORKER_TASK_EVENTS="false").task_events
    assert not make_settings(SYNCWORKER_TASK_EVENTS="0").task_events


def test_the_celery_app_sends_task_events_as_the_settings_say(
    make_settings: SettingsFactory,
) -> None:
    on = create_app(make_settings(SYNCWORKER_TASK_EVENTS="on"))
    off = create_app(make_settings())

    assert (on.conf.worker_send_task_events, on.conf.task_send_sent_event) == (True, True)
    assert (off.conf.worker_send_task_events, off.conf.task_send_sent_event) == (False, False)


def test_settings_never_show_the_credential_keys(make_settings: SettingsFactory) -> None:
    key = Keyring.generate_key()

    settings = make_settings(SYNCWORKER_CREDENTIAL_KEYS=key)

    assert key not in repr(settings)


# --- the keyring ---------------------------------------------------------------------------


def test_own_broker_without_credential_keys_raises_naming_the_variable(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(SYNCWORKER_BROKER_URL="redis://cache:6379/0")

    with pytest.raises(CredentialKeyError, match=KEYS_ENV_VAR):
        settings.keyring()
    assert not (settings.data_dir / DEV_KEY_FILE).exists()


def test_configured_keys_are_used_on_any_broker(make_settings: SettingsFactory) -> None:
    newest, older = Keyring.generate_key(), Keyring.generate_key()
    settings = make_settings(
        SYNCWORKER_BROKER_URL="redis://cache:6379/0",
        SYNCWORKER_CREDENTIAL_KEYS=f"k2:{newest},k1:{older}",
    )

    keyring = settings.keyring()

    assert keyring.labels == ("k2", "k1")
    assert Keyring.from_config(newest).open(keyring.seal({"secret_key": "sk_x"}))["secret_key"]


def test_malformed_credential_keys_raise_credential_key_error(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(SYNCWORKER_CREDENTIAL_KEYS="not-a-key")

    with pytest.raises(CredentialKeyError, match="credential key #1"):
        settings.keyring()


def test_embedded_keyring_generates_a_private_dev_key_once_and_reuses_it(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    key_file = settings.data_dir / DEV_KEY_FILE
    assert not key_file.exists()

    # when: the first keyring seals, a later one (another process start) opens
    sealed = settings.keyring().seal({"secret_key": "sk_test_1"})
    written = key_file.read_text()
    reopened = make_settings().keyring()

    # then
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert written.startswith("dev:")
    assert key_file.read_text() == written
    assert reopened.labels == ("dev",)
    assert reopened.open(sealed)["secret_key"] == "sk_test_1"
