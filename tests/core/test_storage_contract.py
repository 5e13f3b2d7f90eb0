"""The storage contract, on SQLite, PostgreSQL and MariaDB: capture, session round-trip, the job
queue, episodic memories with provenance, recall (threshold, limit, scope), schema build, stats,
embedding-model mismatch and transactional capture."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select, text

from memori_core import Config, ConfigurationError, Memori, StorageError
from memori_core.storage import migrations, schema
from memori_core.storage import store as store_mod
from memori_core.testing import HashEmbedder


def count(mem: Memori, table: str, where: str = "", **params: Any) -> int:
    with mem.engine.connect() as c:
        return int(c.execute(text(f"SELECT COUNT(*) FROM {table} {where}"), params).scalar_one())


def counts(mem: Memori) -> dict[str, int]:
    return {t.name: count(mem, t.name) for t in schema.TABLES}


def stored(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """session_messages() output without the generated id and timestamp."""
    return [{k: v for k, v in m.items() if k not in ("id", "created_at")} for m in messages]


@pytest.fixture
def other(db_url: str) -> Iterator[Callable[..., Memori]]:
    """A second instance on the same database as ``mem``, built by ``mem``."""
    instances: list[Memori] = []

    def make(**settings: Any) -> Memori:
        m = Memori(conn=db_url, embedder=settings.pop("embedder", HashEmbedder()), **settings)
        instances.append(m)
        return m

    yield make
    for m in instances:
        m.close()


# ---- capture & session round-trip --------------------------------------------------------------

def test_capture_returns_message_ids_in_order(mem: Memori) -> None:
    mem.attribution(entity_id="alice", process_id="agent")
    turn = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "tool", "content": "{}"}]
    ids = mem.capture(turn)
    assert len(ids) == 4 and ids == sorted(ids) and len(set(ids)) == 4
    later = mem.capture([{"role": "user", "content": "again"}])
    assert len(later) == 1 and later[0] > ids[-1]
    msgs = mem.session_messages()
    assert [m["id"] for m in msgs] == ids + later
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "user"]
    with mem.engine.connect() as c:
        rows = c.execute(text("SELECT id, role, content FROM memori_conversation_message "
                              "ORDER BY id")).all()
    expected = [*turn, {"role": "user", "content": "again"}]
    assert [(r.id, r.role, r.content) for r in rows] == [
        (i, m["role"], m["content"]) for i, m in zip(ids + later, expected, strict=True)]


TRICKY = [
    "'; DROP TABLE x; --",
    "Robert'); DROP TABLE memori_conversation_message;--",
    'double "quotes" and `backticks` and \\ backslashes \\\\ and \\n literal',
    "%s %(name)s %% ? :param $1 {0} {}",
    "naïve café — 日本語のテキスト — Ελληνικά — עברית — 🙂🚀👩‍👩‍👧 — \U0001f9ea",
    "line1\nline2\r\nline3\ttab\x0b\x0c end",
    "   leading and trailing spaces   ",
    "",
    "\\u0000 is a literal escape, not a NUL",
    "x" * 70_000,  # beyond MySQL TEXT's 64 KiB
]


def test_session_messages_round_trip_exactly(mem: Memori) -> None:
    mem.attribution(entity_id="round-trip", process_id="agent")
    turn: list[dict[str, Any]] = [{"role": "user", "content": c} for c in TRICKY]
    turn += [
        {"role": "user", "name": "Caroline", "content": "I went to the support group"},
        {"role": "user", "name": "O'Brien 🙂", "content": "named with metacharacters"},
        {"role": "assistant", "content": [{"type": "text", "text": "part one"},
                                          {"type": "text", "text": "part two 🙂"}]},
        {"role": "user", "content": [
            {"type": "text", "text": "look at this'; DROP TABLE x; --"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            {"type": "input_text", "text": "nested", "meta": {"n": 1, "f": 1.5, "b": None,
                                                                "l": [True, False]}}]},
        {"role": "tool", "content": ["plain string part", "another"]},
        {"role": "assistant", "content": []},
    ]
    ids = mem.capture(turn)
    msgs = mem.session_messages()
    assert [m["id"] for m in msgs] == ids
    assert stored(msgs) == turn
    for m in msgs:
        assert isinstance(m["created_at"], datetime)
    # the same through an explicit session id and through a second instance (no caches)
    assert stored(mem.session_messages(mem.session_id)) == turn


def test_session_messages_round_trip_from_a_fresh_instance(mem: Memori, other: Callable[..., Memori]) -> None:
    mem.attribution(entity_id="fresh", process_id="agent")
    turn = [{"role": "user", "content": c} for c in TRICKY]
    mem.capture(turn)
    sid = mem.session_id
    m2 = other()
    m2.attribution(entity_id="fresh", process_id="agent")
    assert stored(m2.session_messages(sid)) == turn


def test_ten_megabyte_content_round_trips(mem: Memori) -> None:
    chunk = "a" * 1000 + " O'Brien; DROP TABLE x;-- 🙂 ünï \\ %s\n"
    big = (chunk * (10 * 1024 * 1024 // len(chunk) + 1))[: 10 * 1024 * 1024]
    assert len(big) == 10 * 1024 * 1024
    mem.config.capture_max_message_chars = len(big)  # over the default bound: opted in
    mem.attribution(entity_id="big", process_id="agent")
    ids = mem.capture([{"role": "user", "content": big}, {"role": "assistant", "content": "ok"}])
    msgs = mem.session_messages()
    assert [m["id"] for m in msgs] == ids
    assert msgs[0]["content"] == big
    # the episodic memory of it is stored whole as well
    assert mem.augmentation.wait(timeout=120)
    assert mem.augmentation.failed() == []
    with mem.engine.connect() as c:
        contents = c.execute(text("SELECT content FROM memori_entity_fact")).scalars().all()
    assert contents == [big]


def test_unknown_session_and_other_entities_session_are_empty(mem: Memori) -> None:
    mem.attribution(entity_id="a")
    mem.capture([{"role": "user", "content": "mine"}])
    sid = mem.session_id
    assert sid is not None
    assert mem.session_messages("no-such-session") == []
    mem.attribution(entity_id="b")
    assert mem.session_id == sid  # the instance's default id names b's own session
    assert mem.session_messages() == []
    assert mem.session_messages(sid) == []  # a's session is not readable as b


# ---- the job queue & episodic memories -------------------------------------------------------------

def test_one_augmentation_job_per_capture(mem: Memori) -> None:
    mem.attribution(entity_id="jobs", process_id="agent")
    captured = [mem.capture([{"role": "user", "content": f"turn {i}"},
                             {"role": "assistant", "content": f"answer {i}"}]) for i in range(3)]
    with mem.engine.connect() as c:
        jobs = c.execute(text("SELECT message_ids, conversation_id FROM memori_augmentation_job "
                              "ORDER BY id")).all()
        conv = c.execute(text("SELECT DISTINCT conversation_id FROM "
                              "memori_conversation_message")).scalars().all()
    assert [json.loads(j.message_ids) for j in jobs] == captured
    assert {j.conversation_id for j in jobs} == set(conv) and len(conv) == 1
    assert mem.augmentation.wait(timeout=30)
    assert count(mem, "memori_augmentation_job", "WHERE status = 'done'") == 3
    assert mem.stats()["augmentation"]["jobs_done"] == 3


def test_episodic_memory_per_user_message_with_provenance(mem: Memori) -> None:
    mem.attribution(entity_id="episodic", process_id="agent")
    ids = mem.capture([
        {"role": "system", "content": "you are a travel agent"},
        {"role": "user", "content": "I love hiking in the alps"},
        {"role": "assistant", "content": "The alps are lovely for hiking"},
        {"role": "user", "name": "Caroline", "content": "I went to the support group"},
        {"role": "user", "content": "   "},  # blank: nothing to remember
    ])
    assert mem.augmentation.wait(timeout=30)
    assert mem.augmentation.failed() == []
    with mem.engine.connect() as c:
        facts = c.execute(text("SELECT content, kind FROM memori_entity_fact "
                               "WHERE kind = 'episodic' ORDER BY id")).all()
    assert [(f.content, f.kind) for f in facts] == [
        ("I love hiking in the alps", "episodic"),
        ("Caroline: I went to the support group", "episodic")]

    # the turn and the preference drawn from it are one hit, shown as the preference
    [both] = [h for h in mem.recall("I love hiking in the alps") if "alps" in h.content]
    assert both.kind == "preference" and len(both.memory_ids) == 2
    assert both.source_message_ids == (ids[1],)
    hits = mem.recall("I love hiking in the alps", kinds=["episodic"])
    assert hits[0].content == "I love hiking in the alps"
    assert hits[0].kind == "episodic"
    assert hits[0].source_message_ids == (ids[1],)
    assert hits[0].process_id == "agent"
    # the embedded text adds speaker and day ("User (8 May 2023): ..."), so not exactly 1
    assert 0.7 < hits[0].similarity <= 1.0 + 1e-6
    assert isinstance(hits[0].created_at, datetime)
    group = [h for h in mem.recall("support group Caroline", kinds=["episodic"])
             if "support" in h.content]
    assert [h.source_message_ids for h in group] == [(ids[3],)]

    # the same text said again is one memory, mentioned twice, with both sources
    again = mem.capture([{"role": "user", "content": "i love   HIKING in the alps"}])
    assert mem.augmentation.wait(timeout=30)
    hit = mem.recall("I love hiking in the alps", kinds=["episodic"])[0]
    assert hit.content == "I love hiking in the alps"
    assert hit.mention_count == 2
    assert hit.source_message_ids == (ids[1], again[0])
    # two episodic memories, and what the rule extractor made of them (each once)
    assert count(mem, "memori_entity_fact", "WHERE kind = 'episodic'") == 2
    assert count(mem, "memori_entity_fact", "WHERE mention_count = 2") == 2


# ---- recall ----------------------------------------------------------------------------------------

def test_recall_with_zero_memories_returns_empty(mem: Memori) -> None:
    mem.attribution(entity_id="nobody-yet", process_id="agent")
    assert mem.recall("anything at all") == []
    # an entity with messages but no user message has no memories either
    mem.capture([{"role": "assistant", "content": "anything at all"}])
    assert mem.augmentation.wait(timeout=30)
    assert mem.recall("anything at all") == []
    assert mem.recall("") == []


def test_recall_threshold_drops_weak_hits(mem: Memori, other: Callable[..., Memori]) -> None:
    mem.attribution(entity_id="hiker", process_id="agent")
    mem.capture([{"role": "user", "content": "I love hiking in the alps"}])
    mem.capture([{"role": "user", "content": "hiking boots for the alps are expensive"}])
    assert mem.augmentation.wait(timeout=30)
    loose = mem.recall("I love hiking in the alps", kinds=["episodic"])
    assert [h.content for h in loose] == ["I love hiking in the alps",
                                          "hiking boots for the alps are expensive"]
    assert 0.1 <= loose[1].similarity < 0.6 < loose[0].similarity

    strict = other(recall_relevance_threshold=0.6)
    strict.attribution(entity_id="hiker", process_id="agent")
    assert [h.content for h in strict.recall("I love hiking in the alps",
                                             kinds=["episodic"])] == ["I love hiking in the alps"]
    assert strict.recall("hiking boots") == []


def test_recall_limit_is_respected(mem: Memori) -> None:
    mem.attribution(entity_id="limits", process_id="agent")
    for i in range(8):
        mem.capture([{"role": "user", "content": f"my favourite colour is teal number{i}"}])
    assert mem.augmentation.wait(timeout=30)
    query = "what is my favourite colour"
    assert len(mem.recall(query, limit=3)) == 3
    assert len(mem.recall(query, limit=1)) == 1
    default = mem.recall(query)
    assert len(default) == mem.config.recall_facts_limit == 5
    everything = mem.recall(query, limit=100, kinds=["episodic"])
    assert len(everything) == 8
    assert [h.score for h in everything] == sorted((h.score for h in everything), reverse=True)
    assert {h.content for h in everything} == {
        f"my favourite colour is teal number{i}" for i in range(8)}


def test_recall_scope_process_and_entity(mem: Memori) -> None:
    mem.attribution(entity_id="user", process_id="work")
    mem.capture([{"role": "user", "content": "work project deadline is friday"}])
    mem.attribution(entity_id="user", process_id="home")
    mem.capture([{"role": "user", "content": "home garden tomatoes are ripe"}])
    mem.attribution(entity_id="user")  # no process: shared by every persona
    mem.capture([{"role": "user", "content": "shared note about friday garden work"}])
    mem.attribution(entity_id="someone-else", process_id="work")
    mem.capture([{"role": "user", "content": "work project deadline is friday garden"}])
    assert mem.augmentation.wait(timeout=30)

    query = "work project deadline friday home garden tomatoes"
    mem.attribution(entity_id="user", process_id="work")
    work = {h.content for h in mem.recall(query, limit=10)}
    assert work == {"work project deadline is friday", "shared note about friday garden work"}
    assert {h.process_id for h in mem.recall(query, limit=10)} == {"work", None}
    everything = {h.content for h in mem.recall(query, limit=10, scope="entity")}
    assert everything == {"work project deadline is friday", "home garden tomatoes are ripe",
                          "shared note about friday garden work"}

    mem.attribution(entity_id="user", process_id="home")
    assert {h.content for h in mem.recall(query, limit=10)} == {
        "home garden tomatoes are ripe", "shared note about friday garden work"}

    mem.attribution(entity_id="user", process_id="never-used")
    assert {h.content for h in mem.recall(query, limit=10)} == {
        "shared note about friday garden work"}

    mem.attribution(entity_id="user")  # no process set: the whole entity
    assert {h.content for h in mem.recall(query, limit=10)} == everything

    mem.attribution(entity_id="someone-else", process_id="home")
    assert mem.recall(query, limit=10) == []
    assert [h.content for h in mem.recall(query, limit=10, scope="entity")] == [
        "work project deadline is friday garden"]


def test_recall_sees_memories_written_by_another_instance(mem: Memori,
                                                         other: Callable[..., Memori]) -> None:
    mem.attribution(entity_id="shared-db", process_id="agent")
    mem.capture([{"role": "user", "content": "the first thing I said"}])
    assert mem.augmentation.wait(timeout=30)
    assert [h.content for h in mem.recall("the first thing I said")] == [
        "the first thing I said"]  # mem's index of the entity is now cached

    writer = other()
    writer.attribution(entity_id="shared-db", process_id="agent")
    writer.new_session()
    writer.capture([{"role": "user", "content": "the second thing I said"}])
    assert writer.augmentation.wait(timeout=30)
    assert [h.content for h in mem.recall("the second thing I said", limit=1)] == [
        "the second thing I said"]
    assert {h.content for h in mem.recall("thing I said", limit=10)} == {
        "the first thing I said", "the second thing I said"}


# ---- schema, stats ---------------------------------------------------------------------------------

def test_build_is_idempotent(mem: Memori) -> None:
    mem.attribution(entity_id="keep", process_id="agent")
    ids = mem.capture([{"role": "user", "content": "keep me across builds"}])
    mem.config.storage.build()
    mem.config.storage.build()
    with mem.engine.connect() as c:
        versions = c.execute(text("SELECT version FROM memori_schema_version ORDER BY version")
                             ).scalars().all()
    assert versions == list(range(1, len(migrations.MIGRATIONS) + 1))
    assert [m["id"] for m in mem.session_messages()] == ids
    assert mem.augmentation.wait(timeout=30)
    assert [h.content for h in mem.recall("keep me across builds")] == ["keep me across builds"]


def test_one_config_shared_by_two_instances(db_url: str, sqlite_url: str) -> None:
    cfg = Config(recall_facts_limit=2)
    first = Memori(conn=db_url, config=cfg, embedder=HashEmbedder())
    second = Memori(conn=sqlite_url, config=cfg, embedder=HashEmbedder(),
                    recall_relevance_threshold=0.5)
    try:
        first.config.storage.build()  # builds first's database, not second's
        first.attribution(entity_id="cfg")
        assert first.capture([{"role": "user", "content": "built the right one"}])
        assert first.config.recall_relevance_threshold == 0.1
        assert second.config.recall_relevance_threshold == 0.5
        assert cfg.recall_relevance_threshold == 0.1  # the caller's Config is left as it was
        assert (first.config.recall_facts_limit, second.config.recall_facts_limit) == (2, 2)
        assert second.stats()["tables"]["memori_conversation_message"] == 0  # built on use
        assert first.stats()["tables"]["memori_conversation_message"] == 1
    finally:
        first.close()
        second.close()


def test_an_unbuilt_database_is_built_by_the_first_call_that_needs_it(db_url: str) -> None:
    m = Memori(conn=db_url, embedder=HashEmbedder())
    try:
        with m.engine.connect() as conn:  # constructing creates nothing
            assert migrations.current_version(conn) == 0
        m.attribution(entity_id="early")
        assert len(m.capture([{"role": "user", "content": "the first capture"}])) == 1
        with m.engine.connect() as conn:
            assert migrations.current_version(conn) == len(migrations.MIGRATIONS)
        m.config.storage.build()  # idempotent
        assert m.stats()["tables"]["memori_conversation_message"] == 1
    finally:
        m.close()


def test_stats_counts(mem: Memori) -> None:
    mem.attribution(entity_id="stats", process_id="agent")
    for i in range(2):
        mem.capture([{"role": "user", "content": f"statistics question {i}"},
                     {"role": "assistant", "content": f"statistics answer {i}"}])
    assert mem.augmentation.wait(timeout=30)
    assert mem.recall("statistics question")
    stats = mem.stats()
    assert stats["tables"] == {
        "memori_schema_version": len(migrations.MIGRATIONS), "memori_meta": 1,
        "memori_entity": 1, "memori_process": 1, "memori_session": 1, "memori_conversation": 1,
        "memori_conversation_message": 4, "memori_entity_fact": 2, "memori_fact_mention": 2,
        "memori_process_attribute": 0, "memori_knowledge_graph": 0,
        "memori_augmentation_job": 2, "memori_api_key": 0, "memori_vector_block": 0,
        "memori_term_block": 0}
    assert stats["tables"] == counts(mem)
    assert stats["augmentation"]["jobs_done"] == 2
    assert stats["augmentation"]["memories_written"] == 2
    assert stats["augmentation"]["jobs_failed"] == 0
    assert stats["recall_cache"]["entities"] == 1
    assert stats["recall_cache"]["bytes"] > 0


# ---- embedding model mismatch ---------------------------------------------------------------------

def test_embedding_dimension_mismatch_is_a_configuration_error(mem: Memori, other: Callable[..., Memori]) -> None:
    mem.attribution(entity_id="dims", process_id="agent")
    mem.capture([{"role": "user", "content": "written with two hundred fifty-six dimensions"}])
    assert mem.augmentation.wait(timeout=30)
    assert mem.recall("two hundred fifty-six dimensions")
    facts_before = count(mem, "memori_entity_fact")

    small = other(embedder=HashEmbedder(dim=32), request_num_backoff=1, request_backoff_factor=0)
    small.attribution(entity_id="dims", process_id="agent")
    with pytest.raises(ConfigurationError) as exc:
        small.recall("two hundred fifty-six dimensions")
    assert exc.value.argument == "embeddings_model"
    assert "256" in str(exc.value) and "32" in str(exc.value)

    small.new_session()
    ids = small.capture([{"role": "user", "content": "written with thirty-two dimensions"}])
    # the misconfigured instance's workers stop and say why; they claim and fail nothing
    with pytest.raises(ConfigurationError, match="256") as waited:
        small.augmentation.wait(timeout=30)
    assert waited.value.argument == "embeddings_model"
    assert small.augmentation.failed() == []
    assert count(mem, "memori_entity_fact") == facts_before  # nothing of the wrong size written
    assert [m["id"] for m in small.session_messages()] == ids  # the turn itself is kept
    # ... and a correctly configured worker (mem's) augments the queued turn
    assert mem.augmentation.wait(timeout=30)
    assert count(mem, "memori_entity_fact") == facts_before + 1

    renamed = other(embedder=HashEmbedder(dim=64, name="another-model"))
    renamed.attribution(entity_id="dims", process_id="agent")
    with pytest.raises(ConfigurationError, match="another-model"):
        renamed.recall("sixty-four dimensions")
    # the original model still works
    assert mem.recall("two hundred fifty-six dimensions")[0].content == "written with two hundred fifty-six dimensions"


# ---- transactional capture -------------------------------------------------------------------------

def test_failed_capture_leaves_nothing_half_written(mem: Memori,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    mem.attribution(entity_id="existing", process_id="agent")
    mem.capture([{"role": "user", "content": "before the failure"}])
    assert mem.augmentation.wait(timeout=30)  # the background worker writes nothing more
    before = counts(mem)

    # the job, written after the messages, violates NOT NULL in the database (PostgreSQL's
    # one-statement capture: the same statement with a NULL status)
    monkeypatch.setattr(store_mod, "_INSERT_JOB", text(
        "INSERT INTO memori_augmentation_job (entity_id, status) VALUES (:entity_id, NULL)"))
    one_statement = store_mod._CAPTURE_POSTGRESQL.text
    assert one_statement.count("'queued'") == 1
    monkeypatch.setattr(store_mod, "_CAPTURE_POSTGRESQL",
                        text(one_statement.replace("'queued'", "NULL")))
    turn = [{"role": "user", "content": "lost"}, {"role": "assistant", "content": "also lost"}]
    with pytest.raises(StorageError):
        mem.capture(turn)
    mem.attribution(entity_id="brand-new-entity", process_id="brand-new-process")
    mem.new_session()
    with pytest.raises(StorageError):
        mem.capture(turn)
    assert counts(mem) == before
    monkeypatch.undo()

    # nothing learned inside the failed transactions is reused afterwards
    ids = mem.capture(turn)
    assert [m["id"] for m in mem.session_messages()] == ids
    assert count(mem, "memori_entity") == before["memori_entity"] + 1
    assert count(mem, "memori_conversation_message") == before["memori_conversation_message"] + 2
    assert count(mem, "memori_augmentation_job") == before["memori_augmentation_job"] + 1
    assert mem.augmentation.wait(timeout=30)
    assert [h.content for h in mem.recall("lost")] == ["lost"]


def test_cached_index_follows_rows_removed_elsewhere(mem: Memori) -> None:
    """Another process removing memories (as forget will) bumps memory_version; the cached
    index is rebuilt without them."""
    from sqlalchemy import delete, update

    from memori_core.storage import schema as sch

    mem.attribution(entity_id="shrinks", process_id="agent")
    mem.capture([{"role": "user", "content": "keep this sentence about owls"}])
    mem.capture([{"role": "user", "content": "drop this sentence about owls"}])
    assert mem.augmentation.wait(timeout=30)
    assert len(mem.recall("sentence about owls", limit=10)) == 2  # index cached
    pk = mem._store.find_pk("entity", "shrinks")
    assert pk is not None
    f, m, e = sch.entity_fact.c, sch.fact_mention.c, sch.entity.c
    with mem.engine.begin() as c:
        gone = c.execute(select(f.id).where(f.content.like("drop%"))).scalar_one()
        c.execute(delete(sch.fact_mention).where(m.fact_id == gone))
        c.execute(delete(sch.entity_fact).where(f.id == gone))
        c.execute(update(sch.entity).where(e.id == pk)
                  .values(memory_version=e.memory_version + 1))
    assert [h.content for h in mem.recall("sentence about owls", limit=10)] == [
        "keep this sentence about owls"]
    assert mem._recaller.cache.get(pk, mem.embedder.dim).count == 1


# ---- essential memories -----------------------------------------------------------------------------

def test_essential_memories_most_important_first_within_the_process_scope(mem: Memori) -> None:
    """Current, non-episodic memories with importance > 0 of one entity, by importance, then
    mentions, then last seen; process scope as ``list_memories``; the ``memory_details``
    shape."""
    mem.attribution(entity_id="ann")
    mem.remember("The user lives in Lisbon", slot="lives_in", importance=0.6)  # superseded
    porto = mem.remember("The user lives in Porto", slot="lives_in", importance=0.6)
    mem.remember("The user lives in Porto", slot="lives_in", importance=0.6)  # 2 mentions
    mem.attribution(entity_id="ann", process_id="coach")
    peanuts = mem.remember("The user is allergic to peanuts")  # rated 1.0
    acme = mem.remember("The user works at Acme", importance=0.6)
    bike = mem.remember("The user owns a bike", importance=0.6)  # seen after acme
    mem.remember("The user likes tea", importance=0.0)
    mem.remember("I'm allergic to shellfish", kind="episodic", importance=0.9)
    ids = mem.capture([{"role": "user", "content": "I'm pregnant"}])
    assert mem.augmentation.wait(timeout=30)
    mem.attribution(entity_id="ann", process_id="chef")
    spicy = mem.remember("The user loves spicy food")  # rated 0.4
    mem.attribution(entity_id="bob")
    mem.remember("Bob is allergic to cats")

    store = mem._store
    ann, coach = store.find_pk("entity", "ann"), store.find_pk("process", "coach")
    assert ann is not None and coach is not None
    everything = store.essential_memories(ann, None, 10)
    pregnant = everything[1]["id"]
    assert [m["id"] for m in everything] == [peanuts, pregnant, porto, bike, acme, spicy]
    assert [m["importance"] for m in everything] == [1.0, 0.9, 0.6, 0.6, 0.6, 0.4]
    assert everything[1]["content"] == "The user is pregnant"
    assert everything[1]["source_message_ids"] == (ids[0],)
    assert everything[2]["mention_count"] == 2 and everything[2]["process"] is None
    details = store.memory_details(ann, [m["id"] for m in everything])
    assert everything == [details[m["id"]] for m in everything]  # the same shape and values
    assert [m["id"] for m in store.essential_memories(ann, [coach, None], 10)] == [
        peanuts, pregnant, porto, bike, acme]
    assert [m["id"] for m in store.essential_memories(ann, [None], 10)] == [porto]
    assert [m["id"] for m in store.essential_memories(ann, [coach], 2)] == [peanuts, pregnant]
    assert store.essential_memories(ann, None, 0) == []
    assert store.essential_memories(ann, [], 10) == []
