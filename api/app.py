"""The FastAPI application: `create_api` for given collaborators, `serve` for a process.

Importing this module builds nothing. `serve` builds the process's runtime, a Celery
app to publish the syncs actions ask for, and the operator service, and runs uvicorn.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import uvicorn
from celery import Celery
from fastapi import FastAPI

from api import errors, health, integrations, operations, webhooks
from api.keys import VerifiedKeys
from api.page import site as page
from worker.app import create_app
from worker.operator import Operator
from worker.queues import queue_depths
from worker.runtime import Runtime, publisher_of
from worker.settings import Settings

TITLE: Final = "syncworker"
VERSION: Final = "1"
# The largest JSON body the API reads (an integration's credentials, filters and
# configurations are far smaller). A longer one is refused with 413 while it is read,
# before any key is checked (`errors.BodyCap`); the webhook receiver's own cap may be higher.
MAX_JSON_BODY_BYTES: Final = 1024 * 1024


def create_api(runtime: Runtime, operator: Operator) -> FastAPI:
    """The HTTP face over one runtime and its operator service."""
    api = FastAPI(
        title=TITLE,
        version=VERSION,
        description="The Integrations API, the providers' webhook receiver, the page.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    api.state.runtime = runtime
    api.state.operator = operator
    ttl = timedelta(seconds=runtime.settings.api_key_cache_ttl_s)
    api.state.verified_keys = VerifiedKeys(ttl, runtime.clock.now)
    errors.install(api)
    cap = max(MAX_JSON_BODY_BYTES, runtime.settings.api_webhook_max_bytes)
    api.add_middleware(errors.BodyCap, max_bytes=cap)
    api.include_router(integrations.router)
    api.include_router(operations.router)
    api.include_router(webhooks.router)
    api.include_router(health.router)
    page.mount(api, runtime, operator)
    return api


def operator_over(runtime: Runtime, celery: Celery) -> Operator:
    """The operator service publishing the syncs its actions ask for on `celery`."""
    return Operator(
        runtime,
        publisher_of(celery).sync_now,
        queue_depths=lambda: queue_depths(celery),
        broker_url=str(celery.conf.broker_url),
    )


def serve(settings: Settings, *, host: str, port: int) -> None:
    """Run the API in this process until interrupted (uvicorn logs through structlog)."""
    runtime = Runtime.from_settings(settings)
    celery = create_app(settings, runtime=runtime)
    try:
        api = create_api(runtime, operator_over(runtime, celery))
        uvicorn.run(api, host=host, port=port, log_config=None, access_log=False)
    finally:
        celery.close()
        runtime.close()
