"""memori as an MCP server (``memori mcp``), on the official MCP Python SDK (``mcp``).

Needs the ``mcp`` extra: ``pip install "memori-core[mcp]"``.

- ``MemoryTools``: the tools' logic over one ``Memori`` (or a ``Memori``-like object: the
  SDK's remote mode once it exists), every call attributed to one entity (and process)
  through the integration kit;
- ``build_server(tools, allow_forget=False)``: an ``mcp.server.mcpserver.MCPServer`` offering
  ``remember``, ``search_memories``, ``list_memories``, ``delete_memory`` and, only with
  ``allow_forget``, ``forget_entity``;
- ``run_server(server, "stdio" | "http", host=..., port=...)``;
- ``identity_from_env(os.environ)``: the entity from ``MEMORI_ENTITY_ID`` (required) and
  ``MEMORI_PROCESS_ID`` (optional), as MCP clients pass them in their server's ``env``; no
  tool argument names an entity, so a model cannot reach another user's memories.

Example::

    import os
    from memori_core import Memori
    from memori_core.mcp import MemoryTools, build_server, identity_from_env, run_server

    mem = Memori()
    entity, process = identity_from_env(os.environ)
    run_server(build_server(MemoryTools(mem, entity, process)), "stdio")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from memori_core.errors import ConfigurationError

if TYPE_CHECKING:
    from memori_core.mcp._server import TOOL_NAMES, Transport, build_server, run_server
    from memori_core.mcp._tools import (
        ENTITY_ENV,
        PROCESS_ENV,
        DeleteResult,
        ForgetResult,
        MemoryItem,
        MemoryList,
        MemoryTools,
        RememberResult,
        SearchHit,
        SearchResult,
        ToolArgumentError,
        identity_from_env,
    )

__all__ = ["ENTITY_ENV", "PROCESS_ENV", "TOOL_NAMES", "DeleteResult", "ForgetResult",
           "MemoryItem", "MemoryList", "MemoryTools", "RememberResult", "SearchHit",
           "SearchResult", "ToolArgumentError", "Transport", "build_server",
           "identity_from_env", "run_server"]

_SERVER = {"TOOL_NAMES", "Transport", "build_server", "run_server"}


def require_sdk() -> None:
    """Raises: ConfigurationError naming the ``mcp`` extra when the MCP SDK is missing."""
    try:
        importlib.import_module("mcp.server.mcpserver")
    except ImportError as exc:
        raise ConfigurationError('memori mcp needs the MCP SDK (mcp >= 2.3): pip install '
                                 '"memori-core[mcp]"', argument="mcp") from exc


def __getattr__(name: str) -> Any:
    # loaded on first use, so ``memori --help`` (which adds the ``mcp`` subcommand from
    # ``memori_core.mcp.cli``) works without the extra
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require_sdk()
    module = importlib.import_module("memori_core.mcp._server" if name in _SERVER
                                     else "memori_core.mcp._tools")
    return getattr(module, name)
