"""MemoriMemoryBlock inside LlamaIndex's own Memory (its short-term queue in Memory's own
store): every turn captured whatever Memory flushes, once; one recall per user message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.llms import MockLLM
from llama_index.core.llms.mock import MockFunctionCallingLLMWithChatMemoryOfLastCall
from llama_index.core.memory import FactExtractionMemoryBlock, Memory, StaticMemoryBlock
from llama_index.core.storage.chat_store.sql import SQLAlchemyChatStore
from llama_index.core.tools import FunctionTool
from memori_llamaindex import MemoriMemoryBlock
from sqlalchemy.ext.asyncio import create_async_engine
from test_llamaindex_memory import TODAY, counted, framed, get_weather  # this folder's

from memori_core import ConfigurationError, Memori
from memori_core.context import BLOCK_HEADER, BLOCK_START
from memori_core.testing import HashEmbedder

Recorder = MockFunctionCallingLLMWithChatMemoryOfLastCall


@pytest.fixture
def chat_store(tmp_path: Path, loop: asyncio.AbstractEventLoop
               ) -> Iterator[SQLAlchemyChatStore]:
    """Memory's own short-term store (its default, SQLite through aiosqlite) on an engine
    disposed after the test, as LlamaIndex never disposes the one it makes."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'llama_index.db'}")
    yield SQLAlchemyChatStore(table_name="llama_index_memory", async_engine=engine)
    loop.run_until_complete(engine.dispose())


def contents(mem: Memori, entity_id: str, session_id: str) -> list[tuple[str, str]]:
    with mem.attribution(entity_id=entity_id):
        return [(r["role"], r["content"]) for r in mem.session_messages(session_id)]


def run(loop: asyncio.AbstractEventLoop, agent: Any, *args: Any, **kwargs: Any) -> Any:
    async def go() -> Any:
        return await agent.run(*args, **kwargs)

    return loop.run_until_complete(go())


def test_a_short_chat_is_captured_without_any_flush(
        smem: Memori, chat_store: SQLAlchemyChatStore, loop: asyncio.AbstractEventLoop) -> None:
    with smem.attribution(entity_id="alice"):
        smem.remember("The user is allergic to peanuts")
    calls = counted(smem)
    llm = Recorder()
    memory = Memory.from_defaults(session_id="m1", chat_store=chat_store, memory_blocks=[
        MemoriMemoryBlock(memori=smem, entity_id="alice")])
    agent = FunctionAgent(llm=llm, tools=[FunctionTool.from_defaults(get_weather)])
    run(loop, agent, "Am I allergic to peanuts?", memory=memory)
    # one recall, one read of the session (what was captured before), one turn stored
    assert calls == {"context": 1, "recall": 1, "session_messages": 1, "capture": 1}
    assert [(m.role.value, m.content) for m in llm.last_chat_messages or ()] == [
        ("system", framed(f'- {TODAY} fact: "The user is allergic to peanuts"')),
        ("user", "Am I allergic to peanuts?"), ("assistant", None), ("tool", "Sunny in Lisbon")]
    assert contents(smem, "alice", "m1") == [
        ("user", "Am I allergic to peanuts?"), ("assistant", ""), ("tool", "Sunny in Lisbon"),
        ("assistant", "Tool calls complete.")]


def test_flushed_and_resent_messages_are_captured_once(
        smem: Memori, chat_store: SQLAlchemyChatStore, loop: asyncio.AbstractEventLoop) -> None:
    block = MemoriMemoryBlock(memori=smem, entity_id="alice", process_id="cook")
    memory = Memory.from_defaults(session_id="m1", token_limit=40, memory_blocks=[block],
                                  chat_store=chat_store)
    texts = ["Hi, I live in Lisbon and I love hiking in the mountains every weekend.",
             "Nice! Lisbon has great trails nearby, like Sintra. Want some routes?",
             "What am I allergic to?", "I do not know yet."]
    for role, text in zip(["user", "assistant"] * 2, texts, strict=True):
        memory.put(ChatMessage(role=role, content=text))
        memory.get(input="What am I allergic to?")
    # Memory flushed the first turn to the block after the block had captured it
    assert [m.content for m in memory.get_all(status=None)] == texts
    assert [c for _, c in contents(smem, "alice", "m1")] == texts
    # the copy of the input Memory.get(input=...) appends is not a message
    memory.put(ChatMessage(role="user", content="Thanks"))
    memory.get(input="Thanks")
    memory.put(ChatMessage(role="assistant", content="You are welcome."))
    memory.get()
    assert [c for _, c in contents(smem, "alice", "m1")][4:] == ["Thanks", "You are welcome."]


