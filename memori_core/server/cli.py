"""The ``memori serve`` and ``memori keys`` commands::

    memori serve --db URL [--host 127.0.0.1] [--port 8765] [--cors-origin ORIGIN ...]
                 [--max-body-bytes N] [--rate-limit R] [--rate-burst N] [--init]
                 [--no-dashboard] [--session-idle SECONDS]
    memori keys create --db URL --scope read|write|admin [--entity ID ... | --entity-prefix P]
                       [--name N]
    memori keys list --db URL [--all] [--json]
    memori keys revoke KEY_ID --db URL

``add_commands(sub)`` adds them to the ``memori`` parser. Nothing here imports the server's
packages until a command runs, so ``memori --help`` works without the ``server`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["add_commands"]


def _db_arg(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--db", default=None,
                    help="database URL (default: MEMORI_DATABASE_URL or ./memori.db)")


def _url(db: str | None) -> str:
    from memori_core.storage.connect import DEFAULT_URL

    return db or os.environ.get("MEMORI_DATABASE_URL") or DEFAULT_URL


def _cmd_serve(args: argparse.Namespace) -> int:
    from memori_core.server import require_extra

    require_extra()
    import uvicorn

    from memori_core._cli_db import open_serving
    from memori_core.server import ServerSettings, create_app

    embedder = None
    if args.embedder == "hash":  # tests only: deterministic, no model to load
        from memori_core.testing import HashEmbedder

        embedder = HashEmbedder()
    settings = ServerSettings(max_body_bytes=args.max_body_bytes, rate_limit=args.rate_limit,
                              rate_burst=args.rate_burst, key_cache_ttl=args.key_cache_ttl,
                              cors_origins=tuple(args.cors_origin),
                              dashboard=not args.no_dashboard,
                              session_idle_seconds=args.session_idle)
    # a database without memori's schema is refused unless --init: nothing is created
    mem = open_serving(_url(args.db), args.init, blank=False, embedder=embedder)
    try:
        app = create_app(mem, settings)
        print(f"memori serve: http://{args.host}:{args.port} on "
              f"{mem.engine.url.render_as_string()}", flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                    access_log=args.access_log)
    finally:
        mem.close()
    return 0


def _ring(db: str | None) -> Any:
    """A ``KeyRing`` on the database (schema built or migrated first) and its store."""
    from memori_core.server import require_extra

    require_extra()
    from memori_core.server._keys import KeyRing
    from memori_core.storage.connect import connect
    from memori_core.storage.store import Store

    connected = connect(_url(db))
    store = Store(connected.engine, connected.owned)
    try:
        store.build()
    except BaseException:
        store.close()
        raise
    return KeyRing(store), store


def _grant(key: Any) -> dict[str, Any]:
    return {"key_id": key.key_id, "scope": key.scope, "name": key.name,
            "entity_ids": None if key.entity_ids is None else list(key.entity_ids),
            "entity_prefix": key.entity_prefix,
            "created_at": key.created_at.isoformat() if key.created_at else None,
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None}


def _reach(key: Any) -> str:
    if key.entity_ids is not None:
        return "entities " + ", ".join(map(repr, key.entity_ids))
    if key.entity_prefix is not None:
        return f"entities starting with {key.entity_prefix!r}"
    return "every entity"


def _cmd_keys_create(args: argparse.Namespace) -> int:
    ring, store = _ring(args.db)
    try:
        secret, key = ring.create(args.scope, entity_ids=args.entity or None,
                                  entity_prefix=args.entity_prefix, name=args.name)
    finally:
        store.close()
    print(f"created {key.scope} key {key.key_id} for {_reach(key)}; it is shown once, store "
          f"it now:\n{secret}")
    return 0


def _cmd_keys_list(args: argparse.Namespace) -> int:
    ring, store = _ring(args.db)
    try:
        keys = ring.list(include_revoked=args.all)
    finally:
        store.close()
    if args.json:
        print(json.dumps([_grant(k) for k in keys]))
        return 0
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "valid"
        print(f"{k.key_id}  {k.scope:<5}  {state:<24}  {_reach(k)}"
              + (f"  ({k.name})" if k.name else ""))
    if not keys:
        print("no keys: memori keys create --scope read|write|admin makes one")
    return 0


def _cmd_keys_revoke(args: argparse.Namespace) -> int:
    ring, store = _ring(args.db)
    try:
        done = ring.revoke(args.key_id)
    finally:
        store.close()
    if not done:
        print(f"memori: no valid key {args.key_id!r}", file=sys.stderr)
        return 1
    print(f"revoked key {args.key_id}; running servers refuse it within their key cache TTL "
          "(5 s by default)")
    return 0


def add_commands(sub: Any) -> None:
    """Add ``serve`` and ``keys`` to the ``memori`` parser's subparsers (``sub``: what
    ``ArgumentParser.add_subparsers`` returned)."""
    s = sub.add_parser("serve", help="run the REST API server (needs the server extra)")
    _db_arg(s)
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    s.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser requests from this origin (repeatable; default: CORS "
                   "off)")
    s.add_argument("--max-body-bytes", type=int, default=10 * 1024 * 1024,
                   help="largest request body, in bytes (default 10 MiB; 413 beyond)")
    s.add_argument("--rate-limit", type=float, default=100.0,
                   help="requests per second per key (default 100; 0: no limit)")
    s.add_argument("--rate-burst", type=int, default=200,
                   help="requests a key may send at once (default 200)")
    s.add_argument("--key-cache-ttl", type=float, default=5.0,
                   help="seconds a verified key is trusted before its row is read again "
                   "(default 5: a revocation counts within it)")
    s.add_argument("--embedder", choices=("local", "hash"), default="local",
                   help="local (default): the configured model; hash: the deterministic "
                   "test embedder of memori_core.testing, for tests only")
    s.add_argument("--no-dashboard", action="store_true",
                   help="do not serve the dashboard at / (sign in there with an API key)")
    s.add_argument("--session-idle", type=float, default=12 * 3600.0, metavar="SECONDS",
                   help="a dashboard session unused this long ends (default 43200: 12 h)")
    s.add_argument("--log-level", default="warning",
                   choices=("critical", "error", "warning", "info", "debug"))
    s.add_argument("--access-log", action="store_true", help="log every request")
    s.add_argument("--init", action="store_true",
                   help="build memori's schema in a database that has none (an empty one, a "
                   "new SQLite file, one holding other tables); without it such a database "
                   "is refused and nothing is created")
    s.set_defaults(fn=_cmd_serve)

    k = sub.add_parser("keys", help="API keys of memori serve: create, list, revoke")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    c = ksub.add_parser("create", help="make a key; prints it once, as the last word")
    _db_arg(c)
    c.add_argument("--scope", required=True, choices=("read", "write", "admin"),
                   help="read: GET routes and recall; write: + capture, remember, update and "
                   "delete memories; admin: + forget, import, keys, queue retry")
    reach = c.add_mutually_exclusive_group()
    reach.add_argument("--entity", action="append", default=[], metavar="ID",
                       help="the key may touch only this entity (repeatable)")
    reach.add_argument("--entity-prefix", default=None, metavar="P",
                       help="the key may touch only entities whose id starts with P")
    c.add_argument("--name", default=None, help="a label for the key")
    c.set_defaults(fn=_cmd_keys_create)
    ls = ksub.add_parser("list", help="the keys (never their secrets)")
    _db_arg(ls)
    ls.add_argument("--all", action="store_true", help="revoked keys too")
    ls.add_argument("--json", action="store_true", help="print one JSON array")
    ls.set_defaults(fn=_cmd_keys_list)
    r = ksub.add_parser("revoke", help="revoke a key by its id (memori keys list)")
    r.add_argument("key_id", help="the key's id (12 hex digits)")
    _db_arg(r)
    r.set_defaults(fn=_cmd_keys_revoke)
