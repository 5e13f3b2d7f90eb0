"""``memori serve``: memori as a self-hosted memory service.

A versioned JSON API (``/v1``) over one ``Memori``, with API keys (hashed with argon2id;
scopes read / write / admin; optionally limited to entity ids or an id prefix), a per-key rate
limit, a request size limit and one error shape. Needs the ``server`` extra::

    pip install "memori-core[server]"

``create_app(memori, settings)`` gives the ASGI app (for tests, or another ASGI server);
``memori serve --db URL`` runs it under uvicorn on 127.0.0.1:8765. The request and response
bodies are ``memori_core.server.models``; the schema is served at ``/openapi.json``.

The names below are imported on first use, so ``memori_core.server.cli`` (the ``serve`` and
``keys`` commands) loads without the extra; using one without it raises
``ConfigurationError`` naming the extra.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ERROR_CODES", "SCOPES", "ApiError", "ApiKey", "KeyRing", "RateLimiter",
           "ServerSettings", "create_app"]

_WHERE = {"create_app": "_app", "ServerSettings": "_deps", "ERROR_CODES": "_errors",
          "ApiError": "_errors", "SCOPES": "_keys", "ApiKey": "_keys", "KeyRing": "_keys",
          "RateLimiter": "_keys"}


def require_extra() -> None:
    """Raises: ConfigurationError naming the ``server`` extra when a package of it is
    missing (FastAPI, uvicorn, argon2-cffi)."""
    try:
        for name in ("argon2", "fastapi", "uvicorn"):
            importlib.import_module(name)
    except ImportError as exc:
        from memori_core.errors import ConfigurationError

        raise ConfigurationError(
            f"memori's server needs the server extra ({exc.name} is missing): "
            'pip install "memori-core[server]"', argument="server") from exc


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require_extra()
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
