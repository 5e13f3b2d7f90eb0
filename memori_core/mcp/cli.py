"""``memori mcp``: the MCP server command.

    MEMORI_ENTITY_ID=user_123 memori mcp --db URL [--transport stdio|http]
        [--host 127.0.0.1] [--port 8765] [--allow-forget] [--init]

``add_parser(subparsers)`` adds it to the ``memori`` command line (``memori_core.cli``); the
MCP SDK is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

__all__ = ["add_parser"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``mcp`` subcommand to ``sub`` (``ArgumentParser.add_subparsers()``'s result).

    Returns:
        the subcommand's parser; its ``fn`` default runs the server and returns the exit
        status.
    """
    m = sub.add_parser(
        "mcp", help="an MCP server (stdio or streamable HTTP) over the memories of the "
        "entity in MEMORI_ENTITY_ID",
        description="Serve memori's memory tools to an MCP client. The entity (and process) "
        "come from the environment the client gives the server: MEMORI_ENTITY_ID (required) "
        "and MEMORI_PROCESS_ID; no tool argument names an entity.")
    m.add_argument("--db", default=None,
                   help="database URL (default: MEMORI_DATABASE_URL or ./memori.db)")
    m.add_argument("--transport", choices=("stdio", "http"), default="stdio",
                   help="stdio (default: the client launches this command) or http "
                   "(streamable HTTP at http://HOST:PORT/mcp)")
    m.add_argument("--host", default="127.0.0.1",
                   help="address the http transport binds (default 127.0.0.1: this machine "
                   "only; the server has no authentication)")
    m.add_argument("--port", type=int, default=8765, help="http port (default 8765)")
    m.add_argument("--allow-forget", action="store_true",
                   help="offer the forget_entity tool, which erases everything stored for "
                   "the entity (off by default)")
    m.add_argument("--augment-wait", type=float, default=10.0, metavar="SECONDS",
                   help="how long remember waits for a turn's augmentation, so that what it "
                   "stored is searchable when it returns (default 10)")
    m.add_argument("--init", action="store_true",
                   help="add memori's tables to a database that holds other tables")
    m.set_defaults(fn=_cmd_mcp)
    return m


def _cmd_mcp(args: argparse.Namespace) -> int:
    from memori_core import mcp as memori_mcp
    from memori_core._cli_db import build_schema, open_memori
    from memori_core.errors import ConfigurationError

    # refused before anything is opened: the entity is the client's configuration
    entity, process = memori_mcp.identity_from_env(os.environ)
    memori_mcp.require_sdk()
    if args.augment_wait < 0:
        raise ConfigurationError("--augment-wait must be >= 0 seconds", argument="augment_wait")
    mem = open_memori(args.db)
    try:
        if args.db is not None:
            build_schema(mem, args.init)
        mem._ensure_ready()  # the augmentation workers run in this process
        server = memori_mcp.build_server(
            memori_mcp.MemoryTools(mem, entity, process, augment_wait_seconds=args.augment_wait),
            allow_forget=args.allow_forget)
        where = mem.engine.url.render_as_string()
        at = "stdio" if args.transport == "stdio" else f"http://{args.host}:{args.port}/mcp"
        print(f"memori mcp: entity {entity!r}" + (f" process {process!r}" if process else "")
              + f" on {where}, serving {at}", file=sys.stderr, flush=True)
        if args.transport == "http" and args.host not in _LOOPBACK:
            print(f"memori mcp: warning: bound to {args.host}: anyone who reaches it reads "
                  "and writes this entity's memories (no authentication)", file=sys.stderr,
                  flush=True)
        if args.transport == "stdio":
            # a client stopping the server with SIGTERM: close the workers like Ctrl-C does
            signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            memori_mcp.run_server(server, args.transport, host=args.host, port=args.port)
        except KeyboardInterrupt:
            pass
    finally:
        mem.close()
    return 0
