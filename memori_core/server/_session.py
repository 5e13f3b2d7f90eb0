"""The dashboard's sign-in: a session cookie in place of ``Authorization: Bearer``.

The dashboard (``memori_core/server/dashboard/static``, served at ``/``) signs in with an API
key: ``POST /ui/session {"key": "mk_..."}`` checks it as a bearer key is checked and answers a
CSRF token, setting the cookie ``memori_session`` (HttpOnly, SameSite=Strict, Path=/; Secure
over https). Every ``/v1`` route then takes the cookie in place of the key; a request that
may write (any method but GET, HEAD, OPTIONS) also sends ``X-CSRF-Token``.

A session lives in this process's memory (signing out on restart, as an in-memory store must):
it holds the key as presented, which is checked again through the ``KeyRing`` on every
request, so a revoked key ends its sessions as it ends bearer requests. A session unused for
``ServerSettings.session_idle_seconds`` ends; at most ``MAX_SESSIONS`` are kept (the least
recently used ends first).

Every answer of the dashboard (``/``, ``/static/...``, ``/ui/...``) carries ``SECURITY_HEADERS``:
a Content-Security-Policy that allows only the server's own scripts, styles and requests.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memori_core.server._errors import ApiError

__all__ = ["COOKIE", "CSRF_HEADER", "MAX_SESSIONS", "SAFE_METHODS", "SECURITY_HEADERS",
           "Secured", "Session", "Sessions", "session_key"]

#: the session cookie's name
COOKIE = "memori_session"
#: the header a cookie-authenticated write sends its session's CSRF token in
CSRF_HEADER = "X-CSRF-Token"
#: sessions kept per process (the least recently used ends first beyond it)
MAX_SESSIONS = 10_000
#: methods that never write: they need no CSRF token
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; font-src 'self'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass
class Session:
    """One signed-in browser: the key it presented (checked again on every request), its
    CSRF token, and when it was last used (``time.monotonic()`` seconds)."""

    key: str
    csrf_token: str
    last_used: float


class Sessions:
    """The signed-in sessions of one server process, by the SHA-256 of their cookie.

    Args:
        idle_seconds: a session unused this long ends (seconds; from
            ``ServerSettings.session_idle_seconds``).
        max_sessions: at most this many are kept (``MAX_SESSIONS``).
    """

    def __init__(self, idle_seconds: float, max_sessions: int = MAX_SESSIONS) -> None:
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self._by_digest: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def open(self, key: str) -> tuple[str, Session]:
        """A new session for ``key`` (already verified).

        Returns:
            the cookie's value (43 URL-safe characters, 256 random bits) and the session.
        """
        token = secrets.token_urlsafe(32)
        session = Session(key=key, csrf_token=secrets.token_urlsafe(32),
                          last_used=time.monotonic())
        with self._lock:
            self._by_digest[self._digest(token)] = session
            while len(self._by_digest) > self.max_sessions:
                self._by_digest.popitem(last=False)
        return token, session

    def get(self, token: str) -> Session | None:
        """The live session of cookie value ``token`` (its idle time starts again), or None
        when there is none or it has been idle too long (then it ends)."""
        digest = self._digest(token)
        now = time.monotonic()
        with self._lock:
            session = self._by_digest.get(digest)
            if session is None:
                return None
            if now - session.last_used > self.idle_seconds:
                del self._by_digest[digest]
                return None
            session.last_used = now
            self._by_digest.move_to_end(digest)
            return session

    def close(self, token: str) -> None:
        """End the session of cookie value ``token`` (nothing when there is none)."""
        with self._lock:
            self._by_digest.pop(self._digest(token), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_digest)


def session_key(request: Request, sessions: Sessions) -> str | None:
    """The API key of the request's dashboard session, or None when it sends no cookie.

    Raises:
        ApiError: 401 when the cookie names no live session (sign in again); 403 when a
            request that may write lacks its session's ``X-CSRF-Token``.
    """
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    session = sessions.get(token)
    if session is None:
        raise ApiError("unauthorized", "the dashboard session has ended (signed out, idle "
                       "too long or the server restarted): sign in again", COOKIE)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise ApiError("forbidden", f"a write from the dashboard sends its session's "
                           f"{CSRF_HEADER} header (GET /ui/session gives it)", CSRF_HEADER)
    return session.key


class Secured:
    """Add ``SECURITY_HEADERS`` to every answer under the dashboard's paths."""

    PREFIXES = ("/static/", "/ui/")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/" or path.startswith(self.PREFIXES)):
            await self.app(scope, receive, send)
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, secured)
