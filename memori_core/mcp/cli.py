"""``memori mcp``: the MCP server command.

    MEMORI_ENTITY_ID=user_123 memori mcp --db URL [--transport stdio|http]
        [--host 127.0.0.1] [--port 8765] [--allow-forget] [--init]
    MEMORI_API_KEY=mk_... memori mcp --url http://127.0.0.1:8765 [--api-key-env NAME] ...

With ``--url`` the tools act through a ``memori serve`` (the SDK's remote mode,
``RemoteMemori``) instead of a database; the entity is ``MEMORI_ENTITY_ID``, or else the
key's own when the key is bound to exactly one (``GET /v1/keys/me``).

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
                   help="database URL the tools read and write (this or --url)")
    m.add_argument("--url", default=None,
                   help="a memori server (memori serve), e.g. http://127.0.0.1:8765, the tools "
                   "act through instead of a database (this or --db); its API key from "
                   "MEMORI_API_KEY. Without MEMORI_ENTITY_ID the entity is the key's, for a "
                   "key bound to one entity")
    m.add_argument("--api-key-env", default="MEMORI_API_KEY", metavar="NAME",
                   help="with --url: the environment variable holding the API key (default "
                   "MEMORI_API_KEY)")
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
    from memori_core._cli_db import open_serving
    from memori_core.errors import ConfigurationError

    if (args.db is None) == (args.url is None):
        raise ConfigurationError(
            "memori mcp needs exactly one of --db URL (a database) and --url URL (a memori "
            "server), " + ("not both" if args.db else "got neither"), argument="db")
    if args.augment_wait < 0:
        raise ConfigurationError("--augment-wait must be >= 0 seconds", argument="augment_wait")
    if args.url is not None:
        return _serve(args, *_remote(args))
    # refused before anything is opened: the entity is the client's configuration
    entity, process = memori_mcp.identity_from_env(os.environ)
    memori_mcp.require_sdk()
    # the augmentation workers run in this process
    return _serve(args, open_serving(args.db, args.init), entity, process)


def _remote(args: argparse.Namespace) -> tuple[Any, str, str | None]:
    """The ``RemoteMemori`` of ``--url`` (the server ready) and the entity and process: the
    entity of ``MEMORI_ENTITY_ID``, or else the key's only entity.

    Raises:
        ConfigurationError: no key in the variable, or no entity to act for.
        StorageError: the server is unreachable or not ready.
    """
    from memori_core import mcp as memori_mcp
    from memori_core.errors import ConfigurationError
    from memori_core.mcp._tools import ENTITY_ENV

    key = os.environ.get(args.api_key_env, "").strip()
    if not key:
        raise ConfigurationError(
            f"memori mcp --url needs the server's API key in ${args.api_key_env} (`memori keys "
            "create --db URL --scope write --entity ID` on the server's database makes one)",
            argument=args.api_key_env)
    memori_mcp.identity_from_env({**os.environ, ENTITY_ENV: "-"})  # the process, checked
    memori_mcp.require_sdk()
    from memori_core.remote import RemoteMemori

    mem = RemoteMemori(url=args.url, api_key=key)
    try:
        mem.config.storage.build()  # the server is ready
        env = dict(os.environ)
        if not env.get(ENTITY_ENV, "").strip():
            bound = mem.key_grant()["entity_ids"] or []
            if len(bound) != 1:
                raise ConfigurationError(
                    f"memori mcp needs {ENTITY_ENV} in its environment: the key in "
                    f"${args.api_key_env} is not bound to exactly one entity (`memori keys "
                    "create --entity ID` makes one that is)", argument=ENTITY_ENV)
            env[ENTITY_ENV] = bound[0]
        entity, process = memori_mcp.identity_from_env(env)
    except BaseException:
        mem.close()
        raise
    return mem, entity, process


def _serve(args: argparse.Namespace, mem: Any, entity: str, process: str | None) -> int:
    """Serve the tools over ``mem`` until the client goes; closes ``mem``."""
    from memori_core import mcp as memori_mcp

    try:
        server = memori_mcp.build_server(
            memori_mcp.MemoryTools(mem, entity, process, augment_wait_seconds=args.augment_wait),
            allow_forget=args.allow_forget)
        where = mem.engine.url.render_as_string() if args.url is None else \
            f"memori server {args.url}"
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
