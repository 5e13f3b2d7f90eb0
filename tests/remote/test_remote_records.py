"""Remote mode's browsing methods (``memory``, ``memory_page``, ``update_memory``,
``memory_history``, ``memory_provenance``, ``processes``, ``sessions``, ``conversations``,
``conversation_messages``, ``triples``, ``jobs``, ``retry_job``, ``entities``,
``schema_status``) answer what local mode answers on the same database: a local ``Memori``
and a ``Memori(url=...)`` of a real ``memori serve`` on it, side by side."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from memori_remote_support import NO_LIMIT, Server, remote, sqlite_server, start_server

from memori_core import ConfigurationError, Memori
from memori_core.testing import HashEmbedder

__all__ = ["sqlite_server"]


class Pair:
    """A local and a remote ``Memori`` on one database, attributed alike."""

    def __init__(self, local: Memori, far: Memori) -> None:
        self.local, self.far = local, far

    def same(self, call: Callable[[Memori], Any]) -> Any:
        """``call`` on both; the answers equal (or the same error, naming the same
        argument). Returns the answer (for an error, the argument it names)."""
        answers = []
        for mem in (self.local, self.far):
            try:
                answers.append(("ok", call(mem)))
            except ConfigurationError as exc:
                answers.append((type(exc).__name__, exc.argument))
        assert answers[0] == answers[1], answers
        return answers[0][1]

    def attribution(self, **kw: Any) -> None:
        self.local.attribution(**kw)
        self.far.attribution(**kw)


@pytest.fixture
def pair(sqlite_server: Server) -> Iterator[Pair]:
    with Memori(conn=sqlite_server.db_url, embedder=HashEmbedder()) as local, \
            remote(sqlite_server) as far:
        yield Pair(local, far)


def compare(p: Pair) -> None:
    user = f"cmp-{uuid.uuid4().hex[:8]}"
    p.attribution(entity_id=user, process_id="support")
    far = p.far
    far.set_session("s1")
    far.capture([{"role": "user", "content": "I live in Lisbon and I love jazz"},
                 {"role": "assistant", "content": "Noted!", "name": "bot"}])
    far.set_session("s2")
    far.capture([{"role": "user", "content": "My favourite colour is green"}])
    with far.attribution(entity_id=user, process_id="other"):
        far.remember("The user plays the cello", kind="skill")
    assert far.augmentation.wait(timeout=30) is True
    mid = far.remember("The user's seat is 12A", kind="preference", slot="seat")
    new = far.update_memory(mid, "The user's seat is 14C", importance=0.9)
    assert isinstance(new, int) and new != mid

    # one memory
    found = p.same(lambda m: m.memory(new))
    assert found is not None and found.content == "The user's seat is 14C"
    assert p.same(lambda m: m.memory(mid)).superseded_by == new
    for missing in (10**12, -1, 2**70):
        assert p.same(lambda m, i=missing: m.memory(i)) is None
    p.same(lambda m: m.memory("1"))  # type: ignore[arg-type]
    history = p.same(lambda m: m.memory_history(new))
    assert [h.id for h in history] == [mid]
    assert p.same(lambda m: m.memory_history(10**12)) is None
    drawn = [x for x in p.same(lambda m: m.memories(scope="entity")) if x.source_message_ids]
    assert drawn
    prov = p.same(lambda m: m.memory_provenance(drawn[0].id))
    assert prov["messages"] and prov["conversations"]
    assert p.same(lambda m: m.memory_provenance(new)) == {"messages": [],
                                                           "conversations": []}
    assert p.same(lambda m: m.memory_provenance(10**12)) is None

    # pages of memories, followed to the end
    for kw in ({}, {"scope": "entity"}, {"include_superseded": True, "scope": "entity"},
               {"kinds": ["preference"]}):
        seen, cursor = [], None
        while True:
            page, cursor = p.same(lambda m, c=cursor, k=kw: m.memory_page(before=c, limit=2,
                                                                           **k))
            seen += page
            if cursor is None:
                break
        assert seen == p.same(lambda m, k=kw: m.memories(**k))
    for bad in ({"limit": 1001}, {"limit": 0}, {"before": "x"}, {"kinds": ["opinion"]},
                {"scope": "world"}):
        p.same(lambda m, k=bad: m.memory_page(**k))

    # update: nothing changed, unknown ids, bad arguments
    assert p.same(lambda m: m.update_memory(new, "The user's seat is 14C")) == new
    assert p.same(lambda m: m.update_memory(10**12, "x")) is None
    for bad, argument in (({"content": ""}, "content"), ({"content": "a\x00b"}, "content"),
                          ({"content": "x", "kind": "opinion"}, "kind"),
                          ({"content": "x", "importance": 2.0}, "importance")):
        assert p.same(lambda m, k=bad: m.update_memory(new, **k)) == argument

    # the entity's records
    assert {x["process_id"] for x in p.same(lambda m: m.processes())} == {"support", "other"}
    for scope in ("process", "entity"):
        first, cursor = p.same(lambda m, s=scope: m.sessions(scope=s, limit=1))
        assert len(first) == 1 and cursor is not None
        p.same(lambda m, s=scope, c=cursor: m.sessions(scope=s, before=c, limit=1))
        p.same(lambda m, s=scope: m.triples(scope=s))
    conversations, _ = p.same(lambda m: m.conversations())
    assert len(conversations) == 2
    p.same(lambda m: m.conversations("s1", limit=1))
    p.same(lambda m: m.conversations("nobody's"))
    cid = p.same(lambda m: m.conversations("s1"))[0][0]["id"]
    msgs, cursor = p.same(lambda m: m.conversation_messages(cid, limit=1))
    assert msgs[0]["content"] == "I live in Lisbon and I love jazz" and cursor is not None
    msgs, cursor = p.same(lambda m: m.conversation_messages(cid, after=cursor, limit=1))
    assert msgs[0]["name"] == "bot"
    assert p.same(lambda m: m.conversation_messages(10**12)) is None
    assert p.same(lambda m: m.conversation_messages(2**70)) is None
    p.same(lambda m: m.session_messages("s1"))

    # the augmentation queue
    counts, jobs, _ = p.same(lambda m: m.jobs())
    assert counts["done"] == 2 and len(jobs) == 2
    p.same(lambda m: m.jobs(statuses=["done"], limit=1))
    p.same(lambda m: m.jobs(statuses="failed"))
    p.same(lambda m: m.jobs(statuses=["lost"]))
    assert p.same(lambda m: m.retry_job(jobs[0]["id"])) is False  # done, not failed
    assert p.same(lambda m: m.retry_job(10**12)) is False
    p.same(lambda m: m.retry_job(2**70))

    # across entities
    assert [e["entity_id"] for e in p.same(lambda m: m.entities(ids=[user]))[0]] == [user]
    p.same(lambda m: m.entities(prefix=user[:6]))
    p.same(lambda m: m.entities(prefix=""))
    assert p.same(lambda m: m.entities(ids=[])) == ([], None)
    p.same(lambda m: m.entities(ids=[user, "nobody"], limit=1))
    p.same(lambda m: m.entities(ids=user))  # type: ignore[arg-type]
    assert p.same(lambda m: m.schema_status())["version"] >= 1

    # an unknown entity, and none at all
    p.attribution(entity_id=f"nobody-{uuid.uuid4().hex[:8]}")
    for call in (lambda m: m.processes(), lambda m: m.sessions(), lambda m: m.jobs(),
                 lambda m: m.memory(new), lambda m: m.conversations(),
                 lambda m: m.triples(), lambda m: m.memory_page()):
        p.same(call)


def test_browsing_answers_as_local_mode(pair: Pair) -> None:
    compare(pair)


def test_browsing_answers_as_local_mode_on_postgresql(pg_url: str) -> None:
    server = start_server(pg_url, *NO_LIMIT)
    try:
        with Memori(conn=pg_url, embedder=HashEmbedder()) as local, remote(server) as far:
            compare(Pair(local, far))
    finally:
        server.stop()


def test_without_attribution_both_refuse(pair: Pair) -> None:
    for call in (lambda m: m.processes(), lambda m: m.memory(1), lambda m: m.jobs(),
                 lambda m: m.retry_job(1), lambda m: m.conversation_messages(1),
                 lambda m: m.update_memory(1, "x"), lambda m: m.sessions()):
        assert pair.same(call) == "entity_id"
