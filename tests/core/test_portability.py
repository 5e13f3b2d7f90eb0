"""Export, import and forget (``mem.export`` / ``mem.import_`` / ``mem.forget`` and the CLI):
the export's shape, round trips across databases with the same recall, provenance and
supersession kept, forget erasing every row of an entity (or of one of its processes) and
nothing of anyone else, caches in this and other instances, and augmentation racing a forget."""

from __future__ import annotations

import base64
import copy
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from memori_core import ConfigurationError, Memori
from memori_core.augmentation.base import Conversation, ExtractedMemory, Extraction, Triple
from memori_core.cli import main
from memori_core.storage import packed
from memori_core.storage import schema as s
from memori_core.testing import HashEmbedder

QUERIES = ["where does the user live?", "what food does the user like?", "running at dawn",
           "peanuts allergy", "bees on the roof", "tool call"]
#: tables with an entity_id column
ENTITY_TABLES = [s.session, s.conversation, s.conversation_message, s.entity_fact,
                 s.process_attribute, s.knowledge_graph, s.augmentation_job]
PROCESS_TABLES = ENTITY_TABLES  # each of them has a process_id column too
TOOL_CALLS = [{"id": "call_1", "type": "function",
               "function": {"name": "log_run", "arguments": "{\"km\": 5}"}}]


@contextmanager
def built(url: str, **kwargs: Any) -> Iterator[Memori]:
    kwargs.setdefault("embedder", HashEmbedder())
    mem = Memori(conn=url, **kwargs)
    mem.config.storage.build()
    try:
        yield mem
    finally:
        mem.close()


def seed(mem: Memori) -> None:
    """ann: two personas and turns without one, in one session; a slot superseded; tool calls
    and content parts; a memory remembered directly. bob: one turn."""
    mem.attribution(entity_id="ann", process_id="coach")
    mem.set_session("s1")
    mem.capture([{"role": "system", "content": "You are a running coach"},
                 {"role": "user", "content": "I live in Lisbon"},
                 {"role": "assistant", "content": "Noted, a tool call follows",
                  "tool_calls": TOOL_CALLS},
                 {"role": "tool", "content": "logged", "tool_call_id": "call_1"}])
    mem.capture([{"role": "user", "content": [{"type": "text", "text": "I live in Porto now"}],
                  "metadata": {"via": "app"}}])
    mem.capture([{"role": "user", "content": "I prefer running at dawn"}])
    mem.remember("The user is allergic to peanuts", slot="allergy")
    mem.attribution(entity_id="ann", process_id="chef")
    mem.capture([{"role": "user", "content": "I prefer spicy food"}])
    mem.capture([{"role": "user", "content": "I prefer spicy food"}])  # mentioned twice
    mem.attribution(entity_id="ann")
    mem.capture([{"role": "user", "content": "I keep bees on the roof", "name": "Ann"}])
    mem.attribution(entity_id="bob", process_id="coach")
    mem.capture([{"role": "user", "content": "I live in Berlin and I prefer running at night"}])
    settle(mem)


def settle(mem: Memori) -> None:
    """Finish every queued augmentation job (with this instance's workers, or here)."""
    if mem.config.augmentation_workers:
        assert mem.augmentation.wait(60)
    else:
        while mem.augmentation.run_once():
            pass


def recalls(mem: Memori, entity: str) -> list[list[tuple[Any, ...]]]:
    """Every query under every process of the entity, both scopes, history included."""
    out = []
    for process in ("coach", "chef", None):
        mem.attribution(entity_id=entity, process_id=process)
        for query in QUERIES:
            for scope in ("process", "entity"):
                hits = mem.recall(query, limit=10, scope=scope, include_superseded=True)
                out.append([(h.content, h.kind, h.process_id, h.mention_count,
                             round(h.similarity, 5)) for h in hits])
    return out


def persona_recall(mem: Memori, entity: str, process: str) -> list[list[tuple[Any, ...]]]:
    """What each query finds for one persona, as sets: BM25 statistics are the entity's, so
    forgetting another persona may reorder hits, but never change which are found."""
    mem.attribution(entity_id=entity, process_id=process)
    return [sorted((h.content, h.kind, h.process_id, h.mention_count, round(h.similarity, 5))
                   for h in mem.recall(query, limit=100, include_superseded=True))
            for query in QUERIES]


