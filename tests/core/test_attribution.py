"""Attribution scoping, instance lifetime, sessions and the conversation idle timeout."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from memori_core import ConfigurationError, Memori, StorageError
from memori_core.storage import schema
from memori_core.testing import HashEmbedder


def augmentation_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("memori-augmentation")}


def test_attribution_returns_the_instance(mem: Memori) -> None:
    assert mem.attribution(entity_id="a") is mem
    assert mem.attribution(entity_id="a", process_id="p") is mem
    assert (mem.entity_id, mem.process_id) == ("a", "p")
    assert mem.attribution(entity_id="a", process_id="p").capture(
        [{"role": "user", "content": "chained"}])


def test_with_attribution_restores_the_previous_one_and_keeps_mem_open(mem: Memori) -> None:
    mem.attribution(entity_id="outer", process_id="outer-agent")
    mem.capture([{"role": "user", "content": "outer first"}])
    outer_session = mem.session_id
    assert outer_session is not None

    with mem.attribution(entity_id="inner") as m:
        assert m is mem
        assert (mem.entity_id, mem.process_id) == ("inner", None)
        mem.capture([{"role": "user", "content": "inner turn"}])
        inner_session = mem.session_id
        with mem.attribution(entity_id="innermost", process_id="deep"):
            assert (mem.entity_id, mem.process_id) == ("innermost", "deep")
            mem.capture([{"role": "user", "content": "innermost turn"}])
        assert (mem.entity_id, mem.process_id, mem.session_id) == ("inner", None, inner_session)
    assert (mem.entity_id, mem.process_id, mem.session_id) == (
        "outer", "outer-agent", outer_session)

    with pytest.raises(RuntimeError, match="boom"), mem.attribution(entity_id="failing"):
        raise RuntimeError("boom")
    assert (mem.entity_id, mem.process_id) == ("outer", "outer-agent")

    # still open: capture, augmentation and recall work, in the outer session
    mem.capture([{"role": "user", "content": "outer second"}])
    assert [m["content"] for m in mem.session_messages()] == ["outer first", "outer second"]
    assert mem.augmentation.wait(timeout=30)
    assert [h.content for h in mem.recall("outer second")][:1] == ["outer second"]
    with mem.engine.connect() as c:
        rows = c.execute(text(
            "SELECT e.external_id, m.content FROM memori_conversation_message m "
            "JOIN memori_entity e ON e.id = m.entity_id ORDER BY m.id")).all()
    assert [tuple(r) for r in rows] == [
        ("outer", "outer first"), ("inner", "inner turn"), ("innermost", "innermost turn"),
        ("outer", "outer second")]


def test_with_attribution_without_any_before(mem: Memori) -> None:
    with mem.attribution(entity_id="only-inside"):
        mem.capture([{"role": "user", "content": "inside"}])
    assert (mem.entity_id, mem.process_id) == (None, None)
    with pytest.raises(ConfigurationError, match="attribution"):
        mem.capture([{"role": "user", "content": "outside"}])


def test_with_memori_closes_on_exit(db_url: str) -> None:
    before = augmentation_threads()
    with Memori(conn=db_url, embedder=HashEmbedder()) as m:
        m.config.storage.build()
        m.attribution(entity_id="scoped")
        m.capture([{"role": "user", "content": "inside the with block"}])
        assert m.augmentation.wait(timeout=30)
        assert [h.content for h in m.recall("inside the with block")] == ["inside the with block"]
        started = augmentation_threads() - before
        assert started
    assert not any(t.is_alive() for t in started)
    with pytest.raises(StorageError, match="closed"):
        m.capture([{"role": "user", "content": "after close"}])
    with pytest.raises(StorageError, match="closed"):
        m.recall("inside the with block")
    m.close()  # idempotent
    with Memori(conn=db_url, embedder=HashEmbedder()) as again:
        again.attribution(entity_id="scoped")
        assert [h.content for h in again.recall("inside the with block")] == [
            "inside the with block"]
        again.set_session(str(uuid.uuid4()))
        assert again.capture([{"role": "user", "content": "after close"}])
    with Memori(conn=db_url, embedder=HashEmbedder()) as check, check.engine.connect() as c:
        assert c.execute(text("SELECT content FROM memori_conversation_message ORDER BY id")
                         ).scalars().all() == ["inside the with block", "after close"]


def test_with_memori_closes_on_error_and_leaves_attribution_alone(mem: Memori,
                                                                  db_url: str) -> None:
    mem.attribution(entity_id="kept", process_id="kept-agent")
    opened: list[Memori] = []

    def use_then_fail() -> None:
        with Memori(conn=db_url, embedder=HashEmbedder()) as other:
            opened.append(other)
            other.attribution(entity_id="kept", process_id="kept-agent")
            other.capture([{"role": "user", "content": "from the other instance"}])
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        use_then_fail()
    (other,) = opened
    with pytest.raises(StorageError, match="closed"):
        other.capture([{"role": "user", "content": "no"}])
    assert (mem.entity_id, mem.process_id) == ("kept", "kept-agent")
    mem.capture([{"role": "user", "content": "mem still works"}])
    # each instance has its own attribution and so its own session
    assert [m["content"] for m in mem.session_messages()] == ["mem still works"]


def test_attribution_of_one_instance_never_applies_to_another(mem: Memori, db_url: str) -> None:
    mem.attribution(entity_id="alice", process_id="app-a")
    with Memori(conn=db_url, embedder=HashEmbedder()) as other:
        assert (other.entity_id, other.process_id) == (None, None)
        assert other.session_id != mem.session_id  # each instance its own default session
        with pytest.raises(ConfigurationError, match="attribution"):
            other.capture([{"role": "user", "content": "whose is this?"}])
        other.attribution(entity_id="bob")
        assert mem.entity_id == "alice"


# ---- sessions ---------------------------------------------------------------------------------------

def test_new_session_and_set_session(mem: Memori) -> None:
    mem.attribution(entity_id="sess", process_id="agent")
    first = mem.session_id  # the instance's default session
    assert uuid.UUID(first)
    mem.capture([{"role": "user", "content": "first session"}])
    assert mem.session_id == first

    second = mem.new_session()
    assert second != first and uuid.UUID(second) and mem.session_id == second
    mem.capture([{"role": "user", "content": "second session"}])
    assert [m["content"] for m in mem.session_messages()] == ["second session"]
    assert [m["content"] for m in mem.session_messages(first)] == ["first session"]

    assert mem.set_session(first) == first
    assert mem.session_id == first
    mem.capture([{"role": "user", "content": "back in the first"}])
    assert [m["content"] for m in mem.session_messages()] == ["first session",
                                                              "back in the first"]
    assert mem.set_session("my-own-id") == "my-own-id"
    mem.capture([{"role": "user", "content": "named session"}])
    assert [m["content"] for m in mem.session_messages("my-own-id")] == ["named session"]

    # the same attribution again keeps the session; another entity starts without one
    mem.attribution(entity_id="sess", process_id="agent")
    assert mem.session_id == "my-own-id"
    mem.attribution(entity_id="someone-else", process_id="agent")
    assert mem.session_id == first  # back to the default id: for this entity, its own session
    mem.set_session("my-own-id")  # a session id is per entity: this is a different session
    assert mem.session_messages() == []
    mem.capture([{"role": "user", "content": "someone else's"}])
    assert [m["content"] for m in mem.session_messages()] == ["someone else's"]
    with mem.engine.connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM memori_session WHERE external_id = "
                              "'my-own-id'")).scalar_one() == 2


def conversations(mem: Memori, session: str) -> list[int]:
    with mem.engine.connect() as c:
        return list(c.execute(text(
            "SELECT c.id FROM memori_conversation c JOIN memori_session s ON s.id = c.session_id "
            "WHERE s.external_id = :s ORDER BY c.id"), {"s": session}).scalars())


def idle(mem: Memori, session: str, seconds: float) -> None:
    """Make the session's conversations look idle for ``seconds``."""
    conv, sess = schema.conversation, schema.session
    with mem.engine.connect() as c:
        rows = c.execute(select(conv.c.id, conv.c.last_activity_at)
                         .join(sess, sess.c.id == conv.c.session_id)
                         .where(sess.c.external_id == session)).all()
    with mem.engine.begin() as c:
        for cid, last in rows:
            c.execute(update(conv).where(conv.c.id == cid)
                      .values(last_activity_at=last - timedelta(seconds=seconds)))


