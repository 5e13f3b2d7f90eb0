"""The dashboard's routes: its page (``/``), its built files (``/static/...``) and its sign-in
(``/ui/session``: sign in with an API key, read the session's CSRF token, sign out). The
dashboard reads and writes through the ``/v1`` API with the session's cookie
(``memori_core.server._session``); nothing here is in the OpenAPI schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from memori_core.server._deps import state
from memori_core.server._errors import ApiError
from memori_core.server._keys import ApiKey
from memori_core.server._session import COOKIE, Secured, Session, session_key
from memori_core.server.models import _In
from memori_core.server.routes.ops import key_out

__all__ = ["STATIC", "mount_dashboard"]

#: the dashboard's built files (``make dashboard`` builds them from ``dashboard/frontend``)
STATIC = Path(__file__).parent.parent / "dashboard" / "static"


class SignIn(_In):
    """``POST /ui/session``."""

    key: str = Field(min_length=1, max_length=200, description="an API key, mk_...")


def _session_body(session: Session, grant: ApiKey) -> dict[str, Any]:
    return {"csrf_token": session.csrf_token, "key": key_out(grant).model_dump(mode="json")}


router = APIRouter(prefix="/ui", include_in_schema=False)


@router.post("/session")
async def sign_in(body: SignIn, request: Request) -> Response:
    """Sign in with an API key: the session's cookie and CSRF token.

    Raises:
        ApiError: 401 when the key is not valid.
    """
    server = state(request)
    key = body.key.strip()
    grant = await run_in_threadpool(server.keys.verify, key)
    if grant is None:
        raise ApiError("unauthorized", "the API key is not valid (unknown, revoked or "
                       "mistyped)", "key")
    token, session = server.sessions.open(key)
    response = JSONResponse(_session_body(session, grant))
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


@router.get("/session")
async def current(request: Request) -> Response:
    """The signed-in session's CSRF token and key grant.

    Raises:
        ApiError: 401 when not signed in, or its key was revoked (the session ends).
    """
    server = state(request)
    token = request.cookies.get(COOKIE, "")
    session = server.sessions.get(token) if token else None
    if session is None:
        raise ApiError("unauthorized", "not signed in", COOKIE)
    grant = await run_in_threadpool(server.keys.verify, session.key)
    if grant is None:
        server.sessions.close(token)
        raise ApiError("unauthorized", "the session's API key was revoked: sign in with "
                       "another", COOKIE)
    return JSONResponse(_session_body(session, grant))


@router.delete("/session", status_code=204)
async def sign_out(request: Request) -> Response:
    """End the session (its CSRF token is checked, as for any write) and clear the cookie."""
    server = state(request)
    token = request.cookies.get(COOKIE)
    if token:
        session_key(request, server.sessions)
        server.sessions.close(token)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard on ``app``: ``/``, ``/static/...`` and ``/ui/session``, every answer
    with ``SECURITY_HEADERS`` (``_session.Secured``)."""
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        page = STATIC / "index.html"
        if not page.is_file():
            raise ApiError("not_found", "the dashboard is not built: make dashboard")
        return FileResponse(page, headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    app.add_middleware(Secured)
