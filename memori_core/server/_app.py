"""The app factory: one FastAPI app over one ``Memori``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memori_core.server._deps import ServerSettings, ServerState
from memori_core.server._errors import ERROR_CODES, ErrorResponse, error_response, install_handlers
from memori_core.server._keys import KeyRing, RateLimiter
from memori_core.server.routes import entities, memories, ops

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
    """Refuse a body over ``max_bytes``: from its ``Content-Length`` before any of it is read,
    else (a chunked body) as soon as the bytes read pass the bound; 413 in the error shape
    either way."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                size = int(value) if value.isdigit() else -1
                if size < 0 or size > self.max_bytes:
                    response = error_response(
                        "payload_too_large", f"the body is over {self.max_bytes:,} bytes",
                        "body", _CLOSE) if size > self.max_bytes else error_response(
                        "invalid_request", "Content-Length is not a number", "Content-Length")
                    await response(scope, receive, send)
                    return
        read = 0
        started = False

        async def limited() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, watch)
        except _TooLarge:
            if started:
                raise
            await error_response("payload_too_large", f"the body is over "
                                 f"{self.max_bytes:,} bytes", "body", _CLOSE)(scope, receive,
                                                                              send)


def _document_shaped_errors(app: FastAPI) -> None:
    """Document the errors an operation answers by its shape: 400 (``invalid_json``) where it
    takes a body, 404 (``not_found``) where its path names a record."""
    build = app.openapi
    error = {"description": "error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}

    def openapi() -> dict[str, Any]:
        schema = build()  # built once, then cached by FastAPI: setdefault keeps this idempotent
        for item in schema["paths"].values():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                if "requestBody" in operation:
                    responses.setdefault("400", error)
                if any(p.get("in") == "path" for p in operation.get("parameters", [])):
                    responses.setdefault("404", error)
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

    errors: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorResponse, "description": "error"}
        for status in (401, 403, 413, 422, 429, 503)}
    app = FastAPI(title="memori", version=API_VERSION, description=_DESCRIPTION,
                  responses=errors)
    _document_shaped_errors(app)
    app.state.memori_server = ServerState(
        memori=memori,
        keys=KeyRing(memori._store, cache_size=settings.key_cache_size,
                     ttl=settings.key_cache_ttl),
        limiter=RateLimiter(settings.rate_limit, settings.rate_burst), settings=settings)
    install_handlers(app)
    app.include_router(ops.health)
    for router in (memories.router, entities.router, ops.router):
        app.include_router(router)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    return app
