"""MemoriMiddleware in langchain.agents.create_agent: memories in the system message of every
model call (sync and async), the agent's turn captured once (tool calls and results included),
the user taken from the run's context or config, two users kept apart."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from lc_helpers import SeenByModels, ToolCallingFakeModel, roles
from memori_langchain import MemoriChatMessageHistory, MemoriMiddleware, with_memori

from memori_core import ConfigurationError, Memori
from memori_core.context import BLOCK_HEADER

#: the memory's block line, dated the day tests/conftest.py's clock starts
LISBON = '- 2026-01-01 fact: "The user\'s home city is Lisbon"'


@tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny in {city}"


def tool_then_answer(*answers: str) -> ToolCallingFakeModel:
    """A model that first calls the weather tool, then answers."""
    return ToolCallingFakeModel(messages=iter([
        AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Lisbon"},
                                   "id": "call_1", "type": "tool_call"}]),
        *answers]))


@pytest.fixture
def mem(smem: Memori) -> Memori:
    for user, city in (("ana", "Lisbon"), ("bob", "Porto")):
        with smem.attribution(entity_id=user):
            smem.remember(f"The user's home city is {city}")
    return smem


def systems(seen: SeenByModels) -> list[str]:
    return [r["messages"][0].text for r in seen.runs if isinstance(r["messages"][0],
                                                                     SystemMessage)]


def test_every_model_call_gets_memories_and_the_turn_is_captured(mem: Memori,
                                                                  seen: SeenByModels) -> None:
    agent = create_agent(tool_then_answer("Sunny in your city, Lisbon."), tools=[weather],
                         system_prompt="You are helpful.", middleware=[MemoriMiddleware(mem)])
    out = agent.invoke({"messages": [HumanMessage("What's the weather in my home city?")]},
                       {"configurable": {"user_id": "ana", "thread_id": "t1"},
                        "callbacks": [seen]})
    assert out["messages"][-1].content == "Sunny in your city, Lisbon."
    sent = systems(seen)
    assert len(sent) == 2  # the tool round and the answer
    assert sent == [f"You are helpful.\n\n<memori_context>\n{BLOCK_HEADER}\n{LISBON}\n"
                    "</memori_context>"] * 2
    assert [r for r, _ in roles(mem, "ana", "t1")] == ["user", "assistant", "tool",
                                                       "assistant"]
    # the stored turn reads back as the agent's own messages
    assert MemoriChatMessageHistory("t1", memori=mem, entity_id="ana").messages == out["messages"]
    assert "memori_captured_through" not in out  # private state stays out of the output


def test_with_a_checkpointer_each_message_is_captured_once(mem: Memori) -> None:
    agent = create_agent(tool_then_answer("Lisbon: sunny.", "You're welcome."), tools=[weather],
                         middleware=[MemoriMiddleware(mem)], checkpointer=InMemorySaver())
    config: Any = {"configurable": {"user_id": "ana", "thread_id": "t1"}}
    agent.invoke({"messages": [HumanMessage("Weather at home?")]}, config)
    out = agent.invoke({"messages": [HumanMessage("Thanks!"), HumanMessage("Really.")]}, config)
    assert [m.content for m in out["messages"]][-3:] == ["Thanks!", "Really.", "You're welcome."]
    assert [c for _, c in roles(mem, "ana", "t1")] == [
        "Weather at home?", "", "Sunny in Lisbon", "Lisbon: sunny.",
        "Thanks!", "Really.", "You're welcome."]


def test_without_a_checkpointer_a_resent_history_is_not_captured_again(mem: Memori) -> None:
    agent = create_agent(ToolCallingFakeModel(messages=iter(["One.", "Two."])),
                         middleware=[MemoriMiddleware(mem, entity_id="ana", session_id="s")])
    first = agent.invoke({"messages": [HumanMessage("First?")]})
    agent.invoke({"messages": [*first["messages"], HumanMessage("Second?")]})
    assert [c for _, c in roles(mem, "ana", "s")] == ["First?", "One.", "Second?", "Two."]


def test_async_agent(mem: Memori, seen: SeenByModels) -> None:
    agent = create_agent(tool_then_answer("Sunny in Lisbon."), tools=[weather],
                         middleware=[MemoriMiddleware(mem)])
    out = asyncio.run(agent.ainvoke(
        {"messages": [HumanMessage("Weather in my home city?")]},
        {"configurable": {"user_id": "ana", "thread_id": "a1"}, "callbacks": [seen]}))
    assert out["messages"][-1].content == "Sunny in Lisbon."
    assert all(LISBON in s.splitlines() for s in systems(seen)) and len(systems(seen)) == 2
    assert len(roles(mem, "ana", "a1")) == 4


@dataclass
class UserContext:
    user_id: str
    thread_id: str


def test_the_user_from_the_runtime_context_and_two_users_apart(mem: Memori,
                                                                seen: SeenByModels) -> None:
    agent = create_agent(ToolCallingFakeModel(messages=iter(["A", "B"])),
                         middleware=[MemoriMiddleware(mem)], context_schema=UserContext)

    async def both() -> None:
        await asyncio.gather(
            agent.ainvoke({"messages": [HumanMessage("my home city? (ana)")]},
                          {"callbacks": [seen]}, context=UserContext("ana", "ca")),
            agent.ainvoke({"messages": [HumanMessage("my home city? (bob)")]},
                          {"callbacks": [seen]}, context=UserContext("bob", "cb")))

    asyncio.run(both())
    by_user = {r["messages"][-1].text[-4:-1]: r["messages"][0].text for r in seen.runs}
    assert "Lisbon" in by_user["ana"] and "Porto" not in by_user["ana"]
    assert "Porto" in by_user["bob"] and "Lisbon" not in by_user["bob"]
    assert roles(mem, "ana", "ca")[0] == ("user", "my home city? (ana)")
    assert roles(mem, "bob", "cb")[0] == ("user", "my home city? (bob)")


def test_a_dict_context_and_memoris_attribution(mem: Memori) -> None:
    agent = create_agent(ToolCallingFakeModel(messages=iter(["A", "B"])),
                         middleware=[MemoriMiddleware(mem, entity_key="uid",
                                                      session_key="conv")])
    agent.invoke({"messages": [HumanMessage("hello")]}, context={"uid": "ana", "conv": "c"})
    assert [r for r, _ in roles(mem, "ana", "c")] == ["user", "assistant"]
    with mem.attribution(entity_id="bob"):
        mem.set_session("from-memori")
        agent.invoke({"messages": [HumanMessage("hello")]})
    assert [r for r, _ in roles(mem, "bob", "from-memori")] == ["user", "assistant"]


def test_switches_and_no_system_prompt(mem: Memori, seen: SeenByModels) -> None:
    quiet = create_agent(ToolCallingFakeModel(messages=iter(["A"])),
                         middleware=[MemoriMiddleware(mem, entity_id="ana", session_id="q",
                                                      inject=False, capture=False)])
    quiet.invoke({"messages": [HumanMessage("home city?")]}, {"callbacks": [seen]})
    assert systems(seen) == [] and roles(mem, "ana", "q") == []
    plain = create_agent(ToolCallingFakeModel(messages=iter(["A"])),
                         middleware=[MemoriMiddleware(mem, entity_id="ana")])
    plain.invoke({"messages": [HumanMessage("home city?")]}, {"callbacks": [seen]})
    assert systems(seen)[0].startswith("<memori_context>\n")  # a system message was created


def test_no_entity_and_bad_arguments(mem: Memori) -> None:
    agent = create_agent(ToolCallingFakeModel(messages=iter(["A"])),
                         middleware=[MemoriMiddleware(mem)])
    with pytest.raises(ConfigurationError) as err:
        agent.invoke({"messages": [HumanMessage("hi")]})
    assert err.value.argument == "entity_id"
    for kwargs, argument in (({"scope": "all"}, "scope"), ({"recall_limit": -1}, "recall_limit"),
                             ({"session_key": ""}, "session_key")):
        with pytest.raises(ConfigurationError) as err:
            MemoriMiddleware(mem, **kwargs)
        assert err.value.argument == argument
    with pytest.raises(ConfigurationError) as err:
        MemoriMiddleware("not memori")
    assert err.value.argument == "memori"


def test_memory_failures_never_fail_the_run(mem: Memori) -> None:
    agent = create_agent(ToolCallingFakeModel(messages=iter(["A"])),
                         middleware=[MemoriMiddleware(mem, entity_id="ana")])
    mem.close()
    out = agent.invoke({"messages": [HumanMessage("home city?")]})
    assert out["messages"][-1].content == "A"
    assert mem.llm.stats()["recall_errors"] == 1 and mem.llm.stats()["spill_pending"] == 1


class FailingModel(ToolCallingFakeModel):
    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("model down")


def test_a_model_error_keeps_the_user_message_marked(mem: Memori) -> None:
    agent = create_agent(FailingModel(messages=iter([])),
                         middleware=[MemoriMiddleware(mem, entity_id="ana", session_id="e")])
    with pytest.raises(ValueError, match="model down"):
        agent.invoke({"messages": [HumanMessage("Weather at home?")]})
    with mem.attribution(entity_id="ana"):
        (row,) = mem.session_messages("e")
    assert row["content"] == "Weather at home?"
    assert (row["metadata"]["outcome"], row["metadata"]["error"]) == ("error", "ValueError")


def test_an_agent_stream_closed_early_keeps_what_ran(mem: Memori) -> None:
    agent = create_agent(tool_then_answer("Sunny in Lisbon."), tools=[weather],
                         middleware=[MemoriMiddleware(mem, entity_id="ana", session_id="st")])
    stream = agent.stream({"messages": [HumanMessage("Weather at home?")]},
                          stream_mode="updates")
    first = next(stream)  # the first model call's update: a tool call
    stream.close()  # type: ignore[attr-defined]
    assert first["model"]["messages"][0].tool_calls[0]["name"] == "weather"
    assert [(r, c) for r, c in roles(mem, "ana", "st")] == [("user", "Weather at home?"),
                                                           ("assistant", "")]


def test_a_cancelled_async_run_keeps_the_user_message_marked_stopped(mem: Memori) -> None:
    started = asyncio.Event()

    class Slow(ToolCallingFakeModel):
        async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
            started.set()
            await asyncio.Event().wait()  # never answers

    agent = create_agent(Slow(messages=iter([])),
                         middleware=[MemoriMiddleware(mem, entity_id="ana", session_id="c")])

    async def run() -> None:
        task = asyncio.create_task(agent.ainvoke({"messages": [HumanMessage("Hello?")]}))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    with mem.attribution(entity_id="ana"):
        (row,) = mem.session_messages("c")
    assert (row["content"], row["metadata"]["outcome"]) == ("Hello?", "stopped")


def test_memories_the_agents_messages_hold_are_not_injected_again(mem: Memori,
                                                                   seen: SeenByModels) -> None:
    agent = create_agent(ToolCallingFakeModel(messages=iter(["Lovely.", "Adraga.", "Adraga."])),
                         middleware=[MemoriMiddleware(mem, entity_id="ana")])
    first = agent.invoke({"messages": [HumanMessage("My favourite beach is Praia da Adraga")]},
                         {"configurable": {"thread_id": "b1"}})
    assert mem.augmentation.wait(timeout=30)
    question = HumanMessage("Which beach is my favourite?")
    agent.invoke({"messages": [question]},
                 {"configurable": {"thread_id": "b2"}, "callbacks": [seen]})
    assert "Praia da Adraga" in systems(seen)[0]  # a new thread: recalled
    agent.invoke({"messages": [*first["messages"], question]},
                 {"configurable": {"thread_id": "b1"}, "callbacks": [seen]})
    assert all("Adraga" not in text for text in systems(seen)[1:])  # visible: not repeated
    assert len(seen.runs) == 2


def test_a_with_memori_model_in_the_agent_is_refused_naming_the_fix(mem: Memori) -> None:
    agent = create_agent(with_memori(ToolCallingFakeModel(messages=iter(["A"])), mem),
                         middleware=[MemoriMiddleware(mem, entity_id="ana", session_id="w")])
    with pytest.raises(ConfigurationError, match="pass the bare model") as err:
        agent.invoke({"messages": [HumanMessage("hi")]})
    assert err.value.argument == "model" and roles(mem, "ana", "w") == []