def normalized(data: dict[str, Any]) -> dict[str, Any]:
    """The export with its row ids replaced by positions (they differ between databases)."""
    data = copy.deepcopy(data)
    data.pop("exported_at")
    msgs = {m["id"]: n for n, m in enumerate(
        m for sess in data["sessions"] for c in sess["conversations"] for m in c["messages"])}
    mems = {m["id"]: n for n, m in enumerate(data["memories"])}
    for sess in data["sessions"]:
        for c in sess["conversations"]:
            for m in c["messages"]:
                m["id"] = msgs[m["id"]]
    for m in data["memories"]:
        m["id"] = mems[m["id"]]
        m["superseded_by"] = None if m["superseded_by"] is None else mems[m["superseded_by"]]
        m["source_message_ids"] = [msgs[i] for i in m["source_message_ids"]]
    for t in data["triples"]:
        t["memory_id"] = None if t["memory_id"] is None else mems[t["memory_id"]]
    for j in data["jobs"]:
        j["message_ids"] = [msgs[i] for i in j["message_ids"]]
    return data


def memory_view(mem: Memori, entity: str) -> list[tuple[Any, ...]]:
    """The entity's memories with their links resolved to text: (content, kind, slot,
    process, mentions, text of the superseding memory, texts of the source messages)."""
    mem.attribution(entity_id=entity)
    memories = mem.memories(include_superseded=True, scope="entity")
    by_id = {m.id: m for m in memories}
    texts = {m["id"]: m["content"] for sess in mem.export(entity)["sessions"]
             for c in sess["conversations"] for m in c["messages"]}
    return sorted((m.content, m.kind, m.slot, m.process_id, m.mention_count,
                   None if m.superseded_by is None else by_id[m.superseded_by].content,
                   tuple(json.dumps(texts[i]) for i in m.source_message_ids))
                  for m in memories)


def entity_rows(mem: Memori, entity: str, process: str | None = None) -> dict[str, int]:
    """Rows of the entity (and process) per table, counted independently of forget."""
    with mem.engine.connect() as c:
        e = c.execute(select(s.entity.c.id).where(s.entity.c.external_id == entity)).scalar()
        p = None if process is None else c.execute(
            select(s.process.c.id).where(s.process.c.external_id == process)).scalar()
        out = {}
        for t in ENTITY_TABLES:
            q = select(func.count()).select_from(t).where(t.c.entity_id == e)
            if process is not None:
                q = q.where(t.c.process_id == p)
            out[t.name] = int(c.execute(q).scalar() or 0)
        f, mn, m = s.entity_fact.c, s.fact_mention.c, s.conversation_message.c
        facts = select(f.id).where(f.entity_id == e)
        msgs = select(m.id).where(m.entity_id == e)
        if process is not None:
            facts, msgs = facts.where(f.process_id == p), msgs.where(m.process_id == p)
        out[s.fact_mention.name] = int(c.execute(select(func.count()).select_from(
            s.fact_mention).where(mn.fact_id.in_(facts) | mn.message_id.in_(msgs))).scalar()
            or 0)
        out[s.entity.name] = int(e is not None and process is None)
        # packed vectors are the entity's, whatever their process: forget drops them all
        out[s.vector_block.name] = int(c.execute(select(func.count()).where(
            s.vector_block.c.entity_id == e)).scalar() or 0)
    return out


@pytest.fixture
def other_url(tmp_path: Path) -> str:
    """A second fresh SQLite database (``smem`` uses ``sqlite_url``)."""
    return f"sqlite:///{tmp_path / 'other.db'}"


def tables(mem: Memori) -> dict[str, int]:
    """Rows per table, but memori_meta (the workers record the model when they start)."""
    return {k: v for k, v in mem.stats()["tables"].items() if k != "memori_meta"}


# ---- export -------------------------------------------------------------------------------------
def test_export_shape(smem: Memori) -> None:
    seed(smem)
    data = smem.export(entity_id="ann")
    assert json.loads(json.dumps(data)) == data  # JSON as it is
    assert (data["format"], data["version"], data["entity_id"], data["process_id"]) == (
        "memori.export", 1, "ann", None)
    assert (data["embedding_model"], data["dimension"]) == ("memori-hash-256", 256)
    (session,) = data["sessions"]
    assert session["session_id"] == "s1" and session["process_id"] == "coach"
    messages = [m for c in session["conversations"] for m in c["messages"]]
    assert [m["content"] for m in messages][:2] == ["You are a running coach", "I live in Lisbon"]
    assert {m["process_id"] for m in messages} == {"coach", "chef", None}
    assert messages[2]["tool_calls"] == TOOL_CALLS
    assert messages[3]["tool_call_id"] == "call_1"
    assert messages[4]["content"] == [{"type": "text", "text": "I live in Porto now"}]
    assert messages[4]["metadata"] == {"via": "app"}
    assert messages[8]["name"] == "Ann"
    assert "Berlin" not in json.dumps(data)  # bob's
    by_content = {m["content"]: m for m in data["memories"]}
    # history and provenance
    lisbon, porto = by_content["The user lives in Lisbon"], by_content["The user lives in Porto now"]
    assert lisbon["slot"] == "lives_in" and lisbon["superseded_by"] == porto["id"]
    assert porto["superseded_by"] is None
    assert porto["source_message_ids"] == [messages[4]["id"]]
    assert by_content["I prefer spicy food"]["mention_count"] == 2
    assert len(by_content["I prefer spicy food"]["source_message_ids"]) == 2
    assert by_content["Ann: I keep bees on the roof"]["process_id"] is None
    # embeddings: float32 little-endian, the vector the embedder gives for the text
    peanuts = by_content["The user is allergic to peanuts"]
    vector = np.frombuffer(base64.b64decode(peanuts["embedding"]), dtype="<f4")
    assert np.allclose(vector, HashEmbedder().embed(["The user is allergic to peanuts"])[0])
    assert peanuts["source_message_ids"] == [] and peanuts["slot"] == "allergy"
    assert ("user", "lives_in", "lisbon") in {(t["subject"], t["predicate"], t["object"])
                                             for t in data["triples"]}
    assert [a["process_id"] for a in data["process_attributes"]] == ["coach"]
    assert data["jobs"] == []  # all done


