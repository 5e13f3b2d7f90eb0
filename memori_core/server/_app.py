"""The app factory: one FastAPI app over one ``Memori``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memori_core.server._deps import ServerSettings, ServerState
from memori_core.server._errors import ERROR_CODES, documented, error_response, install_handlers
from memori_core.server._keys import KeyRing, RateLimiter
from memori_core.server._session import Sessions
from memori_core.server.routes import dashboard, entities, memories, ops

if TYPE_CHECKING:
    from memori_core._memori import Memori

__all__ = ["create_app"]

API_VERSION = "1"
_DESCRIPTION = """The memori REST API: capture, recall and manage the memories of the entities
(users) of LLM apps, over one memori database.

Every `/v1` route takes an API key (`Authorization: Bearer mk_...`, made by `memori keys
create`) whose scope covers it: **read** (GET routes and recall), **write** (+ capture,
remember, update and delete memories) or **admin** (+ forget, import, keys, queue retry; every
entity). A key limited to some entities never reads or writes others (403). Every error
answers `{"error": {"code", "message", "field"}}`; codes: """ + ", ".join(
    f"`{c}` ({s})" for c, s in ERROR_CODES.items()) + "."


#: a 413 closes the connection: the server reads no more of the body (else it would drain it)
_CLOSE = {"Connection": "close"}


class _TooLarge(StarletteHTTPException):
    """The body went over the limit while it was read."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is over {limit:,} bytes", _CLOSE)


class _BodyLimit:
    """Refuse a body over ``max_bytes`` with 413 in the error shape, when the app reads it:
    at once when its ``Content-Length`` says so (before a byte of it is read), else (a chunked
    body) as soon as the bytes read pass the bound. Nothing is refused before the app reads
    the body, so a ``/v1`` route checks the caller's key first (401 whatever the body); an
    answer to a request whose declared body is over the limit closes the connection."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = 0
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    await error_response("invalid_request", "Content-Length is not a number",
                                         "Content-Length")(scope, receive, send)
                    return
                declared = int(value)
        over = declared > self.max_bytes
        read = 0
        started = False

        async def limited() -> Message:
            nonlocal read
            if over:  # refused unread
                raise _TooLarge(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if over:  # the body stays unread: no next request can follow it
                    message = {**message, "headers": [
                        *(h for h in message.get("headers", []) if h[0].lower() !=
                          b"connection"), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited, watch)
        except _TooLarge:
            if started:
                raise
            await error_response("payload_too_large", f"the body is over "
                                 f"{self.max_bytes:,} bytes", "body", _CLOSE)(scope, receive,
                                                                              send)


def _document_errors(app: FastAPI) -> None:
    """Document the errors an operation answers by its shape: 400 (``invalid_json``) and 413
    (``payload_too_large``) where it takes a body; 422 in the error shape where it has
    parameters or a body (FastAPI documents its own validation error there). What a route
    answers besides (401, 403, 404, 429, 503) it documents itself (``documented``)."""
    build = app.openapi
    error = {"description": "", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}

    def shaped(status: int) -> dict[str, Any]:
        return {**error, "description": documented(status)[status]["description"]}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for item in schema["paths"].values():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                if "requestBody" in operation:
                    responses.setdefault("400", shaped(400))
                    responses.setdefault("413", shaped(413))
                if "422" in responses:
                    responses["422"] = shaped(422)
        components = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(memori: Memori, settings: ServerSettings | None = None) -> FastAPI:
    """The ASGI app of ``memori serve`` over ``memori`` (built, with its workers).

    Each request runs under its own attribution (``memori_core.integration.attributed``), in
    its own context: no request sees another's entity. Closing the app does not close
    ``memori``.

    Args:
        memori: the ``Memori`` whose database is served.
        settings: limits, rate, key cache and CORS (default ``ServerSettings()``).

    Returns:
        the FastAPI app (``app.state.memori_server``: its ``ServerState``).
    """
    settings = settings or ServerSettings()

    app = FastAPI(title="memori", version=API_VERSION, description=_DESCRIPTION)
    _document_errors(app)
    app.state.memori_server = ServerState(
        memori=memori,
        keys=KeyRing(memori._store, cache_size=settings.key_cache_size,
                     ttl=settings.key_cache_ttl),
        limiter=RateLimiter(settings.rate_limit, settings.rate_burst), settings=settings,
        sessions=Sessions(settings.session_idle_seconds))
    install_handlers(app)
    app.include_router(ops.health)
    for router in (memories.router, entities.router, ops.router):
        app.include_router(router)
    if settings.dashboard:
        dashboard.mount_dashboard(app)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    return app
