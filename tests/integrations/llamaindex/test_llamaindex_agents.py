"""MemoriMemory as the memory of LlamaIndex agents: FunctionAgent, ReActAgent, AgentWorkflow,
driven by LlamaIndex's own fake LLMs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ReActAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLMWithChatMemoryOfLastCall
from llama_index.core.memory import InsertMethod
from llama_index.core.tools import FunctionTool
from memori_llamaindex import MemoriMemory
from workflows import Context
from workflows.context.state_store import UnserializableKeyWarning

from memori_core import Memori, StorageError

Recorder = MockFunctionCallingLLMWithChatMemoryOfLastCall


def get_weather(city: str = "Lisbon") -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


def run(agent: Any, *args: Any, **kwargs: Any) -> Any:
    """``agent.run(...)`` to completion; it starts its workflow on the running event loop."""

    async def go() -> Any:
        return await agent.run(*args, **kwargs)

    return asyncio.run(go())


def texts(messages: Sequence[ChatMessage] | None) -> list[tuple[str, str]]:
    return [(m.role.value, m.content or "") for m in messages or ()]


def system_text(messages: Sequence[ChatMessage] | None) -> str:
    return "\n".join(m.content or "" for m in messages or () if m.role == MessageRole.SYSTEM)


def test_function_agent_turn_with_a_tool_call_is_stored_and_replayed(
        smem: Memori, llm: Recorder) -> None:
    agent = FunctionAgent(llm=llm, tools=[FunctionTool.from_defaults(get_weather)],
                          system_prompt="You are a travel assistant.")
    memory = MemoriMemory.from_defaults(memori=smem, entity_id="alice", session_id="trip")
    result = run(agent, "What's the weather in Lisbon?", memory=memory)
    assert str(result) == "Tool calls complete."
    stored = memory.get_all()
    assert [m.role.value for m in stored] == ["user", "assistant", "tool", "assistant"]
    call = stored[1].blocks[0]
    assert isinstance(call, ToolCallBlock) and call.tool_name == "get_weather"
    assert stored[2].additional_kwargs == {"tool_call_id": call.tool_call_id}
    assert stored[2].content == "Sunny in Lisbon"
    # the LLM's last call had the whole turn, from the system prompt on
    assert texts(llm.last_chat_messages)[0] == ("system", "You are a travel assistant.")
    assert llm.last_chat_messages[1:] == stored[:3]  # type: ignore[index]

    # a later run on a new MemoriMemory for the same session continues that history
    again = MemoriMemory.from_defaults(memori=smem, entity_id="alice", session_id="trip")
    follow_up = Recorder()
    run(FunctionAgent(llm=follow_up), "And tomorrow?", memory=again)
    assert follow_up.last_chat_messages is not None
    assert list(follow_up.last_chat_messages) == [*stored, ChatMessage(role="user",
                                                                       content="And tomorrow?")]


def test_the_user_message_is_stored_before_the_model_answers(smem: Memori) -> None:
    seen: list[list[str]] = []

    def reply(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        with smem.attribution(entity_id="alice"):
            seen.append([r["content"] for r in smem.session_messages("s1")])
        return ChatMessage(role="assistant", content="Noted.")

    memory = MemoriMemory.from_defaults(memori=smem, entity_id="alice", session_id="s1")
    llm = Recorder()
    llm.response_generator = reply
    run(FunctionAgent(llm=llm), "I moved to Porto.", memory=memory)
    assert seen == [["I moved to Porto."]]
    assert texts(memory.get_all()) == [("user", "I moved to Porto."), ("assistant", "Noted.")]


def test_memories_from_an_earlier_session_reach_the_model(smem: Memori, llm: Recorder) -> None:
    agent = FunctionAgent(llm=llm)

    async def chat(session: str, text: str) -> None:
        memory = MemoriMemory.from_defaults(memori=smem, entity_id="alice", session_id=session)
        await agent.run(text, memory=memory)

    asyncio.run(chat("monday", "I am allergic to peanuts."))
    assert smem.augmentation.wait(timeout=30)
    asyncio.run(chat("friday", "Which nuts am I allergic to?"))
    sent = llm.last_chat_messages or []
    assert sent[0].role == MessageRole.SYSTEM
    # the turn and the fact extracted from it are one memory, shown as the fact
    assert "- The user is allergic to peanuts" in (sent[0].content or "")
    assert texts(sent[1:]) == [("user", "Which nuts am I allergic to?")]  # a new session


def test_two_users_at_once_on_one_memori_never_see_each_other(smem: Memori) -> None:
    with smem.attribution(entity_id="alice"):
        smem.remember("The user can speak Portuguese")
    with smem.attribution(entity_id="bob"):
        smem.remember("The user can speak Finnish")
    llms = {"alice": Recorder(), "bob": Recorder()}

    async def chat(user_id: str, text: str) -> None:
        memory = MemoriMemory.from_defaults(memori=smem, entity_id=user_id, session_id="chat")
        await FunctionAgent(llm=llms[user_id]).run(text, memory=memory)

    async def both() -> None:
        for _ in range(3):
            await asyncio.gather(chat("alice", "Which language can I speak?"),
                                 chat("bob", "Which language can I speak?"))

    asyncio.run(both())
    alice, bob = (llms[u].last_chat_messages or [] for u in ("alice", "bob"))
    assert "Portuguese" in system_text(alice) and "Finnish" not in system_text(alice)
    assert "Finnish" in system_text(bob) and "Portuguese" not in system_text(bob)
    for user_id in ("alice", "bob"):
        memory = MemoriMemory.from_defaults(memori=smem, entity_id=user_id, session_id="chat")
        assert texts(memory.get_all()) == [("user", "Which language can I speak?"),
                                           ("assistant", "Which language can I speak?")] * 3
    assert smem.entity_id is None  # the runs never set attribution outside their calls


def test_chat_history_given_to_run_replaces_the_session(smem: Memori, llm: Recorder) -> None:
    memory = MemoriMemory.from_defaults(memori=smem, entity_id="alice", session_id="s1")
    memory.put(ChatMessage(role="user", content="forgotten"))
    history = [ChatMessage(role="user", content="Hi"), ChatMessage(role="assistant", content="Hey")]
    run(FunctionAgent(llm=llm), "Go on", chat_history=history, memory=memory)
    assert texts(memory.get_all()) == [("user", "Hi"), ("assistant", "Hey"), ("user", "Go on"),
                                       ("assistant", "Go on")]


def react_reply(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
    return ChatMessage(role="assistant",
                       content="Thought: I know this.\nAnswer: Your dog is called Rex.")


def test_react_agent_with_memories_in_the_user_message(smem: Memori) -> None:
    # ReActAgent drops the first system message of its input (llama-index-core 0.14.x), so
    # without a system_prompt of its own it needs the memories in the user message
    with smem.attribution(entity_id="bob"):
        smem.remember("The user's dog is called Rex")
    llm = Recorder()
    llm.response_generator = react_reply
    memory = MemoriMemory.from_defaults(memori=smem, entity_id="bob", session_id="s1",
                                        insert_method=InsertMethod.USER)
    result = run(ReActAgent(llm=llm), "What is my dog called?", memory=memory)
    assert str(result) == "Your dog is called Rex."
    sent = llm.last_chat_messages or []
    assert [m.role.value for m in sent] == ["system", "user"]
    assert "- The user's dog is called Rex" in (sent[1].content or "")
    assert (sent[1].content or "").endswith("What is my dog called?")
    assert texts(memory.get_all()) == [
        ("user", "What is my dog called?"),
        ("assistant", "Thought: I know this.\nAnswer: Your dog is called Rex.")]


def test_react_agent_with_a_system_prompt_keeps_the_memory_message(smem: Memori) -> None:
    with smem.attribution(entity_id="bob"):
        smem.remember("The user's dog is called Rex")
    llm = Recorder()
    llm.response_generator = react_reply
    memory = MemoriMemory.from_defaults(memori=smem, entity_id="bob", session_id="s1")
    run(ReActAgent(llm=llm, system_prompt="You know pets."), "What is my dog called?",
        memory=memory)
    sent = llm.last_chat_messages or []
    assert "You know pets." in (sent[0].content or "")
    assert "- The user's dog is called Rex" in system_text(sent[1:])


def test_agent_workflow_and_its_context_round_trip(smem: Memori, llm: Recorder) -> None:
    with smem.attribution(entity_id="carol", process_id="helpdesk"):
        smem.remember("The user has a premium plan")
    workflow = AgentWorkflow(agents=[FunctionAgent(name="support", description="Support",
                                                   llm=llm, system_prompt="Be brief.")])
    memory = MemoriMemory.from_defaults(memori=smem, entity_id="carol", process_id="helpdesk",
                                        session_id="t1")

    async def run() -> Context:
        ctx = Context(workflow)
        await workflow.run("Which plan do I have?", memory=memory, ctx=ctx)
        return ctx

    ctx = asyncio.run(run())
    sent = texts(llm.last_chat_messages)
    assert sent[0] == ("system", "Be brief.")
    assert sent[1][0] == "system" and "- The user has a premium plan" in sent[1][1]
    assert sent[2] == ("user", "Which plan do I have?")

    # a Context holding a MemoriMemory serializes without it (LlamaIndex's rule for a memory
    # it cannot store); the restored context runs on with memory= given again
    with pytest.warns(UnserializableKeyWarning, match="memory"):
        data = ctx.to_dict()

    async def resume() -> None:
        restored = Context.from_dict(workflow, data)
        again = MemoriMemory.from_defaults(memori=smem, entity_id="carol",
                                           process_id="helpdesk", session_id="t1")
        await workflow.run("Thanks!", memory=again, ctx=restored)

    asyncio.run(resume())
    assert [t for _, t in texts(memory.get_all())] == [
        "Which plan do I have?", "Which plan do I have?", "Thanks!", "Thanks!"]


def test_a_memory_failure_fails_the_run(sqlite_url: str, llm: Recorder) -> None:
    from memori_core.testing import HashEmbedder

    mem = Memori(conn=sqlite_url, embedder=HashEmbedder())
    mem.config.storage.build()
    memory = MemoriMemory.from_defaults(memori=mem, entity_id="alice", session_id="s1")
    mem.close()
    with pytest.raises(StorageError):
        run(FunctionAgent(llm=llm), "hello", memory=memory)
    assert llm.last_chat_messages is None  # the model was never called without its memory


def test_text_of_the_user_message_is_what_is_recalled_for(smem: Memori, llm: Recorder) -> None:
    with smem.attribution(entity_id="alice"):
        smem.remember("The user's favourite colour is teal")
    message = ChatMessage(role="user", blocks=[TextBlock(text="What is my favourite colour?")])
    memory = MemoriMemory.from_defaults(memori=smem, entity_id="alice", session_id="s1")
    run(FunctionAgent(llm=llm), message, memory=memory)
    assert "teal" in system_text(llm.last_chat_messages)