def test_export_of_one_process_and_of_unknown_ids(smem: Memori) -> None:
    seed(smem)
    chef = smem.export(entity_id="ann", process_id="chef")
    assert chef["process_id"] == "chef"
    messages = [m for sess in chef["sessions"] for c in sess["conversations"]
                for m in c["messages"]]
    assert [m["content"] for m in messages] == ["I prefer spicy food"] * 2
    assert {m["process_id"] for m in chef["memories"]} == {"chef"}
    assert chef["process_attributes"] == []
    for entity, process in [("nobody", None), ("ann", "no-such-persona"), ("bob", "chef")]:
        empty = smem.export(entity_id=entity, process_id=process)
        assert empty["entity_id"] == entity
        assert all(empty[k] == [] for k in ("sessions", "memories", "triples",
                                            "process_attributes", "jobs"))
    # the default entity is the current attribution's (all of its processes)
    smem.attribution(entity_id="ann", process_id="chef")
    assert normalized(smem.export()) == normalized(smem.export(entity_id="ann"))
    smem.attribution(entity_id=None)
    with pytest.raises(ConfigurationError, match="attribution"):
        smem.export()
    with pytest.raises(ConfigurationError, match="process_id"):
        smem.export(entity_id="ann", process_id="")


# ---- import -------------------------------------------------------------------------------------
def test_round_trip_keeps_recall_provenance_and_history(db_url: str, sqlite_url: str) -> None:
    """db_url -> a fresh SQLite database, and back into db_url after a forget there."""
    with built(db_url) as a, built(sqlite_url) as b:
        seed(a)
        before, view = recalls(a, "ann"), memory_view(a, "ann")
        assert any(before) and any(h[1] == "attribute" for r in before for h in r)
        bob = normalized(a.export(entity_id="bob"))
        data = json.loads(json.dumps(a.export(entity_id="ann")))
        rows = {**entity_rows(a, "ann"), "memori_augmentation_job": 0}  # done jobs stay
        counts = b.import_(data)
        assert counts == rows
        assert recalls(b, "ann") == before
        assert memory_view(b, "ann") == view
        assert normalized(b.export(entity_id="ann")) == normalized(data)
        assert entity_rows(b, "ann") == rows
        # and back: forget in the first database, import what the second exports
        a.forget("ann")
        assert a.import_(b.export(entity_id="ann")) == rows
        assert recalls(a, "ann") == before
        assert memory_view(a, "ann") == view
        assert normalized(a.export(entity_id="bob")) == bob


def test_import_twice_is_refused_and_changes_nothing(smem: Memori, other_url: str) -> None:
    seed(smem)
    data = smem.export(entity_id="ann")
    with built(other_url) as b:
        b.import_(data)
        stats = tables(b)
        with pytest.raises(ConfigurationError, match="entity 'ann' already has rows"):
            b.import_(data)
        assert tables(b) == stats
        # under another entity id it is a copy with the same recall
        assert b.import_(data, entity_id="ann-copy")["memori_entity_fact"] == len(
            data["memories"])
        assert recalls(b, "ann-copy") == recalls(b, "ann")
        # a process export merges into an entity that lacks that process, once
        chef = smem.export(entity_id="ann", process_id="chef")
        coach = smem.export(entity_id="ann", process_id="coach")
        b.import_(coach, entity_id="ann2")
        chef_counts = b.import_(chef, entity_id="ann2")  # into coach's session s1
        assert (chef_counts["memori_entity"], chef_counts["memori_session"]) == (0, 0)
        assert chef_counts["memori_conversation_message"] == 2
        with pytest.raises(ConfigurationError, match="entity 'ann2' / process 'chef'"):
            b.import_(chef, entity_id="ann2")
        b.attribution(entity_id="ann2", process_id="chef")
        # the turn and the preference drawn from it: one hit standing for both memories
        [spicy] = b.recall("spicy food")
        assert spicy.content == "The user prefers spicy food" and len(spicy.memory_ids) == 2


