"""Ranking mechanisms of recall, each switched on and off on a real SQLite database: stemmed
BM25, the reply field (a turn's BM25 text gains the message answering it), the named-participant
bonus. Their effect on LoCoMo is measured by ``benchmarks/locomo_ablation.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memori_core import Memori
from memori_core.recall.lexical import BM25Index, tokenize
from memori_core.recall.rank import diversify, named_dates
from memori_core.testing import HashEmbedder
from memori_core.types import RecallHit


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    made: list[Memori] = []

    def factory(name: str = "r.db", **settings: Any) -> Memori:
        mem = Memori(conn=f"sqlite:///{tmp_path / name}", embedder=HashEmbedder(),
                     recall_relevance_threshold=-1.0, **settings)
        mem.config.storage.build()
        made.append(mem)
        return mem

    yield factory
    for mem in made:
        mem.close()


def test_tokens_are_stemmed_unless_asked_not_to() -> None:
    assert tokenize("Running runs, the goals") == ["run", "run", "goal"]
    assert tokenize("Running runs, the goals", stem=False) == ["running", "runs", "goals"]


def test_a_field_filled_later_is_scored_for_its_row_only() -> None:
    idx = BM25Index()
    idx.add(["", "", ""])
    idx.add_to(1, "the lighthouse at sunset")
    scores = idx.scores("lighthouse")
    assert scores[1] > 0 and scores[0] == scores[2] == 0


def test_stemmed_bm25_finds_another_form_of_the_word(make: Any) -> None:
    for stem in (True, False):
        mem = make(f"stem-{stem}.db", recall_stemming=stem, extractor=None)
        mem.attribution(entity_id="ann")
        mem.capture([{"role": "user", "content": "I ran two marathons last year"}])
        mem.capture([{"role": "user", "content": "Marathons are my thing, I am training"}])
        assert mem.augmentation.wait(timeout=30)
        [hit] = [h for h in mem.recall("marathon trainings", limit=5) if "training" in h.content]
        assert (hit.lexical > 0) is stem


def test_a_turn_is_found_by_the_words_of_the_reply_to_it(make: Any) -> None:
    for weight in (1.0, 0.0):
        mem = make(f"reply-{weight}.db", recall_reply_weight=weight, extractor=None)
        mem.attribution(entity_id="pair")
        mem.capture([{"role": "user", "name": "Melanie", "content": "Did you finish it?"}])
        mem.capture([{"role": "user", "name": "Caroline",
                      "content": "Yes, the sunset one with the lighthouse"}])
        mem.capture([{"role": "user", "name": "Caroline", "content": "And a second one"}])
        assert mem.augmentation.wait(timeout=30)
        hits = {h.content: h for h in mem.recall("lighthouse", limit=5)}
        asked = hits["Melanie: Did you finish it?"]
        assert (asked.lexical > 0) is (weight > 0)  # the answer's words reach the question
        # the same speaker's next turn is not a reply: nothing of it reaches the answer
        answer = hits["Caroline: Yes, the sunset one with the lighthouse"]
        assert mem.recall("second", limit=5)[0].content == "Caroline: And a second one"
        assert answer.lexical > 0


def test_a_reply_captured_in_the_same_turn_joins_the_users_message(make: Any) -> None:
    mem = make(recall_reply_weight=1.0, extractor=None)
    mem.attribution(entity_id="ann")
    mem.capture([{"role": "user", "content": "Any idea for dinner?"},
                 {"role": "assistant", "content": "Try a lentil curry"}])
    assert mem.augmentation.wait(timeout=30)
    [hit] = mem.recall("lentil curry", limit=5)
    assert hit.content == "Any idea for dinner?" and hit.lexical > 0


def test_memories_said_by_the_participant_the_query_names_gain_the_bonus(make: Any) -> None:
    said = [("Melanie", "I went to the pottery class on Friday"),
            ("Caroline", "I went to the pottery class on Sunday")]
    margin = {}
    for weight in (0.0, 0.5):
        mem = make(f"speaker-{weight}.db", recall_speaker_weight=weight, extractor=None,
                   recall_conversation_weight=0.0)
        mem.attribution(entity_id="pair")
        for name, text in said:
            mem.capture([{"role": "user", "name": name, "content": text}])
        assert mem.augmentation.wait(timeout=30)
        for named in ("Melanie", "Caroline"):
            hits = mem.recall(f"{named} pottery class", limit=2)
            score = {h.content.split(":")[0]: h.score for h in hits}
            margin[weight, named] = score[named] - score[({"Melanie", "Caroline"} - {named}).pop()]
            if weight:
                assert hits[0].content.startswith(named)
    # without it, the other speaker's turn (whose BM25 text holds the named one's, the message
    # it follows) can come first; the bonus goes to the speaker named, by its size
    for named in ("Melanie", "Caroline"):
        assert margin[0.5, named] == pytest.approx(margin[0.0, named] + 0.5, abs=1e-6)


def test_diversify_spreads_the_top_over_conversations() -> None:
    def hit(i: int, score: float) -> RecallHit:
        return RecallHit(id=i, content=str(i), kind="episodic", score=score, similarity=score,
                         created_at=None)  # type: ignore[arg-type]

    hits = [hit(1, 1.0), hit(2, 0.95), hit(3, 0.9), hit(4, 0.8), hit(5, 0.5)]
    conversation = {1: 10, 2: 10, 3: 10, 4: 20}  # 5 has none: never penalised
    assert [h.id for h in diversify(hits, conversation, 0.0, 3)] == [1, 2, 3, 4, 5]
    # 2 and 3 lose 0.1 per earlier pick of conversation 10: 4 (conversation 20) moves up
    assert [h.id for h in diversify(hits, conversation, 0.1, 3)] == [1, 2, 4, 3, 5]
    assert [h.id for h in diversify(hits, conversation, 0.6, 5)] == [1, 4, 5, 2, 3]


@pytest.mark.parametrize(("query", "dates"), [
    ("What did I do on 8 May 2023?", [(2023, 5, 8)]),
    ("Who came on May 3, 2023?", [(2023, 5, 3)]),
    ("on 1 February, 2023 and 2023-06-01", [(2023, 6, 1), (2023, 2, 1)]),
    ("What did Melanie face in October 2023?", [(2023, 10, None)]),
    ("the 3rd of Sept. 2022", [(2022, 9, 3)]),
    ("nothing dated in 2023, or on May 40, 2023", []),  # a year alone, no such day
])
def test_dates_a_query_names(query: str, dates: list[tuple[int, int, int | None]]) -> None:
    assert named_dates(query) == dates


def test_a_memory_said_on_the_day_the_query_names_gains_the_bonus(make: Any) -> None:
    from datetime import datetime

    days = {"I painted a lake": datetime(2023, 5, 8, 12),
            "I painted a barn": datetime(2023, 6, 2, 12)}
    gaps: dict[float, float] = {}
    for weight in (0.0, 0.5):
        mem = make(f"date-{weight}.db", recall_date_weight=weight, extractor=None,
                   recall_recency_weight=0.0)
        mem.attribution(entity_id="ann")
        for text, when in days.items():
            mem.capture([{"role": "user", "content": text, "created_at": when}])
        assert mem.augmentation.wait(timeout=30)
        score = {h.content: h.score for h in mem.recall("What did I paint on 2 June 2023?")}
        gaps[weight] = score["I painted a barn"] - score["I painted a lake"]
        if weight:
            month = {h.content: h.score for h in mem.recall("What did I paint in May 2023?")}
            assert month["I painted a lake"] > month["I painted a barn"]
    assert gaps[0.5] == pytest.approx(gaps[0.0] + 0.5, abs=1e-6)  # the day named: the bonus


def test_a_query_recalled_again_is_embedded_once(sqlite_url: str) -> None:
    """A model call and its context block recall for the same message: the query's vector is
    kept (bounded, ``QUERY_VECTORS``) instead of running the model twice; a re-embed (another
    model) forgets the kept vectors."""
    texts: list[str] = []

    class Counting(HashEmbedder):
        def embed(self, batch: list[str]) -> Any:
            texts.extend(batch)
            return super().embed(batch)

    with Memori(conn=sqlite_url, embedder=Counting(), augmentation_workers=0) as mem:
        mem.config.storage.build()
        mem.attribution(entity_id="ann")
        mem.remember("The user keeps bees")
        texts.clear()
        first = [h.id for h in mem.recall("Does the user keep bees?")]
        assert first and [h.id for h in mem.recall("Does the user keep bees?")] == first
        assert [ln.memory_ids[0] for ln in mem.context("Does the user keep bees?").lines] == first
        assert texts == ["Does the user keep bees?"]
        mem.reembed()
        texts.clear()
        mem.recall("Does the user keep bees?")
        assert texts == ["Does the user keep bees?"]
