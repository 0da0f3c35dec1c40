"""The page's session: a signed cookie naming the operator key's id, a CSRF token, flashes.

The cookie holds no secret: the key's id (its public half), the session's CSRF token,
its expiry and at most a few flash messages, signed with HMAC (itsdangerous) under
`Settings.session_secret()`. The key itself is never stored; every request re-checks that
the key is still live (`api.page.guard`), so revoking a key ends its sessions at once.

Why not Starlette's SessionMiddleware: it decides the cookie's `Secure` flag once for the
whole app and slides the expiry forward on every response. Here `Secure` follows the
request's scheme (set behind TLS, absent on a plain-http loopback demo), and a session
ends a fixed time after sign-in however busy it is.

Expiry reads the wall clock (`time.time`), never the application clock: the demo's clock
runs thousands of times faster, and a session must not end in seconds there.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from itsdangerous import BadData, URLSafeSerializer
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE: Final = "syncworker_session"
STATE_KEY: Final = "page_session"
SALT: Final = "syncworker.page.session"
# A signed-in session lasts a working day, then the operator signs in again.
SIGNED_IN_TTL_S: Final = 8 * 3600
# A visitor's session before sign-in only carries the sign-in form's CSRF token.
ANONYMOUS_TTL_S: Final = 3600
CSRF_BYTES: Final = 32
# Flashes ride in the cookie, which browsers cap at 4 KB: a few short messages only.
MAX_FLASHES: Final = 3
MAX_FLASH_CHARS: Final = 400
FLASH_KINDS: Final = frozenset({"ok", "refused"})

Wall = Callable[[], float]


@dataclass
class PageSession:
    """One browser's session; `changed` says the cookie must be written again."""

    csrf: str
    expires_at: float
    key_id: str | None = None
    flashes: list[tuple[str, str]] = field(default_factory=list)
    changed: bool = False
    stored: bool = False  # read from the browser's cookie, so it has this token already

    @classmethod
    def anonymous(cls, now: float) -> PageSession:
        return cls(secrets.token_urlsafe(CSRF_BYTES), now + ANONYMOUS_TTL_S)

    def csrf_token(self) -> str:
        """The token every form carries; asking for it keeps a new session (cookie written)."""
        self.changed = self.changed or not self.stored
        return self.csrf

    def csrf_matches(self, sent: object) -> bool:
        return isinstance(sent, str) and hmac.compare_digest(sent.encode(), self.csrf.encode())

    def sign_in(self, key_id: str, now: float) -> None:
        """Bind the session to a key; a new CSRF token, so one seen before sign-in is void."""
        self.key_id = key_id
        self.csrf = secrets.token_urlsafe(CSRF_BYTES)
        self.expires_at = now + SIGNED_IN_TTL_S
        self.changed = True

    def sign_out(self, now: float) -> None:
        self.key_id = None
        self.csrf = secrets.token_urlsafe(CSRF_BYTES)
        self.expires_at = now + ANONYMOUS_TTL_S
        self.changed = True

    def flash(self, kind: str, text: str) -> None:
        """A message shown once, on the next page rendered."""
        if len(text) > MAX_FLASH_CHARS:
            text = text[: MAX_FLASH_CHARS - 3] + "..."
        self.flashes = [*self.flashes, (kind, text)][-MAX_FLASHES:]
        self.changed = True

    def pop_flashes(self) -> list[tuple[str, str]]:
        shown, self.flashes = self.flashes, []
        self.changed = self.changed or bool(shown)
        return shown


class SessionCodec:
    """Turns a session into a signed cookie value and back; anything off reads as None."""

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeSerializer(secret, salt=SALT)

    def dump(self, session: PageSession) -> str:
        payload = {
            "c": session.csrf,
            "e": session.expires_at,
            "k": session.key_id,
            "f": [list(flash) for flash in session.flashes],
        }
        return str(self._serializer.dumps(payload))

    def load(self, value: str | None, now: float) -> PageSession | None:
        """The session a cookie holds, or None: absent, forged, malformed or expired."""
        if not value:
            return None
        try:
            payload = self._serializer.loads(value)
        except BadData:
            return None
        session = _parse(payload)
        if session is None or session.expires_at <= now:
            return None
        return session


def _parse(payload: Any) -> PageSession | None:
    """Signed by us, so well-formed unless the format changed; checked all the same."""
    if not isinstance(payload, dict):
        return None
    csrf, expires, key_id, flashes = (payload.get(k) for k in ("c", "e", "k", "f"))
    if not isinstance(csrf, str) or not isinstance(expires, int | float):
        return None
    if key_id is not None and not isinstance(key_id, str):
        return None
    if not isinstance(flashes, list) or not all(_is_flash(f) for f in flashes):
        return None
    return PageSession(csrf, float(expires), key_id, [(k, t) for k, t in flashes], stored=True)


def _is_flash(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and value[0] in FLASH_KINDS
        and isinstance(value[1], str)
    )


def session_of(request: Request) -> PageSession:
    """The request's session (the middleware put it there)."""
    session: PageSession = request.state.page_session
    return session


class SessionMiddleware:
    """Loads the session before the page's routes run and writes the cookie when it changed.

    The cookie is HttpOnly (no script reads it; the page has none anyway), SameSite=Lax
    (a cross-site form post never carries it), Secure when the request came over https,
    scoped to the page's path, and lives as long as the session.
    """

    def __init__(self, app: ASGIApp, *, secret: str, wall: Wall = time.time) -> None:
        self.app = app
        self._codec = SessionCodec(secret)
        self._wall = wall

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        now = self._wall()
        session = self._codec.load(connection.cookies.get(COOKIE), now)
        session = session or PageSession.anonymous(now)
        scope.setdefault("state", {})[STATE_KEY] = session
        secure = connection.url.scheme == "https"
        path = scope.get("root_path", "") or "/"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.changed:
                cookie = self._cookie(session, now, path=path, secure=secure)
                MutableHeaders(scope=message).append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _cookie(self, session: PageSession, now: float, *, path: str, secure: bool) -> str:
        max_age = max(0, int(session.expires_at - now))
        flags = f"; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax"
        return f"{COOKIE}={self._codec.dump(session)}{flags}" + ("; Secure" if secure else "")