def test_import_with_another_embedding_model_reembeds(smem: Memori, other_url: str) -> None:
    """A 256-d export into a 128-d database: every memory is embedded again, as `reembed`
    would have done on the source."""
    seed(smem)
    data = smem.export(entity_id="ann")
    with built(other_url, embedder=HashEmbedder(128)) as b:
        b.import_(data)
        got = recalls(b, "ann")
        assert b.memories(scope="entity")  # attribution is ann's (set by recalls)
        with b.engine.connect() as c:
            assert set(c.execute(select(s.entity_fact.c.embedding_model)).scalars()) == {
                "memori-hash-128"}
    with built(smem.engine.url.render_as_string(hide_password=False),
               embedder=HashEmbedder(128)) as source128:
        source128.reembed()
        assert recalls(source128, "ann") == got


def test_unfinished_turns_travel_as_jobs(sqlite_url: str, db_url: str) -> None:
    with built(sqlite_url, augmentation_workers=0) as a:
        a.attribution(entity_id="ann", process_id="coach")
        a.capture([{"role": "user", "content": "I live in Lisbon"}])
        data = a.export(entity_id="ann")
    (job,) = data["jobs"]
    assert job["status"] == "queued" and data["memories"] == []
    with built(db_url) as b:
        assert b.import_(data)["memori_augmentation_job"] == 1
        assert b.augmentation.wait(60)
        b.attribution(entity_id="ann", process_id="coach")
        hits = b.recall("where does the user live?")
        assert [h.content for h in hits] == ["The user lives in Lisbon"]
        assert len(hits[0].memory_ids) == 2  # with the turn it came from
        (message,) = [m for m in b.session_messages(data["sessions"][0]["session_id"])]
        assert all(h.source_message_ids == (message["id"],) for h in hits)


INVALID = [
    (lambda d: d.update(version=2), r"export field version is 2; this memori reads version\(s\) 1"),
    (lambda d: d.update(format="other"), "export field format is 'other'"),
    (lambda d: d.pop("entity_id"), "export field entity_id is required"),
    (lambda d: d.update(colour="red"), "export field colour is not part of format version 1"),
    (lambda d: d["memories"][0].update(kind="rumour"), r"memories\[0\].kind is 'rumour'"),
    (lambda d: d["memories"][0].update(superseded_by=10**9),
     r"memories\[0\].superseded_by is 1000000000, not the id of a memory"),
    (lambda d: d["memories"][0].update(source_message_ids=[10**9]),
     r"memories\[0\].source_message_ids has 1000000000"),
    (lambda d: d["memories"][0].update(embedding="AAAA"), r"memories\[0\].embedding holds 3 bytes"),
    (lambda d: d["memories"][0].update(created_at="yesterday"),
     r"memories\[0\].created_at is not an ISO 8601"),
    (lambda d: d["memories"].append(dict(d["memories"][0], id=10**9)),
     r"memories\[\d+\] repeats memory"),
    (lambda d: d["sessions"][0]["conversations"][0]["messages"][0].update(role="robot"),
     r"sessions\[0\].conversations\[0\].messages\[0\]\['role'\] is 'robot'"),
    (lambda d: d["triples"][0].update(subject=""), r"triples\[0\].subject must be a non-empty"),
    (lambda d: d["jobs"].append({"message_ids": [], "status": "queued",
                                  "created_at": d["exported_at"]}),
     r"jobs\[0\].message_ids must list ids"),
]


def test_invalid_exports_are_refused_before_anything_is_written(smem: Memori,
                                                                other_url: str) -> None:
    seed(smem)
    with built(other_url) as b:
        stats = tables(b)
        for change, message in INVALID:
            data = smem.export(entity_id="ann")
            change(data)
            with pytest.raises(ConfigurationError, match=message) as info:
                b.import_(data)
            assert info.value.argument == "data"
            assert tables(b) == stats
    with pytest.raises(ConfigurationError, match="must be a JSON object"):
        smem.import_([data])  # type: ignore[arg-type]