def test_new_conversation_after_the_idle_timeout(db_url: str) -> None:
    with Memori(conn=db_url, embedder=HashEmbedder(), session_timeout_minutes=0.0001) as m:
        m.config.storage.build()
        m.attribution(entity_id="idle", process_id="agent")
        session = m.new_session()
        first = m.capture([{"role": "user", "content": "before the pause"}])
        idle(m, session, 1)  # 1 s > 0.0001 min
        second = m.capture([{"role": "user", "content": "after the pause"}])
        convs = conversations(m, session)
        assert len(convs) == 2
        with m.engine.connect() as c:
            by_message = dict(c.execute(text(
                "SELECT id, conversation_id FROM memori_conversation_message")).all())
            jobs = c.execute(text("SELECT conversation_id FROM memori_augmentation_job ORDER BY id"
                                  )).scalars().all()
        assert by_message == {first[0]: convs[0], second[0]: convs[1]}
        assert jobs == convs
        # the session still holds both turns
        assert [x["content"] for x in m.session_messages()] == ["before the pause",
                                                                "after the pause"]


def test_same_conversation_within_the_timeout(db_url: str) -> None:
    with Memori(conn=db_url, embedder=HashEmbedder(), session_timeout_minutes=1) as m:
        m.config.storage.build()
        m.attribution(entity_id="busy", process_id="agent")
        session = m.new_session()
        m.capture([{"role": "user", "content": "one"}])
        idle(m, session, 50)  # under a minute
        m.capture([{"role": "user", "content": "two"}])
        m.capture([{"role": "user", "content": "three"}])
        assert len(conversations(m, session)) == 1
        idle(m, session, 70)  # over a minute
        m.capture([{"role": "user", "content": "four"}])
        convs = conversations(m, session)
        assert len(convs) == 2
        with m.engine.connect() as c:
            per_conv = c.execute(text(
                "SELECT conversation_id, COUNT(*) FROM memori_conversation_message "
                "GROUP BY conversation_id ORDER BY conversation_id")).all()
        assert [tuple(r) for r in per_conv] == [(convs[0], 3), (convs[1], 1)]


