"""Packed vectors (``storage/packed.py``, migration 7) and the exact dense top-k a cold recall
takes from them (``recall/dense.py``), on SQLite, PostgreSQL and MariaDB: the writes of
memories pack them in their transaction; a cold recall's dense candidates equal the read of
every vector (ids and similarities) for every filter, while reading a fraction of them; a
deleted or forgotten memory's codes go with it; blocks out of date are detected, answered
exactly from every vector and packed again in the background; an error on the lexical
thread reaches the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sqlalchemy import Connection, create_engine, delete, func, inspect, select

from memori_core import Memori
from memori_core.errors import StorageError
from memori_core.recall.index import Filter
from memori_core.storage import packed
from memori_core.storage import schema as s
from memori_core.storage.store import NewMemory, utcnow
from memori_core.testing import HashEmbedder

DIM = 64
#: memories per write: the first two pack (>= MIN_PACK past the last block), the third is
#: the tail every cold recall reads exactly
WRITES = (500, 500, 200)
N = sum(WRITES)


def corpus_vectors(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors in clusters of near-duplicates (as a user's memories are): the packed
    scores of a cluster's members are closer than their margins, so the re-scoring rounds
    are exercised."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((40, DIM)).astype(np.float32)
    x = centers[np.arange(n) % 40] + 0.15 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def mem(db_url: str) -> Iterator[Memori]:
    """A cold-recall instance with ``N`` memories of "ann" in three processes and three
    kinds, some superseded, written through the store in ``WRITES`` transactions."""
    m = Memori(conn=db_url, embedder=HashEmbedder(dim=DIM), augmentation_workers=0,
               recall_pushdown=True, recall_pushdown_above=0)
    try:
        m.config.storage.build()
        m.attribution(entity_id="ann", process_id="coach")
        store = m._store
        store.check_embedding_model(m.embedder.name, DIM)
        vectors = corpus_vectors(N)
        kinds = ("fact", "preference", "episodic")
        start = 0
        for size in WRITES:
            def tx(conn: Connection, state: Any, start: int = start, size: int = size) -> None:
                e = store.entity_pk(conn, state, "ann")
                procs = [store.process_pk(conn, state, p) for p in ("coach", "tutor", None)]
                store.upsert_memories(conn, [
                    NewMemory(e, procs[i % 3], kinds[i % 3],
                              f"memory {i} about topic{i % 40} and word{i % 7}"
                              + " with notes" * (i % 4), vectors[i],
                              (), slot=f"slot{i % 25}" if i % 5 == 0 else None)
                    for i in range(start, start + size)], m.embedder.name)

            store.write(tx)
            start += size
        yield m
    finally:
        m.close()


def entity(m: Memori) -> int:
    pk = m._store.find_pk("entity", "ann")
    assert pk is not None
    return pk


def full_read(m: Memori, vector: np.ndarray, k: int, flt: Filter) -> list[tuple[int, float]]:
    """The dense candidates from one read of every vector (no blocks used)."""
    store: Any = m._store
    real = store.packed_vectors
    store.packed_vectors = lambda *_a, **_k: "not used here"
    try:
        found = m._recaller._dense(vector, k, entity(m), flt)
    finally:
        store.packed_vectors = real
    assert found is not None
    return found[0]


def spy(m: Memori, name: str) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    store: Any = m._store
    real = getattr(store, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append((*args, *kwargs.values()))
        return real(*args, **kwargs)

    setattr(store, name, counted)
    return calls


def write_facts(m: Memori, start: int, n: int) -> None:
    """Facts ``start`` .. ``start + n - 1`` of "ann" (``corpus_vectors``), in one write
    transaction through the store (which packs them)."""
    store = m._store
    store.check_embedding_model(m.embedder.name, DIM)
    vectors = corpus_vectors(start + n)

    def tx(conn: Connection, state: Any) -> None:
        e = store.entity_pk(conn, state, "ann")
        store.upsert_memories(conn, [NewMemory(
            e, None, "fact", f"memory {i} about topic{i % 40} and word{i % 7}", vectors[i], ())
            for i in range(start, start + n)], m.embedder.name)

    store.write(tx)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 40), st.just(16)),
              elements=st.floats(-1, 1, width=32)),
       arrays(np.float32, 16, elements=st.floats(-1, 1, width=32)))
def test_a_packed_score_is_within_its_margin_of_the_exact_one(x: np.ndarray, q: np.ndarray
                                                              ) -> None:
    codes, scales, residuals = packed.quantize(x)
    blocks = packed.Packed(np.arange(len(x), dtype=np.int64), [codes], scales, residuals,
                           len(x))
    scores, margins = packed.bounds(blocks, q)
    exact = x.astype(np.float64) @ q.astype(np.float64)
    assert np.all(np.abs(scores - exact) <= margins)


def test_writes_pack_the_memories_and_the_rest_is_the_tail(mem: Memori) -> None:
    blocks = mem._store.packed_vectors(entity(mem), DIM)
    assert isinstance(blocks, packed.Packed)
    ids, _ = mem._store.memory_vectors(entity(mem), None, None, True)
    assert blocks.ids.tolist() == ids[:sum(WRITES[:2])].tolist()  # the third write: < 256
    assert blocks.last_id == int(ids[sum(WRITES[:2]) - 1])
    with mem.engine.connect() as c:  # the first block was written again with the second write
        assert c.execute(select(func.count()).select_from(s.vector_block)).scalar() == 1


@pytest.mark.parametrize("flt", [Filter(None, None, False), Filter(None, None, True),
                                 Filter(None, ["preference"], False),
                                 Filter("coach", None, False), Filter("tutor", ["fact"], True)],
                         ids=["current", "with-superseded", "kind", "process", "process-kind"])
def test_the_packed_dense_top_k_is_the_exact_one(mem: Memori, flt: Filter) -> None:
    if isinstance(flt.processes, str):  # a persona: its memories and those of no process
        pk = mem._store.find_pk("process", flt.processes)
        flt = Filter([pk, None], flt.kinds, flt.include_superseded)
    blocks = mem._store.packed_vectors(entity(mem), DIM)
    assert isinstance(blocks, packed.Packed)
    rescored = spy(mem, "memory_similarities")
    reads = spy(mem, "memory_vectors")
    vectors = corpus_vectors(N)
    rng = np.random.default_rng(1)
    queries = [vectors[i] for i in range(0, N, 97)] + [
        v / np.linalg.norm(v) for v in rng.standard_normal((5, DIM)).astype(np.float32)]
    for q in queries:
        rescored.clear()
        reads.clear()
        found = mem._recaller._dense(q, 100, entity(mem), flt)
        assert found is not None
        # without a filter excluding most memories: the tail only, and a fraction of the
        # packed memories re-scored (with one, past RESCORED_MOST, every allowed vector is
        # read instead: exact too)
        if flt.processes is None and flt.kinds is None:
            assert [c[-1] for c in reads] == [blocks.last_id]
            assert sum(len(c[2]) for c in rescored) < N / 2
        want = full_read(mem, q, 100, flt)
        assert [i for i, _ in found[0]] == [i for i, _ in want]
        assert [x for _, x in found[0]] == pytest.approx([x for _, x in want], abs=1e-6)


def test_deleted_and_forgotten_memories_take_their_codes_with_them(mem: Memori) -> None:
    pk, store = entity(mem), mem._store
    blocks = store.packed_vectors(pk, DIM)
    assert isinstance(blocks, packed.Packed)
    gone = int(blocks.ids[3])
    assert mem.forget_memories([gone]) == 1
    assert store.packed_vectors(pk, DIM) == "no blocks"
    found = mem._recaller._dense(corpus_vectors(N)[3], 100, pk, Filter(None, None, True))
    assert found is not None and gone not in [i for i, _ in found[0]]
    mem.recall("memory about topic3", limit=5)  # cold: packed again in the background
    assert mem._recaller.wait_filled(30)
    again = store.packed_vectors(pk, DIM)
    assert isinstance(again, packed.Packed) and gone not in again.ids.tolist()
    assert len(again) == N - 1  # every memory: the tail too
    # a re-embed replaces vectors: their codes are dropped in its transaction
    store.set_embeddings([(int(again.ids[0]), pk, corpus_vectors(1, seed=9)[0])],
                         mem.embedder.name)
    assert store.packed_vectors(pk, DIM) == "no blocks"
    mem.forget("ann")
    with mem.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(s.vector_block)).scalar() == 0


def test_a_memory_deleted_behind_memori_s_back_is_never_a_candidate(mem: Memori) -> None:
    """A row deleted with SQL, not through memori, leaves its code and postings in a block:
    the dense top-k re-reads every memory it returns (the same as every vector read), and the
    lexical side reads its candidates by id, so the deleted memory is never returned."""
    pk, store = entity(mem), mem._store
    blocks = store.packed_vectors(pk, DIM)
    assert isinstance(blocks, packed.Packed)
    gone = int(blocks.ids[10])
    with mem.engine.begin() as c:
        c.execute(delete(s.entity_fact).where(s.entity_fact.c.id == gone))
    q = corpus_vectors(N)[10]
    flt = Filter(None, None, True)
    found = mem._recaller._dense(q, 100, pk, flt)
    want = full_read(mem, q, 100, flt)
    assert found is not None and [i for i, _ in found[0]] == [i for i, _ in want]
    assert [x for _, x in found[0]] == pytest.approx([x for _, x in want], abs=1e-6)
    assert gone not in [i for i, _ in found[0]]
    candidates = mem._recaller._from_database(q, "memory 10 about topic10 and word3", 100, pk,
                                              flt)
    assert candidates is not None
    lexical = [i for i, _ in candidates[1]]
    assert lexical and gone not in lexical and gone not in candidates[2]


def test_a_writer_whose_memory_is_below_a_block_packs_it_again(mem: Memori) -> None:
    """A memory written with an id below the last block (as when a concurrent writer packed
    while this transaction held it uncommitted): ``pack`` with the ids it wrote drops the
    blocks from there and packs them again, so the blocks hold every memory up to their
    last id."""
    pk, store = entity(mem), mem._store
    blocks = store.packed_vectors(pk, DIM)
    assert isinstance(blocks, packed.Packed)
    late = int(blocks.ids[10])
    f = s.entity_fact.c
    with mem.engine.begin() as c:  # an id below the last block, written again as new
        row = c.execute(select(s.entity_fact).where(f.id == late)).mappings().one()
        c.execute(delete(s.fact_mention).where(s.fact_mention.c.fact_id == late))
        c.execute(delete(s.entity_fact).where(f.id == late))
        c.execute(s.entity_fact.insert().values(**row))
        assert packed.pack(c, [pk], DIM, written={pk: [late]}) > 0
    again = store.packed_vectors(pk, DIM)
    ids, _ = store.memory_vectors(pk, None, None, True)
    assert isinstance(again, packed.Packed) and late in again.ids.tolist()
    assert again.ids.tolist() == ids[:len(again)].tolist()


def test_a_memory_committed_late_below_a_block_is_packed(pg_url: str) -> None:
    """PostgreSQL, two real transactions: A inserts a memory and holds it uncommitted; B
    writes enough to pack, past A's id, and commits first; A's write then packs again from
    its memory. (SQLite has one writer, and on MariaDB InnoDB's foreign-key check should lock
    the entity row for A's insert: there B waits for A.)"""
    with Memori(conn=pg_url, embedder=HashEmbedder(dim=DIM), augmentation_workers=0) as m:
        m.config.storage.build()
        store = m._store
        vectors = corpus_vectors(700)
        write_facts(m, 0, 300)
        with m.engine.connect() as a:
            tx = a.begin()
            e = store.find_pk("entity", "ann")
            assert e is not None
            late = a.execute(s.entity_fact.insert().values(
                entity_id=e, process_id=None, kind="fact", content="held by A",
                dedup_key="held-by-a", embedding=vectors[600].tobytes(),
                embedding_model=m.embedder.name, embedding_dim=DIM, mention_count=1,
                importance=0.5, created_at=utcnow(), last_seen_at=utcnow())
            ).inserted_primary_key[0]
            write_facts(m, 300, 300)  # B: packs past A's id, commits first
            b = store.packed_vectors(e, DIM)
            assert isinstance(b, packed.Packed) and b.last_id > late
            assert late not in b.ids.tolist()
            a.execute(s.entity.update().where(s.entity.c.id == e).values(
                memory_version=s.entity.c.memory_version + 1))  # A's lock, as a write takes
            packed.pack(a, [e], DIM, written={e: [late]})
            tx.commit()
        blocks = store.packed_vectors(e, DIM)
        ids, _ = store.memory_vectors(e, None, None, True)
        assert isinstance(blocks, packed.Packed) and late in blocks.ids.tolist()
        assert blocks.ids.tolist() == ids[:len(blocks)].tolist()


@pytest.mark.parametrize("flt", [Filter(None, None, True), Filter(None, None, False),
                                 Filter("tutor", ["fact"], False)],
                         ids=["all", "current", "process-kind"])
def test_bm25_from_the_packed_postings_is_the_in_process_index_s(
        mem: Memori, db_url: str, flt: Filter) -> None:
    """Every memory's BM25 from the postings of the query's terms (the blocks' and the
    tail's) equals the in-process index's: the same memories, the same scores."""
    pk = entity(mem)
    if isinstance(flt.processes, str):
        flt = Filter([mem._store.find_pk("process", flt.processes), None], flt.kinds,
                     flt.include_superseded)
    with Memori(conn=db_url, embedder=HashEmbedder(dim=DIM), augmentation_workers=0,
                recall_reply_weight=0.0) as plain:
        recaller = plain._recaller
        blocks = plain._store.packed_vectors(pk, DIM)
        assert isinstance(blocks, packed.Packed) and len(blocks) == N - WRITES[-1]
        index = recaller.cache.get(pk, DIM)
        q = corpus_vectors(N)[0]
        for query in ("topic3 word2", "memory 17 with notes", "notes about word0",
                      "memories noted on topic7", "nothing matches zebra"):
            found = recaller._from_postings(query, N, pk, flt)
            assert found is not None and found.block_ids == blocks.block_ids
            _, want, _ = index.search(q, query, N, flt, 0.0)
            got = dict(found.ranking)
            assert set(got) == {i for i, _ in want}
            assert [got[i] for i, _ in want] == pytest.approx([x for _, x in want], rel=1e-6)


def test_blocks_without_postings_take_the_full_text_pool_and_are_packed_again(
        mem: Memori) -> None:
    """Blocks packed before migration 8 (no lengths): the cold recall's lexical side comes
    from the full-text pool, and the background build packs the entity again."""
    pk = entity(mem)
    with mem.engine.begin() as c:
        c.execute(s.vector_block.update().values(lengths=None))
    pooled = spy(mem, "lexical_candidates")
    assert mem.recall("memory about topic7 and word0", limit=5)
    assert pooled
    assert mem._recaller.wait_filled(30)
    with mem.engine.connect() as c:
        assert not packed.lacks_postings(c, pk)
    pooled.clear()
    mem._recaller.cache.discard(pk)
    assert mem.recall("memory about topic7 and word0", limit=5)
    assert not pooled


def test_a_cold_recall_reads_no_vector_twice_and_an_error_on_the_lexical_thread_is_raised(
        mem: Memori) -> None:
    reads = spy(mem, "memory_vectors")
    hits = mem.recall("memory about topic7 and word0", limit=5)
    assert hits and all(c[-1] > 0 for c in reads)  # the tail after the blocks only
    assert mem._recaller.wait_filled(30)
    store: Any = mem._store
    real = store.packed_postings

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise StorageError("database read failed: the postings are corrupt")

    store.packed_postings = broken
    mem._recaller.cache.discard(entity(mem))
    with pytest.raises(StorageError, match="corrupt"):
        mem.recall("memory about topic8", limit=5)
    store.packed_postings = real
    mem._recaller.cache.discard(entity(mem))
    assert mem.recall("memory about topic8", limit=5)  # the thread still serves


def test_an_import_packs_what_it_writes(mem: Memori, tmp_path: Any) -> None:
    data = mem.export(entity_id="ann")
    with Memori(conn=f"sqlite:///{tmp_path / 'other.db'}", embedder=HashEmbedder(dim=DIM),
                augmentation_workers=0) as other:
        counts = other.import_(data)
        assert counts["memori_vector_block"] == 1
        pk = other._store.find_pk("entity", "ann")
        assert pk is not None
        blocks = other._store.packed_vectors(pk, DIM)
        assert isinstance(blocks, packed.Packed) and len(blocks) == N


def test_the_packed_blocks_give_bm25_the_entity_s_count_and_characters(mem: Memori) -> None:
    """Memory count and characters of the indexed text from the blocks plus the memories past
    them equal those counted over every row (exact at this size: no sampling)."""
    pk, store = entity(mem), mem._store
    assert store.fulltext_missing() is None  # SQLite: its FTS5 index made now
    blocks = store.packed_vectors(pk, DIM)
    assert isinstance(blocks, packed.Packed) and blocks.chars > 0
    words = {"topic3": "topic3"}
    every = store.lexical_corpus(pk, words, [])
    fast = store.lexical_corpus(pk, words, [], packed_up_to=(blocks.last_id, len(blocks),
                                                              blocks.chars))
    assert (fast.rows, fast.chars, fast.df) == (every.rows, every.chars, every.df) == (
        N, every.chars, every.df)
    with mem.engine.connect() as c:
        f = s.entity_fact.c
        assert every.chars == c.execute(select(func.sum(func.length(
            func.coalesce(f.search_text, f.content))))).scalar()


def test_a_pool_of_one_connection_recalls_on_one_thread(db_url: str) -> None:
    """An Engine whose pool hands out one connection: the cold recall gathers its lexical
    pool on the caller's thread (a second checkout would wait for the first), and answers."""
    engine = create_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=5)
    try:
        with Memori(conn=engine, embedder=HashEmbedder(dim=DIM), augmentation_workers=0,
                    recall_pushdown_above=0) as m:
            m.config.storage.build()
            m.attribution(entity_id="ann")
            m.remember("Keeps bees on the roof")
            assert not m._recaller._parallel
            assert [h.content for h in m.recall("bees", limit=1)] == ["Keeps bees on the roof"]
            assert m._recaller.wait_filled(30)
    finally:
        engine.dispose()


