"""One error shape for every 4xx and 5xx answer of ``memori serve``::

    {"error": {"code": "invalid_request", "message": "...", "field": "messages.0.role"}}

``field`` names the offending body field, query parameter or path parameter (dotted, list
positions as numbers), or is null. The codes are stable; ``ERROR_CODES`` lists them with
their HTTP status.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from memori_core.errors import ConfigurationError, RecallError, StorageError

__all__ = ["ERROR_CODES", "ApiError", "ErrorBody", "ErrorResponse", "documented",
           "error_response", "install_handlers"]

_log = logging.getLogger("memori_core.server")

#: every error code -> its HTTP status
ERROR_CODES: dict[str, int] = {
    "invalid_json": 400,          # the body is not JSON
    "unauthorized": 401,          # no key, or not a valid key (WWW-Authenticate: Bearer)
    "forbidden": 403,             # the key's scope or entities do not cover the request
    "not_found": 404,             # no such route, or no such record of the entity
    "method_not_allowed": 405,
    "payload_too_large": 413,     # the body is over the server's byte limit
    "unsupported_media_type": 415,
    "invalid_request": 422,       # a field is missing, of the wrong type, unknown or invalid
    "rate_limited": 429,          # the key's rate limit (Retry-After: seconds)
    "internal": 500,              # a bug: reported, never expected
    "unavailable": 503,           # the database is unreachable or failed (Retry-After)
}

#: seconds a client should wait after a 503 (``Retry-After``)
RETRY_AFTER_S = 2


class ErrorBody(BaseModel):
    """What went wrong: a stable ``code`` (``ERROR_CODES``), a human ``message``, and the
    ``field`` at fault (or null)."""

    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    """The body of every 4xx / 5xx answer."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorBody


#: what each error status of the API means, as its OpenAPI response says
_MEANING = {
    400: "the body is not JSON (invalid_json)",
    401: "no API key, or not a valid one (unauthorized; WWW-Authenticate)",
    403: "the key's scope or entities do not cover the request (forbidden)",
    404: "no such record of the entity (not_found)",
    413: "the body is over the server's byte limit (payload_too_large)",
    422: "a field is missing, of the wrong type, unknown or invalid (invalid_request)",
    429: "over the key's rate limit (rate_limited; Retry-After)",
    503: "the database is unreachable or failed (unavailable; Retry-After)",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a route for the error ``statuses`` it answers, each with the
    error shape (``ErrorResponse``)."""
    return {status: {"model": ErrorResponse, "description": _MEANING[status]}
            for status in statuses}


class ApiError(Exception):
    """An answer with the error shape: raise it from a route or dependency.

    Args:
        code: one of ``ERROR_CODES`` (sets the status).
        message: what went wrong, for a person.
        field: the field at fault, or None.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field
        self.status = ERROR_CODES[code]
        self.headers = headers or {}


def error_response(code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON answer for an error (status from ``ERROR_CODES``)."""
    body = {"error": {"code": code, "message": message, "field": field}}
    return JSONResponse(body, status_code=ERROR_CODES[code], headers=headers)


#: what pydantic puts in an error's path for a member of a union (``str | list[...]``): a
#: type, not a field; the path ends before it
_UNION_TAGS = {"str", "int", "float", "bool", "bytes", "none"}


def _field(loc: tuple[Any, ...] | list[Any]) -> str | None:
    parts = list(loc)
    where = parts[0] if parts else None
    if where in ("body", "query", "path", "header"):
        parts = parts[1:]
    tags = [i for i, p in enumerate(parts) if isinstance(p, str) and (
        p in _UNION_TAGS or "[" in p)]
    parts = parts[:tags[0]] if tags else parts
    return ".".join(str(p) for p in parts) or ("body" if where == "body" else None)


def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
    first: dict[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request",
                                                      "type": ""}
    if first.get("type") == "json_invalid":
        return error_response("invalid_json", f"the body is not valid JSON: "
                              f"{first.get('ctx', {}).get('error', first.get('msg'))}", "body")
    field = _field(first.get("loc", ()))
    kind = first.get("type")
    if kind == "extra_forbidden":
        message = f"unknown field {field!r}"
    elif kind == "missing":
        message = f"{field} is required"
    else:
        message = f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return error_response("invalid_request", message, field)


def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.code, exc.message, exc.field, exc.headers)


def _configuration(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConfigurationError)
    return error_response("invalid_request", str(exc), exc.argument)


def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    _log.warning("answering 503: %s: %s", type(exc).__name__, exc)
    what = "the database" if not isinstance(exc, RecallError) else "recall"
    return error_response("unavailable", f"{what} is unavailable: {exc}"[:2000], None,
                          {"Retry-After": str(RETRY_AFTER_S)})


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
               415: "unsupported_media_type", 401: "unauthorized", 403: "forbidden",
               400: "invalid_json", 429: "rate_limited", 503: "unavailable"}


def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "invalid_request" if exc.status_code < 500
                           else "internal")
    # 400: a body FastAPI could not parse (nested too deep, an integer too long)
    response = error_response(code, str(exc.detail),
                              "body" if exc.status_code in (400, 413) else None,
                              dict(exc.headers or {}))
    response.status_code = exc.status_code
    return response


def _internal(_request: Request, exc: Exception) -> JSONResponse:
    _log.exception("internal error", exc_info=exc)
    return error_response("internal", f"internal error ({type(exc).__name__}); see the "
                          "server log")


def install_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` in the one shape: validation -> 422 (400 for a body that
    is not JSON), ``ConfigurationError`` -> 422 with its ``argument`` as ``field``,
    ``StorageError`` / ``RecallError`` / a database driver error -> 503 with
    ``Retry-After``, anything else -> 500."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ConfigurationError, _configuration)
    for exc in (StorageError, RecallError, SQLAlchemyError):
        app.add_exception_handler(exc, _unavailable)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _internal)
