"""Rendering the page's templates: one Jinja2 environment, autoescaped, strict.

Everything a template prints is escaped (provider error texts, names, filters all come
from outside), and an undefined variable is an error rather than an empty string. Times
are shown in UTC with how long ago they were on the application's clock (the demo's runs
fast, so its "ago" is simulated time, like the statuses it explains).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from api.page.session import STATE_KEY, PageSession
from api.page.statuses import STATUS_TEXTS
from models.status import Status
from worker.runtime import Runtime

# Relative times switch unit past these many seconds.
MINUTE_S: Final = 60
HOUR_S: Final = 3600
DAY_S: Final = 86_400
_BACKTICKED: Final = re.compile(r"`([^`]+)`")


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("api.page", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["pretty_json"] = pretty_json
    env.filters["code_spans"] = code_spans
    env.globals["STATUS_TEXTS"] = STATUS_TEXTS
    env.globals["Status"] = Status
    return env


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template as a response; every page gets the session's flashes and CSRF token."""
    env: Environment = request.app.state.templates
    runtime: Runtime = request.app.state.runtime
    # Absent only when a request failed before the session middleware ran.
    session: PageSession | None = getattr(request.state, STATE_KEY, None)
    now = runtime.clock.now()
    page = env.get_template(template).render(
        request=request,
        path=lambda name, query=None, **params: path_for(request, name, query, **params),
        csrf_token=session.csrf_token() if session else "",
        flashes=session.pop_flashes() if session else [],
        signed_in_as=session.key_id if session else None,
        ago=lambda value: ago(value, now),
        **context,
    )
    return HTMLResponse(page, status_code=status_code)


def path_for(
    request: Request, name: str, query: dict[str, Any] | None = None, **params: Any
) -> str:
    """A route's path under the page's mount, with the non-empty `query` items appended.

    Named by the page's own routes (the mount's prefix is the request's root path), so
    the names need no prefix and the page works wherever it is mounted.
    """
    root: str = request.scope.get("root_path", "")
    path = root + str(request.app.url_path_for(name, **params))
    kept = {k: v for k, v in (query or {}).items() if v not in (None, "")}
    return path + ("?" + urlencode(kept) if kept else "")


def when(value: str | None) -> str:
    """An ISO 8601 time as `2026-03-02 09:00:15 UTC`; `-` for none."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: str | None, now: datetime) -> str:
    """How long before (or after) `now` a time is: `5 min ago`, `in 2 h`."""
    if not value:
        return ""
    seconds = (now - datetime.fromisoformat(value)).total_seconds()
    size = abs(seconds)
    if size < MINUTE_S:
        span = f"{size:.0f} s"
    elif size < HOUR_S:
        span = f"{size / MINUTE_S:.0f} min"
    elif size < DAY_S:
        span = f"{size / HOUR_S:.0f} h"
    else:
        span = f"{size / DAY_S:.1f} days"
    return f"{span} ago" if seconds >= 0 else f"in {span}"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def code_spans(text: str) -> Markup:
    """Text with its `backticked` parts as <code>; escaped first, so nothing else is markup."""
    return Markup(_BACKTICKED.sub(r"<code>\1</code>", str(escape(text))))  # noqa: S704 - escaped above
