"""Recall's candidate path (issue 22, ``Config.recall_pushdown``) on SQLite, PostgreSQL and
MariaDB: a cold recall takes its lexical candidates from the database's full-text index
(migration 6) and its dense ones from one read of every vector; it returns the in-process
path's hits on a fixed corpus, follows writes, supersession and forget in the same transaction
(a forgotten or superseded memory is never a candidate), and a database without full-text
search falls back to the in-process index with a logged reason."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from memori_core import Memori
from memori_core.config import Config
from memori_core.recall.index import Filter
from memori_core.storage import migrations
from memori_core.testing import HashEmbedder
from memori_core.types import RecallHit

# no word shared between two memories, except where a query is meant to match two
CORPUS = [
    ("Allergic to peanuts and shellfish", None),
    ("Lives in Lisbon near the river", "city"),
    ("Runs marathons every spring", None),
    ("Sister Ana teaches violin", None),
    ("Prefers green tea over coffee", None),
    ("Works night shifts as a nurse", None),
    ("Owns two cats named Pixel and Byte", None),
    ("Learning Japanese for a trip to Kyoto", None),
    ("Drives an old blue Volvo", None),
    ("Birthday falls on March third", None),
    ("Plays chess online with a cousin", None),
    ("Hates cilantro and olives", None),
]
QUERIES = ["what is she allergic to, peanuts?", "where does she live, Lisbon?",
           "does she run marathons", "who teaches violin", "tea or coffee",
           "night shifts nurse", "cats Pixel", "Japanese trip Kyoto", "which car, a Volvo",
           "birthday in March", "chess with cousin", "cilantro olives", "nothing matches this"]


@pytest.fixture
def pair(db_url: str) -> Iterator[tuple[Memori, Memori]]:
    """(in-process, candidate path): two instances on one database, the corpus stored."""
    plain = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0)
    pushed = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0,
                    recall_pushdown=True, recall_pushdown_above=0)
    try:
        plain.config.storage.build()
        for mem in (plain, pushed):
            mem.attribution(entity_id="ann", process_id="coach")
        for content, slot in CORPUS:
            plain.remember(content, slot=slot)
        yield plain, pushed
    finally:
        pushed.close()  # waits for the index builds its cold recalls started
        plain.close()


def spy(mem: Memori, name: str = "lexical_candidates") -> list[int]:
    """Counts the calls of the store method ``name`` of ``mem`` (default: the candidate
    path's full-text reads)."""
    calls: list[int] = []
    store: Any = mem._store
    real = getattr(store, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    setattr(store, name, counted)
    return calls


def cold(mem: Memori, query: str, **kwargs: Any) -> list[RecallHit]:
    """A recall of an entity whose index is not in the process (built after the last one)."""
    assert mem._recaller.wait_filled(30)
    pk = mem._store.find_pk("entity", "ann")
    if pk is not None:
        mem._recaller.cache.discard(pk)
    return mem.recall(query, **kwargs)


def shown(hits: list[RecallHit]) -> list[tuple[int, str]]:
    return [(h.id, h.content) for h in hits]


def test_the_candidate_path_returns_the_in_process_hits(pair: tuple[Memori, Memori]) -> None:
    plain, pushed = pair
    calls = spy(pushed)
    assert pushed._store.fulltext_missing() is None
    for q in QUERIES:
        want = plain.recall(q, limit=5)
        got = cold(pushed, q, limit=5)
        assert shown(got) == shown(want), q
        for g, w in zip(got, want, strict=True):
            assert g.similarity == pytest.approx(w.similarity, abs=1e-5)
    assert len(calls) == len(QUERIES)  # every one of them took the candidate path
    # the in-process index was built meanwhile: the next recall is the warm path
    assert pushed._recaller.wait_filled(30)
    pk = pushed._store.find_pk("entity", "ann")
    assert pk is not None and pushed._recaller.cache.cached(pk)
    assert shown(pushed.recall(QUERIES[0], limit=5)) == shown(plain.recall(QUERIES[0], limit=5))
    assert len(calls) == len(QUERIES)


def test_the_candidate_path_scores_its_pool_with_the_in_process_bm25(
        pair: tuple[Memori, Memori]) -> None:
    """The full-text index only gathers the pool; its memories are ranked and scored by
    memori's BM25 (stems, the entity's document frequencies and mean length): the lexical list
    of a cold recall is the in-process one, scores and order, for every query (more words
    each, so the order is not decided by one term)."""
    plain, pushed = pair
    pk = plain._store.find_pk("entity", "ann")
    assert pk is not None
    plain.remember("Runs to the river with the cats every March", slot=None)
    plain.remember("Teaches violin and chess to a cousin in Lisbon", slot=None)
    flt = Filter(None, None, False)
    assert pushed._store.fulltext_missing() is None  # SQLite: FTS5 made on first use
    index = plain._recaller.cache.get(pk, plain._recaller._embedder.dim)
    queries = [*QUERIES, "running by the river in March", "violin chess cousin Lisbon cats",
               "cats cats river teaching"]
    for q in queries:
        vector = plain._recaller._embedder.embed([q])[0]
        want = index.search(vector, q, 100, flt, plain.config.recall_reply_weight)[1]
        pushed._recaller.cache.discard(pk)
        recaller = pushed._recaller  # the full-text pool, scored (the path without blocks)
        got = recaller._scored(q, 100, recaller._pool(q, 100, pk, flt), recaller._corpus(q, pk))
        assert [i for i, _ in got] == [i for i, _ in want], q
        assert [x for _, x in got] == pytest.approx([x for _, x in want], rel=1e-5), q
        assert len(got) == len({i for i, _ in got})
    assert pushed._recaller.wait_filled(30)


def assert_scope_and_kinds_filter(pair: tuple[Memori, Memori]) -> None:
    """(in-process, candidate path): a persona's recall, ``scope="entity"`` and ``kinds``
    give the same hits both ways; the persona sees only its own (and shared) memories."""
    plain, pushed = pair
    for mem in (plain, pushed):
        mem.attribution(entity_id="ann", process_id="tutor")
    plain.remember("Prefers jasmine tea in the evening", kind="preference")
    for kwargs in ({}, {"scope": "entity"}, {"kinds": ["preference"]},
                   {"scope": "entity", "kinds": ["fact"]}):
        assert shown(cold(pushed, "tea", limit=5, **kwargs)) == \
            shown(plain.recall("tea", limit=5, **kwargs)), kwargs
    assert [h.content for h in cold(pushed, "tea", limit=5)] == [
        "Prefers jasmine tea in the evening"]  # the tutor's only


def test_scope_and_kinds_filter_the_candidates(pair: tuple[Memori, Memori]) -> None:
    assert_scope_and_kinds_filter(pair)


def test_writes_supersession_and_forget_reach_the_candidates(
        pair: tuple[Memori, Memori]) -> None:
    plain, pushed = pair
    store = pushed._store
    pk = store.find_pk("entity", "ann")
    assert pk is not None and store.fulltext_missing() is None

    def lexical(word: str, include_superseded: bool = False) -> set[int]:
        return {i for i, _ in store.lexical_candidates(pk, [word], None, None,
                                                       include_superseded, 50)}

    def vectors(include_superseded: bool = False) -> set[int]:
        return set(store.memory_vectors(pk, None, None, include_superseded)[0].tolist())

    # a write is a candidate as soon as its transaction commits
    skates = plain.remember("Skates on frozen lakes")
    assert lexical("frozen") == {skates} and skates in vectors()
    assert [h.id for h in cold(pushed, "frozen lakes", limit=3)][:1] == [skates]
    # supersession: the old value is no candidate; asked for, history is
    lisbon = next(h.id for h in plain.recall("Lisbon", limit=1))
    porto = plain.remember("Lives in Porto by the sea", slot="city")
    assert lisbon not in lexical("lisbon") and lisbon not in vectors()
    assert lexical("lisbon", include_superseded=True) == {lisbon}
    assert lisbon not in [h.id for h in cold(pushed, "Lisbon river", limit=5)]
    assert lisbon in [h.id for h in cold(pushed, "Lisbon river", limit=5,
                                         include_superseded=True)]
    assert porto in [h.id for h in cold(pushed, "Porto sea", limit=5)]
    # an edit reindexes the text
    plain.remember("Lives in Lisbon near the river", slot="city")  # current again
    assert lexical("lisbon") == {lisbon} and porto not in vectors()
    # forget: never a candidate again
    assert plain.forget_memories([skates]) == 1
    assert lexical("frozen") == set() and skates not in vectors()
    assert cold(pushed, "frozen lakes skates", limit=5) == [] or \
        skates not in [h.id for h in cold(pushed, "frozen lakes skates", limit=5)]
    pushed._recaller.wait_filled(30)
    plain.forget("ann")
    assert store.lexical_candidates(pk, ["peanuts"], None, None, True, 50) == []
    assert cold(pushed, "peanuts shellfish", limit=5) == []


def _drop_fulltext(url: str) -> None:
    """The server database as one without its full-text index."""
    engine = create_engine(url)
    try:
        with engine.begin() as c:
            c.execute(text(f"DROP INDEX {migrations.FTS_INDEX}" + (
                " ON memori_entity_fact" if engine.dialect.name == "mysql" else "")))
    finally:
        engine.dispose()


def test_without_full_text_search_recall_keeps_the_in_process_index_and_says_why(
        db_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0) as plain:
        plain.config.storage.build()
        plain.attribution(entity_id="ann", process_id="coach")
        for content, slot in CORPUS:
            plain.remember(content, slot=slot)
        want = {q: shown(plain.recall(q, limit=5)) for q in QUERIES}
    if db_url.startswith("sqlite"):  # a SQLite built without FTS5
        monkeypatch.setattr(migrations, "sqlite_fulltext",
                            lambda conn: "this SQLite has no FTS5 (no such module: fts5)")
        expected = "this SQLite has no FTS5"
    else:
        _drop_fulltext(db_url)
        expected = f"has no full-text index {migrations.FTS_INDEX}"
    caplog.set_level(logging.WARNING, logger="memori_core")
    with Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0,
                recall_pushdown=True, recall_pushdown_above=0) as pushed:
        pushed.attribution(entity_id="ann", process_id="coach")
        calls = spy(pushed)
        for q in QUERIES:
            assert shown(cold(pushed, q, limit=5)) == want[q]
        assert calls == []
        assert pushed._recaller.wait_filled(30)
    reasons = [r.getMessage() for r in caplog.records if "recall_pushdown" in r.getMessage()]
    assert len(reasons) == 1  # once per instance
    assert "uses the in-process index" in reasons[0] and expected in reasons[0]


def test_migration_6_indexes_the_memories_stored_before_it(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:  # memori as it was before migration 6
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:5])
        with Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0) as mem:
            mem.config.storage.build()
            mem.attribution(entity_id="ann", process_id="coach")
            ids = {content: mem.remember(content) for content, _ in CORPUS}
            if not db_url.startswith("sqlite"):
                assert mem._store.fulltext_missing() is not None
    with Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0,
                recall_pushdown=True, recall_pushdown_above=0) as mem:
        with mem.engine.connect() as c:
            assert migrations.current_version(c) == 5
        mem.config.storage.build()
        with mem.engine.connect() as c:
            assert migrations.current_version(c) == len(migrations.MIGRATIONS) >= 6
        assert mem._store.fulltext_missing() is None  # SQLite: its FTS5 index made now
        pk = mem._store.find_pk("entity", "ann")
        assert pk is not None
        got = mem._store.lexical_candidates(pk, ["marathons", "violin"], None, None, False, 10)
        assert {i for i, _ in got} == {ids["Runs marathons every spring"],
                                       ids["Sister Ana teaches violin"]}
        assert all(score > 0 for _, score in got)
        mem.attribution(entity_id="ann", process_id="coach")
        assert cold(mem, "violin teacher", limit=1)[0].id == ids["Sister Ana teaches violin"]
        mem._recaller.wait_filled(30)
        # building again changes nothing (idempotent)
        mem.config.storage.build()
        assert len(mem._store.lexical_candidates(pk, ["violin"], None, None, False, 10)) == 1


