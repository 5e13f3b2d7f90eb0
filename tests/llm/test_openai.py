"""OpenAI and OpenAI-compatible clients through ``mem.llm.register``, replayed from cassettes.

Each cassette matches on method, URI and JSON body, so a test passes only when the request
carried exactly the injected block the cassette holds (or none at all).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pydantic
import pytest
from memori_llm_support import (
    BLOCK,
    ENTITY,
    MEMORY,
    MODELS,
    MODES,
    PROCESS,
    QUESTION,
    UNRELATED,
    api_key,
    new_memori,
)

from memori_core import Memori

CASSETTE_PROVIDER = "openai"
pytestmark = pytest.mark.vcr

MODEL = MODELS["openai"]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def client_for(mode: str, **kwargs: Any) -> Any:
    cls = openai.AsyncOpenAI if mode.startswith("async") else openai.OpenAI
    return cls(api_key=kwargs.pop("api_key", api_key("openai")), max_retries=0, **kwargs)


def chat(client: Any, mode: str, **kwargs: Any) -> str:
    """``chat.completions.create`` in ``mode``; the reply text (streams joined)."""
    if mode == "sync":
        return str(client.chat.completions.create(**kwargs).choices[0].message.content)
    if mode == "stream":
        return "".join(c.choices[0].delta.content or "" for c in
                       client.chat.completions.create(stream=True, **kwargs) if c.choices)

    async def run() -> str:
        try:
            if mode == "async":
                reply = await client.chat.completions.create(**kwargs)
                return str(reply.choices[0].message.content)
            out = []
            async for c in await client.chat.completions.create(stream=True, **kwargs):
                if c.choices:
                    out.append(c.choices[0].delta.content or "")
            return "".join(out)
        finally:
            await client.close()

    return asyncio.run(run())


def sent(vcr: Any, i: int = 0) -> Any:
    """The JSON body of the i-th request in the cassette (the one the call had to match)."""
    return json.loads(vcr.requests[i].body)


def turns(mem: Memori) -> list[tuple[str, Any]]:
    return [(m["role"], m["content"]) for m in mem.session_messages()]


@pytest.mark.parametrize("mode", MODES)
def test_chat_injects_recalled_memories_and_captures_the_turn(lmem: Memori, vcr: Any,
                                                              mode: str) -> None:
    lmem.remember(MEMORY)
    client = client_for(mode)
    assert lmem.llm.register(client) is lmem
    reply = chat(client, mode, model=MODEL, messages=[{"role": "user", "content": QUESTION}])
    assert vcr.all_played
    assert sent(vcr)["messages"] == [{"role": "system", "content": BLOCK},
                                     {"role": "user", "content": QUESTION}]
    assert reply
    assert turns(lmem) == [("user", QUESTION), ("assistant", reply)]
    meta = lmem.session_messages()[1]["metadata"]
    assert meta == {"provider": "openai", "api": "chat.completions.create", "model": MODEL,
                    **({"stream": "complete"} if "stream" in mode else {})}
    stats = lmem.llm.stats()
    assert (stats["calls"], stats["injected"], stats["turns_captured"]) == (1, 1, 1)
    assert stats["recall_errors"] == stats["capture_errors"] == 0


def test_streamed_turn_is_augmented_like_any_other(lmem: Memori, vcr: Any) -> None:
    client = client_for("stream")
    lmem.llm.register(client)
    reply = chat(client, "stream", model=MODEL, messages=[{"role": "user", "content": QUESTION}])
    assert reply
    assert lmem.augmentation.run_once() == 1  # the streamed turn queued its augmentation job
    assert [m.content for m in lmem.memories(kinds=["episodic"])] == [QUESTION]


def test_nothing_is_injected_when_no_memory_clears_the_threshold(lmem: Memori,
                                                                 vcr: Any) -> None:
    lmem.remember(MEMORY)
    client = client_for("sync")
    lmem.llm.register(client)
    reply = chat(client, "sync", model=MODEL, messages=[{"role": "user", "content": UNRELATED}])
    assert sent(vcr) == {"model": MODEL, "messages": [{"role": "user", "content": UNRELATED}]}
    assert turns(lmem) == [("user", UNRELATED), ("assistant", reply)]
    assert lmem.llm.stats()["injected"] == 0


def test_block_joins_the_apps_system_prompt_which_is_never_captured(lmem: Memori,
                                                                    vcr: Any) -> None:
    lmem.remember(MEMORY)
    client = client_for("sync")
    lmem.llm.register(client)
    messages = [{"role": "system", "content": "You are a chef."},
                {"role": "user", "content": QUESTION}]
    before = json.dumps(messages)
    reply = chat(client, "sync", model=MODEL, messages=messages)
    assert json.dumps(messages) == before  # the caller's messages are not modified
    assert sent(vcr)["messages"][0] == {"role": "system",
                                        "content": "You are a chef.\n\n" + BLOCK}
    assert turns(lmem) == [("user", QUESTION), ("assistant", reply)]


def test_tool_call_sequence_is_captured_in_order(lmem: Memori, vcr: Any) -> None:
    client = client_for("sync")
    lmem.llm.register(client)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Lisbon?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    call = first.choices[0].message.tool_calls[0]
    messages += [{"role": "assistant", "content": None, "tool_calls": [
                     {"id": call.id, "type": "function", "function": {
                         "name": call.function.name, "arguments": call.function.arguments}}]},
                 {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}]
    final = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    session = lmem.session_messages()
    assert [m["role"] for m in session] == ["user", "assistant", "tool", "assistant"]
    assert session[1]["tool_calls"] == [{"id": call.id, "type": "function", "function": {
        "name": "get_weather", "arguments": call.function.arguments}}]
    assert json.loads(call.function.arguments) == {"city": "Lisbon"}
    assert (session[2]["tool_call_id"], session[2]["content"]) == (call.id, "18 C and sunny")
    assert session[3]["content"] == final.choices[0].message.content


def test_streamed_tool_call_arguments_are_assembled(lmem: Memori, vcr: Any) -> None:
    client = client_for("stream")
    lmem.llm.register(client)
    chunks = list(client.chat.completions.create(
        model=MODEL, stream=True, tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "What is the weather in Lisbon?"}]))
    assert len(chunks) > 3
    call = lmem.session_messages()[1]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Lisbon"}


def test_stream_left_early_keeps_what_arrived(lmem: Memori, vcr: Any) -> None:
    client = client_for("stream")
    lmem.llm.register(client)
    seen = ""
    for chunk in client.chat.completions.create(model=MODEL, stream=True, messages=[
            {"role": "user", "content": UNRELATED}]):
        seen += chunk.choices[0].delta.content or ""
        if seen:
            break
    session = lmem.session_messages()
    assert turns(lmem) == [("user", UNRELATED), ("assistant", seen)]
    assert session[1]["metadata"]["stream"] == "stopped"


def test_async_stream_left_early_keeps_what_arrived(lmem: Memori, vcr: Any) -> None:
    client = client_for("async_stream")
    lmem.llm.register(client)

    async def run() -> str:
        try:
            stream = await client.chat.completions.create(
                model=MODEL, stream=True, messages=[{"role": "user", "content": UNRELATED}])
            async for chunk in stream:
                if chunk.choices[0].delta.content:
                    return str(chunk.choices[0].delta.content)
            return ""
        finally:
            await client.close()

    seen = asyncio.run(run())  # the loop closes the abandoned iteration before returning
    assert seen
    assert turns(lmem) == [("user", UNRELATED), ("assistant", seen)]
    assert lmem.session_messages()[1]["metadata"]["stream"] == "stopped"


@pytest.mark.authored
def test_stream_error_midway_is_raised_and_the_partial_turn_kept(lmem: Memori,
                                                                 vcr: Any) -> None:
    client = client_for("stream")
    lmem.llm.register(client)
    parts: list[str] = []

    def consume() -> None:
        for chunk in client.chat.completions.create(model=MODEL, stream=True, messages=[
                {"role": "user", "content": UNRELATED}]):
            parts.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIError, match="overloaded"):
        consume()
    seen = "".join(parts)
    assert seen
    assert turns(lmem) == [("user", UNRELATED), ("assistant", seen)]
    assert lmem.session_messages()[1]["metadata"]["stream"] == "error"


def test_chat_completions_stream_helper_goes_through_create(lmem: Memori, vcr: Any) -> None:
    lmem.remember(MEMORY)
    client = client_for("stream")
    lmem.llm.register(client)
    with client.chat.completions.stream(model=MODEL, messages=[
            {"role": "user", "content": QUESTION}]) as stream:
        final = stream.get_final_completion()
    assert turns(lmem) == [("user", QUESTION),
                           ("assistant", final.choices[0].message.content)]


class Snack(pydantic.BaseModel):
    name: str
    peanut_free: bool


def test_parse_is_memory_aware(lmem: Memori, vcr: Any) -> None:
    lmem.remember(MEMORY)
    client = client_for("sync")
    lmem.llm.register(client)
    reply = client.chat.completions.parse(model=MODEL, response_format=Snack,
                                          messages=[{"role": "user", "content": QUESTION}])
    parsed = reply.choices[0].message.parsed
    assert isinstance(parsed, Snack)
    assert sent(vcr)["messages"][0] == {"role": "system", "content": BLOCK}
    assert lmem.session_messages()[1]["metadata"]["api"] == "chat.completions.parse"
    assert json.loads(lmem.session_messages()[1]["content"]) == parsed.model_dump()


def responses_call(client: Any, mode: str, **kwargs: Any) -> str:
    if mode == "sync":
        return str(client.responses.create(**kwargs).output_text)
    if mode == "stream":
        return "".join(e.delta for e in client.responses.create(stream=True, **kwargs)
                       if e.type == "response.output_text.delta")

    async def run() -> str:
        try:
            if mode == "async":
                return str((await client.responses.create(**kwargs)).output_text)
            out = []
            async for e in await client.responses.create(stream=True, **kwargs):
                if e.type == "response.output_text.delta":
                    out.append(e.delta)
            return "".join(out)
        finally:
            await client.close()

    return asyncio.run(run())


@pytest.mark.parametrize("mode", MODES)
def test_responses_api_gets_the_block_in_instructions(lmem: Memori, vcr: Any, mode: str) -> None:
    lmem.remember(MEMORY)
    client = client_for(mode)
    lmem.llm.register(client)
    reply = responses_call(client, mode, model=MODEL, input=QUESTION,
                           instructions="You are a chef.")
    body = sent(vcr)
    assert body["instructions"] == "You are a chef.\n\n" + BLOCK
    assert body["input"] == QUESTION
    assert reply
    assert turns(lmem) == [("user", QUESTION), ("assistant", reply)]
    assert lmem.session_messages()[1]["metadata"]["api"] == "responses.create"


def test_responses_stream_helper_goes_through_create(lmem: Memori, vcr: Any) -> None:
    lmem.remember(MEMORY)
    client = client_for("stream")
    lmem.llm.register(client)
    with client.responses.stream(model=MODEL, input=QUESTION,
                                 instructions="You are a chef.") as stream:
        final = stream.get_final_response()
    assert sent(vcr)["instructions"] == "You are a chef.\n\n" + BLOCK
    assert turns(lmem) == [("user", QUESTION), ("assistant", final.output_text)]


def test_responses_function_call_round_trip(lmem: Memori, vcr: Any) -> None:
    client = client_for("sync")
    lmem.llm.register(client)
    tool = {"type": "function", "name": "get_weather",
            "parameters": WEATHER_TOOL["function"]["parameters"]}  # type: ignore[index]
    first = client.responses.create(model=MODEL, input="What is the weather in Lisbon?",
                                    tools=[tool])
    call = first.output[0]
    final = client.responses.create(model=MODEL, tools=[tool], input=[
        {"role": "user", "content": "What is the weather in Lisbon?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name,
         "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "18 C and sunny"}])
    session = lmem.session_messages()
    assert [m["role"] for m in session] == ["user", "assistant", "tool", "assistant"]
    assert session[1]["tool_calls"][0]["id"] == call.call_id
    assert session[2] == {**session[2], "tool_call_id": call.call_id, "content": "18 C and sunny"}
    assert session[3]["content"] == final.output_text


@pytest.mark.parametrize("server", [
    pytest.param("azure", marks=pytest.mark.authored),  # an example endpoint
    "deepseek", "xai",
    pytest.param("ollama", marks=pytest.mark.authored)])  # a server on this machine
def test_openai_compatible_servers(lmem: Memori, vcr: Any, server: str) -> None:
    lmem.remember(MEMORY)
    if server == "azure":
        client: Any = openai.AzureOpenAI(
            api_key=api_key("openai"), api_version="2024-10-21", max_retries=0,
            azure_endpoint="https://example-resource.openai.azure.com")
        model = MODEL
    else:
        base, model, key = {
            "deepseek": ("https://api.deepseek.com", "deepseek-chat", api_key("deepseek")),
            "xai": ("https://api.x.ai/v1", "grok-4", api_key("xai")),
            "ollama": ("http://localhost:11434/v1", "llama3.2", "ollama")}[server]
        client = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
    lmem.llm.register(client)
    reply = chat(client, "sync", model=model, messages=[{"role": "user", "content": QUESTION}])
    assert sent(vcr)["messages"][0] == {"role": "system", "content": BLOCK}
    assert turns(lmem) == [("user", QUESTION), ("assistant", reply)]


def test_history_replay_keeps_tool_sequences_whole(sqlite_url: str, vcr: Any) -> None:
    mem = new_memori(sqlite_url, llm_history_messages=4, llm_history_tokens=500)
    try:
        mem.attribution(entity_id=ENTITY, process_id=PROCESS)
        mem.capture([{"role": "user", "content": "My name is Ana."},
                     {"role": "assistant", "content": "Nice to meet you, Ana."}])
        mem.capture([{"role": "user", "content": "Weather in Lisbon?"},
                     {"role": "assistant", "content": "", "tool_calls": [
                         {"id": "call_1", "type": "function", "function": {
                             "name": "get_weather", "arguments": "{\"city\": \"Lisbon\"}"}}]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
                     {"role": "assistant", "content": "It is 18 C in Lisbon."}])
        client = client_for("sync")
        mem.llm.register(client)
        reply = chat(client, "sync", model=MODEL,
                     messages=[{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "And tomorrow?"}])
        # 4 messages at most: the tool unit (assistant call + result) stays whole, so the
        # replay starts at the user's question before it
        assert sent(vcr)["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Lisbon?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {
                    "name": "get_weather", "arguments": "{\"city\": \"Lisbon\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            {"role": "assistant", "content": "It is 18 C in Lisbon."},
            {"role": "user", "content": "And tomorrow?"}]
        assert turns(mem)[-2:] == [("user", "And tomorrow?"), ("assistant", reply)]
        assert len(mem.session_messages()) == 8  # the replayed history is not captured again
    finally:
        mem.close()


def test_recall_failure_is_logged_counted_and_the_call_goes_on(
        lmem: Memori, vcr: Any, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    lmem.remember(MEMORY)
    client = client_for("sync")
    lmem.llm.register(client)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("embedding model crashed")

    monkeypatch.setattr(lmem.embedder, "embed", broken)
    reply = chat(client, "sync", model=MODEL, messages=[{"role": "user", "content": UNRELATED}])
    assert reply
    assert lmem.llm.stats()["recall_errors"] == 1
    assert "recall failed" in caplog.text and "embedding model crashed" in caplog.text
    assert turns(lmem) == [("user", UNRELATED), ("assistant", reply)]


def test_with_raw_response_passes_through_untouched(lmem: Memori, vcr: Any) -> None:
    client = client_for("sync")
    lmem.llm.register(client)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": UNRELATED}])
    assert raw.parse().choices[0].message.content
    assert lmem.session_messages() == []
    assert lmem.llm.stats()["calls"] == 0
