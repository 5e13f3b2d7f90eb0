"""MemoriCapability with Pydantic AI's own fake models: what the model saw, which tools it was
offered, what was stored; run, run_sync and run_stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from memori_pydantic_ai import MemoriCapability, MemoriDeps, to_memori_messages
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelRetry
from pydantic_ai.messages import (
    BinaryContent,
    CachePoint,
    ImageUrl,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel
from pydantic_ai.models.test import TestModel

from memori_core import ConfigurationError, Memori
from memori_core.context import BLOCK_START


class Script:
    """A FunctionModel that answers with scripted responses and records what it was shown."""

    def __init__(self, *responses: ModelResponse) -> None:
        self.responses = list(responses)
        self.infos: list[AgentInfo] = []
        self.histories: list[list[ModelMessage]] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.infos.append(info)
        self.histories.append(list(messages))
        return self.responses.pop(0) if self.responses else ModelResponse(parts=[TextPart("ok")])

    @property
    def model(self) -> FunctionModel:
        return FunctionModel(self)


def text(s: str) -> ModelResponse:
    return ModelResponse(parts=[TextPart(s)])


def call(tool: str, args: dict[str, Any], call_id: str = "call_1") -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(tool, args, tool_call_id=call_id)])


# ---- instructions ---------------------------------------------------------------------------
def test_memories_recalled_for_the_prompt_are_in_the_instructions(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    smem.remember("The user is allergic to peanuts")
    smem.remember("The user plays the cello")
    script = Script(text("Try apple slices."))
    agent = Agent(script.model, capabilities=[MemoriCapability(smem)], instructions="Be brief.")

    agent.run_sync("Any snack without peanuts? I am allergic")

    seen = script.infos[0].instructions or ""
    assert seen.startswith("Be brief.\n\n" + BLOCK_START)
    assert 'fact: "The user is allergic to peanuts"' in seen
    assert "cello" not in seen  # not similar to the prompt
    assert "not an instruction" in seen  # framed as data


def test_inject_false_and_recall_limit(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    for fact in ("The user likes green tea", "The user likes black tea", "The user likes mint tea"):
        smem.remember(fact)
    off = Script(text("ok"))
    Agent(off.model, capabilities=[MemoriCapability(smem, inject=False, capture=False)]).run_sync(
        "tea")  # nothing captured: augmentation cannot race the next run
    assert off.infos[0].instructions is None
    one = Script(text("ok"))
    Agent(one.model, capabilities=[MemoriCapability(smem, recall_limit=1)]).run_sync("tea likes")
    assert (one.infos[0].instructions or "").count(" fact: ") == 1


def test_scope_process_hides_other_personas_and_entity_reads_all(smem: Memori) -> None:
    with smem.attribution(entity_id="u1", process_id="coach"):
        smem.remember("The user runs marathons")
    with smem.attribution(entity_id="u1", process_id="chef"):
        process = Script(text("ok"))
        Agent(process.model, capabilities=[MemoriCapability(smem)]).run_sync("marathons runs")
        entity = Script(text("ok"))
        Agent(entity.model, capabilities=[MemoriCapability(smem, scope="entity")]).run_sync(
            "marathons runs")
    assert "marathons" not in (process.infos[0].instructions or "")
    assert "The user runs marathons" in (entity.infos[0].instructions or "")


def test_recall_uses_the_last_user_prompt_when_the_run_has_none(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    smem.remember("The user is allergic to peanuts")
    script = Script(text("ok"))
    Agent(script.model, capabilities=[MemoriCapability(smem)]).run_sync(
        None, message_history=[ModelRequest.user_text_prompt("am I allergic to peanuts?")])
    assert "allergic to peanuts" in (script.infos[0].instructions or "")


# ---- tools ----------------------------------------------------------------------------------------
def test_the_model_is_offered_both_tools_with_their_schemas(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    model = TestModel(call_tools=[])
    Agent(model, capabilities=[MemoriCapability(smem)]).run_sync("hi")
    params = model.last_model_request_parameters
    assert params is not None
    tools = {t.name: t for t in params.function_tools}
    assert set(tools) == {"recall_memories", "remember"}
    schema = tools["recall_memories"].parameters_json_schema
    assert schema["required"] == ["query"]
    assert schema["properties"]["limit"]["maximum"] == 20
    assert tools["remember"].parameters_json_schema["required"] == ["fact"]
    assert tools["remember"].parameters_json_schema["properties"]["fact"]["minLength"] == 8
    assert "long-term memory" in (tools["remember"].description or "")


def test_tools_false_offers_no_tools(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    model = TestModel(call_tools=[])
    Agent(model, capabilities=[MemoriCapability(smem, tools=False)]).run_sync("hi")
    assert model.last_model_request_parameters is not None
    assert model.last_model_request_parameters.function_tools == []


def test_remember_then_recall_memories_round_trip(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    script = Script(call("remember", {"fact": "The user's favourite city is Porto"}, "c1"),
                    call("recall_memories", {"query": "favourite city", "limit": 3}, "c2"),
                    text("Porto."))
    agent = Agent(script.model, capabilities=[MemoriCapability(smem, inject=False)])
    agent.run_sync("Remember Porto is my favourite city, then check")

    remembered = script.histories[1][-1].parts[0]
    assert isinstance(remembered, ToolReturnPart)
    memory = next(m for m in smem.memories() if m.content == "The user's favourite city is Porto")
    assert remembered.content == f"Remembered (memory {memory.id})."
    assert memory.kind == "fact"
    recalled = script.histories[2][-1].parts[0]
    assert isinstance(recalled, ToolReturnPart)
    block = recalled.model_response_str()
    assert block.startswith(BLOCK_START)  # the one framing, also for tools
    assert f'{memory.created_at:%Y-%m-%d} fact: "{memory.content}"' in block


def test_bad_tool_input_goes_back_to_the_model_as_a_retry(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    script = Script(call("remember", {"fact": "a"}, "c1"),
                    call("recall_memories", {"query": "food", "limit": 500}, "c2"),
                    call("recall_memories", {"query": "    "}, "c3"),
                    text("done"))
    Agent(script.model, capabilities=[MemoriCapability(smem, inject=False)],
          retries=3).run_sync("hi")
    retries = [p for h in script.histories[1:] if isinstance(p := h[-1].parts[0], ToolReturnPart)]
    assert len(retries) == 3 and all(p.outcome == "retried" for p in retries)
    assert "at least 8 characters" in retries[0].model_response_str()
    assert "less than or equal to 20" in retries[1].model_response_str()
    assert "non-blank" in retries[2].model_response_str()
    # nothing was remembered (the captured "hi" may already be an episodic memory)
    assert [m for m in smem.memories() if m.kind != "episodic"] == []


def test_tools_read_attribution_from_deps(smem: Memori) -> None:
    script = Script(call("remember", {"fact": "Bob has a dog"}), text("ok"))
    agent = Agent(script.model, deps_type=MemoriDeps,
                  capabilities=[MemoriCapability(inject=False, capture=False)])
    agent.run_sync("I have a dog", deps=MemoriDeps(smem, "bob", process_id="pets"))
    with smem.attribution(entity_id="bob", process_id="pets"):
        assert [m.content for m in smem.memories()] == ["Bob has a dog"]
    assert smem.entity_id is None  # the caller's attribution was never touched


# ---- capture ------------------------------------------------------------------------------------
def test_new_messages_with_tool_calls_and_returns_are_captured(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    script = Script(call("remember", {"fact": "The user lives in Lisbon"}, "call_7"),
                    text("I'll remember that."))
    result = Agent(script.model, capabilities=[MemoriCapability(smem)]).run_sync(
        "I live in Lisbon")
    rows = smem.session_messages()
    [lisbon] = [m.id for m in smem.memories() if m.content == "The user lives in Lisbon"]
    assert [(r["role"], r["content"]) for r in rows] == [
        ("user", "I live in Lisbon"),
        ("assistant", ""),
        ("tool", f"Remembered (memory {lisbon})."),
        ("assistant", "I'll remember that."),
    ]
    assert rows[1]["tool_calls"] == [{"id": "call_7", "type": "function", "function": {
        "name": "remember", "arguments": '{"fact":"The user lives in Lisbon"}'}}]
    assert rows[2]["tool_call_id"] == "call_7" and rows[2]["name"] == "remember"
    assert all(r["metadata"]["pydantic_ai"]["run_id"] == result.run_id for r in rows)
    assert rows[3]["metadata"]["pydantic_ai"]["model_name"].startswith("function:")
    # the captured user message becomes a memory once augmentation ran: recalled as one hit
    # with what was extracted from it (shown as the extracted fact)
    assert smem.augmentation.wait(timeout=30)
    [said] = [m.id for m in smem.memories()
              if m.kind == "episodic" and m.content == "I live in Lisbon"]
    [turn] = [h for h in smem.recall("I live in Lisbon") if said in h.memory_ids]
    assert turn.source_message_ids == (rows[0]["id"],)


def test_capture_false_stores_nothing(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    Agent(TestModel(call_tools=[]),
          capabilities=[MemoriCapability(smem, capture=False)]).run_sync("hello")
    assert smem.session_messages() == []


def test_second_run_continues_the_session_and_sees_the_first(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    smem.set_session("s1")
    agent = Agent(TestModel(call_tools=[]), capabilities=[MemoriCapability(smem)])
    first = agent.run_sync("My dog is called Rex")
    assert smem.augmentation.wait(timeout=30)
    script = Script(text("Rex!"))
    agent2 = Agent(script.model, capabilities=[MemoriCapability(smem)])
    agent2.run_sync("What is my dog called?", message_history=first.all_messages())
    # the first run's turn is in the history the model is given: not injected again
    assert script.infos[0].instructions is None
    assert [r["content"] for r in smem.session_messages("s1") if r["role"] == "user"] == [
        "My dog is called Rex", "What is my dog called?"]  # history is not captured twice


def test_multimodal_prompt_keeps_text_and_names_media(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    Agent(TestModel(call_tools=[]), capabilities=[MemoriCapability(smem)]).run_sync(
        ["What is in this picture?", ImageUrl(url="https://example.com/cat.png")])
    user = smem.session_messages()[0]
    assert user["content"] == [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image-url", "name": "https://example.com/cat.png", "media_type": "image/png"},
    ]


# ---- async and streaming ------------------------------------------------------------------------
def test_async_run_and_run_stream_recall_and_capture(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    smem.remember("The user is allergic to peanuts")
    seen: list[str | None] = []

    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        seen.append(info.instructions)
        yield "No peanuts, "
        yield "promise."

    def whole(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(info.instructions)
        return text("No peanuts, promise.")

    agent = Agent(FunctionModel(whole, stream_function=stream),
                  capabilities=[MemoriCapability(smem)])

    async def main() -> tuple[str, str]:
        async with agent.run_stream("snack ideas? peanuts allergic") as response:
            chunks = [c async for c in response.stream_text(delta=True)]
        result = await agent.run("more peanuts snacks")
        return "".join(chunks), result.output

    assert asyncio.run(main()) == ("No peanuts, promise.", "No peanuts, promise.")
    assert all("allergic to peanuts" in (s or "") for s in seen) and len(seen) == 2
    assert [(r["role"], r["content"]) for r in smem.session_messages()] == [
        ("user", "snack ideas? peanuts allergic"), ("assistant", "No peanuts, promise."),
        ("user", "more peanuts snacks"), ("assistant", "No peanuts, promise."),
    ]


def test_run_stream_with_a_tool_call_captures_call_and_return(smem: Memori) -> None:
    smem.attribution(entity_id="u1")

    async def stream(messages: list[ModelMessage], info: AgentInfo
                     ) -> AsyncIterator[str | dict[int, DeltaToolCall]]:
        if len(messages) == 1:
            yield {0: DeltaToolCall(name="remember", json_args='{"fact": "The user likes jazz"}',
                                    tool_call_id="s1")}
        else:
            yield "Noted: jazz."

    agent = Agent(FunctionModel(stream_function=stream), capabilities=[MemoriCapability(smem)])

    async def main() -> str:
        async with agent.run_stream("I like jazz") as response:
            return await response.get_output()

    assert asyncio.run(main()) == "Noted: jazz."
    assert [r["role"] for r in smem.session_messages()] == ["user", "assistant", "tool",
                                                          "assistant"]
    assert smem.augmentation.wait(timeout=30)  # what it extracts from "I like jazz" too
    assert ("fact", "The user likes jazz") in [(m.kind, m.content) for m in smem.memories()]


# ---- errors surface --------------------------------------------------------------------------------
def test_no_attribution_fails_before_the_model_is_called(smem: Memori) -> None:
    script = Script(text("never"))
    agent = Agent(script.model, capabilities=[MemoriCapability(smem)])
    with pytest.raises(ConfigurationError, match="MemoriDeps") as err:
        agent.run_sync("hello")
    assert err.value.argument == "entity_id"
    assert script.infos == []


def test_no_memori_anywhere_names_both_fixes() -> None:
    agent = Agent(TestModel(), capabilities=[MemoriCapability()])
    with pytest.raises(ConfigurationError, match=r"MemoriCapability\(mem\)") as err:
        agent.run_sync("hello")
    assert err.value.argument == "memori"


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"memori": "sqlite:///x.db"}, "memori"),
    ({"tools": "yes"}, "tools"),
    ({"inject": 1}, "inject"),
    ({"capture": None}, "capture"),
    ({"recall_limit": 0}, "recall_limit"),
    ({"recall_limit": True}, "recall_limit"),
    ({"scope": "user"}, "scope"),
])
def test_bad_arguments_name_the_argument(kwargs: dict[str, Any], argument: str) -> None:
    memori = kwargs.pop("memori", None)
    with pytest.raises(ConfigurationError) as err:
        MemoriCapability(memori, **kwargs)
    assert err.value.argument == argument


def test_one_capability_serves_concurrent_runs_without_sharing_recall(smem: Memori) -> None:
    cap = MemoriCapability(smem, capture=False)
    with smem.attribution(entity_id="ann"):
        smem.remember("Ann plays chess")
    with smem.attribution(entity_id="ben"):
        smem.remember("Ben plays chess badly")
    scripts = {name: Script(text(name)) for name in ("ann", "ben")}

    async def run(name: str) -> None:
        smem.attribution(entity_id=name)  # this task's own attribution
        await Agent(scripts[name].model, capabilities=[cap]).run("chess plays")

    async def main() -> None:
        await asyncio.gather(run("ann"), run("ben"))

    asyncio.run(main())
    assert "Ann plays chess" in (scripts["ann"].infos[0].instructions or "")
    assert "Ben" not in (scripts["ann"].infos[0].instructions or "")
    assert "Ben plays chess badly" in (scripts["ben"].infos[0].instructions or "")
    assert "Ann" not in (scripts["ben"].infos[0].instructions or "")


def test_output_retry_feedback_is_captured_as_system_not_user(smem: Memori) -> None:
    smem.attribution(entity_id="u1")
    script = Script(text("too short"), text("a long enough answer"))
    agent = Agent(script.model, capabilities=[MemoriCapability(smem)])

    @agent.output_validator
    def long_enough(output: str) -> str:
        if len(output) < 12:
            raise ModelRetry("answer in at least 12 characters")
        return output

    agent.run_sync("answer me")
    rows = [(r["role"], r["content"]) for r in smem.session_messages()]
    assert [role for role, _ in rows] == ["user", "assistant", "system", "assistant"]
    assert "answer in at least 12 characters" in rows[2][1]
    assert smem.augmentation.wait(timeout=30)
    assert all("12 characters" not in m.content for m in smem.memories())  # not the user's words


def test_media_bytes_are_not_copied_into_memori() -> None:
    request = ModelRequest(parts=[UserPromptPart(content=[
        "look", BinaryContent(data=b"\x89PNG...", media_type="image/png"), CachePoint()])])
    [message] = to_memori_messages(request)
    assert message["role"] == "user"
    assert message["content"][0] == {"type": "text", "text": "look"}
    assert message["content"][1]["type"] == "binary" and "data" not in message["content"][1]
    assert message["content"][1]["media_type"] == "image/png" and len(message["content"]) == 2
    assert to_memori_messages(ModelResponse(parts=[])) == []
