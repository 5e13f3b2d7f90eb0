"""Helpers for the ``memori mcp`` tests: the server launched as a real process and driven by the
MCP SDK's own client (``ClientSession``) over stdio or streamable HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from memori_core.server._ready import stop, wait_serving

BIN = Path(sys.executable).parent  # the virtualenv's bin: python and the `memori` script
MEMORI = str(BIN / "memori")
START_TIMEOUT_S = 60.0


def server_env(entity: str | None, process: str | None = None) -> dict[str, str]:
    """The environment an MCP client gives the server: PATH (so ``memori`` resolves to this
    virtualenv's) and the entity variables; nothing of the test run's own MEMORI_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORI_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if entity is not None:
        env["MEMORI_ENTITY_ID"] = entity
    if process is not None:
        env["MEMORI_PROCESS_ID"] = process
    return env


@asynccontextmanager
async def stdio_session(command: str, args: list[str], env: dict[str, str],
                        errlog: Path) -> AsyncIterator[ClientSession]:
    """An initialized ``ClientSession`` to ``command args`` launched by the SDK's
    ``stdio_client``; the server's stderr goes to ``errlog``."""
    params = StdioServerParameters(command=command, args=args, env=env)
    with errlog.open("a", encoding="utf-8") as err:
        async with stdio_client(params, errlog=err) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            yield session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def http_server(source: list[str], env: dict[str, str], errlog: Path,
                *extra: str) -> Iterator[str]:
    """``memori mcp SOURCE --transport http`` as a subprocess on a free 127.0.0.1 port
    (default host), ``source`` being ``["--db", URL]`` or ``["--url", SERVER]``, until the block
    exits (then SIGTERM). Yields the endpoint URL once it answers HTTP."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with errlog.open("a", encoding="utf-8") as err:
        proc = subprocess.Popen([MEMORI, "mcp", *source, "--transport", "http",
                                 "--port", str(port), *extra],
                                env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        try:
            # any answer will do: a GET without a session is refused, but by a running server
            wait_serving(proc, url, timeout=START_TIMEOUT_S, log=errlog, ready=lambda _: True)
            yield url
        finally:
            stop(proc)


@asynccontextmanager
async def http_session(url: str) -> AsyncIterator[ClientSession]:
    """An initialized ``ClientSession`` over the SDK's streamable HTTP client."""
    async with streamable_http_client(url) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


def text_of(result: CallToolResult) -> str:
    """The text content of a tool result, joined."""
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def call_ok(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """The structured content of a tool call that must succeed."""
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


async def call_error(session: ClientSession, tool: str, **arguments: Any) -> str:
    """The text of a tool call that must come back as a tool error (never a protocol error)."""
    result = await session.call_tool(tool, arguments)
    assert result.is_error, result
    return text_of(result)
