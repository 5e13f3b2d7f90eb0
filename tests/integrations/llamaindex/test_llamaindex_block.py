"""MemoriMemoryBlock inside LlamaIndex's own Memory (its short-term queue in Memory's own store)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.llms.mock import MockFunctionCallingLLMWithChatMemoryOfLastCall
from llama_index.core.memory import Memory
from llama_index.core.storage.chat_store.sql import SQLAlchemyChatStore
from memori_llamaindex import MemoriMemoryBlock
from sqlalchemy.ext.asyncio import create_async_engine

from memori_core import ConfigurationError, Memori, RecallError


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage(role="assistant", content=text)


@pytest.fixture
def chat_store(tmp_path: Path) -> Iterator[SQLAlchemyChatStore]:
    """Memory's own short-term store (its default, SQLite through aiosqlite) on an engine
    disposed after the test, as LlamaIndex never disposes the one it makes. ``Memory``'s sync
    methods run their coroutines on the thread's event loop (LlamaIndex's ``asyncio_run``):
    a fresh one, closed afterwards."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'llama_index.db'}")
    try:
        yield SQLAlchemyChatStore(table_name="llama_index_memory", async_engine=engine)
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()
        asyncio.set_event_loop(None)


def test_memories_go_into_memorys_system_message(smem: Memori,
                                                 chat_store: SQLAlchemyChatStore) -> None:
    with smem.attribution(entity_id="alice"):
        smem.remember("The user is allergic to <peanuts> & shellfish")
        smem.remember("The user can play the cello")
    block = MemoriMemoryBlock(memori=smem, entity_id="alice")
    memory = Memory.from_defaults(session_id="m1", memory_blocks=[block], chat_store=chat_store)
    memory.put(user("Hello"))
    got = memory.get(input="What am I allergic to?")
    assert got[0].role.value == "system"
    assert got[0].content == ("<memory>\n<memori_memories>\n"
                              "- The user is allergic to &lt;peanuts&gt; &amp; shellfish\n"
                              "</memori_memories>\n</memory>")
    assert got[1:] == [user("Hello")]
    # without an input, the latest user message of Memory's history is recalled for
    memory.put(user("Which instrument do I play?"))
    assert "- The user can play the cello" in (memory.get()[0].content or "")
    # nothing recalled: no block at all
    fresh = Memory.from_defaults(session_id="m2", memory_blocks=[block], chat_store=chat_store)
    fresh.put(user("Good morning"))
    assert fresh.get() == [user("Good morning")]


def test_messages_memory_flushes_are_captured_in_its_session(
        smem: Memori, chat_store: SQLAlchemyChatStore) -> None:
    block = MemoriMemoryBlock(memori=smem, entity_id="alice", process_id="cook")
    # a small token_limit, so the queue flushes the older turn to the blocks
    memory = Memory.from_defaults(session_id="m1", token_limit=40, memory_blocks=[block],
                                  chat_store=chat_store)
    first = [user("Hi, I live in Lisbon and I love hiking in the mountains every weekend."),
             assistant("Nice! Lisbon has great trails nearby, like Sintra. Want some routes?")]
    memory.put_messages(first)
    with smem.attribution(entity_id="alice"):
        assert smem.session_messages("m1") == []  # still in Memory's short-term queue
    memory.put(user("What am I allergic to?"))
    with smem.attribution(entity_id="alice"):
        rows = smem.session_messages("m1")
    assert [(r["role"], r["content"]) for r in rows] == [(m.role.value, m.content) for m in first]
    assert all("metadata" not in r for r in rows)  # Memory's session tag is not stored
    assert smem.augmentation.wait(timeout=30)
    with smem.attribution(entity_id="alice", process_id="cook"):
        assert any("Lisbon" in m.content for m in smem.memories())


