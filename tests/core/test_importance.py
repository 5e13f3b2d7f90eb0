"""Importance and the rule extractor's completeness: what ``RuleExtractor`` leaves out (pieces
of a turn) and how it rates what it keeps, ``rate_importance``, importance through storage
(dedup keeps the higher, ``memories``, ``recall`` details, export / import) on every backend,
``remember(importance=...)`` and migration 4 from a database at the previous version."""

from __future__ import annotations

import copy
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from memori_core import ConfigurationError, Memori
from memori_core.augmentation.base import Conversation, Extraction
from memori_core.augmentation.rules import RuleExtractor, rate_importance
from memori_core.storage import migrations
from memori_core.testing import HashEmbedder


def extract(content: str, name: str | None = None) -> Extraction:
    msg: dict[str, Any] = {"id": 7, "role": "user", "content": content}
    if name:
        msg["name"] = name
    return RuleExtractor().extract(Conversation("e", "p", [msg]))


# ---- what the rule extractor leaves out --------------------------------------------------------

@pytest.mark.parametrize("said", [
    "I will!", "Yes, I did.", "I definitely will.", "I have!", "I am as well!",  # dangling
    "I love it!", "I believe in them.", "I'll do that.", "I remember that!",  # bare pronouns
    "I won't give up!", "I'm pushing on though.", "I couldn't agree more!",  # particles
    "I'm good, thanks.", "I'm doing OK, thanks.", "I'll do my best!",  # small talk
    "I get it, Jon.", "I'm getting there, Caroline.",  # a clause cut at a comma
    "I'm here for you.", "I'll let you know.", "I appreciate your help.",  # the listener
    "Always here to help!", "Never mind.", "Never give up!",  # no instruction
])
def test_pieces_of_a_turn_are_not_stored(said: str) -> None:
    assert extract(said, name="Dave").memories == []


@pytest.mark.parametrize(("said", "content"), [
    ("I play clarinet.", "Dave plays clarinet"),
    ("I graduated last week!", "Dave graduated last week"),
    ("I'm excited.", "Dave is excited"),
    ("I'm from Brazil.", "Dave is from Brazil"),
    ("I have a few plans.", "Dave has a few plans"),
    ("I've been to Jasper, it's lovely.", "Dave has been to Jasper, it's lovely"),
    ("I also sing.", "Dave also sings"),
    ("I highly recommend the Alchemist.", "Dave highly recommends the Alchemist"),
    ("Last year I visited Italy.", "Last year Dave visited Italy"),
    ("Yeah, I did a marathon.", "Dave did a marathon"),  # no "Yeah Dave did"
    ("I wish I wasn't allergic to cats.", "Dave wishes they weren't allergic to cats"),
    ("I want you to reply in French.", "Dave wants you to reply in French"),
])
def test_statements_that_stand_alone_are_kept(said: str, content: str) -> None:
    assert [m.content for m in extract(said, name="Dave").memories] == [content]


def test_standing_instructions_are_restated() -> None:
    for said, content in [
            ("Never call me before 9am.", "The user asks to never call them before 9am"),
            ("Please always reply in French.", "The user asks to always reply in French"),
            ("Don't ever call me Bob.", "The user asks to never call them Bob"),
            ("Please don't text me after 10pm.", "The user asks to not text them after 10pm")]:
        [m] = extract(said).memories
        assert (m.content, m.kind, m.importance) == (content, "preference", 0.8)


# ---- importance ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("said", "importance"), [
    ("I'm allergic to peanuts.", 1.0),
    ("I'm lactose intolerant.", 0.9),
    ("I take medication for my blood pressure.", 0.9),
    ("I'm vegetarian.", 0.9),
    ("I'm on a gluten-free diet.", 0.9),
    ("I don't eat pork.", 0.9),
    ("I'm pregnant.", 0.9),
    ("I use a wheelchair.", 0.9),
    ("never call me before 9am", 0.8),
    ("My name is Ann.", 0.7),
    ("I live in Lisbon.", 0.6),
    ("I'm 34 years old.", 0.6),
    ("I work as a nurse.", 0.6),
    ("My son Leo is 5.", 0.6),
    ("I love tempo runs.", 0.4),
    ("I can't stand loud music.", 0.4),
    ("I like tea.", 0.0),
    ("I love vegan desserts.", 0.4),  # a taste, not a diet
    ("I ran a half marathon.", 0.0),
    ("I have a blind date tonight.", 0.0),
])
def test_rule_extractor_rates_importance(said: str, importance: float) -> None:
    [m] = extract(said).memories
    assert m.importance == importance
    assert rate_importance(m.content, m.kind) == importance  # the same rating, reusable


