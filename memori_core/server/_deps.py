"""What every route depends on: the server's state, the caller's key (authentication, rate
limit, scope) and the entity a request may touch; ``v1_router()``, the router of every ``/v1``
route, which checks the key before anything else of a request."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from memori_core.server._errors import ApiError, documented
from memori_core.server._keys import ApiKey, KeyRing, RateLimiter, Scope
from memori_core.server._session import COOKIE, Sessions, session_key
from memori_core.server.models import decode_cursor

if TYPE_CHECKING:
    from memori_core._memori import Memori

__all__ = ["Admin", "Authenticated", "Read", "ServerSettings", "ServerState", "Write", "cursor",
           "entity_for", "state", "unbound", "v1_router"]

_CHALLENGE = 'Bearer realm="memori"'
_MAX_ROW_ID = 2**63 - 1


@dataclass(frozen=True)
class ServerSettings:
    """How ``memori serve`` answers.

    Attributes:
        max_body_bytes: the largest request body accepted, in bytes (413 beyond it; checked
            from ``Content-Length`` before anything is read, and while reading).
        rate_limit: requests per second per key, on average (0: no limit).
        rate_burst: requests a key may send at once before the rate applies.
        key_cache_size: verified keys kept in memory.
        key_cache_ttl: seconds before a cached key's row is read again (revocations made by
            another process count after at most this).
        cors_origins: origins allowed by CORS (empty: CORS off).
        dashboard: serve the dashboard at ``/`` (sign in with a key; ``/ui/session``).
        session_idle_seconds: a dashboard session unused this long ends (seconds).
    """

    max_body_bytes: int = 10 * 1024 * 1024
    rate_limit: float = 100.0
    rate_burst: int = 200
    key_cache_size: int = 1024
    key_cache_ttl: float = 5.0
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    dashboard: bool = True
    session_idle_seconds: float = 12 * 3600.0


@dataclass
class ServerState:
    """One server's parts: the ``Memori`` it serves, its keys, rate limiter and dashboard
    sessions."""

    memori: Memori
    keys: KeyRing
    limiter: RateLimiter
    settings: ServerSettings
    sessions: Sessions


def state(request: Request) -> ServerState:
    """The ``ServerState`` of the app answering ``request``."""
    found: ServerState = request.app.state.memori_server
    return found


def authenticate(request: Request) -> ApiKey:
    """The caller's key, from ``Authorization: Bearer <key>`` or else from the dashboard's
    session cookie (``_session.session_key``: a write also sends ``X-CSRF-Token``), within its
    rate limit.

    Raises:
        ApiError: 401 (no key, or not a valid one; with ``WWW-Authenticate``; or a session
            that has ended), 403 (a cookie-authenticated write without its CSRF token), 429
            (over the key's rate; with ``Retry-After``), 503 (the key could not be checked).
    """
    server = state(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    from_session = None if header else session_key(request, server.sessions)
    if from_session is not None:
        token = from_session
    elif scheme.lower() != "bearer" or not token.strip():
        raise ApiError("unauthorized", "an API key is required: send 'Authorization: Bearer "
                       "<key>' (memori keys create makes one)", "Authorization",
                       {"WWW-Authenticate": _CHALLENGE})
    key = server.keys.verify(token.strip())
    if key is None:
        if from_session is not None:  # revoked since sign-in: the session ends with it
            server.sessions.close(request.cookies.get(COOKIE, ""))
        raise ApiError("unauthorized", "the API key is not valid (unknown, revoked or "
                       "mistyped)", "Authorization",
                       {"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'})
    wait = server.limiter.take(key.key_id)
    if wait > 0:
        raise ApiError("rate_limited", f"over this key's rate limit of "
                       f"{server.limiter.rate:g} requests per second; retry after "
                       f"{wait:.2f} s", None, {"Retry-After": RateLimiter.retry_after(wait)})
    return key


class Authenticated(APIRoute):
    """A route that checks the caller's key (``authenticate``) before anything else: a request
    without a valid key gets 401 (over its rate, 429) whatever its body, which is neither read
    nor parsed nor validated. Such a refusal of a request with a body closes the connection
    (the server reads none of the body, so it cannot wait for the next request behind it)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            try:
                request.state.memori_key = await run_in_threadpool(authenticate, request)
            except ApiError as exc:
                if request.headers.get("content-length", "0") != "0" or \
                        "transfer-encoding" in request.headers:
                    exc.headers = {**exc.headers, "Connection": "close"}
                raise
            return await handle(request)

        return authenticated


def v1_router() -> APIRouter:
    """A router of ``/v1`` routes: ``Authenticated``, each documenting 401, 429 and 503 (a key
    that could not be checked)."""
    return APIRouter(prefix="/v1", route_class=Authenticated,
                     responses=documented(401, 429, 503))


def caller(request: Request) -> ApiKey:
    """The key ``Authenticated`` checked for this request (checked here when the route is not
    one: once per request either way, so the rate limit counts it once)."""
    key: ApiKey | None = getattr(request.state, "memori_key", None)
    return key if key is not None else authenticate(request)


def _needs(scope: Scope) -> Callable[[ApiKey], ApiKey]:
    def check(key: Annotated[ApiKey, Depends(caller)]) -> ApiKey:
        if not key.covers(scope):
            raise ApiError("forbidden", f"this route needs a {scope} key; this one is "
                           f"{key.scope}", "Authorization")
        return key

    return check


#: the caller's key, with at least read / write / admin scope
Read = Annotated[ApiKey, Depends(_needs("read"))]
Write = Annotated[ApiKey, Depends(_needs("write"))]
Admin = Annotated[ApiKey, Depends(_needs("admin"))]


def entity_for(key: ApiKey, entity_id: str | None) -> str:
    """The entity a request is for: ``entity_id``, or the key's only entity when it names
    none.

    Raises:
        ApiError: 422 when none is named and the key has no single entity; 403 when the key
            may not touch it.
    """
    if entity_id is None:
        if key.entity_ids is not None and len(key.entity_ids) == 1:
            return key.entity_ids[0]
        raise ApiError("invalid_request", "entity_id is required", "entity_id")
    if not key.allows(entity_id):
        raise ApiError("forbidden", f"this key may not touch entity {entity_id!r}",
                       "entity_id")
    return entity_id


def unbound(key: ApiKey, what: str) -> None:
    """Refuse a read across entities (``what``) to a key limited to some.

    Raises:
        ApiError: 403.
    """
    if key.bound:
        raise ApiError("forbidden", f"{what} reads across entities: this key is limited to "
                       "some", "Authorization")


def cursor(value: str | None, field_name: str = "cursor") -> int | None:
    """The row id a page cursor stands for.

    Raises:
        ApiError: 422 naming the field, for a cursor this server did not give.
    """
    try:
        row_id = decode_cursor(value)
    except ValueError as exc:
        raise ApiError("invalid_request", str(exc), field_name) from exc
    if row_id is not None and not -_MAX_ROW_ID <= row_id <= _MAX_ROW_ID:  # not a 64-bit row id
        raise ApiError("invalid_request", "not a cursor this server gave", field_name)
    return row_id
