"""Remote mode: ``Memori(url=..., api_key=...)`` against a real ``memori serve`` on 127.0.0.1
keeps the local API (the same result types, attribution semantics and errors)."""

from __future__ import annotations

import threading
import uuid

import pytest
from memori_remote_support import NO_LIMIT, Server, make_key, remote, sqlite_server, start_server

from memori_core import AuthenticationError, ConfigurationError, Memori, RecallHit, StorageError
from memori_core.context import BLOCK_START, MemoryContext
from memori_core.integration import check_memori
from memori_core.remote import RemoteMemori
from memori_core.testing import HashEmbedder
from memori_core.types import Memory

__all__ = ["sqlite_server"]


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def round_trip(server: Server) -> None:
    with remote(server) as mem:
        assert isinstance(mem, Memori) and isinstance(mem, RemoteMemori)
        check_memori(mem, "memori")  # what the plugins check
        user = _uid("alice")
        mem.attribution(entity_id=user, process_id="support")
        ids = mem.capture([{"role": "user", "content": "I live in Lisbon and I love jazz"},
                           {"role": "assistant", "content": "Noted!"}])
        assert len(ids) == 2 and all(isinstance(i, int) for i in ids)
        assert mem.augmentation.wait(timeout=30) is True
        assert mem.augmentation.pending() == 0 and mem.augmentation.failed() == []
        hits = mem.recall("where does the user live?")
        assert hits and all(isinstance(h, RecallHit) for h in hits)
        assert any("Lisbon" in h.content for h in hits)
        assert hits[0].created_at.tzinfo is None  # naive UTC, as local mode gives
        assert isinstance(hits[0].source_message_ids, tuple)
        mid = mem.remember("The user is allergic to peanuts")
        ctx = mem.context("any snack with peanuts?")
        assert isinstance(ctx, MemoryContext) and ctx.block is not None
        assert ctx.block.startswith(BLOCK_START) and "allergic to peanuts" in ctx.block
        assert ctx.tokens <= ctx.budget and mid in ctx.lines[0].memory_ids
        listed = mem.memories()
        assert listed and all(isinstance(m, Memory) for m in listed)
        assert mid in {m.id for m in listed}
        assert [m["content"] for m in mem.session_messages()] == [
            "I live in Lisbon and I love jazz", "Noted!"]
        assert mem.forget_memories([mid, 10**12]) == 1
        assert mid not in {m.id for m in mem.memories()}
        data = mem.export()
        assert data["format"] == "memori.export" and data["entity_id"] == user
        copy = _uid("copy")
        assert mem.import_(data, entity_id=copy)["memori_conversation_message"] == 2
        with mem.attribution(entity_id=copy):
            assert [m.content for m in mem.memories()] == [m.content for m in listed
                                                           if m.id != mid]
        assert mem.clear_session() == 2 and mem.session_messages() == []
        stats = mem.stats()
        assert stats["tables"]["memori_entity_fact"] >= 1 and "calls" in stats["llm"]
        assert mem.forget(user)["memori_entity"] == 1
        assert mem.memories() == []
        assert mem.forget(copy)["memori_entity"] == 1
    with pytest.raises(StorageError, match="closed"):
        mem.recall("x")


def test_the_public_api_round_trips_through_the_server(sqlite_server: Server) -> None:
    round_trip(sqlite_server)


def test_the_public_api_round_trips_on_postgresql(pg_url: str) -> None:
    server = start_server(pg_url, *NO_LIMIT)
    try:
        round_trip(server)
    finally:
        server.stop()


def test_attribution_is_per_thread_and_scoped_as_in_local_mode(sqlite_server: Server) -> None:
    with remote(sqlite_server) as mem:
        mem.attribution(entity_id="outer")
        with mem.attribution(entity_id="inner", process_id="p"):
            assert (mem.entity_id, mem.process_id) == ("inner", "p")
        assert (mem.entity_id, mem.process_id) == ("outer", None)
        seen: list[str | None] = []
        t = threading.Thread(target=lambda: seen.append(mem.entity_id))
        t.start()
        t.join()
        assert seen == [None]
        errors: list[BaseException] = []

        def unattributed() -> None:
            try:
                mem.recall("x")
            except ConfigurationError as exc:
                errors.append(exc)

        t = threading.Thread(target=unattributed)
        t.start()
        t.join()
        assert "needs an attribution" in str(errors[0])
        with pytest.raises(ConfigurationError) as err:
            mem.recall("x" * 100_001)  # the server's 422 names the field
        assert err.value.argument == "query"