def test_small_entities_leave_sqlite_without_a_full_text_index(sqlite_url: str) -> None:
    """Push-down is on by default, for entities above ``recall_pushdown_above``: a database
    of small ones never gets SQLite's FTS5 index (one write transaction indexing every
    memory) made by a recall."""
    with Memori(conn=sqlite_url, embedder=HashEmbedder(dim=DIM), augmentation_workers=0) as m:
        assert m.config.recall_pushdown
        m.config.storage.build()
        m.attribution(entity_id="ann")
        m.remember("Keeps bees on the roof")
        assert m.recall("bees", limit=1)
        with m.engine.connect() as c:
            assert "memori_fact_fts" not in inspect(c).get_table_names()


def test_a_large_entity_is_packed_a_bounded_number_of_memories_at_a_time(
        mem: Memori, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migrated database's large entity is packed over several transactions of at most
    ``most`` memories each (never one long write); meanwhile a cold recall reads the rest
    exactly, and its answers stay exact."""
    monkeypatch.setattr(packed, "CHUNK", 100)
    pk, store = entity(mem), mem._store
    with mem.engine.begin() as c:
        assert packed.rebuild(c, pk, DIM, most=300) == 300
    blocks = store.packed_vectors(pk, DIM)
    assert isinstance(blocks, packed.Packed) and len(blocks) == 300
    flt = Filter(None, None, False)
    q = corpus_vectors(N)[700]
    found = mem._recaller._dense(q, 100, pk, flt)
    assert found is not None and found[0] == full_read(mem, q, 100, flt)
    rounds = 0
    while True:
        with mem.engine.begin() as c:
            done = packed.pack(c, [pk], DIM, min_rows=1, most=300)
        if not done:
            break
        assert done <= 300 + packed.CHUNK  # the last partial block, written again
        rounds += 1
    blocks = store.packed_vectors(pk, DIM)
    assert isinstance(blocks, packed.Packed) and len(blocks) == N and rounds >= 3


def test_postgresql_copies_the_blocks_as_a_query_reads_them(pg_url: str) -> None:
    """``Store._rows`` with ``copy`` (binary COPY, for the packed codes) returns the rows a
    query returns;
    a statement with a column COPY cannot type here (text) is read as a query."""
    with Memori(conn=pg_url, embedder=HashEmbedder(dim=DIM), augmentation_workers=0) as m:
        m.config.storage.build()
        m.attribution(entity_id="ann")
        store = m._store
        write_facts(m, 0, 300)
        b, f = s.vector_block.c, s.entity_fact.c
        blocks = select(b.id, b.row_count, b.dim, b.last_id, b.chars, b.ids, b.codes, b.scales,
                        b.residuals).where(b.entity_id == entity(m))
        texts = select(f.id, f.content).where(f.entity_id == entity(m)).order_by(f.id)
        with store.read() as conn:
            copied, read = store._rows(conn, blocks, copy=True), store._rows(conn, blocks)
            assert len(copied) == 1
            assert [tuple(bytes(x) if isinstance(x, (bytes, memoryview)) else x for x in r)
                    for r in copied] == [
                tuple(bytes(x) if isinstance(x, (bytes, memoryview)) else x for x in r)
                for r in read]
            assert [tuple(r) for r in store._rows(conn, texts, copy=True)] == [
                tuple(r) for r in conn.execute(texts)]


def test_a_psycopg2_engine_recalls_cold_as_psycopg_does(pg_url: str) -> None:
    """PostgreSQL through psycopg2 (a driver many SQLAlchemy apps already use): the cold
    recall's reads take no psycopg-only path (binary cursors, COPY) and answer as psycopg's."""
    two = pg_url.replace("postgresql+psycopg://", "postgresql+psycopg2://")
    assert two != pg_url
    with Memori(conn=pg_url, embedder=HashEmbedder(dim=DIM), augmentation_workers=0,
                recall_pushdown_above=0) as m:
        m.config.storage.build()
        write_facts(m, 0, 600)
        m.attribution(entity_id="ann")
        want = [h.id for h in m.recall("memory about topic7 and word0", limit=5)]
    with Memori(conn=two, embedder=HashEmbedder(dim=DIM), augmentation_workers=0,
                recall_pushdown_above=0) as m2:
        assert m2.engine.dialect.driver == "psycopg2"
        m2.attribution(entity_id="ann")
        reads = spy(m2, "packed_vectors")
        got = [h.id for h in m2.recall("memory about topic7 and word0", limit=5)]
        assert reads and isinstance(m2._store.packed_vectors(entity(m2), DIM), packed.Packed)
        assert got == want
