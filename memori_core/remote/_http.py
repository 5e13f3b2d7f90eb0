"""The HTTP side of remote mode: one ``httpx.Client`` to a ``memori serve``, retries with
backoff (``tenacity``), and every answer that is not a success turned into memori's own errors.

What is retried (at most ``ATTEMPTS`` tries in all, waiting ``Config.request_backoff_factor *
2**n`` seconds between them, at most ``MAX_WAIT_S``, or what the server's ``Retry-After``
asks, at most ``MAX_WAIT_S``):

- a request that never reached the server (connection refused or timed out), always;
- a request whose answer was lost (read timeout, connection dropped mid-answer) only when it
  is safe to send again: GET and DELETE, and ``POST /v1/turns`` (its ``Idempotency-Key``
  makes the server store a turn once);
- 503 (the server's database is down) and 429 (the key's rate limit), always: the server did
  nothing.

How errors map (the server's body is ``{"error": {"code", "message", "field"}}``):

==================================  ===========================================================
answer                              raised
==================================  ===========================================================
401, 403                            ``AuthenticationError`` (a ``ConfigurationError``,
                                    ``argument="api_key"``), the fix in its message
400, 404, 405, 413, 415, 422        ``ConfigurationError`` with ``argument`` = the body's
                                    ``field`` (404 only where a call has no "not found" answer)
429, 503, 5xx, unreachable          ``StorageError`` (after the retries)
==================================  ===========================================================
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from memori_core.errors import (
    AuthenticationError,
    ConfigurationError,
    MemoriError,
    StorageError,
)

try:
    import httpx
    import tenacity
except ImportError as _exc:  # pragma: no cover - the import guard names the extra
    raise ConfigurationError(
        f"memori's remote mode needs the remote extra ({_exc.name} is missing): "
        'pip install "memori-core[remote]"', argument="url") from _exc

__all__ = ["ATTEMPTS", "MAX_WAIT_S", "Http"]

_log = logging.getLogger("memori_core.remote")

#: tries of one request in all (the first one and the retries)
ATTEMPTS = 4
#: longest wait between two tries, in seconds (also the cap on ``Retry-After``)
MAX_WAIT_S = 30.0
#: errors where the request surely never reached the server
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class _Retry(Exception):
    """An answer worth trying again (429, 503), with the wait the server asked for."""

    def __init__(self, error: MemoriError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after



def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the backoff decides


class Http:
    """Requests to one ``memori serve``.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:8765``.
        api_key: sent as ``Authorization: Bearer <api_key>``.
        timeout: connect and read timeout in seconds (``Config.database_timeout_seconds``;
            0 or less: none).
        backoff: the first wait between tries, in seconds (``Config.request_backoff_factor``),
            doubling after each.
        transport: an ``httpx`` transport (tests); default a real connection pool.
    """

    def __init__(self, url: str, api_key: str, *, timeout: float, backoff: float,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._backoff = max(backoff, 0.0)
        limit = timeout if timeout > 0 else None
        self._client = httpx.Client(
            base_url=self.url, transport=transport,
            timeout=httpx.Timeout(limit, connect=limit),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "memori-core remote"})

    def close(self) -> None:
        """Close the connection pool. Idempotent."""
        self._client.close()

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Any = None, headers: Mapping[str, str] | None = None,
                resend: bool | None = None, missing: bool = False) -> Any:
        """Send a request, retrying as the module docstring says, and decode its JSON answer.

        Args:
            method: ``GET``, ``POST``, ``PATCH`` or ``DELETE``.
            path: below the base URL, e.g. ``/v1/recall``.
            params: query parameters (None values left out; lists repeated).
            body: a JSON-ready value (datetimes as ISO 8601).
            headers: extra headers (``Idempotency-Key``).
            resend: whether a request whose answer was lost may be sent again (default: for
                GET and DELETE).
            missing: answer None for a 404 instead of raising.

        Returns:
            the decoded JSON body (None for a 404 with ``missing``).

        Raises:
            AuthenticationError: 401 / 403.
            ConfigurationError: the server refused the request (the body's ``field`` as
                ``argument``).
            StorageError: the server is unreachable, or answered 429 / 503 / 5xx, after the
                retries.
        """
        safe = method in ("GET", "DELETE") if resend is None else resend
        query = {k: v for k, v in (params or {}).items() if v is not None}
        content = None if body is None else json.dumps(body, default=_json_default,
                                                        ensure_ascii=False).encode()
        send_headers = {"Content-Type": "application/json"} if content is not None else {}
        send_headers.update(headers or {})

        def once() -> Any:
            try:
                response = self._client.request(method, path, params=query, content=content,
                                                 headers=send_headers)
            except httpx.TransportError as exc:
                error = StorageError(f"memori server {self.url} is unreachable "
                                     f"({type(exc).__name__}: {exc}) on {method} {path}")
                if isinstance(exc, _UNSENT) or safe:
                    raise _Retry(error, None) from exc
                raise error from exc
            if response.status_code == 404 and missing:
                return None
            if response.is_success:
                return response.json()
            raise self._error(method, path, response)

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            backoff = min(self._backoff * 2 ** (state.attempt_number - 1), MAX_WAIT_S)
            asked = exc.retry_after if isinstance(exc, _Retry) else None
            return backoff if asked is None else min(max(asked, backoff), MAX_WAIT_S)

        def log(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            _log.warning("memori: %s %s failed (%s), try %d of %d", method, path, exc,
                         state.attempt_number, ATTEMPTS)

        try:
            return tenacity.Retrying(
                stop=tenacity.stop_after_attempt(ATTEMPTS), wait=wait,
                retry=tenacity.retry_if_exception_type(_Retry), before_sleep=log,
                reraise=True)(once)
        except _Retry as exc:
            raise exc.error from exc.__cause__

    def _error(self, method: str, path: str, response: httpx.Response) -> Exception:
        """The memori error for a failed answer (a ``_Retry`` for 429 / 503)."""
        try:
            found = response.json().get("error") or {}
        except (ValueError, AttributeError):
            found = {}
        message = str(found.get("message") or response.text[:500] or response.reason_phrase)
        field = found.get("field")
        status = response.status_code
        if status == 401:
            return AuthenticationError(
                f"memori server {self.url} refused the API key ({message}): pass "
                "Memori(url=..., api_key=...) or set MEMORI_API_KEY to a valid key; `memori "
                "keys create --db URL --scope write` on the server's database makes one")
        if status == 403:
            return AuthenticationError(
                f"memori server {self.url} refused {method} {path} for this API key "
                f"({message}): use a key whose scope covers it (`memori keys create --db URL "
                "--scope read|write|admin [--entity ID]`: read recalls and lists, write also "
                "captures and remembers, admin also forgets and imports)")
        if status in (429, 503):
            error = StorageError(f"memori server {self.url} answered {status} to {method} "
                                 f"{path}: {message}")
            return _Retry(error, _retry_after(response))
        if status >= 500:
            return StorageError(f"memori server {self.url} failed {method} {path} ({status}): "
                                f"{message}")
        return ConfigurationError(message, argument=field)