def test_rate_importance_reads_first_and_third_person_and_never_rates_episodic() -> None:
    assert rate_importance("The user is allergic to peanuts", "fact") == 1.0
    assert rate_importance("I'm allergic to peanuts", "fact") == 1.0
    assert rate_importance("Never call me before 9am", "preference") == 0.8
    assert rate_importance("The user never runs before 9am", "fact") == 0.0  # a habit
    assert rate_importance("I'm allergic to peanuts", "episodic") == 0.0
    assert rate_importance("", "fact") == 0.0


def test_episodic_memories_stay_ordinary(smem: Memori) -> None:
    smem.attribution(entity_id="ann")
    smem.capture([{"role": "user", "content": "I'm allergic to peanuts"}])
    assert smem.augmentation.wait(timeout=30)
    assert sorted((m.kind, m.importance) for m in smem.memories()) == [
        ("attribute", 1.0), ("episodic", 0.0)]


# ---- importance through storage ---------------------------------------------------------------

def test_importance_round_trips_and_a_mention_keeps_the_higher(mem: Memori) -> None:
    mem.attribution(entity_id="ann", process_id="chef")
    ids = mem.capture([{"role": "user", "content": "I'm allergic to peanuts. I like tea."}])
    assert mem.augmentation.wait(timeout=30)
    by_content = {m.content: m for m in mem.memories()}
    assert by_content["The user is allergic to peanuts"].importance == 1.0
    assert by_content["The user likes tea"].importance == 0.0
    tea = by_content["The user likes tea"].id
    assert mem.remember("The user likes tea", kind="preference", importance=0.3) == tea
    assert mem.remember("the user likes TEA", kind="preference", importance=0.1) == tea
    [listed] = [m for m in mem.memories() if m.id == tea]
    assert (listed.importance, listed.mention_count) == (0.3, 3)  # the higher is kept
    details = mem._store.memory_details(mem._store.find_pk("entity", "ann") or 0, [tea])
    assert details[tea]["importance"] == 0.3
    assert details[tea]["source_message_ids"] == (ids[0],)


def test_remember_rates_by_default_and_validates_importance(smem: Memori) -> None:
    smem.attribution(entity_id="ann")
    peanuts = smem.remember("The user is allergic to peanuts")
    tea = smem.remember("The user likes tea", kind="preference")
    chosen = smem.remember("The user has a standing desk", importance=0.55)
    edge = smem.remember("The user owns a kayak", importance=1)
    assert {m.id: m.importance for m in smem.memories()} == {
        peanuts: 1.0, tea: 0.0, chosen: 0.55, edge: 1.0}
    for bad in (-0.1, 1.5, math.nan, math.inf, "high", True, [0.5]):
        with pytest.raises(ConfigurationError, match="importance") as err:
            smem.remember("The user likes coffee", importance=bad)  # type: ignore[arg-type]
        assert err.value.argument == "importance"
    assert len(smem.memories()) == 4  # nothing stored by a refused call


def test_importance_is_exported_and_imported(smem: Memori, tmp_path: Path) -> None:
    smem.attribution(entity_id="ann")
    smem.remember("The user is allergic to peanuts")
    smem.remember("The user likes tea", importance=0.25)
    data = smem.export(entity_id="ann")
    assert {m["content"]: m["importance"] for m in data["memories"]} == {
        "The user is allergic to peanuts": 1.0, "The user likes tea": 0.25}
    older = copy.deepcopy(data)  # an export written before importance existed
    for m in older["memories"]:
        del m["importance"]
    with Memori(conn=f"sqlite:///{tmp_path / 'target.db'}", embedder=HashEmbedder()) as target:
        target.config.storage.build()
        target.import_(data)
        target.import_(older, entity_id="old")
        target.attribution(entity_id="ann")
        assert {m.content: m.importance for m in target.memories()} == {
            "The user is allergic to peanuts": 1.0, "The user likes tea": 0.25}
        target.attribution(entity_id="old")
        assert {m.importance for m in target.memories()} == {0.0}
        for bad in (1.5, -1, "high", True):
            broken = copy.deepcopy(data)
            broken["memories"][0]["importance"] = bad
            with pytest.raises(ConfigurationError, match=r"memories\[0\]\.importance"):
                target.import_(broken, entity_id="broken")