# ---- forget -------------------------------------------------------------------------------------
def test_forget_erases_every_row_of_the_entity_and_nothing_else(db_url: str) -> None:
    with built(db_url, augmentation_workers=0) as mem:
        seed_with_queue(mem)
        ann = mem._store.find_pk("entity", "ann")
        assert ann is not None
        with mem.engine.begin() as c:  # ann's vectors packed, as a large entity's are
            assert packed.pack(c, [ann], mem.embedder.dim, min_rows=1) > 0
        rows = entity_rows(mem, "ann")
        assert all(rows.values())  # every table holds some of ann's rows
        bob, bob_rows = normalized(mem.export(entity_id="bob")), entity_rows(mem, "bob")
        mem.attribution(entity_id="ann")
        pk = mem._store.find_pk("entity", "ann")
        counts = mem.forget("ann")
        assert counts == rows
        with mem.engine.connect() as c:
            for t in ENTITY_TABLES:
                assert c.execute(select(func.count()).select_from(t)
                                 .where(t.c.entity_id == pk)).scalar() == 0, t.name
            assert c.execute(select(func.count()).select_from(s.entity)
                             .where(s.entity.c.id == pk)).scalar() == 0
            # provenance left only for bob's memories
            mn, f = s.fact_mention.c, s.entity_fact.c
            assert set(c.execute(select(f.entity_id).join_from(
                s.fact_mention, s.entity_fact, mn.fact_id == f.id)).scalars()) <= {
                mem._store.find_pk("entity", "bob")}
        assert mem.recall("where does the user live?", scope="entity") == []
        assert mem.memories(scope="entity") == []
        assert mem.augmentation.pending() == 1  # bob's queued turn
        assert normalized(mem.export(entity_id="bob")) == bob
        assert entity_rows(mem, "bob") == bob_rows
        assert mem.forget("ann") == {k: 0 for k in counts}
        assert mem.forget("nobody", process_id="coach") == {k: 0 for k in counts}
        # the same id again is a new, empty entity
        mem.capture([{"role": "user", "content": "I keep goats"}])
        settle(mem)
        assert [(h.content, len(h.memory_ids)) for h in mem.recall("goats")] == [
            ("The user keeps goats", 2)]


def seed_with_queue(mem: Memori) -> None:
    """``seed`` plus a failed and a queued job of ann's and a queued one of bob's (on an
    instance without workers)."""
    seed(mem)
    mem.attribution(entity_id="ann", process_id="chef")
    mem.capture([{"role": "user", "content": "I prefer tea"}])
    with mem.engine.begin() as c:  # one of ann's jobs failed for good
        j = s.augmentation_job.c
        last = c.execute(select(func.max(j.id))).scalar()
        c.execute(s.augmentation_job.update().where(j.id == last).values(
            status="failed", error="boom", attempts=5))
    mem.capture([{"role": "user", "content": "I prefer coffee"}])
    mem.attribution(entity_id="bob", process_id="coach")
    mem.capture([{"role": "user", "content": "I prefer rain"}])


def test_forget_one_process(db_url: str) -> None:
    with built(db_url, augmentation_workers=0) as mem:
        seed_with_queue(mem)
        with mem.engine.begin() as c:  # an extractor's summary of the shared conversation
            c.execute(s.conversation.update().values(summary="likes spicy food"))
        rows = entity_rows(mem, "ann", "chef")
        coach = normalized(mem.export(entity_id="ann", process_id="coach"))
        # a conversation shared with other processes is exported without its summary
        assert [c["summary"] for sess in coach["sessions"] for c in sess["conversations"]] == [
            None]
        coach_recall = persona_recall(mem, "ann", "coach")
        chef_texts = [m["content"] for m in mem.export(entity_id="ann",
                                                       process_id="chef")["memories"]]
        assert "I prefer spicy food" in chef_texts
        counts = mem.forget("ann", process_id="chef")
        # s1, shared with coach, stays; the default session, chef's alone (tea, coffee), goes
        assert counts == rows
        assert (rows["memori_session"], rows["memori_conversation"]) == (1, 1)
        assert [sess["session_id"] for sess in mem.export(entity_id="ann")["sessions"]] == ["s1"]
        assert entity_rows(mem, "ann", "chef") == {k: 0 for k in rows}
        assert normalized(mem.export(entity_id="ann", process_id="coach")) == coach
        assert persona_recall(mem, "ann", "coach") == coach_recall
        everything = json.dumps(mem.export(entity_id="ann"))
        assert not any(text in everything for text in chef_texts + ["likes spicy food"])
        mem.attribution(entity_id="ann", process_id="chef")
        assert {h.process_id for h in mem.recall("I prefer", limit=50, scope="entity")} <= {
            "coach", None}


def test_forget_of_a_process_that_had_its_own_session(smem: Memori) -> None:
    smem.attribution(entity_id="ann", process_id="chef")
    smem.set_session("kitchen")
    smem.capture([{"role": "user", "content": "I prefer spicy food"}])
    smem.attribution(entity_id="ann", process_id="coach")
    smem.set_session("track")
    smem.capture([{"role": "user", "content": "I run at dawn"}])
    assert smem.augmentation.wait(30)
    counts = smem.forget("ann", process_id="chef")
    assert (counts["memori_session"], counts["memori_conversation"]) == (1, 1)
    assert [sess["session_id"] for sess in smem.export(entity_id="ann")["sessions"]] == ["track"]


