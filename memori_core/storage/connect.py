"""Turn every accepted form of ``conn=`` into one SQLAlchemy ``Engine``.

Accepted forms:

- ``None``: ``MEMORI_DATABASE_URL`` if set, else the embedded default ``sqlite:///memori.db``.
- a database URL string (``sqlite:///path.db``, ``postgresql+psycopg://...``,
  ``mysql+pymysql://...``; ``postgresql://`` and ``mysql://`` are mapped to those drivers).
- an SQLAlchemy ``Engine``, ``sessionmaker`` or ``Session`` (its bind is used).
- a zero-argument callable returning a DB-API 2.0 connection (sqlite3, psycopg, PyMySQL).
- a Django connection (``django.db.connection`` or ``connections["alias"]``).
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, InvalidatePoolError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from memori_core.errors import ConfigurationError

__all__ = ["ACCEPTED_FORMS", "DEFAULT_URL", "Connected", "connect"]

DEFAULT_URL = "sqlite:///memori.db"
ACCEPTED_FORMS = (
    "None (embedded SQLite ./memori.db or MEMORI_DATABASE_URL), a database URL string, "
    "an SQLAlchemy Engine, a sessionmaker or Session, a zero-argument callable returning a "
    "DB-API connection (e.g. lambda: sqlite3.connect('app.db')), or a Django connection"
)
#: seconds SQLite waits for another writer before giving up
SQLITE_BUSY_TIMEOUT_S = 60
#: a pooled server connection idle longer than this (seconds) is pinged before use; one used
#: more recently is trusted, as HikariCP does (its ``aliveBypassWindowMs``, 500 ms). A ping on
#: every checkout (``pool_pre_ping``) measured 0.17 ms, a tenth of a capture on PostgreSQL.
#: A connection that died within the window fails on its first statement instead: the pool is
#: renewed and ``Store.write`` runs the transaction again.
PING_AFTER_IDLE_S = 0.5

# drivers memori's extras install; any other driver is the user's to install
_EXTRA_FOR_DRIVER = {"psycopg": "postgres", "pymysql": "mysql"}
_EXTRA_FOR_BACKEND = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}


@dataclass
class Connected:
    """The engine made from ``conn`` and whether memori owns (and so disposes) it."""

    engine: Engine
    owned: bool


def connect(conn: object, timeout: float = 0) -> Connected:
    """Make an Engine from any accepted ``conn`` form.

    Args:
        timeout: seconds an Engine made here from a URL waits to connect to PostgreSQL or
            MariaDB (``Config.database_timeout_seconds``; 0: the driver's default, no bound).
            The caller's own Engines, sessions and factories keep their settings.

    Raises:
        ConfigurationError: for an unsupported form, a raw DB-API connection (pass a factory),
            or a missing driver (naming the extra to install).
    """
    if conn is None:
        return Connected(_from_url(os.environ.get("MEMORI_DATABASE_URL") or DEFAULT_URL,
                                   timeout), True)
    if isinstance(conn, str):
        return Connected(_from_url(conn, timeout), True)
    if isinstance(conn, Engine):
        return Connected(_callers_engine(conn), False)
    if isinstance(conn, sessionmaker):
        bind = conn.kw.get("bind")
        if not isinstance(bind, Engine):
            raise ConfigurationError("the sessionmaker passed as conn has no Engine bind; "
                                     "create it as sessionmaker(bind=engine)", argument="conn")
        return Connected(_callers_engine(bind), False)
    if isinstance(conn, Session):
        bind = conn.get_bind()
        engine = bind if isinstance(bind, Engine) else getattr(bind, "engine", None)
        if not isinstance(engine, Engine):
            raise ConfigurationError("the Session passed as conn is not bound to an Engine",
                                     argument="conn")
        return Connected(_callers_engine(engine), False)
    if type(conn).__module__.startswith("django."):
        return Connected(_from_django(conn), True)
    if hasattr(conn, "cursor") and hasattr(conn, "commit"):
        module = type(conn).__module__
        example = ("psycopg.connect('postgresql://user@host/db')" if module.startswith("psycopg")
                   else "pymysql.connect(host='127.0.0.1', user='root', database='app')"
                   if module.startswith("pymysql") else "sqlite3.connect('app.db')")
        raise ConfigurationError(
            f"conn is an open DB-API connection ({module}.{type(conn).__name__}); memori opens "
            f"one per thread, so pass a zero-argument factory instead, e.g. "
            f"conn=lambda: {example}",
            argument="conn",
        )
    if callable(conn):
        return Connected(_from_factory(conn), True)
    raise ConfigurationError(f"unsupported conn of type {type(conn).__name__}; accepted: "
                             f"{ACCEPTED_FORMS}", argument="conn")


def _callers_engine(engine: Engine) -> Engine:
    """The caller's Engine, as memori uses it. On MySQL/MariaDB memori runs READ COMMITTED (as
    on the engines it makes itself): under the default REPEATABLE READ, the select after an
    insert-or-ignore that lost a race reads the old snapshot and misses the winner's row. The
    caller's own connections keep their isolation level (the option is on a copy sharing the
    pool)."""
    _configure(engine)
    if engine.dialect.name in ("mysql", "mariadb"):
        return engine.execution_options(isolation_level="READ COMMITTED")
    return engine


def _normalize_url(url: URL) -> URL:
    driver = url.drivername
    if driver in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if driver in ("mysql", "mariadb"):
        return url.set(drivername="mysql+pymysql")
    return url


def _from_url(raw: str, timeout: float = 0) -> Engine:
    try:
        url = _normalize_url(make_url(raw))
    except ArgumentError as exc:
        if "://" not in raw:  # a file path
            raise ConfigurationError(f"conn {raw!r} is not a database URL; for a SQLite file "
                                     f"write sqlite:///{raw}", argument="conn") from exc
        raise ConfigurationError(f"conn {raw!r} is not a database URL; accepted: {ACCEPTED_FORMS}",
                                 argument="conn") from exc
    kwargs: dict[str, Any] = {}
    backend = url.get_backend_name()
    if backend == "sqlite":
        kwargs = {"connect_args": {"check_same_thread": False,
                                   "timeout": SQLITE_BUSY_TIMEOUT_S}}
        if url.database in (None, "", ":memory:"):
            raise ConfigurationError(
                "an in-memory SQLite database is private to one connection; use a file, "
                "e.g. conn='sqlite:///memori.db'", argument="conn")
    elif backend in ("mysql", "mariadb"):
        url = url.update_query_dict({"charset": "utf8mb4"})
        kwargs["isolation_level"] = "READ COMMITTED"
        kwargs["pool_recycle"] = 3600
        if timeout > 0 and "connect_timeout" not in url.query:
            kwargs["connect_args"] = {"connect_timeout": max(1, math.ceil(timeout))}
    elif backend == "postgresql" and timeout > 0 and "connect_timeout" not in url.query:
        # libpq's unit is whole seconds, at least 2
        kwargs["connect_args"] = {"connect_timeout": max(2, math.ceil(timeout))}
    try:
        engine = create_engine(url, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        # from the URL text: url.get_driver_name() loads the dialect and would raise again
        backend_name, _, driver_name = url.drivername.partition("+")
        extra = _EXTRA_FOR_DRIVER.get(driver_name) or (
            None if driver_name else _EXTRA_FOR_BACKEND.get(backend_name))
        if extra:
            hint = f"pip install \"memori-core[{extra}]\""
        elif backend_name in _EXTRA_FOR_BACKEND:
            hint = (f"install the {driver_name} driver, or use the driver memori ships with: "
                    f"{'postgresql+psycopg' if backend_name == 'postgresql' else 'mysql+pymysql'}"
                    f"://... and pip install \"memori-core[{_EXTRA_FOR_BACKEND[backend_name]}]\"")
        else:
            hint = "supported databases are SQLite, PostgreSQL and MySQL/MariaDB"
        raise ConfigurationError(f"no driver for {url.drivername}: {hint}",
                                 argument="conn") from exc
    _configure(engine)
    if backend != "sqlite":
        _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection on checkout when it has been idle more than
    ``PING_AFTER_IDLE_S``; a dead one invalidates the pool, as ``pool_pre_ping`` does."""
    dialect = engine.dialect

    @event.listens_for(engine.pool, "checkin")
    def _used(_dbapi_conn: Any, record: Any) -> None:
        record.info["memori_idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("memori_idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return  # new, or used a moment ago
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            raise InvalidatePoolError(f"pooled connection is gone: {exc}") from exc


def _from_factory(factory: Callable[[], Any]) -> Engine:
    try:
        probe = factory()
    except Exception as exc:
        raise ConfigurationError(f"the conn factory raised {type(exc).__name__}: {exc}",
                                 argument="conn") from exc
    module = type(probe).__module__
    try:
        if not (hasattr(probe, "cursor") and hasattr(probe, "commit")):
            raise ConfigurationError(
                f"the conn factory returned {type(probe).__name__}, not a DB-API connection; "
                f"accepted: {ACCEPTED_FORMS}", argument="conn")
        if module.startswith("sqlite3"):
            url = "sqlite://"
        elif module.startswith("psycopg"):
            url = "postgresql+psycopg://"
        elif module.startswith("pymysql"):
            url = "mysql+pymysql://"
        else:
            raise ConfigurationError(
                f"the conn factory returned a {module}.{type(probe).__name__}; supported "
                "DB-API drivers are sqlite3, psycopg (3) and PyMySQL", argument="conn")
    finally:
        close = getattr(probe, "close", None)
        if callable(close):
            close()
    kwargs: dict[str, Any] = {"creator": factory}
    if url.startswith("sqlite"):
        # a user's sqlite3 connection is bound to the thread that made it: one per checkout
        kwargs["poolclass"] = NullPool
    elif url.startswith("mysql"):
        kwargs["isolation_level"] = "READ COMMITTED"
    engine = create_engine(url, **kwargs)
    _configure(engine)
    return engine


def _from_django(conn: Any) -> Engine:
    settings = conn.settings_dict
    vendor = conn.vendor
    if vendor == "sqlite":
        name = str(settings["NAME"])
        if name in ("", ":memory:") or name.startswith("file:memorydb"):
            raise ConfigurationError("the Django connection uses an in-memory SQLite database; "
                                     "memori needs a file", argument="conn")
        return _from_url(str(URL.create("sqlite", database=name)))
    drivers = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}
    if vendor not in drivers:
        raise ConfigurationError(f"Django database vendor {vendor!r} is not supported; use "
                                 "sqlite, postgresql or mysql", argument="conn")
    url = URL.create(
        drivers[vendor],
        username=settings.get("USER") or None,
        password=settings.get("PASSWORD") or None,
        host=settings.get("HOST") or None,
        port=int(settings["PORT"]) if settings.get("PORT") else None,
        database=settings.get("NAME") or None,
    )
    return _from_url(url.render_as_string(hide_password=False))


def _set_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another connection holds the file: the
    switch answers "database is locked" at once instead of waiting on the busy timeout
    (seen when two processes open a new file at the same moment)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)  # backoff: the pragma does not use SQLite's busy handler
        delay = min(delay * 2, 0.2)


def _configure(engine: Engine) -> None:
    """SQLite: WAL, a busy timeout, foreign keys, and BEGIN IMMEDIATE for write transactions
    (``execution_options(memori_write=True)``) so writers queue instead of failing with
    "database is locked" on a read-to-write upgrade."""
    if engine.dialect.name != "sqlite" or getattr(engine, "_memori_configured", False):
        return
    engine._memori_configured = True  # type: ignore[attr-defined]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        _set_wal(cur)
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        # deleted content is overwritten with zeros, not left in free pages (forget)
        cur.execute("PRAGMA secure_delete = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("memori_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