def test_a_session_given_to_the_block_wins_and_short_term_can_be_refused(
        smem: Memori, chat_store: SQLAlchemyChatStore) -> None:
    pinned = MemoriMemoryBlock(memori=smem, entity_id="alice", session_id="archive",
                               name="pinned")
    refusing = MemoriMemoryBlock(memori=smem, entity_id="bob", name="refusing",
                                 accept_short_term_memory=False)
    memory = Memory.from_defaults(session_id="m1", token_limit=20,
                                  memory_blocks=[pinned, refusing], chat_store=chat_store)
    memory.put_messages([user("one two three four five six seven eight nine ten"),
                         assistant("eleven twelve thirteen fourteen fifteen sixteen")])
    memory.put(user("next"))
    with smem.attribution(entity_id="alice"):
        assert len(smem.session_messages("archive")) == 2
        assert smem.session_messages("m1") == []
    with smem.attribution(entity_id="bob"):
        assert smem.session_messages("m1") == []


def test_block_methods_directly(smem: Memori) -> None:
    with smem.attribution(entity_id="alice"):
        smem.remember("The user can play the cello")
    block = MemoriMemoryBlock(memori=smem, entity_id="alice", session_id="direct")

    async def run() -> tuple[str, str, str]:
        recalled = await block.aget([user("Which instrument do I play?"), assistant("Hmm")])
        empty = await block.aget([])
        await block.aput([user("I also sing")])
        no_text = await block.aget([ChatMessage(role="user", blocks=[])])
        return recalled, empty, no_text

    recalled, empty, no_text = asyncio.run(run())
    assert recalled == "- The user can play the cello"
    assert empty == "" and no_text == ""
    with smem.attribution(entity_id="alice"):
        assert [r["content"] for r in smem.session_messages("direct")] == ["I also sing"]


def test_truncation_drops_the_lowest_ranked_memories(smem: Memori) -> None:
    block = MemoriMemoryBlock(memori=smem, entity_id="alice", priority=1)
    content = "- first memory\n- second memory\n- third memory"

    async def run() -> list[str | None]:
        return [await block.atruncate(content, 1), await block.atruncate(content, 8),
                await block.atruncate(content, 1000)]

    assert asyncio.run(run()) == ["- first memory\n- second memory", "- first memory", None]


def test_in_a_function_agent_run(smem: Memori, tmp_path: Path) -> None:
    with smem.attribution(entity_id="alice"):
        smem.remember("The user is allergic to peanuts")
    llm = MockFunctionCallingLLMWithChatMemoryOfLastCall()

    async def run() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'llama_index.db'}")
        memory = Memory.from_defaults(
            session_id="m1", async_engine=engine,
            memory_blocks=[MemoriMemoryBlock(memori=smem, entity_id="alice")])
        try:
            await FunctionAgent(llm=llm).run("Am I allergic to anything?", memory=memory)
        finally:
            await engine.dispose()

    asyncio.run(run())
    sent = llm.last_chat_messages or []
    assert "- The user is allergic to peanuts" in (sent[0].content or "")
    assert sent[-1] == user("Am I allergic to anything?")


def test_a_failing_recall_fails_memory_get(flaky: tuple[Memori, object],
                                           chat_store: SQLAlchemyChatStore) -> None:
    mem, embedder = flaky
    with mem.attribution(entity_id="alice"):
        mem.remember("The user is allergic to peanuts")
    memory = Memory.from_defaults(session_id="m1", chat_store=chat_store,
                                  memory_blocks=[MemoriMemoryBlock(memori=mem,
                                                                   entity_id="alice")])
    memory.put(user("What am I allergic to?"))
    embedder.broken = True  # type: ignore[attr-defined]
    with pytest.raises(RecallError):
        memory.get()


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"memori": None, "entity_id": "u1"}, "memori"),
    ({}, "entity_id"),
    ({"entity_id": "u1", "session_id": ""}, "session_id"),
    ({"entity_id": "u1", "recall_limit": -1}, "recall_limit"),
    ({"entity_id": "u1", "scope": "all"}, "scope"),
])
def test_bad_arguments_name_the_argument(smem: Memori, kwargs: dict[str, object],
                                         argument: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        MemoriMemoryBlock(**{"memori": smem, **kwargs})
    assert err.value.argument == argument


def test_defaults_come_from_the_current_attribution(smem: Memori) -> None:
    with smem.attribution(entity_id="u1", process_id="cook"):
        block = MemoriMemoryBlock(memori=smem)
    assert (block.entity_id, block.process_id, block.session_id) == ("u1", "cook", None)
    assert block.name == "memori_memories" and block.priority == 0