def test_forget_drops_the_cache_here_and_other_instances_see_it(db_url: str) -> None:
    with built(db_url) as a, built(db_url) as b:
        seed(a)
        b.attribution(entity_id="ann", process_id="coach")
        b.capture([{"role": "user", "content": "I like hiking"}])  # b caches ann's row ids
        assert b.augmentation.wait(60)
        for mem in (a, b):  # both recall caches warm
            mem.attribution(entity_id="bob", process_id="coach")
            assert mem.recall("where does the user live?")
            mem.attribution(entity_id="ann", process_id="coach")
            assert mem.recall("where does the user live?")
        assert len(a._recaller.cache) == 2
        a.forget("ann")
        assert len(a._recaller.cache) == 1
        assert b.recall("where does the user live?", scope="entity",
                        include_superseded=True) == []
        assert b.memories(scope="entity", include_superseded=True) == []
        b.attribution(entity_id="bob", process_id="coach")
        assert "The user lives in Berlin and they prefer running at night" in [
            h.content for h in b.recall("Berlin")]
    with built(db_url) as a, built(db_url) as b:
        a.attribution(entity_id="cy", process_id="coach")
        b.attribution(entity_id="cy", process_id="coach")
        a.capture([{"role": "user", "content": "I like hiking"}])
        b.capture([{"role": "user", "content": "I like climbing"}])  # cy's ids cached in b
        assert a.augmentation.wait(60)
        a.forget("cy")
        # b writes for cy at once, with stale entity and session ids: cy starts afresh
        b.remember("The user keeps goats")
        b.capture([{"role": "user", "content": "I keep goats"}])
        assert b.augmentation.wait(60)
        for mem in (a, b):
            mem.attribution(entity_id="cy", process_id="coach")
            assert [(h.content, len(h.memory_ids)) for h in mem.recall(
                "the user likes hiking, climbing, goats", limit=20)] == [
                ("The user keeps goats", 2)]


def test_stale_ids_of_a_forgotten_entity_never_mix_entities(db_url: str) -> None:
    """An instance that still caches a forgotten entity's ids (and its recall index) neither
    writes into nor reads another entity's rows: ids are never reused (SQLite included), and
    a stale id fails and is looked up again."""
    with built(db_url) as a, built(db_url) as b:
        b.attribution(entity_id="old", process_id="coach")
        b.capture([{"role": "user", "content": "I keep bees"}])  # b caches old's ids
        assert b.augmentation.wait(60)
        b.recall("bees")  # and its recall index
        old_pk = b._store.find_pk("entity", "old")
        a.forget("old")
        a.attribution(entity_id="new", process_id="coach")
        a.capture([{"role": "user", "content": "I keep goats"}])
        assert a.augmentation.wait(60)
        assert a._store.find_pk("entity", "new") != old_pk  # SQLite: AUTOINCREMENT
        b.capture([{"role": "user", "content": "I keep eels"}])  # "old" comes back
        b.remember("The user keeps eels")
        assert b.augmentation.wait(60)
        for mem in (a, b):
            mem.attribution(entity_id="new", process_id="coach")
            assert [(h.content, len(h.memory_ids)) for h in mem.recall(
                "the user keeps bees, goats, eels", limit=20)] == [("The user keeps goats", 2)]
            mem.attribution(entity_id="old", process_id="coach")
            assert [(h.content, len(h.memory_ids)) for h in mem.recall(
                "the user keeps bees, goats, eels", limit=20)] == [("The user keeps eels", 2)]
        assert "eels" not in json.dumps(a.export(entity_id="new"))


