"""How the ``memori`` commands open a database: ``open_memori`` (any database, built on first
use), ``open_existing`` (one that must already hold memori's schema: read-only commands create
nothing), ``build_schema`` (writing commands: a database holding other tables is refused
unless ``--init``), ``open_serving`` (``memori serve`` and ``memori mcp --db``: built, its
workers running, closed again when that fails) and ``new_sqlite_file`` (what a failed command
removes again). Shared by ``memori_core.cli``, ``memori_core.mcp.cli`` and
``memori_core.server.cli``."""

from __future__ import annotations

from typing import Any

__all__ = ["build_schema", "new_sqlite_file", "open_existing", "open_memori", "open_serving"]


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


def build_schema(mem: Any, init: bool, how_to_init: str = "pass --init", *,
                 blank: bool = True) -> None:
    """Build or upgrade memori's schema for a writing command (ingest, import, migrate). A
    database that holds other tables and no memori table is someone else's: refused unless
    ``--init`` says to add memori's tables to it (``how_to_init``: what the refusal advises).
    An empty one gets the schema when ``blank`` (a new memori database), else it is refused
    unless ``--init`` too (``memori serve``: a mistyped URL must not become a new, empty
    memory service).

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
        if not tables and not blank:
            raise ConfigurationError(
                f"{mem.engine.url.render_as_string()} holds no memori schema (an empty "
                f"database); {how_to_init} to build it, or point --db at a memori database",
                argument="db")
    mem.config.storage.build()


def open_serving(db: str | None, init: bool, *, blank: bool = True, **settings: Any) -> Any:
    """A Memori for a command that serves it (``memori serve``, ``memori mcp --db``): its
    schema built or upgraded (``build_schema``; with ``blank`` False a SQLite file that does
    not exist is refused before anything is created) and its augmentation workers running.
    Closed again when any of that fails.

    Args:
        db: the database URL (None: ``MEMORI_DATABASE_URL`` or ./memori.db).
        init: ``--init``: build memori's schema in a database that is not memori's.
        blank: whether a database without memori's schema gets it without ``--init``.
        settings: ``Memori`` keyword arguments (``embedder=``).

    Raises:
        ConfigurationError: the database is not memori's (see ``build_schema``).
        StorageError: the database is unreachable or its schema is newer or changed.
    """
    from memori_core.errors import ConfigurationError

    missing = new_sqlite_file(db)
    if missing is not None and not (blank or init):
        raise ConfigurationError(f"no memori database at {missing}; pass --init to create "
                                 "one, or point --db at a memori database", argument="db")
    mem = open_memori(db, **settings)
    try:
        build_schema(mem, init, blank=blank)
        mem._ensure_ready()  # starts the augmentation workers
    except BaseException:
        mem.close()
        raise
    return mem


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
