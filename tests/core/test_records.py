"""The browsing API of ``Memori`` (``memori_core._records``): one memory by id, new versions
and their history, provenance, an entity's processes / sessions / conversations / messages /
triples / jobs, every entity with counts, retry of a failed job, the schema status. Every
call reads or writes the current entity only."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from memori_core import ConfigurationError, Memori
from memori_core.storage import migrations
from memori_core.storage import schema as s


def _turn(mem: Memori, entity: str, text: str, process: str | None = None) -> list[int]:
    mem.attribution(entity_id=entity, process_id=process)
    return mem.capture([{"role": "user", "content": text},
                        {"role": "assistant", "content": "noted"}])


def test_memory_versions_history_and_provenance(mem: Memori) -> None:
    ids = _turn(mem, "ann", "I live in Lisbon", "coach")
    assert mem.augmentation.wait(60)
    mem.attribution(entity_id="ann", process_id="coach")
    [fact] = [m for m in mem.memories() if m.kind != "episodic"]
    assert mem.memory(fact.id) == fact
    prov = mem.memory_provenance(fact.id)
    assert prov is not None and [m["id"] for m in prov["messages"]] == [ids[0]]
    assert prov["messages"][0]["content"] == "I live in Lisbon"
    [conv] = prov["conversations"]
    assert conv["id"] == prov["messages"][0]["conversation_id"] and conv["messages"] == 2
    assert conv["process_id"] == "coach"

    assert mem.memory_history(fact.id) == []  # a first version: found, with no history
    new = mem.update_memory(fact.id, "The user lives in Porto")
    assert new is not None and new != fact.id
    current = mem.memory(new)
    assert current is not None and current.content == "The user lives in Porto"
    assert current.superseded_by is None and current.process_id == "coach"
    assert current.kind == fact.kind and current.slot == fact.slot
    assert current.source_message_ids == (ids[0],)  # the provenance goes with the correction
    old = mem.memory(fact.id)
    assert old is not None and old.superseded_by == new
    assert [m.id for m in mem.memory_history(new) or []] == [fact.id]
    third = mem.update_memory(new, "The user lives in Faro", importance=0.9)
    assert third is not None
    assert [m.id for m in mem.memory_history(third) or []] == [new, fact.id]
    assert mem.update_memory(third, "The user lives in Faro", importance=0.9) == third
    assert [h.content for h in mem.recall("where does the user live", kinds=[fact.kind])] == [
        "The user lives in Faro"]
    # another entity sees none of it
    mem.attribution(entity_id="bob")
    assert mem.memory(fact.id) is None and mem.memory_history(third) is None
    assert mem.memory_provenance(fact.id) is None
    assert mem.update_memory(fact.id, "hijacked") is None
    mem.attribution(entity_id="ann", process_id="coach")
    assert mem.memory(third).content == "The user lives in Faro"  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError) as err:
        mem.update_memory(third, "   ")
    assert err.value.argument == "content"
    with pytest.raises(ConfigurationError) as err:
        mem.memory("7")  # type: ignore[arg-type]
    assert err.value.argument == "memory_id"


def test_listings_are_scoped_paged_and_counted(mem: Memori) -> None:
    for n in range(3):
        _turn(mem, "ann", f"I like fruit number {n}", "coach")
    first_session = mem.session_id
    mem.set_session("s2")
    mem.capture([{"role": "user", "content": "My cat is called Tom"}])
    _turn(mem, "ann", "I like tea", None)  # same entity: the session goes on
    _turn(mem, "bob", "I like coffee", "coach")
    assert mem.augmentation.wait(60)

    mem.attribution(entity_id="ann", process_id="coach")
    procs = mem.processes()
    assert [p["process_id"] for p in procs] == [None, "coach"]
    assert procs[1]["messages"] == 7 and procs[0]["messages"] == 2
    sessions, nxt = mem.sessions()
    assert nxt is None and [x["session_id"] for x in sessions] == ["s2", first_session]
    assert [x["messages"] for x in sessions] == [3, 6]
    assert all(x["process_id"] == "coach" and x["conversations"] == 1 for x in sessions)
    mem.attribution(entity_id="ann", process_id="nobody-yet")
    assert mem.sessions() == ([], None)
    assert len(mem.sessions(scope="entity")[0]) == 2
    mem.attribution(entity_id="ann", process_id="coach")
    convs, _ = mem.conversations("s2")
    assert [c["messages"] for c in convs] == [3]
    msgs, nxt = mem.conversation_messages(convs[0]["id"], limit=2)  # type: ignore[misc]
    assert [m["content"] for m in msgs] == ["My cat is called Tom", "I like tea"]
    assert nxt == msgs[-1]["id"]
    msgs, nxt = mem.conversation_messages(convs[0]["id"], after=nxt)  # type: ignore[misc]
    assert nxt is None and [m["content"] for m in msgs] == ["noted"]
    first, cursor = mem.memory_page(limit=2, scope="entity")
    assert len(first) == 2 and cursor == first[-1].id
    rest, end = mem.memory_page(limit=1000, before=cursor, scope="entity")
    assert end is None and [m.id for m in first + rest] == [m.id for m in mem.memories(
        scope="entity")]
    triples, _ = mem.triples(scope="entity")
    assert all(t["subject"] and t["predicate"] for t in triples)
    counts, jobs, _ = mem.jobs()
    assert counts["done"] == 5 and len(jobs) == 5 and all(j["error"] is None for j in jobs)

    mem.attribution(entity_id="bob")
    assert mem.conversation_messages(convs[0]["id"]) is None  # ann's conversation
    assert [p["process_id"] for p in mem.processes()] == ["coach"]
    mem.attribution(entity_id="nobody")
    assert mem.processes() == [] and mem.sessions() == ([], None)
    assert mem.jobs() == ({"queued": 0, "running": 0, "done": 0, "failed": 0}, [], None)

    page, nxt = mem.entities(limit=1)
    assert [e["entity_id"] for e in page] == ["ann"] and nxt is not None
    page, nxt = mem.entities(after=nxt)
    assert [e["entity_id"] for e in page] == ["bob"] and nxt is None
    assert page[0]["messages"] == 2 and page[0]["sessions"] == 1
    assert [e["entity_id"] for e in mem.entities(prefix="a")[0]] == ["ann"]
    assert mem.entities(prefix="A")[0] == []  # exact, whatever the collation
    assert mem.entities(prefix="a_")[0] == []  # no LIKE wildcards
    assert [e["entity_id"] for e in mem.entities(ids=["bob", "zed"])[0]] == ["bob"]
    with pytest.raises(ConfigurationError) as err:
        mem.entities(limit=5000)
    assert err.value.argument == "limit"


def test_a_failed_job_is_retried_by_its_entity_only(mem: Memori) -> None:
    _turn(mem, "ann", "I like pears")
    assert mem.augmentation.wait(60)
    j = s.augmentation_job.c
    with mem.engine.begin() as c:
        c.execute(update(s.augmentation_job).values(status="failed", error="boom"))
    mem.attribution(entity_id="ann")
    counts, [job], _ = mem.jobs(statuses=["failed"])
    assert counts["failed"] == 1 and job["error"] == "boom"
    mem.attribution(entity_id="bob")
    assert mem.retry_job(job["id"]) is False
    mem.attribution(entity_id="ann")
    assert mem.retry_job(job["id"]) is True
    assert mem.retry_job(job["id"]) is False  # no longer failed
    assert mem.augmentation.wait(60)
    with mem.engine.connect() as c:
        assert c.execute(s.augmentation_job.select().where(j.id == job["id"])).one().status \
            == "done"
    with pytest.raises(ConfigurationError):
        mem.jobs(statuses=["lost"])


def test_schema_status(mem: Memori) -> None:
    assert mem.schema_status() == {"version": len(migrations.MIGRATIONS),
                                   "latest": len(migrations.MIGRATIONS)}


def test_a_database_from_before_the_key_table_migrates(db_url: str) -> None:
    from sqlalchemy import inspect, text

    from memori_core.testing import HashEmbedder

    old = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0)
    old.config.storage.build()
    old.attribution(entity_id="ann")
    old.capture([{"role": "user", "content": "I keep bees"}])
    with old.engine.begin() as c:  # as migration 4 left it (later migrations apply again)
        c.execute(text("DROP TABLE memori_api_key"))
        c.execute(s.schema_version.delete().where(s.schema_version.c.version >= 5))
    old.close()
    latest = len(migrations.MIGRATIONS)
    mem = Memori(conn=db_url, embedder=HashEmbedder(), augmentation_workers=0)
    try:
        assert mem.schema_status() == {"version": 4, "latest": latest}
        mem.config.storage.build()
        assert mem.schema_status() == {"version": latest, "latest": latest}
        with mem.engine.connect() as c:
            assert inspect(c).has_table("memori_api_key")
        mem.attribution(entity_id="ann")
        assert mem.processes()[0]["messages"] == 1
    finally:
        mem.close()