def test_chat_history_on_each_run_and_a_restart_capture_only_what_is_new(
        sqlite_url: str, tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    llm = Recorder()
    history = [ChatMessage(role="user", content="Hi"),
               ChatMessage(role="assistant", content="Hey")]

    async def chat(mem: Memori, text: str, session: str = "m1") -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'llama_index.db'}")
        memory = Memory.from_defaults(session_id=session, async_engine=engine, memory_blocks=[
            MemoriMemoryBlock(memori=mem, entity_id="alice")])
        try:
            await FunctionAgent(llm=llm).run(text, chat_history=list(history), memory=memory)
            history.extend([ChatMessage(role="user", content=text),
                            ChatMessage(role="assistant", content=text)])
        finally:
            await engine.dispose()

    for text in ("Go on", "More"):  # a new Memori (a new process) for each run
        mem = Memori(conn=sqlite_url, embedder=HashEmbedder())
        mem.config.storage.build()
        loop.run_until_complete(chat(mem, text))
        mem.close()
    mem = Memori(conn=sqlite_url, embedder=HashEmbedder())
    assert [c for _, c in contents(mem, "alice", "m1")] == [
        "Hi", "Hey", "Go on", "Go on", "More", "More"]
    mem.close()


def test_next_to_llamaindexs_static_and_fact_extraction_blocks(
        smem: Memori, chat_store: SQLAlchemyChatStore) -> None:
    with smem.attribution(entity_id="alice"):
        smem.remember("The user is allergic to peanuts")
    facts = FactExtractionMemoryBlock(name="facts", llm=MockLLM())
    memory = Memory.from_defaults(session_id="m1", chat_store=chat_store, token_limit=60,
                                  memory_blocks=[
                                      StaticMemoryBlock(name="profile",
                                                        static_content="The user is Ana."),
                                      MemoriMemoryBlock(memori=smem, entity_id="alice"), facts])
    for text in ("Hello there, I am planning a long trip to Japan next spring with friends.",
                 "We want to see temples, gardens and eat a lot of food in Kyoto and Osaka.",
                 "Am I allergic to peanuts?"):
        memory.put(ChatMessage(role="user", content=text))
        memory.put(ChatMessage(role="assistant", content="Noted."))
        system = memory.get()[0].content or ""
    # LlamaIndex's template puts each block under its name; memori's holds the framed block
    assert system.startswith(
        "<memory>\n<profile>\nThe user is Ana.\n</profile>\n<memori>\n" +
        "\n".join([BLOCK_START, BLOCK_HEADER,
                   f'- {TODAY} fact: "The user is allergic to peanuts"', ""]))
    assert facts.facts and "<facts>" in system
    assert len(contents(smem, "alice", "m1")) == 6


def test_a_session_given_to_the_block_wins_and_capture_can_be_off(
        smem: Memori, chat_store: SQLAlchemyChatStore) -> None:
    pinned = MemoriMemoryBlock(memori=smem, entity_id="alice", session_id="archive",
                               name="pinned")
    silent = MemoriMemoryBlock(memori=smem, entity_id="bob", name="silent", capture=False)
    memory = Memory.from_defaults(session_id="m1", memory_blocks=[pinned, silent],
                                  chat_store=chat_store)
    memory.put_messages([ChatMessage(role="user", content="one"),
                         ChatMessage(role="assistant", content="two")])
    memory.get()
    assert contents(smem, "alice", "archive") == [("user", "one"), ("assistant", "two")]
    assert contents(smem, "alice", "m1") == contents(smem, "bob", "m1") == []


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
        MemoriMemoryBlock(**{"memori": smem, **kwargs})  # type: ignore[arg-type]
    assert err.value.argument == argument


def test_defaults_come_from_the_current_attribution(smem: Memori) -> None:
    with smem.attribution(entity_id="u1", process_id="cook"):
        block = MemoriMemoryBlock(memori=smem)
    assert (block.entity_id, block.process_id, block.session_id) == ("u1", "cook", None)
    assert block.name == "memori" and block.priority == 0
