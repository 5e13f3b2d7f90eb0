"""How memori uses pooled server connections: one checkout per recall, a ping only for a
connection idle longer than ``connect.PING_AFTER_IDLE_S``, and recovery from connections the
server closed (PostgreSQL; ``pg_terminate_backend`` stands in for a server restart)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, event, text

from memori_core import Memori, StorageError
from memori_core.storage import connect
from memori_core.testing import HashEmbedder


@pytest.fixture
def pg_mem(pg_url: str) -> Iterator[Memori]:
    with Memori(conn=pg_url, embedder=HashEmbedder(), augmentation_workers=0) as m:
        m.config.storage.build()
        m.attribution(entity_id="pooled", process_id="agent")
        yield m


def kill_connections(url: str) -> int:
    """Terminate every server connection to the database of ``url``; returns how many."""
    admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            return len(c.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"),
                {"db": url.rsplit("/", 1)[1]}).all())
    finally:
        admin.dispose()


def checkouts(mem: Memori) -> list[int]:
    seen: list[int] = []
    event.listen(mem.engine.pool, "checkout", lambda *_: seen.append(1))
    return seen


def test_a_recall_checks_out_one_connection(pg_mem: Memori) -> None:
    for i in range(30):
        pg_mem.remember(f"The user keeps bees number {i}")
    pg_mem.recall("bees")  # loads the index
    seen = checkouts(pg_mem)
    hits = pg_mem.recall("bees", limit=3)
    assert len(hits) == 3 and all(h.source_message_ids == () for h in hits)
    assert len(seen) == 1  # version check and details on one connection


def test_sources_of_recalled_memories_are_complete_and_ordered(pg_url: str) -> None:
    """PostgreSQL reads details and sources in one statement: same result as two."""
    with Memori(conn=pg_url, embedder=HashEmbedder()) as m:
        m.config.storage.build()
        m.attribution(entity_id="pooled", process_id="agent")
        ids = [m.capture([{"role": "user", "content": "I keep bees"}])[0] for _ in range(4)]
        assert m.augmentation.wait(timeout=60)
        hit = next(h for h in m.recall("keeps bees", limit=10, kinds=["episodic"]))
    assert list(hit.source_message_ids) == ids  # every mention, oldest first
    assert hit.mention_count == 4


def test_a_capture_survives_its_connection_being_killed(pg_mem: Memori) -> None:
    """Within the no-ping window the dead connection fails on its first statement, before
    COMMIT, and ``Store.write`` runs the transaction again on a new one."""
    first = pg_mem.capture([{"role": "user", "content": "before"}])
    assert kill_connections(pg_mem.engine.url.render_as_string(hide_password=False)) >= 1
    second = pg_mem.capture([{"role": "user", "content": "after"}])
    assert [m["id"] for m in pg_mem.session_messages()] == first + second


def test_an_idle_connection_is_pinged_and_replaced(pg_mem: Memori,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pg_mem.remember("The user keeps bees")
    assert pg_mem.recall("bees")
    monkeypatch.setattr(connect, "PING_AFTER_IDLE_S", 0.0)  # every pooled connection is "idle"
    assert kill_connections(pg_mem.engine.url.render_as_string(hide_password=False)) >= 1
    assert [h.content for h in pg_mem.recall("bees")] == ["The user keeps bees"]


def test_a_read_on_a_connection_killed_within_the_window_fails_once(pg_mem: Memori) -> None:
    """The documented cost of skipping the ping: one read fails, the pool is renewed."""
    pg_mem.remember("The user keeps bees")
    assert pg_mem.recall("bees")
    assert connect.PING_AFTER_IDLE_S >= 0.5
    assert kill_connections(pg_mem.engine.url.render_as_string(hide_password=False)) >= 1
    with pytest.raises(StorageError):
        pg_mem.recall("bees")
    assert [h.content for h in pg_mem.recall("bees")] == ["The user keeps bees"]
