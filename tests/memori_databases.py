"""The test databases: ``create_database(backend, tmp_path_factory)`` makes an empty SQLite
file, PostgreSQL database or MariaDB database for one test (the servers from
``MEMORI_TEST_PG_URL`` / ``MEMORI_TEST_MYSQL_URL``, default 127.0.0.1:5432 as ``postgres`` and
127.0.0.1:3306 as ``root``) and returns its URL and a function that drops it. An unreachable
server fails the test, naming it: tests never skip a backend.

A module of its own, imported by name (``from memori_databases import create_database``):
``from conftest import`` finds whichever ``conftest`` module was imported first.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

__all__ = ["MYSQL_SERVER", "PG_SERVER", "create_database"]

PG_SERVER = os.environ.get("MEMORI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MYSQL_SERVER = os.environ.get("MEMORI_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")


def _server_error(url: str, exc: Exception) -> pytest.fail.Exception:
    return pytest.fail(f"database server {make_url(url).render_as_string()} is not reachable "
                       f"({exc}); start it (bash .ci/run does) - tests never skip a backend",
                       pytrace=False)


def create_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    """Create an empty database; return (url, dropper)."""
    name = f"memori_test_{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / f"{name}.db"
        return f"sqlite:///{path}", lambda: None
    server = PG_SERVER if backend == "postgresql" else MYSQL_SERVER
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            if backend == "postgresql":
                c.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                c.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 "
                               "COLLATE utf8mb4_unicode_ci"))
    except Exception as exc:
        admin.dispose()
        raise _server_error(server, exc) from exc

    def drop() -> None:
        with admin.connect() as c:
            if backend == "postgresql":
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                c.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()

    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    return url, drop
