"""Physical erasure (issue 18.11): after ``forget`` the text is gone from the database's files,
not only from its rows; and memory text stays out of the logs unless asked for."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from memori_databases import create_database
from sqlalchemy import text
from sqlalchemy.engine import make_url

from memori_core import Memori
from memori_core.testing import HashEmbedder

SECRET = "zebra-quokka-7731 is my bank PIN"


def said(mem: Memori) -> None:
    mem.attribution(entity_id="leaver", process_id="bank")
    for n in range(20):
        mem.capture([{"role": "user", "content": f"{SECRET} (number {n})"},
                     {"role": "assistant", "content": f"Noted: {SECRET}"}])
    mem.remember(f"The user said {SECRET}")
    assert mem.augmentation.wait(timeout=60)


def copies(paths: list[Path]) -> int:
    return sum(p.read_bytes().count(b"zebra-quokka-7731") for p in paths if p.exists())


def test_sqlite_files_hold_no_copy_after_forget_while_the_app_runs(sqlite_url: str) -> None:
    db = Path(make_url(sqlite_url).database or "")
    files = [db, db.with_name(db.name + "-wal")]
    with Memori(conn=sqlite_url, embedder=HashEmbedder()) as mem:
        mem.config.storage.build()
        said(mem)
        assert copies(files) > 0
        mem.forget("leaver")
        assert copies(files) == 0  # while the instance still runs: zeroed and checkpointed


def pg_files(mem: Memori) -> list[Path]:
    with mem.engine.connect() as c:
        root = Path(c.execute(text("SHOW data_directory")).scalar_one())
        rels = c.execute(text(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 't', 'i') "
            "UNION SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class c "
            "WHERE c.reltoastrelid <> 0 AND c.relname LIKE 'memori_%'")).scalars().all()
    return [root / r for r in rels if r]


def test_postgresql_forget_with_vacuum_leaves_no_copy_in_the_tables_files(pg_url: str) -> None:
    with Memori(conn=pg_url, embedder=HashEmbedder()) as mem:
        said(mem)
    # forget as the README says to vacuum: with memori quiet (a worker's transaction that began
    # before the delete committed would keep the deleted rows as recently dead)
    with Memori(conn=pg_url, embedder=HashEmbedder(), augmentation_workers=0) as mem:
        with mem.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("CHECKPOINT"))  # the rows reach the table files
        assert copies(pg_files(mem)) > 0, pg_files(mem)
        counts = mem.forget("leaver", vacuum=True)
        assert counts["memori_conversation_message"] == 40
        with mem.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("CHECKPOINT"))
        left = {str(p): copies([p]) for p in pg_files(mem) if copies([p])}
        assert left == {}  # VACUUM FULL rewrote the files without them


@pytest.fixture
def mariadb_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, drop = create_database("mariadb", tmp_path_factory)
    try:
        yield url
    finally:
        drop()  # type: ignore[operator]


def test_forget_with_vacuum_runs_on_mariadb(mariadb_url: str) -> None:
    with Memori(conn=mariadb_url, embedder=HashEmbedder()) as mem:
        mem.config.storage.build()
        said(mem)
        assert mem.forget("leaver", vacuum=True)["memori_conversation_message"] == 40
        assert mem.export(entity_id="leaver")["sessions"] == []


def test_memory_text_stays_out_of_debug_logs_unless_asked(
        sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="memori_core")
    with Memori(conn=sqlite_url, embedder=HashEmbedder()) as mem:
        mem.config.storage.build()
        said(mem)
        mem.recall("what is my PIN?")
    assert "zebra-quokka" not in caplog.text and "characters>" in caplog.text
    caplog.clear()
    with Memori(conn=sqlite_url, embedder=HashEmbedder(), log_content=True) as mem:
        mem.attribution(entity_id="other")
        mem.capture([{"role": "user", "content": SECRET}])
    assert "zebra-quokka" in caplog.text