# ---- migration 4 ---------------------------------------------------------------------------------

def _back_to_version_3(url: str) -> None:
    """Make a built database (no memori on it) what memori built before migration 4: no
    importance column, no index on it, no table of a later migration, schema version 3."""
    engine = create_engine(url)
    try:
        with engine.begin() as c:
            c.execute(text("DROP TABLE memori_api_key"))  # migration 5
            c.execute(text("DROP INDEX ix_memori_fact_importance" + (
                " ON memori_entity_fact" if engine.dialect.name in ("mysql", "mariadb")
                else "")))
            c.execute(text("ALTER TABLE memori_entity_fact DROP COLUMN importance"))
            c.execute(text("DELETE FROM memori_schema_version WHERE version >= 4"))
    finally:
        engine.dispose()


def test_migration_4_adds_importance_to_a_database_at_version_3(db_url: str) -> None:
    with Memori(conn=db_url, embedder=HashEmbedder()) as mem:
        mem.config.storage.build()
        mem.attribution(entity_id="ann")
        old = mem.remember("The user is allergic to peanuts")
    _back_to_version_3(db_url)
    with Memori(conn=db_url, embedder=HashEmbedder()) as mem:
        with mem.engine.connect() as c:
            assert migrations.current_version(c) == 3
            assert "importance" not in {col["name"] for col in
                                        inspect(c).get_columns("memori_entity_fact")}
        mem.config.storage.build()
        with mem.engine.connect() as c:
            assert migrations.current_version(c) == len(migrations.MIGRATIONS)
            assert "ix_memori_fact_importance" in {
                i["name"] for i in inspect(c).get_indexes("memori_entity_fact")}
        mem.attribution(entity_id="ann")
        assert [(m.id, m.importance) for m in mem.memories()] == [(old, 0.0)]  # the default
        assert mem.remember("The user is allergic to peanuts") == old
        new = mem.remember("The user lives in Lisbon", importance=0.6)
        assert {m.id: m.importance for m in mem.memories()} == {old: 1.0, new: 0.6}


def test_sqlite_from_version_2_rebuilds_tables_without_the_new_column(sqlite_url: str) -> None:
    """Migration 3 rebuilds SQLite tables with today's columns: from a version-2 database it
    copies the columns the old table has, and migration 4 finds its column made."""
    with Memori(conn=sqlite_url, embedder=HashEmbedder()) as mem:
        mem.config.storage.build()
        mem.attribution(entity_id="ann")
        old = mem.remember("The user lives in Lisbon", slot="lives_in")
    _back_to_version_3(sqlite_url)
    # and to version 2: memori_entity_fact without AUTOINCREMENT
    raw = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    ddl = raw.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND "
                      "name = 'memori_entity_fact'").fetchone()[0]
    indexes = [sql for (sql,) in raw.execute("SELECT sql FROM sqlite_master WHERE type = "
                                             "'index' AND tbl_name = 'memori_entity_fact' AND "
                                             "sql IS NOT NULL")]
    raw.execute("PRAGMA legacy_alter_table = ON")
    raw.execute("BEGIN")
    raw.execute("ALTER TABLE memori_entity_fact RENAME TO fact_v2")
    raw.execute(ddl.replace(" AUTOINCREMENT", ""))
    raw.execute("INSERT INTO memori_entity_fact SELECT * FROM fact_v2")
    raw.execute("DROP TABLE fact_v2")
    for sql in indexes:
        raw.execute(sql)
    raw.execute("DELETE FROM memori_schema_version WHERE version >= 3")
    raw.execute("COMMIT")
    raw.close()
    with Memori(conn=sqlite_url, embedder=HashEmbedder()) as mem:
        mem.config.storage.build()
        with mem.engine.connect() as c:
            assert migrations.current_version(c) == len(migrations.MIGRATIONS)
            ddl = c.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND "
                                    "name = 'memori_entity_fact'").scalar_one()
            assert "AUTOINCREMENT" in ddl and "importance" in ddl
        mem.attribution(entity_id="ann")
        assert [(m.id, m.slot, m.importance) for m in mem.memories()] == [(old, "lives_in", 0.0)]
