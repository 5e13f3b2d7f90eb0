"""Each recall hit says why it scored what it did (``RecallHit.why``, issue 20): the dense and
lexical ranks, the fused RRF score, the recency, mention and context bonuses, whose sum is the
score. Recorded on a fixed corpus (two speakers, three conversations, named dates, a memory
mentioned three times) on real SQLite: the ranking and scores are those recall gave before
``why`` existed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from memori_core import Memori
from memori_core.testing import HashEmbedder
from memori_core.types import RecallHit

#: (session, speaker, text, said on): three conversations, dated long ago (recency ~1e-14)
SAID = [
    ("s1", "Melanie", "I went to the pottery class on Friday", datetime(2023, 5, 5, 10)),
    ("s1", "Caroline", "I went to the pottery class on Sunday", datetime(2023, 5, 7, 10)),
    ("s1", "Melanie", "The lake painting is finished", datetime(2023, 5, 8, 12)),
    ("s2", "Caroline", "My sister Ana teaches violin", datetime(2023, 6, 2, 9)),
    ("s2", "Melanie", "We adopted two cats named Pixel and Byte", datetime(2023, 6, 2, 10)),
    ("s2", "Caroline", "Pottery is my favourite hobby now", datetime(2023, 6, 3, 10)),
    ("s3", "Melanie", "I run marathons every spring", datetime(2023, 10, 1, 8)),
    ("s3", "Caroline", "Chess online with a cousin on Sundays", datetime(2023, 10, 2, 8)),
]
#: remembered three times: mention_count 3, stored now (the recency bonus near its weight)
MENTIONED = "Allergic to peanuts and shellfish"
QUERIES = ["Melanie pottery class", "What did I paint on 8 May 2023?", "violin sister",
           "cats Pixel", "what happened in October 2023?", "peanuts allergy", "pottery hobby",
           "nothing matches this"]
#: (ids best first, scores rounded to 6 places) per query, as recall gave them before ``why``
#: (commit 4d16f72); the ids are the rows the corpus gets in a new database, in SAID order
BEFORE: dict[str, list[tuple[int, float]]] = {
    "Melanie pottery class": [
        (1, 1.4), (7, 1.134154), (3, 1.117714), (2, 1.1), (5, 1.025), (6, 0.986374),
        (9, 0.322157), (8, 0.293333), (4, 0.277895),
    ],
    "What did I paint on 8 May 2023?": [
        (3, 1.336032), (1, 1.15), (2, 1.058435), (4, 0.925764), (7, 0.879793), (6, 0.828538),
        (8, 0.802864), (5, 0.757172), (9, 0.294912),
    ],
    "violin sister": [
        (4, 1.2), (7, 0.44), (9, 0.401795), (8, 0.377143), (6, 0.352), (5, 0.33), (3, 0.310588),
        (2, 0.293333), (1, 0.277895),
    ],
    "cats Pixel": [
        (5, 1.2), (4, 0.44), (6, 0.406154), (9, 0.377619), (8, 0.352), (7, 0.33), (3, 0.310588),
        (2, 0.293333), (1, 0.277895),
    ],
    "what happened in October 2023?": [
        (7, 1.266667), (8, 1.246552), (1, 0.948276), (3, 0.925105), (4, 0.851868),
        (5, 0.851017), (2, 0.826054), (6, 0.800456), (9, 0.294912),
    ],
    "peanuts allergy": [
        (9, 1.063333), (8, 0.566667), (7, 0.523077), (6, 0.485714), (5, 0.453333), (4, 0.425),
        (3, 0.4), (2, 0.377778), (1, 0.357895),
    ],
    "pottery hobby": [
        (6, 1.2), (1, 1.066154), (2, 1.049231), (9, 0.377619), (8, 0.352), (7, 0.33),
        (5, 0.310588), (4, 0.293333), (3, 0.277895),
    ],
    "nothing matches this": [
        (6, 0.6), (4, 0.55), (7, 0.507692), (5, 0.471429), (1, 0.44), (8, 0.388235),
        (3, 0.366667), (2, 0.347368), (9, 0.338333),
    ],
}


@pytest.fixture
def mem(tmp_path: Path) -> Iterator[Memori]:
    with Memori(conn=f"sqlite:///{tmp_path / 'why.db'}", embedder=HashEmbedder(),
                extractor=None, recall_relevance_threshold=-1.0) as m:
        m.config.storage.build()
        fill(m)
        yield m


def fill(m: Memori) -> None:
    """The corpus, stored through the real capture path (episodic memories, one per turn)."""
    m.attribution(entity_id="pair", process_id="chat")
    for session, name, text, when in SAID:
        m.set_session(session)
        m.capture([{"role": "user", "name": name, "content": text, "created_at": when}])
    assert m.augmentation.wait(timeout=30)
    for _ in range(3):
        m.remember(MENTIONED)


def parts(h: RecallHit) -> float:
    assert h.why is not None
    return h.why.fused + h.why.recency + h.why.mentions + h.why.context


def test_the_score_is_the_sum_of_its_parts(mem: Memori) -> None:
    seen = {"dense": 0, "lexical": 0, "context": 0, "mentions": 0}
    for q in QUERIES:
        for h in mem.recall(q, limit=10):
            why = h.why
            assert why is not None
            assert h.score == pytest.approx(parts(h), abs=1e-9), (q, h.content)
            assert 0 < why.fused <= 1
            assert why.dense_rank is None or why.dense_rank >= 1
            assert why.lexical_rank is None or why.lexical_rank >= 1
            assert why.dense_rank is not None or why.lexical_rank is not None
            assert (h.lexical > 0) is (why.lexical_rank is not None)
            seen["dense"] += why.dense_rank is not None
            seen["lexical"] += why.lexical_rank is not None
            seen["context"] += why.context > 0
            seen["mentions"] += why.mentions > 0
    assert all(seen.values()), seen  # the corpus exercises every part


def test_the_parts_are_what_the_config_weighs(mem: Memori) -> None:
    cfg = mem.config
    [hit] = [h for h in mem.recall("peanuts allergy", limit=10) if h.content == MENTIONED]
    assert hit.why is not None and hit.mention_count == 3
    assert hit.why.mentions == pytest.approx(cfg.recall_mention_weight * (1 - 1 / 3))
    assert 0.9 * cfg.recall_recency_weight < hit.why.recency <= cfg.recall_recency_weight
    assert hit.why.lexical_rank == 1  # the only memory with either word
    # the best possible fusion: first in both rankers
    if hit.why.dense_rank == 1:
        assert hit.why.fused == pytest.approx(1.0)
    # a named day: the memory said on it gains the date weight in its context part
    by = {h.content: h for h in mem.recall("What did I paint on 8 May 2023?", limit=10)}
    lake = by["Melanie: The lake painting is finished"]
    assert lake.why is not None and lake.why.context >= cfg.recall_date_weight


def test_the_ranking_is_the_one_recall_gave_before_why(mem: Memori) -> None:
    for q in QUERIES:
        got = [(h.id, round(h.score, 6)) for h in mem.recall(q, limit=10)]
        assert [i for i, _ in got] == [i for i, _ in BEFORE[q]], q
        for (_, score), (_, want) in zip(got, BEFORE[q], strict=True):
            assert score == pytest.approx(want, abs=2e-6), q


def test_hits_not_ranked_by_a_query_have_no_why(tmp_path: Path) -> None:
    with Memori(conn=f"sqlite:///{tmp_path / 'e.db'}", embedder=HashEmbedder(),
                extractor=None) as m:
        m.config.storage.build()
        m.attribution(entity_id="ann")
        m.remember("Allergic to peanuts", importance=0.9)
        [hit] = m._recaller.essential(5, entity_id="ann", process_id=None, scope="entity")
        assert hit.why is None


def test_a_cold_recall_from_the_database_says_why_too(mem: Memori, tmp_path: Path) -> None:
    """The candidate path (``recall_pushdown``) ranks the same parts: each hit's score is
    their sum, and its ranks are those of the candidate lists it fused."""
    with Memori(conn=f"sqlite:///{tmp_path / 'why.db'}", embedder=HashEmbedder(),
                extractor=None, recall_relevance_threshold=-1.0, recall_pushdown=True,
                recall_pushdown_above=0, augmentation_workers=0) as pushed:
        pushed.attribution(entity_id="pair", process_id="chat")
        store: Any = pushed._store
        real, calls = store.lexical_candidates, []

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return real(*args, **kwargs)

        store.lexical_candidates = counted
        for q in QUERIES:
            assert pushed._recaller.wait_filled(30)
            pk = pushed._store.find_pk("entity", "pair")
            assert pk is not None
            pushed._recaller.cache.discard(pk)  # cold: the candidates come from the database
            hits = pushed.recall(q, limit=10)
            assert hits, q
            for h in hits:
                assert h.why is not None and (h.why.dense_rank or h.why.lexical_rank)
                assert h.score == pytest.approx(parts(h), abs=1e-9), (q, h.content)
        assert pushed._recaller.wait_filled(30)
        assert len(calls) == len(QUERIES)  # every recall took the candidate path
