"""Shared fixtures: a fresh database per test on real SQLite, PostgreSQL and MariaDB servers.

PostgreSQL (127.0.0.1:5432, user postgres, trust) and MariaDB (127.0.0.1:3306, root, empty
password) must be running; ``.ci/run`` starts them when they are down. A missing server fails the
test, it never skips. Override with MEMORI_TEST_PG_URL / MEMORI_TEST_MYSQL_URL (server URLs
without a database).
"""

from __future__ import annotations

import errno
import os
import socket
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from memori_core import Memori
from memori_core.testing import HashEmbedder

PG_SERVER = os.environ.get("MEMORI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MYSQL_SERVER = os.environ.get("MEMORI_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/")
BACKENDS = ["sqlite", "postgresql", "mariadb"]

# no test may reach the network beyond loopback (providers are replayed from cassettes)
_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and not (host.startswith("127.") or host in ("localhost", "::1")):
        # an OSError, as a real unreachable network gives, so clients fail the way they would
        raise OSError(errno.ENETUNREACH, f"tests must not reach the network: {address!r}")
    return _real_connect(self, address)  # type: ignore[arg-type]


socket.socket.connect = _loopback_only  # type: ignore[method-assign]


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


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a fresh, empty database on ``backend``, dropped after the test."""
    url, drop = create_database(backend, tmp_path_factory)
    try:
        yield url
    finally:
        drop()  # type: ignore[operator]


@pytest.fixture
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url, _ = create_database("sqlite", tmp_path_factory)
    return url


@pytest.fixture
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, drop = create_database("postgresql", tmp_path_factory)
    try:
        yield url
    finally:
        drop()  # type: ignore[operator]


def _built(url: str) -> Iterator[Memori]:
    m = Memori(conn=url, embedder=HashEmbedder())
    m.config.storage.build()
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def mem(db_url: str) -> Iterator[Memori]:
    """A built Memori on a fresh database of every backend, with the deterministic embedder."""
    yield from _built(db_url)


@pytest.fixture
def smem(sqlite_url: str) -> Iterator[Memori]:
    """A built Memori on a fresh SQLite file, with the deterministic embedder."""
    yield from _built(sqlite_url)
