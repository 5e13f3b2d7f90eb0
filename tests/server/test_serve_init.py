"""``memori serve --db URL`` on a database without memori's schema (a SQLite file not there,
an empty database, one holding someone else's tables) is refused in one line naming
``--init``, exit 2, nothing created; with ``--init`` it builds the schema and serves."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from memori_databases import create_database
from memori_server_support import free_port
from sqlalchemy import create_engine, inspect

from memori_core.cli import main
from memori_core.server._ready import stop, wait_serving


def _tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _refused(url: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["serve", "--db", url, "--port", str(free_port()), "--embedder", "hash"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memori: error: "), out.err
    assert "--init" in lines[0], lines[0]
    return lines[0]


def test_a_database_without_memoris_schema_is_refused_and_left_alone(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
        capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo.db"
    assert str(missing) in _refused(f"sqlite:///{missing}", capsys)
    assert list(tmp_path.iterdir()) == []  # no file, no journal

    theirs = tmp_path / "shop.db"
    with sqlite3.connect(theirs) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    assert "orders" in _refused(f"sqlite:///{theirs}", capsys)
    assert _tables(f"sqlite:///{theirs}") == ["orders"]

    empty, drop = create_database("postgresql", tmp_path_factory)
    try:
        assert "no memori schema" in _refused(empty, capsys)
        assert _tables(empty) == []
    finally:
        drop()  # type: ignore[operator]


def test_init_builds_the_schema_and_serves(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    url = f"http://127.0.0.1:{free_port()}"
    log = Path(tempfile.mkstemp(prefix="memori-serve-", suffix=".log")[1])
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memori_core.cli", "serve", "--db", f"sqlite:///{db}",
             "--port", url.rsplit(":", 1)[1], "--embedder", "hash", "--init"],
            stdout=out, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        wait_serving(proc, f"{url}/readyz", log=log)
        assert httpx.get(f"{url}/readyz").json()["status"] == "ready"
    finally:
        stop(proc)
        log.unlink()
    tables = _tables(f"sqlite:///{db}")
    assert "orders" in tables and "memori_schema_version" in tables and "memori_api_key" in tables
