"""How the ``memori`` commands open a database: ``open_memori`` (any database, built on first
use), ``open_existing`` (one that must already hold memori's schema: read-only commands create
nothing), ``build_schema`` (writing commands: a database holding other tables is refused
unless ``--init``) and ``new_sqlite_file`` (what a failed command removes again). Shared by
``memori_core.cli``, ``memori_core.mcp.cli`` and ``memori_core.server.cli``."""

from __future__ import annotations

from typing import Any

__all__ = ["build_schema", "new_sqlite_file", "open_existing", "open_memori"]


def open_memori(db: str | None, **settings: Any) -> Any:
    from memori_core._memori import Memori

    return Memori(conn=db, **settings)


def open_existing(db: str | None) -> Any:
    """A Memori on a database that must already hold memori's schema (stats, recall): nothing
    is created, a missing SQLite file or schema is a clear error."""
    import os

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from memori_core.errors import ConfigurationError, StorageError
    from memori_core.storage.connect import DEFAULT_URL

    url = db or os.environ.get("MEMORI_DATABASE_URL") or DEFAULT_URL
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None  # Memori() names the problem
    if parsed is not None and parsed.get_backend_name() == "sqlite" and parsed.database and \
            not os.path.exists(parsed.database):
        raise ConfigurationError(f"no memori database at {parsed.database}; pass --db URL "
                                 "(e.g. --db sqlite:///memori.db) or set MEMORI_DATABASE_URL",
                                 argument="db")
    mem = open_memori(url, augmentation_workers=0)
    try:
        # unreachable server, a newer schema, a schema changed outside memori: said as such
        built = mem._store.is_built()
        if not built:
            raise ConfigurationError(f"{url} holds no memori schema, or an older one "
                                     "(`memori migrate --db URL` upgrades it, `memori init "
                                     "--db URL` adds memori's tables); point --db at a memori "
                                     "database", argument="db")
        mem._ensure_ready()
    except (ConfigurationError, StorageError):
        mem.close()
        raise
    return mem


def build_schema(mem: Any, init: bool, how_to_init: str = "pass --init") -> None:
    """Build or upgrade memori's schema for a writing command (ingest, import, migrate). A
    database that holds other tables and no memori table is someone else's: refused unless
    ``--init`` says to add memori's tables to it (``how_to_init``: what the refusal advises).

    Raises:
        ConfigurationError: the database is not memori's and ``init`` is False.
        StorageError: the database is unreachable or its schema is newer or changed.
    """
    from sqlalchemy import inspect as sa_inspect

    from memori_core.errors import ConfigurationError

    if not init and not mem._store.is_built():
        with mem.engine.connect() as conn:
            tables = sa_inspect(conn).get_table_names()
        if tables and not any(t.startswith("memori_") for t in tables):
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise ConfigurationError(
                f"{mem.engine.url.render_as_string()} is not a memori database (it holds "
                f"{len(tables)} other table(s): {shown}); {how_to_init} to add memori's "
                "tables to it, or point --db at a memori database", argument="db")
    mem.config.storage.build()


def new_sqlite_file(db: str | None) -> str | None:
    """The path of the SQLite file ``db`` names when it does not exist yet, else None."""
    import os

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from memori_core.storage.connect import DEFAULT_URL

    try:
        url = make_url(db or os.environ.get("MEMORI_DATABASE_URL") or DEFAULT_URL)
    except ArgumentError:
        return None
    path = url.database if url.get_backend_name() == "sqlite" else None
    return path if path and not os.path.exists(path) else None