def test_memory_block_decodes_every_row_in_one_read(pair: tuple[Memori, Memori]) -> None:
    plain, _ = pair
    store = plain._store
    pk = store.find_pk("entity", "ann")
    assert pk is not None
    block = store.memory_block(pk, 0)
    rows = [r for batch in store.memory_embeddings(pk, 0, 5) for r in batch]
    assert block.ids.tolist() == [r.id for r in rows]
    assert block.texts == [r.text for r in rows] and block.kinds == [r.kind for r in rows]
    assert block.superseded.tolist() == [r.superseded for r in rows]
    assert block.process_ids.tolist() == [-1 if r.process_id is None else r.process_id
                                          for r in rows]
    assert np.array_equal(block.vectors, np.vstack([np.frombuffer(r.embedding, "<f4")
                                                    for r in rows]))
    assert len(store.memory_block(pk, int(block.ids[-1]))) == 0
    assert len(store.memory_block(pk, int(block.ids[3]))) == len(rows) - 4


def test_a_small_entity_builds_its_index_in_process(db_url: str) -> None:
    """At or under ``recall_pushdown_above`` memories (default 1,000), a cold recall builds
    the entity's index in process, as without push-down: no full-text read."""
    with Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0,
                recall_pushdown=True, recall_pushdown_above=len(CORPUS)) as mem:
        mem.config.storage.build()
        mem.attribution(entity_id="ann", process_id="coach")
        for content, slot in CORPUS:
            mem.remember(content, slot=slot)
        calls = spy(mem)
        assert [h.content for h in cold(mem, "tea or coffee", limit=1)] == [CORPUS[4][0]]
        assert calls == []
        pk = mem._store.find_pk("entity", "ann")
        assert pk is not None and mem._recaller.cache.cached(pk)  # built by the recall itself
        mem.remember("Collects vinyl records")  # one more than the bound: the candidate path
        assert [h.content for h in cold(mem, "vinyl records", limit=1)] == [
            "Collects vinyl records"]
        assert len(calls) == 1
        assert mem._recaller.wait_filled(30)  # the background build ends before close
    assert Config().recall_pushdown_above == 1000


