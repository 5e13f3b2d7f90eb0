"""Augmentation in depth: the rule extractor per kind, dedup and mention counts, supersession,
provenance, triples and process attributes, kinds filters, hybrid ranking and a 10 MB turn."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from memori_core import ConfigurationError, Memori
from memori_core.augmentation.base import Conversation, Extraction
from memori_core.augmentation.rules import RuleExtractor
from memori_core.recall.lexical import BM25Index, tokenize
from memori_core.recall.rank import fuse


def extract(content: str, name: str | None = None, role: str = "user") -> Extraction:
    msg: dict[str, Any] = {"id": 7, "role": role, "content": content}
    if name:
        msg["name"] = name
    return RuleExtractor().extract(Conversation("e", "p", [msg]))


@pytest.mark.parametrize(("said", "kind", "content", "slot"), [
    ("I live in Lisbon.", "attribute", "The user lives in Lisbon", "lives_in"),
    ("I'm allergic to peanuts", "attribute", "The user is allergic to peanuts", None),
    ("I work at Acme", "attribute", "The user works at Acme", "works_at"),
    ("I'm 34 years old", "attribute", "The user is 34 years old", "age"),
    ("My name is Ann", "attribute", "The user's name is Ann", "name"),
    ("I prefer window seats", "preference", "The user prefers window seats", None),
    ("Prefer low-carb dinners on weekdays.", "preference",
     "The user prefers low-carb dinners on weekdays", None),
    ("My favorite color is teal", "preference", "The user's favorite color is teal",
     "favorite_color"),
    ("I love my dog Rex", "preference", "The user loves their dog Rex", None),
    ("I use Python and Rust.", "skill", "The user uses Python and Rust", None),
    ("I can speak Spanish", "skill", "The user can speak Spanish", None),
    ("Yesterday I ran a half marathon.", "event", "Yesterday the user ran a half marathon", None),
    ("I moved to Porto last year", "event", "The user moved to Porto last year", "lives_in"),
    ("Goal: sub-25-minute 5K by June.", "fact", "The user's goal: sub-25-minute 5K by June",
     "goal"),
    ("I don't eat meat", "fact", "The user doesn't eat meat", None),
])
def test_rule_extractor_restates_first_person_statements(said: str, kind: str, content: str,
                                                         slot: str | None) -> None:
    out = extract(said)
    assert [(m.kind, m.content, m.slot, m.source_message_ids) for m in out.memories] == [
        (kind, content, slot, (7,))]


def test_rule_extractor_uses_the_speaker_name_and_skips_non_statements() -> None:
    assert extract("I live in Lisbon", name="Caroline").memories[0].content == \
        "Caroline lives in Lisbon"
    for said in ("Do I like tea?", "I think so", "The weather is nice", "", "   "):
        assert extract(said).memories == []
    assert extract("I live in Lisbon", role="assistant").memories == []  # only the user's words


def test_rule_extractor_triples_and_process_attributes() -> None:
    out = extract("I live in Lisbon. I use Python.")
    assert [(t.subject, t.predicate, t.object) for t in out.triples] == [
        ("user", "lives_in", "lisbon"), ("user", "uses", "python")]
    system = extract("You are a fitness coach. Be brief.", role="system")
    assert system.process_attributes == ["Role: a fitness coach"]
    assert system.memories == []


def test_rule_extractor_is_deterministic() -> None:
    said = "Goal: sub-25-minute 5K by June. Currently I run 30 minutes flat. I love tempo runs."
    assert extract(said) == extract(said)


def rows(mem: Memori, sql: str) -> list[Any]:
    with mem.engine.connect() as c:
        return list(c.execute(text(sql)).all())


def test_extracted_memories_dedup_mentions_and_provenance(mem: Memori) -> None:
    mem.attribution(entity_id="ann", process_id="coach")
    first = mem.capture([{"role": "user", "content": "I use Python."}])
    second = mem.capture([{"role": "user", "content": "i use   python"}])
    assert mem.augmentation.wait(timeout=30)
    facts = [m for m in mem.memories() if m.kind == "skill"]
    assert [(m.content, m.mention_count) for m in facts] == [("The user uses Python", 2)]
    assert facts[0].source_message_ids == (first[0], second[0])
    episodic = [m for m in mem.memories(kinds=["episodic"])]
    assert len(episodic) == 2  # "I use Python." and "i use python" are two texts as said
    triples = rows(mem, "SELECT subject, predicate, object, mention_count FROM "
                        "memori_knowledge_graph")
    assert [tuple(r) for r in triples] == [("user", "uses", "python", 2)]


def test_a_triple_names_the_memory_it_was_drawn_from(mem: Memori) -> None:
    mem.attribution(entity_id="ann", process_id="coach")
    mem.capture([{"role": "user", "content": "I live in Lisbon. I use Python and Rust. "
                                             "I work at Acme."}])
    assert mem.augmentation.wait(timeout=30)
    facts = {m.id: m.content for m in mem.memories()}
    triples, _ = mem.triples()
    drawn = {(t["predicate"], t["object"]): facts.get(t["memory_id"]) for t in triples}
    assert drawn == {("lives_in", "lisbon"): "The user lives in Lisbon",
                     ("uses", "python and rust"): "The user uses Python and Rust",
                     ("works_at", "acme"): "The user works at Acme"}
    # deleting the memory deletes the triples drawn from it, and only those
    lisbon = next(i for i, c in facts.items() if c == "The user lives in Lisbon")
    assert mem.forget_memories([lisbon]) == 1
    assert {t["object"] for t in mem.triples()[0]} == {"python and rust", "acme"}


def test_newer_value_on_a_slot_supersedes_the_older(mem: Memori) -> None:
    mem.attribution(entity_id="ann", process_id="coach")
    mem.capture([{"role": "user", "content": "I live in Lisbon."}])
    assert mem.augmentation.wait(timeout=30)
    mem.capture([{"role": "user", "content": "I live in Porto."}])
    assert mem.augmentation.wait(timeout=30)

    def where() -> list[str]:
        return [h.content for h in mem.recall("where does the user live", limit=10,
                                              kinds=["attribute"])]

    assert where() == ["The user lives in Porto"]
    history = mem.recall("where does the user live", limit=10, kinds=["attribute"],
                         include_superseded=True)
    assert sorted(h.content for h in history) == ["The user lives in Lisbon",
                                                  "The user lives in Porto"]
    listed = {m.content: m for m in mem.memories(kinds=["attribute"], include_superseded=True)}
    porto = listed["The user lives in Porto"]
    assert listed["The user lives in Lisbon"].superseded_by == porto.id
    assert porto.superseded_by is None
    # episodic memories of both turns stay: what was said is history, not a slot
    assert len(mem.memories(kinds=["episodic"])) == 2
    # saying the old value again makes it current again
    mem.capture([{"role": "user", "content": "I live in Lisbon."}])
    assert mem.augmentation.wait(timeout=30)
    assert where() == ["The user lives in Lisbon"]
    # another persona's slot is its own
    mem.attribution(entity_id="ann", process_id="chef")
    mem.capture([{"role": "user", "content": "I live in Faro."}])
    assert mem.augmentation.wait(timeout=30)
    mem.attribution(entity_id="ann", process_id="coach")
    assert where() == ["The user lives in Lisbon"]


def test_process_attributes_and_summaries_are_stored(smem: Memori) -> None:
    smem.attribution(entity_id="ann", process_id="coach")
    smem.capture([{"role": "system", "content": "You are a running coach."},
                  {"role": "user", "content": "hi"}])
    assert smem.augmentation.wait(timeout=30)
    assert [r.content for r in rows(smem, "SELECT content FROM memori_process_attribute")] == [
        "Role: a running coach"]
    smem.attribution(entity_id="bob")  # no process: an attribute has no owner, none stored
    smem.capture([{"role": "system", "content": "You are a chef."}])
    assert smem.augmentation.wait(timeout=30)
    assert len(rows(smem, "SELECT content FROM memori_process_attribute")) == 1


def test_recall_kinds_filter_and_errors(smem: Memori) -> None:
    smem.attribution(entity_id="ann")
    smem.capture([{"role": "user", "content": "I love tempo runs"}])
    assert smem.augmentation.wait(timeout=30)
    # the turn and the preference drawn from it are one hit, shown as the preference
    [hit] = smem.recall("tempo runs", limit=10)
    assert hit.kind == "preference" and len(hit.memory_ids) == 2
    assert [h.kind for h in smem.recall("tempo runs", kinds=["episodic"])] == ["episodic"]
    assert [h.kind for h in smem.recall("tempo runs", kinds=["preference"])] == ["preference"]
    with pytest.raises(ConfigurationError) as err:
        smem.recall("tempo", kinds=["memo"])
    assert err.value.argument == "kinds"


def test_lexical_recall_finds_a_rare_word_the_vectors_rank_low(smem: Memori) -> None:
    smem.attribution(entity_id="ann")
    ids = [smem.remember(f"note {i}: the weather was mild and pleasant today") for i in range(30)]
    target = smem.remember("the zxqv-17 part number goes on the order")
    hits = smem.recall("zxqv-17", limit=3)
    assert hits[0].id == target
    assert target not in ids


def test_bm25_scores_and_fusion() -> None:
    index = BM25Index()
    index.add(["the cat sat on the mat", "a dog in the fog", "cat cat cat"])
    index.add(["a bird"])
    scores = index.scores("cat")
    assert scores[2] > scores[0] > 0 and scores[1] == 0 and scores[3] == 0
    assert index.scores("the of").tolist() == [0, 0, 0, 0]  # stopwords only
    assert tokenize("I'm in São Paulo!") == ["são", "paulo"]
    fused = fuse([([1, 2, 3], 1.0), ([3, 1], 1.0)], k=60)
    assert sorted(fused, key=fused.__getitem__, reverse=True) == [1, 3, 2]
    assert fused[1] == pytest.approx((1 / 61 + 1 / 62) / (2 / 61))
    assert fuse([([1], 0.0)], k=60) == {}


def test_a_10mb_turn_is_stored_augmented_and_recalled(smem: Memori) -> None:
    smem.config.capture_max_message_chars = 10_000_000  # over the default bound: opted in
    smem.attribution(entity_id="ann")
    big = ("I collect vintage maps. " + "lorem ipsum dolor sit amet " * 380_000)[:10_000_000]
    ids = smem.capture([{"role": "user", "content": big}])
    assert smem.augmentation.wait(timeout=120)
    assert smem.augmentation.failed() == []
    assert smem.session_messages()[0]["content"] == big
    assert ids
    hits = smem.recall("vintage maps", limit=5)
    assert any("vintage maps" in h.content for h in hits)
