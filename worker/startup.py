"""What a worker checks before it takes a task, and how it refuses to start.

A worker that cannot do its work must not log "ready" and then fail every sync: with
keys that open no stored credential, every sync would end `auth_failed` and push healthy
integrations towards `credentials_invalid`. So before the pool starts, `check` opens the
database (at this code's schema), the credential keys (against a sample of the stored
ciphertexts) and Redis; `refuse` ends the process with one line and exit code 1.

Celery sends `worker_init` before the pool and logging are set up and logs any
`Exception` a handler raises, then carries on; it lets `SystemExit` through, which ends
`celery worker` (and `syncworker run`) before anything started.
"""

from __future__ import annotations

from typing import NoReturn

from celery import Celery

from models import migrate
from models.credentials import verify_keyring
from worker.outages import reported
from worker.runtime import Runtime, prepared_runtime, settings_of


def check(app: Celery) -> None:
    """Raise a one-line SyncWorkerError unless the app's worker can do its work.

    Uses the app's prepared runtime when it has one (the embedded run, the demo); else a
    runtime of its own, closed afterwards, so a prefork parent forks no open connection.
    """
    settings = settings_of(app)
    prepared = prepared_runtime(app)
    runtime = prepared or Runtime.from_settings(settings, slots=1)
    try:
        with reported(settings):
            keyring = runtime.keyring  # a missing or malformed key raises here
            migrate.require_current(runtime.engine)
            with runtime.sessions() as session:
                verify_keyring(session, keyring)
            if runtime.redis is not None:
                runtime.redis.ping()
    finally:
        if prepared is None:
            runtime.close()


def refuse(reason: object) -> NoReturn:
    """End the process before it starts: the reason on stderr, exit code 1."""
    raise SystemExit(f"syncworker: worker not started: {reason}")