def test_the_reply_field_reaches_the_turn_it_answers(db_url: str) -> None:
    """The candidate path reads the reply field backwards (``Store.replied_by``): a turn
    answered by another speaker gains ``recall_reply_weight`` times the answer's lexical
    score, as in process; the same speaker's next turn is no reply. Only where the answer is
    itself a memory (a turn of another participant, as in LoCoMo): an assistant's reply is a
    message, not a memory, and messages have no full-text index."""
    settings: dict[str, Any] = dict(embedder=HashEmbedder(), extractor=None,
                                    recall_relevance_threshold=-1.0)
    plain = Memori(conn=db_url, **settings)
    pushed = Memori(conn=db_url, augmentation_workers=0, recall_pushdown=True,
                    recall_pushdown_above=0, **settings)
    try:
        plain.config.storage.build()
        for mem in (plain, pushed):
            mem.attribution(entity_id="pair")
        plain.capture([{"role": "user", "name": "Melanie", "content": "Did you finish it?"}])
        plain.capture([{"role": "user", "name": "Caroline",
                        "content": "Yes, the sunset one with the lighthouse"}])
        plain.capture([{"role": "user", "name": "Caroline", "content": "And a second one"}])
        assert plain.augmentation.wait(timeout=30)
        calls = spy(pushed)
        for q in ("lighthouse", "second", "finish sunset"):
            pk = pushed._store.find_pk("entity", "pair")
            assert pk is not None
            pushed._recaller.cache.discard(pk)
            got = {h.content: h.lexical for h in pushed.recall(q, limit=5)}
            want = {h.content: h.lexical for h in plain.recall(q, limit=5)}
            assert list(got) == list(want), q
            assert {c for c, x in got.items() if x > 0} == {c for c, x in want.items() if x > 0}
            assert pushed._recaller.wait_filled(30)
        assert len(calls) == 3
        got = {h.content: h.lexical for h in pushed.recall("lighthouse", limit=5)}
        assert got["Melanie: Did you finish it?"] > 0  # answered by Caroline's lighthouse
    finally:
        pushed._recaller.wait_filled(30)
        pushed.close()
        plain.close()


def test_close_waits_for_the_index_build_a_cold_recall_started(db_url: str) -> None:
    mem = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0,
                 recall_pushdown=True, recall_pushdown_above=0)
    mem.config.storage.build()
    mem.attribution(entity_id="ann", process_id="coach")
    for content, slot in CORPUS:
        mem.remember(content, slot=slot)
    calls = spy(mem)
    cache: Any = mem._recaller.cache
    real, built = cache.get, threading.Event()

    def slow_build(*args: Any) -> Any:  # a build that takes a while: close must outwait it
        time.sleep(0.5)
        index = real(*args)
        built.set()
        return index

    cache.get = slow_build
    assert mem.recall(QUERIES[0], limit=3)
    assert calls == [1] and not built.is_set()  # the candidate path; the build runs behind
    mem.close()
    assert built.is_set() and mem._recaller.wait_filled(0)