def test_threads_of_one_user_continue_one_session_by_default(mem: Memori) -> None:
    """Like the worker threads of a web server: each request sets the user and captures; with no
    explicit session they all continue the instance's default session for that user."""
    def request(n: int) -> None:
        mem.attribution(entity_id="web-user", process_id="api")
        mem.capture([{"role": "user", "content": f"request {n}"}])

    pool = [threading.Thread(target=request, args=(n,)) for n in range(4)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    mem.attribution(entity_id="web-user", process_id="api")
    assert sorted(m["content"] for m in mem.session_messages()) == [
        f"request {n}" for n in range(4)]
    with mem.engine.connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM memori_session")).scalar_one() == 1


def test_an_older_turn_never_moves_the_conversation_back(db_url: str) -> None:
    """Imported history carries its own clock: a turn dated before the conversation's last
    activity joins it without moving ``last_activity_at`` back."""
    with Memori(conn=db_url, embedder=HashEmbedder(), session_timeout_minutes=1) as m:
        m.config.storage.build()
        m.attribution(entity_id="importer", process_id="agent")
        session = m.new_session()
        m.capture([{"role": "user", "content": "now"}])
        conv = schema.conversation.c
        with m.engine.connect() as c:
            last = c.execute(select(conv.last_activity_at)).scalar_one()
        m.capture([{"role": "user", "content": "earlier",
                    "created_at": last - timedelta(seconds=20)}])
        assert len(conversations(m, session)) == 1
        with m.engine.connect() as c:
            assert c.execute(select(conv.last_activity_at)).scalar_one() == last