def test_two_entities_through_two_keys_never_see_each_other(sqlite_server: Server) -> None:
    a, b = _uid("a"), _uid("b")
    key_a = make_key(sqlite_server.db_url, "--scope", "write", "--entity", a)
    key_b = make_key(sqlite_server.db_url, "--scope", "write", "--entity", b)
    with remote(sqlite_server, key_a) as ma, remote(sqlite_server, key_b) as mb:
        ma.attribution(entity_id=a)
        mb.attribution(entity_id=b)
        ma.remember("The user's locker code is 4711")
        mb.remember("The user's locker code is 0815")
        assert [m.content for m in ma.memories()] == ["The user's locker code is 4711"]
        assert [h.content for h in mb.recall("locker code")] == ["The user's locker code is 0815"]
        mb.attribution(entity_id=a)  # b's key on a's entity
        with pytest.raises(AuthenticationError, match="scope covers it") as err:
            mb.recall("locker code")
        assert err.value.argument == "api_key"
        with pytest.raises(AuthenticationError):
            mb.export(a)
        with pytest.raises(AuthenticationError, match="--scope"):
            ma.forget(a)  # forget needs admin


def test_a_read_key_cannot_capture_and_the_error_names_the_fix(sqlite_server: Server) -> None:
    key = make_key(sqlite_server.db_url, "--scope", "read")
    with remote(sqlite_server, key) as mem:
        mem.attribution(entity_id=_uid("r"))
        assert mem.recall("anything") == []
        with pytest.raises(AuthenticationError, match="--scope read\\|write\\|admin") as err:
            mem.capture([{"role": "user", "content": "hi"}])
        assert "write also captures" in str(err.value)


def test_a_wrong_key_and_a_bad_field_map_to_memori_errors(sqlite_server: Server) -> None:
    with remote(sqlite_server, "mk_wrong") as mem:
        mem.attribution(entity_id="x")
        with pytest.raises(AuthenticationError, match="MEMORI_API_KEY"):
            mem.recall("anything")
    with remote(sqlite_server) as mem:
        mem.attribution(entity_id="x")
        with pytest.raises(ConfigurationError) as err:
            mem.remember("fine", kind="opinion")
        assert err.value.argument == "kind"
        with pytest.raises(ConfigurationError, match="role"):
            mem.capture([{"role": "robot", "content": "hi"}])  # checked here, as locally


def test_url_and_key_come_from_the_environment(sqlite_server: Server,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORI_URL", sqlite_server.url)
    monkeypatch.setenv("MEMORI_API_KEY", sqlite_server.admin)
    with Memori(request_backoff_factor=0.01) as mem:
        assert isinstance(mem, RemoteMemori) and mem.url == sqlite_server.url
        mem.config.storage.build()  # the server's: only checks it is ready
    monkeypatch.delenv("MEMORI_API_KEY")
    with pytest.raises(ConfigurationError, match="memori keys create") as err:
        Memori()
    assert err.value.argument == "api_key"
    with pytest.raises(ConfigurationError, match="not both"):
        Memori("sqlite://", url=sqlite_server.url, api_key="k")


def test_an_unreachable_server_is_a_storage_error_after_retries() -> None:
    from memori_remote_support import free_port

    with Memori(url=f"http://127.0.0.1:{free_port()}", api_key="k",
                request_backoff_factor=0.01, llm_set_aside_path="off") as mem:
        mem.attribution(entity_id="e")
        with pytest.raises(StorageError, match="unreachable"):
            mem.recall("x")
        assert mem.llm._reachable() is False


def test_a_turn_sent_again_is_stored_once(sqlite_server: Server) -> None:
    from datetime import datetime

    import httpx

    with remote(sqlite_server) as mem:
        mem.attribution(entity_id=_uid("idem"))
        turn = [{"role": "user", "content": "hello", "created_at": datetime(2024, 1, 1, 12)},
                {"role": "assistant", "content": "hi", "created_at": datetime(2024, 1, 1, 12)}]
        first = mem.capture(turn)
        assert mem.capture(turn) == first  # a retry whose answer was lost: the same ids
        assert len(mem.session_messages()) == 2
    answer = httpx.post(f"{sqlite_server.url}/v1/turns", headers={
        "Authorization": f"Bearer {sqlite_server.admin}", "Idempotency-Key": "k1"},
        json={"entity_id": "e", "messages": [{"role": "user", "content": "no time"}]})
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "messages.0.created_at"


def test_an_empty_query_answers_as_in_local_mode(sqlite_server: Server) -> None:
    """``recall("")`` has no hits and ``context("")`` still holds the essential memories, as
    locally (the Agno plugin's ``get_user_memories`` outside a run asks so): the server used
    to refuse an empty query with 422."""
    user = _uid("eve")
    with remote(sqlite_server) as mem, Memori(conn=sqlite_server.db_url,
                                              embedder=HashEmbedder()) as local:
        for m in (mem, local):
            m.attribution(entity_id=user, process_id="support")
        mem.remember("The user is allergic to peanuts", importance=1.0)
        assert mem.recall("") == local.recall("") == []
        assert mem.context("").block == local.context("").block