def test_sqlite_ids_of_forgotten_rows_are_never_reused(tmp_path: Path) -> None:
    """Migration 3 rebuilds the tables of an older SQLite database with AUTOINCREMENT (rows,
    indexes and foreign keys kept); afterwards a forgotten entity's ids never come back."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'old.db'}"
    with built(url) as mem:
        seed(mem)
        before = {e: normalized(mem.export(entity_id=e)) for e in ("ann", "bob")}
    raw = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    # a version-2 database has no table of a later migration (5: memori_api_key; 7:
    # memori_vector_block; 8: memori_term_block)
    later = ("memori_api_key", "memori_term_block", "memori_vector_block")
    tables = [(n, q) for n, q in raw.execute("SELECT name, sql FROM sqlite_master "
                                             "WHERE type = 'table'")
              if "AUTOINCREMENT" in q and n not in later]
    assert len(tables) == 9
    for name in later:
        raw.execute(f"DROP TABLE {name}")
    raw.execute("PRAGMA foreign_keys = OFF")  # back to a version-2 database: no AUTOINCREMENT
    raw.execute("PRAGMA legacy_alter_table = ON")
    raw.execute("BEGIN")
    for name, sql in tables:
        indexes = raw.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                              "tbl_name = ? AND sql IS NOT NULL", (name,)).fetchall()
        raw.execute(f"ALTER TABLE {name} RENAME TO {name}_v2")
        for index, _ in indexes:
            raw.execute(f"DROP INDEX {index}")
        raw.execute(sql.replace(" AUTOINCREMENT", ""))
        for _, index_sql in indexes:
            raw.execute(index_sql)
        raw.execute(f"INSERT INTO {name} SELECT * FROM {name}_v2")
        raw.execute(f"DROP TABLE {name}_v2")
    raw.execute("DELETE FROM memori_schema_version WHERE version >= 3")
    raw.execute("COMMIT")
    raw.close()
    with built(url) as mem:
        with mem.engine.connect() as c:
            ddl = dict(c.exec_driver_sql("SELECT name, sql FROM sqlite_master "
                                         "WHERE type = 'table'").all())
            # and memori_api_key, memori_vector_block, memori_term_block
            assert sum("AUTOINCREMENT" in q for q in ddl.values()) == 12
            assert not any("_v2" in q or "before" in q for q in ddl.values())
            assert c.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert {e: normalized(mem.export(entity_id=e)) for e in ("ann", "bob")} == before
        with mem.engine.connect() as c:
            high = {t.name: c.execute(select(func.max(t.c.id))).scalar()
                    for t in [s.entity, *ENTITY_TABLES]}
        assert all(high.values())
        mem.forget("bob")  # bob's rows were the newest
        mem.attribution(entity_id="cy", process_id="coach")
        mem.set_session("s9")
        mem.capture([{"role": "user", "content": "I live in Faro"}])
        settle(mem)
        cy = mem._store.find_pk("entity", "cy")
        assert cy is not None and cy > high["memori_entity"]
        with mem.engine.connect() as c:
            for t in ENTITY_TABLES:
                new = c.execute(select(func.min(t.c.id)).where(t.c.entity_id == cy)).scalar()
                assert new is None or new > high[t.name], t.name


class GatedExtractor:
    """Blocks inside ``extract`` until released, so a forget can run while a worker holds a
    claimed job; then returns a memory, a triple and a process attribute to write."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def extract(self, conversation: Conversation) -> Extraction:
        self.started.set()
        assert self.release.wait(30)
        ids = tuple(m["id"] for m in conversation.messages)
        return Extraction(memories=[ExtractedMemory("The user keeps bees", "fact", ids)],
                          triples=[Triple("user", "keeps", "bees")],
                          process_attributes=["Speaks French"], summary="bees")


@pytest.mark.parametrize("process", [None, "coach"])
def test_a_job_running_during_forget_writes_nothing_afterwards(db_url: str,
                                                               process: str | None) -> None:
    gate = GatedExtractor()
    with built(db_url, extractor=gate, augmentation_workers=0) as mem:
        mem.attribution(entity_id="ann", process_id="coach")
        mem.capture([{"role": "system", "content": "You are a beekeeper"},
                     {"role": "user", "content": "I keep bees"}])
        done: list[int] = []
        worker = threading.Thread(target=lambda: done.append(mem.augmentation.run_once()))
        worker.start()
        assert gate.started.wait(30)  # the job is claimed and being extracted
        counts = mem.forget("ann", process_id=process)
        assert counts["memori_augmentation_job"] == 1
        gate.release.set()
        worker.join(30)
        assert done == [1]
        assert entity_rows(mem, "ann", process) == {k: 0 for k in counts}
        with mem.engine.connect() as c:
            for t in (s.entity_fact, s.knowledge_graph, s.process_attribute, s.fact_mention):
                assert c.execute(select(func.count()).select_from(t)).scalar() == 0, t.name
        # dropped quietly: not a failure, not a retry
        counters = mem.stats()["augmentation"]
        assert (counters["jobs_done"], counters["jobs_failed"], counters["jobs_retried"]) == (
            0, 0, 0)
        assert mem.augmentation.failed() == [] and mem.augmentation.pending() == 0


