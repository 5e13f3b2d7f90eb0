"""The schema guard (issue 18.7-8): every open checks the schema's version and columns; a newer
schema or one changed outside memori is refused by every call, and by the CLI, with the reason;
a job row that cannot be read fails alone and the queue goes on."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select, text, update

from memori_core import Memori, StorageError
from memori_core.cli import main
from memori_core.storage import migrations, schema
from memori_core.testing import HashEmbedder


def built(url: str) -> Memori:
    mem = Memori(conn=url, embedder=HashEmbedder(), augmentation_workers=0)
    mem.config.storage.build()
    return mem


def test_a_newer_schema_is_refused_by_every_call_and_the_cli(
        db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    first = built(db_url)
    newer = len(migrations.MIGRATIONS) + 1
    with first.engine.begin() as c:
        c.execute(schema.schema_version.insert().values(version=newer,
                                                        applied_at=datetime(2030, 1, 1)))
    first.close()
    mem = Memori(conn=db_url, embedder=HashEmbedder())
    try:
        mem.attribution(entity_id="u")
        for call in (lambda: mem.capture([{"role": "user", "content": "hi"}]),
                     lambda: mem.recall("hi"), mem.config.storage.build,
                     lambda: mem.capture([{"role": "user", "content": "again"}])):
            with pytest.raises(StorageError, match="upgrade memori-core"):
                call()
    finally:
        mem.close()
    assert main(["stats", "--db", db_url]) == 2
    assert "upgrade memori-core" in capsys.readouterr().err


def test_a_column_dropped_outside_memori_is_named(db_url: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    mem = built(db_url)
    with mem.engine.begin() as c:
        c.execute(text("ALTER TABLE memori_conversation DROP COLUMN summary"))
    mem.close()
    again = Memori(conn=db_url, embedder=HashEmbedder())
    try:
        with pytest.raises(StorageError, match="memori_conversation.summary"):
            again.config.storage.build()
        again.attribution(entity_id="u")
        with pytest.raises(StorageError, match="changed outside memori"):
            again.recall("anything")
    finally:
        again.close()
    assert main(["stats", "--db", db_url]) == 2
    assert "memori_conversation.summary" in capsys.readouterr().err


def test_the_cli_says_an_unreachable_server_is_unreachable(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--db", "postgresql+psycopg://postgres@127.0.0.1:1/none"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the database" in err and "no memori schema" not in err


def test_an_unreadable_job_row_fails_alone_and_the_queue_goes_on(db_url: str) -> None:
    mem = built(db_url)
    try:
        mem.attribution(entity_id="poison")
        for n in range(6):
            mem.capture([{"role": "user", "content": f"I like fruit number {n}"}])
        j = schema.augmentation_job.c
        with mem.engine.begin() as c:
            first = c.execute(select(j.id).order_by(j.id)).scalars().first()
            c.execute(update(schema.augmentation_job).where(j.id == first)
                      .values(message_ids="[1,"))
        while mem.augmentation.run_once():
            pass
        failed = mem.augmentation.failed()
        assert [f["id"] for f in failed] == [first]
        assert "unreadable job row" in failed[0]["error"]
        with mem.engine.connect() as c:
            statuses = c.execute(select(j.status).order_by(j.id)).scalars().all()
        assert statuses == ["failed"] + ["done"] * 5
        assert len(mem.recall("fruit", limit=10)) == 5
    finally:
        mem.close()
