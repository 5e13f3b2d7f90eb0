"""The memory API plugins build on, on every backend: remember, memories, forget_memories,
clear_session, message extras (tool calls, metadata, timestamps) and migration 2."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from memori_core import ConfigurationError, Memori
from memori_core.storage import migrations


def test_remember_is_recallable_at_once_and_deduplicated(mem: Memori) -> None:
    mem.attribution(entity_id="ann", process_id="coach")
    first = mem.remember("The user is allergic to peanuts")
    again = mem.remember("the user is  ALLERGIC to peanuts", kind="fact")
    assert first == again  # same normalized text: one memory, two mentions
    hits = mem.recall("allergic to peanuts")
    assert [h.id for h in hits][:1] == [first]
    assert hits[0].mention_count == 2 and hits[0].kind == "fact"
    listed = mem.memories()
    assert [(m.id, m.kind, m.process_id, m.mention_count) for m in listed] == [
        (first, "fact", "coach", 2)]


def test_memories_filters_by_kind_scope_and_entity(mem: Memori) -> None:
    mem.attribution(entity_id="ann", process_id="coach")
    a = mem.remember("Runs 5K on Sundays", kind="event")
    mem.attribution(entity_id="ann", process_id="chef")
    b = mem.remember("Prefers low-carb dinners", kind="preference")
    mem.attribution(entity_id="ann")
    c = mem.remember("Lives in Lisbon", kind="attribute")
    mem.attribution(entity_id="bob")
    mem.remember("Bob likes chess")

    mem.attribution(entity_id="ann", process_id="coach")
    assert [m.id for m in mem.memories()] == [c, a]  # own process + process-less, newest first
    assert [m.id for m in mem.memories(scope="entity")] == [c, b, a]
    assert [m.id for m in mem.memories(scope="entity", kinds=["preference"])] == [b]
    assert [m.id for m in mem.memories(scope="entity", limit=1)] == [c]
    with pytest.raises(ConfigurationError, match="unknown kind") as err:
        mem.memories(kinds=["opinion"])
    assert err.value.argument == "kinds"


def test_forget_memories_only_touches_own_entity(mem: Memori) -> None:
    mem.attribution(entity_id="bob")
    bobs = mem.remember("Bob likes chess")
    mem.attribution(entity_id="ann")
    keep = mem.remember("Ann likes tea")
    gone = mem.remember("Ann likes chess")
    assert mem.recall("likes chess", limit=5)[0].id == gone
    assert mem.forget_memories([gone, bobs]) == 1  # bob's id is not ann's to delete
    assert [m.id for m in mem.memories()] == [keep]
    assert gone not in [h.id for h in mem.recall("likes chess")]  # the cached index follows
    mem.attribution(entity_id="bob")
    assert [m.id for m in mem.memories()] == [bobs]


def test_message_extras_round_trip(mem: Memori) -> None:
    mem.attribution(entity_id="ann")
    when = datetime(2023, 5, 8, 13, 56, tzinfo=timezone(timedelta(hours=2)))
    turn = [
        {"role": "user", "content": "weather in Lisbon?", "created_at": when,
         "metadata": {"lc_type": "human", "tags": ["x"]}},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "weather", "arguments": "{\"city\": \"Lisbon\"}"}}]},
        {"role": "tool", "content": "21C", "tool_call_id": "call_1"},
    ]
    mem.capture(turn)
    back = mem.session_messages()
    assert back[0]["created_at"] == datetime(2023, 5, 8, 11, 56)  # stored as naive UTC
    assert back[0]["metadata"] == {"lc_type": "human", "tags": ["x"]}
    assert back[1]["tool_calls"] == turn[1]["tool_calls"]
    assert back[2]["tool_call_id"] == "call_1"
    with pytest.raises(ConfigurationError, match="created_at") as err:
        mem.capture([{"role": "user", "content": "x", "created_at": "yesterday"}])
    assert "messages[0]" in str(err.value)
    with pytest.raises(ConfigurationError, match="tool_calls"):
        mem.capture([{"role": "assistant", "content": "", "tool_calls": "weather()"}])


def test_clear_session_keeps_memories_and_other_sessions(mem: Memori) -> None:
    mem.attribution(entity_id="ann")
    first = mem.new_session()
    mem.capture([{"role": "user", "content": "I live in Lisbon"}])
    assert mem.augmentation.wait(timeout=30)
    second = mem.new_session()
    mem.capture([{"role": "user", "content": "I play chess"}])
    queued = mem.capture([{"role": "user", "content": "queued turn"}])
    assert queued
    mem.attribution(entity_id="bob")
    mem.set_session(first)  # the same session id under another entity is another session
    mem.capture([{"role": "user", "content": "bob's turn"}])
    mem.attribution(entity_id="ann")  # another entity: the session is cleared, set it again
    mem.set_session(second)

    assert mem.clear_session(first) == 1
    assert mem.session_messages(first) == []
    assert mem.clear_session() == 2  # the current session; its queued job goes with it
    assert mem.session_messages() == []
    assert mem.augmentation.wait(timeout=30)
    assert [h.content for h in mem.recall("where does the user live?",
                                          kinds=["episodic"])][:1] == ["I live in Lisbon"]
    mem.attribution(entity_id="bob")
    assert [m["content"] for m in mem.session_messages(first)] == ["bob's turn"]
    assert mem.augmentation.failed() == []


def test_migration_2_adds_its_columns_and_index(db_url: str) -> None:
    from memori_core.testing import HashEmbedder

    with Memori(conn=db_url, embedder=HashEmbedder()) as mem:
        mem.config.storage.build()
        with mem.engine.begin() as c:  # back to a version-1 database
            c.execute(text("ALTER TABLE memori_conversation_message DROP COLUMN extra_json"))
            c.execute(text("DROP INDEX ix_memori_fact_slot" + (
                " ON memori_entity_fact" if mem.engine.dialect.name == "mysql" else "")))
            c.execute(text("ALTER TABLE memori_entity_fact DROP COLUMN search_text"))
            c.execute(text("DELETE FROM memori_schema_version WHERE version >= 2"))
    with Memori(conn=db_url, embedder=HashEmbedder()) as mem:
        with mem.engine.connect() as c:
            assert migrations.current_version(c) == 1
        mem.config.storage.build()
        with mem.engine.connect() as c:
            assert migrations.current_version(c) == len(migrations.MIGRATIONS)
        mem.attribution(entity_id="ann")
        mem.capture([{"role": "tool", "content": "ok", "tool_call_id": "c1"}])
        assert mem.session_messages()[0]["tool_call_id"] == "c1"