# ---- command line -------------------------------------------------------------------------------
def test_cli_export_import_forget(sqlite_url: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Turns still queued travel through the CLI (no embedding model needed), and are
    augmented in the target into what the source gives."""
    db_url = f"sqlite:///{tmp_path / 'target.db'}"
    with built(sqlite_url, augmentation_workers=0) as a:
        a.attribution(entity_id="ann", process_id="coach")
        a.capture([{"role": "user", "content": "I live in Lisbon"}])
        a.capture([{"role": "user", "content": "I prefer running at dawn"}])
    out = tmp_path / "ann.json"
    assert main(["export", "--db", sqlite_url, "--entity", "ann", "--out", str(out)]) == 0
    assert "exported 2 message(s), 0 memories" in capsys.readouterr().out
    assert main(["export", "--db", sqlite_url, "--entity", "ann"]) == 0
    assert normalized(json.loads(capsys.readouterr().out)) == normalized(
        json.loads(out.read_text()))
    assert main(["import", "--db", db_url, str(out), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert (counts["memori_conversation_message"], counts["memori_augmentation_job"]) == (2, 2)
    assert main(["import", "--db", db_url, str(out)]) == 2
    assert "already has rows" in capsys.readouterr().err
    with built(sqlite_url) as a, built(db_url) as b:
        assert a.augmentation.wait(60) and b.augmentation.wait(60)
        assert recalls(b, "ann") == recalls(a, "ann")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal
    assert main(["forget", "--db", db_url, "--entity", "ann"]) == 2
    assert "pass --yes to confirm" in capsys.readouterr().err
    assert main(["forget", "--db", db_url, "--entity", "ann", "--yes", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert (counts["memori_conversation_message"], counts["memori_entity_fact"],
            counts["memori_entity"]) == (2, 4, 1)
    # an erasure (or export) that would do nothing says so, with the ids meant
    with built(db_url) as b:
        b.attribution(entity_id="alice")
        b.capture([{"role": "user", "content": "hello"}])
    assert main(["forget", "--db", db_url, "--entity", "ann", "--yes"]) == 2
    assert "no entity 'ann'" in capsys.readouterr().err
    assert main(["forget", "--db", db_url, "--entity", "alcie", "--yes"]) == 2
    assert "did you mean 'alice'?" in capsys.readouterr().err
    assert main(["export", "--db", db_url, "--entity", "alice", "--process", "cocah"]) == 2
    assert "no process 'cocah'" in capsys.readouterr().err
    assert main(["import", "--db", db_url, str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    # a failed import into a new SQLite file leaves no file behind
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "memori.export", "version": 99}))
    fresh = tmp_path / "fresh.db"
    assert main(["import", "--db", f"sqlite:///{fresh}", str(bad)]) == 2
    assert "version" in capsys.readouterr().err
    assert not fresh.exists()


# ---- README -------------------------------------------------------------------------------------
def test_readme_block_runs_and_prints_the_documented_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's "Export, import and forget" block, with the HashEmbedder standing in for
    the local model (as the provider examples do)."""
    import contextlib
    import functools
    import re

    import memori_core

    readme = Path(__file__).resolve().parents[2] / "README.md"
    text = readme.read_text(encoding="utf-8")
    section = text[text.index("## Export, import and forget"):]
    found = re.search(r"```python\n(.*?)```\n\nprints\n\n```\n(.*?)```", section, re.S)
    assert found is not None
    code, documented = found.groups()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEMORI_DATABASE_URL", raising=False)
    monkeypatch.setattr(memori_core, "Memori", functools.partial(memori_core.Memori,
                                                                 embedder=HashEmbedder()))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(readme), "exec"), {"__name__": "readme"})
    assert out.getvalue() == documented
    with built(f"sqlite:///{tmp_path / 'copy.db'}") as copy:
        copy.attribution(entity_id="export-user", process_id="coach")
        assert [(h.content, len(h.memory_ids)) for h in copy.recall(
            "where does the user live?")] == [("The user lives in Lisbon", 2)]


def test_an_entity_forgotten_and_made_again_elsewhere_is_found_at_once(db_url: str) -> None:
    """Found by the long isolation property test: instance A cached the entity's row id;
    instance B forgot the entity and it was made again under a new id. A's very next recall,
    listing, history and deletions must use the new row, not come back empty."""
    with built(db_url, augmentation_workers=0) as a, built(db_url, augmentation_workers=0) as b:
        a.attribution(entity_id="again", process_id="agent")
        a.remember("The user keeps bees")
        a.capture([{"role": "user", "content": "hello before"}])
        assert [h.content for h in a.recall("bees")] == ["The user keeps bees"]  # id cached

        b.forget("again")
        b.attribution(entity_id="again", process_id="agent")
        b.remember("The user keeps goats")
        b.set_session(a.session_id or "")
        ids = b.capture([{"role": "user", "content": "hello after"}])

        assert [h.content for h in a.recall("keeps")] == ["The user keeps goats"]
        assert [m.content for m in a.memories()] == ["The user keeps goats"]
        assert [m["id"] for m in a.session_messages()] == ids
        [goats] = a.memories()
        assert a.forget_memories([goats.id]) == 1
        assert b.memories() == []
