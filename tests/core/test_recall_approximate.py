"""The approximate dense index (8-bit scalar quantisation + exact re-rank) takes over above
``recall_approximate_above`` only where its measured agreement with exact search is >= 0.99, and
then returns what the exact search returns, filters included."""

from __future__ import annotations

import numpy as np
import pytest

from memori_core import Memori
from memori_core.recall.index import MIN_AGREEMENT, EntityIndex, Filter
from memori_core.storage.store import MemoryRow
from memori_core.testing import HashEmbedder

DIM = 64


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def rows(vectors: np.ndarray) -> list[MemoryRow]:
    # ids with gaps; process 1, 2 or none; a word shared by every tenth row for BM25
    return [MemoryRow(10 + 3 * i, (i % 3) or None, "episodic", False,
                      f"memory {i} {'shared' if i % 10 == 0 else 'other'}",
                      v.astype("<f4").tobytes()) for i, v in enumerate(vectors)]


def build(vectors: np.ndarray, approximate_above: int) -> EntityIndex:
    index = EntityIndex(DIM, approximate_above)
    data = rows(vectors)
    for start in range(0, len(data), 1000):  # in batches, as the cache loads them
        index.add(data[start:start + 1000])
    return index


def test_switches_only_above_the_size_and_agrees_with_exact_search() -> None:
    rng = np.random.default_rng(7)
    vectors = unit(rng.standard_normal((4000, DIM)))
    approx, exact = build(vectors, 3000), build(vectors, 0)
    assert exact.agreement is None
    assert approx.agreement is not None and approx.agreement >= MIN_AGREEMENT
    assert approx.nbytes > exact.nbytes  # the 8-bit codes come on top
    queries = unit(rng.standard_normal((30, DIM)))
    few_excluded = Filter(processes=[1, 2, None], kinds=["episodic"])
    many_excluded = Filter(processes=[1])  # two thirds excluded: the id-selector path
    agree = []
    for q in queries:
        for flt in (Filter(), few_excluded, many_excluded):
            got, lexical, similarity = approx.search(q, "shared", 10, flt)
            want, want_lexical, want_similarity = exact.search(q, "shared", 10, flt)
            agree.append(len({i for i, _ in got} & {i for i, _ in want}) / 10)
            assert lexical == want_lexical
            for i, s in got:  # scores of the re-rank are exact cosines
                assert s == pytest.approx(float(vectors[(i - 10) // 3] @ q), abs=1e-5)
            assert set(similarity) >= {i for i, _ in lexical}
            if flt is many_excluded:
                assert all(((i - 10) // 3) % 3 == 1 for i, _ in got)
    assert np.mean(agree) >= MIN_AGREEMENT


def test_stays_exact_where_quantisation_cannot_tell_memories_apart() -> None:
    rng = np.random.default_rng(3)
    # two far-apart clusters of near-duplicates: each component spans the distance between the
    # clusters, so 8 bits cannot resolve the differences inside one
    centres = rng.standard_normal((2, DIM))
    vectors = unit(centres[np.arange(3000) % 2] + 1e-4 * rng.standard_normal((3000, DIM)))
    index = build(vectors, 2000)
    assert index.agreement is None  # measured below 0.99: kept exact
    assert index._approximate_at == 2 * 2000  # measured again when the entity has doubled
    q = unit(vectors[5] + 1e-5)
    got, _, _ = index.search(q, "memory", 5, Filter())
    cosines = np.sort(vectors @ q)[::-1]
    # exact: the five best cosines (near-duplicates tie to float rounding, so compare scores)
    assert [s for _, s in got] == pytest.approx(cosines[:5].tolist(), abs=1e-6)


def test_memori_setting_reaches_the_index(tmp_path: object) -> None:
    with Memori(f"sqlite:///{tmp_path}/a.db", embedder=HashEmbedder(), extractor=None,
                recall_approximate_above=40, augmentation_workers=0) as mem:
        mem.config.storage.build()
        mem.attribution(entity_id="u")
        for i in range(60):
            mem.remember(f"the user owns item number {i} of the collection")
        hits = mem.recall("item number 17", limit=3)
        index = next(iter(mem._recaller.cache._entries.values()))
        assert index.count == 60 and index.agreement is not None
        assert "item number 17 " in hits[0].content + " "
