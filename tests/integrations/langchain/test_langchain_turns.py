"""with_memori as LangChain's docs drive a chat model, on its own fake models: the exact prompt
the model received, memories the visible history already holds not repeated, bad input (empty,
None, NUL, lone surrogates, 10 MB, images, tool calls) never costing the answer, one capture
next to MemoriChatMessageHistory, persistence across two Memori instances on one database file,
and two users at once in threads."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import (
    FakeMessagesListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from lc_helpers import SeenByModels, ToolCallingFakeModel
from memori_langchain import MemoriChatMessageHistory, with_memori

from memori_core import Memori
from memori_core.context import BLOCK_HEADER
from memori_core.testing import HashEmbedder

pytestmark = pytest.mark.filterwarnings(
    "ignore:RunnableWithMessageHistory is deprecated"
    ":langchain_core._api.LangChainDeprecationWarning")

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.fixture
def ana(smem: Memori) -> Memori:
    smem.attribution(entity_id="ana", process_id="guide")
    smem.set_session("s1")
    smem.remember("The user is allergic to peanuts")
    return smem


def stored(mem: Memori, session: str = "s1") -> list[dict[str, Any]]:
    with mem.attribution(entity_id="ana", process_id="guide"):
        return mem.session_messages(session)


def model(seen: SeenByModels, *answers: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(answers or ["ok"] * 5), callbacks=[seen])


def test_the_exact_prompt_the_model_received(ana: Memori, seen: SeenByModels) -> None:
    with_memori(model(seen), ana).invoke(
        [SystemMessage("You are a guide."), HumanMessage("Which snack is safe with peanuts?")])
    (run,) = seen.inner()
    assert run["messages"] == [
        SystemMessage("You are a guide.\n\n<memori_context>\n" + BLOCK_HEADER + "\n"
                      '- 2026-01-01 fact: "The user is allergic to peanuts"\n'
                      "</memori_context>"),
        HumanMessage("Which snack is safe with peanuts?")]


def test_memories_the_visible_history_holds_are_not_injected_again(
        smem: Memori, seen: SeenByModels) -> None:
    llm = with_memori(model(seen), smem, entity_id="ana", session_id="s1")
    said = HumanMessage("My favourite beach is Praia da Adraga")
    llm.invoke([said])
    assert smem.augmentation.wait(timeout=30)
    llm.invoke([HumanMessage("Which beach is my favourite?")])  # a new conversation
    assert "Praia da Adraga" in seen.inner()[1]["messages"][0].text
    llm.invoke([said, AIMessage("Lovely."), HumanMessage("Which beach is my favourite?")])
    assert [m.type for m in seen.inner()[2]["messages"]] == ["human", "ai", "human"]  # no block


@pytest.mark.parametrize("text", ["hi \x00 there", "hi \ud800 there", "hi \udfff"])
def test_nul_and_lone_surrogates_keep_the_answer_and_are_stored_replaced(
        ana: Memori, seen: SeenByModels, text: str) -> None:
    assert with_memori(model(seen, "Hello."), ana).invoke(text).content == "Hello."
    user, answer = stored(ana)
    assert user["content"] == text.replace("\x00", "\ufffd").replace(
        "\ud800", "\ufffd").replace("\udfff", "\ufffd")
    assert answer["content"] == "Hello."
    assert ana.stats()["llm"]["text_cleaned"] == 1


def test_empty_and_none_input(ana: Memori, seen: SeenByModels) -> None:
    llm = with_memori(model(seen, "Hm?"), ana)
    assert llm.invoke("").content == "Hm?"
    assert seen.inner()[0]["messages"] == [HumanMessage("")]  # nothing to recall for
    with pytest.raises(ValueError, match="Invalid input type") as err:
        llm.invoke(None)
    with pytest.raises(ValueError) as bare:
        GenericFakeChatModel(messages=iter([])).invoke(None)  # type: ignore[arg-type]
    assert str(err.value) == str(bare.value)  # the error the bare model gives
    assert [m["content"] for m in stored(ana)] == ["", "Hm?"]


def test_ten_megabytes_of_input_get_a_bounded_block(ana: Memori, seen: SeenByModels) -> None:
    huge = "peanuts " + "x" * 10_000_000
    assert with_memori(model(seen, "Long."), ana).invoke(huge).content == "Long."
    system, human = seen.inner()[0]["messages"]
    assert human.content == huge
    assert '"The user is allergic to peanuts"' in system.text and len(system.text) < 2_000
    assert ana.llm.flush() == 0  # a recall past the bound spills the turn: written back here
    user, answer = stored(ana)  # kept, within the core's message bound
    assert user["content"].startswith("peanuts xxx") and len(user["content"]) <= len(huge)
    assert answer["content"] == "Long."


def test_images_are_sent_but_only_named_in_the_database(ana: Memori,
                                                        seen: SeenByModels) -> None:
    parts: list[Any] = [{"type": "text", "text": "What snack is in this photo?"},
             {"type": "image", "base64": PNG, "mime_type": "image/png"},
             {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
             {"type": "image_url", "image_url": {"url": "https://example.com/snack.png"}}]
    with_memori(model(seen, "Apples."), ana).invoke([HumanMessage(parts)])
    sent = json.dumps(seen.inner()[0]["messages"][-1].content)  # as LangChain traces it
    assert sent.count(PNG) == 2 and "https://example.com/snack.png" in sent
    user, _ = stored(ana)
    assert user["content"] == [
        {"type": "text", "text": "What snack is in this photo?"},
        {"type": "image", "media_type": "image/png"}, {"type": "image_url"},
        {"type": "image_url", "name": "https://example.com/snack.png"}]
    assert PNG not in json.dumps(user, default=str)


def test_tool_calls_and_results_are_captured_in_order(ana: Memori, seen: SeenByModels) -> None:
    call = {"name": "weather", "args": {"city": "Lisbon"}, "id": "c1", "type": "tool_call"}
    llm = with_memori(ToolCallingFakeModel(messages=iter([AIMessage("", tool_calls=[call]),
                                                          "Sunny."]), callbacks=[seen]), ana)
    history: list[Any] = [HumanMessage("Weather?")]
    history.append(llm.invoke(history))
    history.append(ToolMessage("Sunny in Lisbon", tool_call_id="c1"))
    assert llm.invoke(history).content == "Sunny."
    rows = stored(ana)
    assert [r["role"] for r in rows] == ["user", "assistant", "tool", "assistant"]
    assert rows[1]["tool_calls"] == [{"id": "c1", "type": "function", "function": {
        "name": "weather", "arguments": '{"city": "Lisbon"}'}}]
    assert rows[2]["tool_call_id"] == "c1"


def chain(mem: Memori, llm: Any) -> RunnableWithMessageHistory:
    prompt = ChatPromptTemplate.from_messages([("system", "You are a guide."),
                                               MessagesPlaceholder("history"),
                                               ("human", "{question}")])
    return RunnableWithMessageHistory(
        prompt | llm, lambda session_id: MemoriChatMessageHistory(session_id, memori=mem),
        input_messages_key="question", history_messages_key="history")


@pytest.mark.parametrize("capture", [True, False])
def test_with_a_memori_history_each_message_is_stored_once(
        ana: Memori, seen: SeenByModels, capture: bool) -> None:
    runnable = chain(ana, with_memori(model(seen, "One.", "Two."), ana, capture=capture))
    config: Any = {"configurable": {"session_id": "h1"}}
    runnable.invoke({"question": "Hi, peanuts?"}, config)
    runnable.invoke({"question": "Again?"}, config)
    assert [(m["role"], m["content"]) for m in stored(ana, "h1")] == [
        ("user", "Hi, peanuts?"), ("assistant", "One."), ("user", "Again?"),
        ("assistant", "Two.")]
    sent = seen.inner()[1]["messages"]  # the history as the model saw it: once
    assert [m.type for m in sent] == ["system", "human", "ai", "human"]


def test_with_a_memori_history_streamed_turns_are_stored_once(ana: Memori,
                                                             seen: SeenByModels) -> None:
    runnable = chain(ana, with_memori(model(seen, "One two.", "Three."), ana))
    config: Any = {"configurable": {"session_id": "h2"}}
    assert "".join(str(c.content) for c in runnable.stream({"question": "Hi?"},
                                                           config)) == "One two."

    async def second() -> str:
        return "".join([str(c.content) async for c in runnable.astream({"question": "And?"},
                                                                        config)])

    assert asyncio.run(second()) == "Three."
    assert [(m["role"], m["content"]) for m in stored(ana, "h2")] == [
        ("user", "Hi?"), ("assistant", "One two."), ("user", "And?"), ("assistant", "Three.")]


def test_persistence_across_two_memori_instances_on_one_file(tmp_path: Path,
                                                             seen: SeenByModels) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with Memori(conn=url, embedder=HashEmbedder()) as first:
        first.config.storage.build()
        with_memori(model(seen, "Noted."), first, entity_id="ana").invoke(
            "My favourite beach is Praia da Adraga")
        assert first.augmentation.wait(timeout=30)
    with Memori(conn=url, embedder=HashEmbedder()) as second:
        with_memori(model(seen, "Adraga."), second, entity_id="ana").invoke(
            "Which beach is my favourite?")
    assert "Praia da Adraga" in seen.inner()[1]["messages"][0].text


def test_two_users_in_threads_never_mix(smem: Memori, seen: SeenByModels) -> None:
    for user, food in (("ana", "peanuts"), ("bob", "shellfish")):
        with smem.attribution(entity_id=user):
            smem.remember(f"The user is allergic to {food}")
    llm = with_memori(FakeMessagesListChatModel(responses=[AIMessage("ok")], callbacks=[seen]),
                      smem)

    def ask(user: str) -> None:
        for i in range(3):
            llm.invoke(f"what am I allergic to? {user}",
                       {"configurable": {"user_id": user, "session_id": f"t{i}"}})

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(ask, ["ana", "bob"]))
    runs = seen.inner()
    assert len(runs) == 6
    for run in runs:
        user, system = run["messages"][-1].text[-3:], run["messages"][0].text
        mine, theirs = ("peanuts", "shellfish") if user == "ana" else ("shellfish", "peanuts")
        assert mine in system and theirs not in system
    assert smem.entity_id is None
