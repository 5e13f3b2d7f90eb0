"""MemoriChatMessageHistory: persistence in memori's conversation tables, exact round-trips,
a second instance and a second process on the same session, the async methods, and
``RunnableWithMessageHistory`` with one or two config keys and two users on one chain."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import (
    FakeMessagesListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import ConfigurableFieldSpec
from langchain_core.runnables.history import RunnableWithMessageHistory
from memori_langchain import MemoriChatMessageHistory

from memori_core import ConfigurationError, Memori, StorageError
from memori_core.testing import HashEmbedder

pytestmark = pytest.mark.filterwarnings(
    "ignore:RunnableWithMessageHistory is deprecated"
    ":langchain_core._api.LangChainDeprecationWarning")


def conversation() -> list[BaseMessage]:
    """One turn of each message type, with the fields a round-trip could lose."""
    return [
        SystemMessage("You are a travel agent.", id="sys-1"),
        HumanMessage("Book me a flight to Lisbon", id="h-1", name="ana",
                     additional_kwargs={"locale": "pt-PT"}),
        AIMessage("", id="ai-1", tool_calls=[
            {"name": "search_flights", "args": {"to": "LIS", "max_stops": 0}, "id": "call_1",
             "type": "tool_call"}],
            response_metadata={"model_name": "fake", "stop_reason": "tool_use"},
            usage_metadata={"input_tokens": 12, "output_tokens": 7, "total_tokens": 19}),
        ToolMessage('[{"flight": "TP1351"}]', tool_call_id="call_1", name="search_flights",
                    id="t-1", artifact={"rows": 1}, status="success"),
        AIMessage([{"type": "text", "text": "TP1351 leaves at 9:05."}], id="ai-2"),
        ChatMessage("Noted.", role="assistant", id="c-1"),
    ]


def test_messages_round_trip_equal_and_a_second_instance_sees_them(smem: Memori) -> None:
    history = MemoriChatMessageHistory("trip-1", memori=smem, entity_id="ana",
                                       process_id="travel")
    assert history.messages == []
    history.add_messages(conversation())
    assert history.messages == conversation()
    again = MemoriChatMessageHistory("trip-1", memori=smem, entity_id="ana",
                                     process_id="travel")
    assert again.messages == conversation()
    assert [type(m) for m in again.messages] == [SystemMessage, HumanMessage, AIMessage,
                                                 ToolMessage, AIMessage, ChatMessage]


def test_messages_land_in_memoris_tables_under_entity_process_and_session(smem: Memori) -> None:
    MemoriChatMessageHistory("trip-1", memori=smem, entity_id="ana",
                             process_id="travel").add_messages(conversation())
    with smem.attribution(entity_id="ana", process_id="travel"):
        rows = smem.session_messages("trip-1")
        assert smem.session_messages("another-session") == []
    assert [r["role"] for r in rows] == ["system", "user", "assistant", "tool", "assistant",
                                         "assistant"]
    assert rows[1]["content"] == "Book me a flight to Lisbon" and rows[1]["name"] == "ana"
    assert rows[2]["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "search_flights", "arguments": '{"to": "LIS", "max_stops": 0}'}}]
    assert rows[3]["tool_call_id"] == "call_1"
    assert rows[4]["content"] == [{"type": "text", "text": "TP1351 leaves at 9:05."}]
    with smem.attribution(entity_id="bob", process_id="travel"):  # another entity: nothing
        assert smem.session_messages("trip-1") == []
    assert smem.stats()["tables"]["memori_process"] == 1


def test_added_messages_are_augmented_into_recallable_memories(smem: Memori) -> None:
    history = MemoriChatMessageHistory("s", memori=smem, entity_id="ana")
    history.add_messages([HumanMessage("My favourite beach is Praia da Adraga"),
                          AIMessage("Lovely choice!")])
    assert smem.augmentation.wait(timeout=30)
    with smem.attribution(entity_id="ana"):
        hits = smem.recall("which beach is my favourite?")
    assert any("Praia da Adraga" in h.content for h in hits)


def test_rows_captured_without_langchain_are_rebuilt_by_role(smem: Memori) -> None:
    with smem.attribution(entity_id="ana"):
        smem.set_session("core")
        smem.capture([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Porto?", "name": "ana"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c9", "type": "function",
                 "function": {"name": "weather", "arguments": '{"city": "Porto"}'}}]},
            {"role": "tool", "content": "Rainy", "tool_call_id": "c9"},
            {"role": "assistant", "content": "Rainy in Porto."},
        ])
    got = MemoriChatMessageHistory("core", memori=smem, entity_id="ana").messages
    assert got == [
        SystemMessage("Be brief."),
        HumanMessage("Weather in Porto?", name="ana"),
        AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Porto"}, "id": "c9",
                                   "type": "tool_call"}]),
        ToolMessage("Rainy", tool_call_id="c9"),
        AIMessage("Rainy in Porto."),
    ]


def test_history_written_by_another_process_is_read_and_continued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    child = textwrap.dedent(f"""
        from langchain_core.messages import AIMessage, HumanMessage
        from memori_core import Memori
        from memori_core.testing import HashEmbedder
        from memori_langchain import MemoriChatMessageHistory

        with Memori(conn={url!r}, embedder=HashEmbedder(), augmentation_workers=0) as mem:
            mem.config.storage.build()
            MemoriChatMessageHistory("trip", memori=mem, entity_id="ana").add_messages(
                [HumanMessage("Written by the child", id="h"), AIMessage("Ack", id="a")])
    """)
    subprocess.run([sys.executable, "-c", child], check=True, timeout=120)
    with Memori(conn=url, embedder=HashEmbedder(), augmentation_workers=0) as mem:
        history = MemoriChatMessageHistory("trip", memori=mem, entity_id="ana")
        assert history.messages == [HumanMessage("Written by the child", id="h"),
                                    AIMessage("Ack", id="a")]
        history.add_messages([HumanMessage("And by the parent", id="h2")])
        assert [m.id for m in history.messages] == ["h", "a", "h2"]


def test_async_methods_do_the_same_work(smem: Memori) -> None:
    history = MemoriChatMessageHistory("s", memori=smem, entity_id="ana")

    async def run() -> tuple[list[BaseMessage], list[BaseMessage]]:
        await history.aadd_messages(conversation()[:3])
        await history.aadd_messages(conversation()[3:])
        before = await history.aget_messages()
        await history.aclear()
        return before, await history.aget_messages()

    before, after = asyncio.run(run())
    assert before == conversation()
    assert after == [] and history.messages == []


def test_clear_deletes_the_session_but_memories_stay(smem: Memori) -> None:
    history = MemoriChatMessageHistory("s", memori=smem, entity_id="ana")
    other = MemoriChatMessageHistory("other", memori=smem, entity_id="ana")
    history.add_messages([HumanMessage("I collect azulejo tiles")])
    other.add_messages([HumanMessage("Keep me")])
    assert smem.augmentation.wait(timeout=30)
    history.clear()
    assert history.messages == [] and other.messages == [HumanMessage("Keep me")]
    with smem.attribution(entity_id="ana"):
        assert any("azulejo" in m.content for m in smem.memories())


def test_entity_and_process_default_to_memoris_attribution(smem: Memori) -> None:
    with smem.attribution(entity_id="ana", process_id="concierge"):
        history = MemoriChatMessageHistory("s", memori=smem)
    assert (history.entity_id, history.process_id, history.session_id) == (
        "ana", "concierge", "s")
    history.add_messages([HumanMessage("hi")])  # outside the attribution block: still ana's
    assert smem.entity_id is None
    with smem.attribution(entity_id="ana", process_id="concierge"):
        assert [m["content"] for m in smem.session_messages("s")] == ["hi"]


def test_an_owned_memori_from_conn(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORI_AUGMENTATION_WORKERS", "0")  # no embedding model needed here
    with MemoriChatMessageHistory("s", conn=sqlite_url, entity_id="ana") as history:
        history.add_messages([HumanMessage("stored through an owned Memori")])
        assert history.messages == [HumanMessage("stored through an owned Memori")]
        owned = history.memori
    owned.attribution(entity_id="ana")
    with pytest.raises(StorageError):  # closed with the history
        owned.session_messages()


def test_chunks_are_stored_too(smem: Memori) -> None:
    history = MemoriChatMessageHistory("s", memori=smem, entity_id="ana")
    chunk = AIMessageChunk("partial answer", id="chunk-1")
    history.add_messages([chunk])
    assert history.messages == [chunk]


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"entity_id": None}, "entity_id"),
    ({"entity_id": ""}, "entity_id"),
    ({"entity_id": "ana", "process_id": "x" * 300}, "process_id"),
    ({"entity_id": "ana", "session_id": ""}, "session_id"),
    ({"entity_id": "ana", "session_id": 7}, "session_id"),
    ({"entity_id": "ana", "conn": "sqlite://"}, "conn"),
])
def test_bad_arguments_name_the_argument(smem: Memori, kwargs: dict, argument: str) -> None:
    session = kwargs.pop("session_id", "s")
    with pytest.raises(ConfigurationError) as err:
        MemoriChatMessageHistory(session, memori=smem, **kwargs)
    assert err.value.argument == argument


def test_bad_memori_and_bad_messages(smem: Memori) -> None:
    with pytest.raises(ConfigurationError) as err:
        MemoriChatMessageHistory("s", memori="sqlite://", entity_id="ana")  # type: ignore[arg-type]
    assert err.value.argument == "memori"
    history = MemoriChatMessageHistory("s", memori=smem, entity_id="ana")
    for bad in ([RemoveMessage(id="x")], ["just a string"],
                [ChatMessage("?", role="narrator")]):
        with pytest.raises(ConfigurationError) as err:
            history.add_messages(bad)  # type: ignore[arg-type]
        assert err.value.argument == "messages"
    assert history.messages == []


def test_nul_bytes_and_lone_surrogates_are_stored_replaced_and_counted(smem: Memori) -> None:
    history = MemoriChatMessageHistory("s", memori=smem, entity_id="ana")
    history.add_messages([HumanMessage("nul \x00 byte"), AIMessage("lone \ud800 half")])
    assert [m.content for m in history.messages] == ["nul \ufffd byte", "lone \ufffd half"]
    assert smem.stats()["llm"]["text_cleaned"] == 1


def test_storage_failures_are_raised_not_swallowed(smem: Memori) -> None:
    history = MemoriChatMessageHistory("s", memori=smem, entity_id="ana")
    smem.close()
    with pytest.raises(StorageError):
        history.add_messages([HumanMessage("lost?")])
    with pytest.raises(StorageError):
        _ = history.messages
    with pytest.raises(StorageError):
        asyncio.run(history.aget_messages())


# ---- RunnableWithMessageHistory -----------------------------------------------------------------
PROMPT = ChatPromptTemplate.from_messages([
    ("system", "You are a concierge."), MessagesPlaceholder("history"), ("human", "{question}")])


def two_key_chain(mem: Memori, model: GenericFakeChatModel) -> RunnableWithMessageHistory:
    def get_session_history(user_id: str, conversation_id: str) -> MemoriChatMessageHistory:
        return MemoriChatMessageHistory(conversation_id, memori=mem, entity_id=user_id)

    return RunnableWithMessageHistory(
        PROMPT | model, get_session_history, input_messages_key="question",
        history_messages_key="history",
        history_factory_config=[
            ConfigurableFieldSpec(id="user_id", annotation=str, is_shared=True),
            ConfigurableFieldSpec(id="conversation_id", annotation=str, is_shared=True)])


def test_chain_with_two_config_keys_keeps_two_users_apart(smem: Memori) -> None:
    model = FakeMessagesListChatModel(responses=[AIMessage("A1"), AIMessage("B1"),
                                                 AIMessage("A2"), AIMessage("B2")])
    chain = two_key_chain(smem, model)  # type: ignore[arg-type]

    def ask(user: str, question: str) -> str:
        config = {"configurable": {"user_id": user, "conversation_id": "c1"}}
        return str(chain.invoke({"question": question}, config).content)

    assert [ask("ana", "I am Ana"), ask("bob", "I am Bob"), ask("ana", "Who am I?"),
            ask("bob", "Who am I?")] == ["A1", "B1", "A2", "B2"]
    for user, name, first, second in (("ana", "Ana", "A1", "A2"), ("bob", "Bob", "B1", "B2")):
        history = MemoriChatMessageHistory("c1", memori=smem, entity_id=user).messages
        assert [(m.type, m.content) for m in history] == [
            ("human", f"I am {name}"), ("ai", first), ("human", "Who am I?"), ("ai", second)]


def test_chain_sends_the_stored_history_to_the_model(smem: Memori, seen: object) -> None:
    model = GenericFakeChatModel(messages=iter(["First.", "Second."]))
    chain = two_key_chain(smem, model)
    config = {"configurable": {"user_id": "ana", "conversation_id": "c1"},
              "callbacks": [seen]}
    chain.invoke({"question": "one"}, config)
    chain.invoke({"question": "two"}, config)
    last = seen.runs[-1]["messages"]  # type: ignore[attr-defined]
    assert [(m.type, m.content) for m in last] == [
        ("system", "You are a concierge."), ("human", "one"), ("ai", "First."),
        ("human", "two")]


def test_chain_with_one_key_and_the_async_path(smem: Memori) -> None:
    model = GenericFakeChatModel(messages=iter(["Hello Ana.", "You are Ana."]))
    smem.attribution(entity_id="ana")  # the entity comes from memori's attribution
    chain = RunnableWithMessageHistory(
        PROMPT | model, lambda session_id: MemoriChatMessageHistory(session_id, memori=smem),
        input_messages_key="question", history_messages_key="history")
    config = {"configurable": {"session_id": "s1"}}

    async def run() -> list[str]:
        first = await chain.ainvoke({"question": "I am Ana"}, config)
        second = await chain.ainvoke({"question": "Who am I?"}, config)
        return [first.content, second.content]

    assert asyncio.run(run()) == ["Hello Ana.", "You are Ana."]
    assert [m.content for m in MemoriChatMessageHistory("s1", memori=smem).messages] == [
        "I am Ana", "Hello Ana.", "Who am I?", "You are Ana."]


def test_a_second_memori_instance_on_the_same_database_sees_the_history(smem: Memori) -> None:
    MemoriChatMessageHistory("s", memori=smem, entity_id="ana").add_messages(conversation())
    url = str(smem.engine.url)
    with Memori(conn=url, embedder=HashEmbedder()) as other:
        assert MemoriChatMessageHistory("s", memori=other,
                                        entity_id="ana").messages == conversation()
