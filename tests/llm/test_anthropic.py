"""Anthropic clients through ``mem.llm.register``, replayed from cassettes (matched on method,
URI and JSON body, so the exact ``system`` sent is checked)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
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

CASSETTE_PROVIDER = "anthropic"
pytestmark = pytest.mark.vcr

MODEL = MODELS["anthropic"]
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                 "required": ["city"]}}


def client_for(mode: str) -> Any:
    cls = anthropic.AsyncAnthropic if mode.startswith("async") else anthropic.Anthropic
    return cls(api_key=api_key("anthropic"), max_retries=0)


def create(client: Any, mode: str, **kwargs: Any) -> str:
    """``messages.create`` in ``mode``; the reply text (stream deltas joined)."""
    kwargs.setdefault("max_tokens", 256)
    if mode == "sync":
        return str(client.messages.create(**kwargs).content[0].text)
    if mode == "stream":
        return "".join(e.delta.text for e in client.messages.create(stream=True, **kwargs)
                       if e.type == "content_block_delta" and e.delta.type == "text_delta")

    async def run() -> str:
        try:
            if mode == "async":
                return str((await client.messages.create(**kwargs)).content[0].text)
            out = []
            async for e in await client.messages.create(stream=True, **kwargs):
                if e.type == "content_block_delta" and e.delta.type == "text_delta":
                    out.append(e.delta.text)
            return "".join(out)
        finally:
            await client.close()

    return asyncio.run(run())


def sent(vcr: Any, i: int = 0) -> Any:
    return json.loads(vcr.requests[i].body)


def turns(mem: Memori) -> list[tuple[str, Any]]:
    return [(m["role"], m["content"]) for m in mem.session_messages()]


@pytest.mark.parametrize("mode", MODES)
def test_messages_get_the_block_in_system_and_the_turn_is_captured(lmem: Memori, vcr: Any,
                                                                   mode: str) -> None:
    lmem.remember(MEMORY)
    client = client_for(mode)
    lmem.llm.register(client)
    reply = create(client, mode, model=MODEL, messages=[{"role": "user", "content": QUESTION}])
    assert vcr.all_played
    assert sent(vcr)["system"] == BLOCK
    assert reply
    assert turns(lmem) == [("user", QUESTION), ("assistant", reply)]
    assert lmem.session_messages()[1]["metadata"] == {
        "provider": "anthropic", "api": "messages.create", "model": MODEL,
        **({"stream": "complete"} if "stream" in mode else {})}
    assert lmem.llm.stats()["injected"] == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stream_helper_is_captured_from_the_sdk_snapshot(lmem: Memori, vcr: Any,
                                                         mode: str) -> None:
    lmem.remember(MEMORY)
    client = client_for(mode)
    lmem.llm.register(client)
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 256,
                              "messages": [{"role": "user", "content": QUESTION}]}
    if mode == "sync":
        with client.messages.stream(**kwargs) as stream:
            text = "".join(stream.text_stream)
    else:
        async def run() -> str:
            try:
                async with client.messages.stream(**kwargs) as stream:
                    return "".join([t async for t in stream.text_stream])
            finally:
                await client.close()

        text = asyncio.run(run())
    assert sent(vcr)["system"] == BLOCK
    assert turns(lmem) == [("user", QUESTION), ("assistant", text)]
    meta = lmem.session_messages()[1]["metadata"]
    assert (meta["api"], meta["stream"]) == ("messages.stream", "complete")


def test_stream_helper_left_early_keeps_the_partial_message(lmem: Memori, vcr: Any) -> None:
    client = client_for("sync")
    lmem.llm.register(client)
    with client.messages.stream(model=MODEL, max_tokens=256,
                                messages=[{"role": "user", "content": UNRELATED}]) as stream:
        first = next(iter(stream.text_stream))
    assert turns(lmem) == [("user", UNRELATED), ("assistant", first)]
    assert lmem.session_messages()[1]["metadata"]["stream"] == "stopped"


def test_nothing_is_injected_when_no_memory_clears_the_threshold(lmem: Memori,
                                                                 vcr: Any) -> None:
    lmem.remember(MEMORY)
    client = client_for("sync")
    lmem.llm.register(client)
    reply = create(client, "sync", model=MODEL, messages=[{"role": "user", "content": UNRELATED}])
    assert "system" not in sent(vcr)
    assert turns(lmem) == [("user", UNRELATED), ("assistant", reply)]
    assert lmem.llm.stats()["injected"] == 0


def test_system_blocks_get_one_more_text_block(lmem: Memori, vcr: Any) -> None:
    lmem.remember(MEMORY)
    client = client_for("sync")
    lmem.llm.register(client)
    system = [{"type": "text", "text": "You are a chef.", "cache_control": {"type": "ephemeral"}}]
    create(client, "sync", model=MODEL, system=system,
           messages=[{"role": "user", "content": QUESTION}])
    assert sent(vcr)["system"] == [*system, {"type": "text", "text": BLOCK}]
    assert len(system) == 1  # the caller's list is not modified


def test_tool_use_round_trip_is_captured_in_order(lmem: Memori, vcr: Any) -> None:
    client = client_for("sync")
    lmem.llm.register(client)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Lisbon?"}]
    first = client.messages.create(model=MODEL, max_tokens=256, tools=[WEATHER_TOOL],
                                   messages=messages)
    use = next(b for b in first.content if b.type == "tool_use")
    messages += [{"role": "assistant", "content": [
                     {"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
                 {"role": "user", "content": [
                     {"type": "tool_result", "tool_use_id": use.id, "content": "18 C and sunny"}]}]
    final = client.messages.create(model=MODEL, max_tokens=256, tools=[WEATHER_TOOL],
                                   messages=messages)
    session = lmem.session_messages()
    assert [m["role"] for m in session] == ["user", "assistant", "tool", "assistant"]
    call = session[1]["tool_calls"][0]
    assert (call["id"], call["function"]["name"]) == (use.id, "get_weather")
    assert json.loads(call["function"]["arguments"]) == {"city": "Lisbon"}
    assert (session[2]["tool_call_id"], session[2]["content"]) == (use.id, "18 C and sunny")
    assert session[3]["content"] == final.content[0].text


def test_streamed_tool_use_input_is_assembled(lmem: Memori, vcr: Any) -> None:
    client = client_for("stream")
    lmem.llm.register(client)
    events = list(client.messages.create(model=MODEL, max_tokens=256, stream=True,
                                         tools=[WEATHER_TOOL], messages=[
                                             {"role": "user", "content": "What is the weather "
                                              "in Lisbon?"}]))
    assert events[-1].type == "message_stop"
    text = "".join(e.delta.text for e in events
                   if e.type == "content_block_delta" and e.delta.type == "text_delta")
    session = lmem.session_messages()
    assert session[1]["content"] == text
    call = session[1]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"city": "Lisbon"}


def test_history_replay_alternates_roles(sqlite_url: str, vcr: Any) -> None:
    mem = new_memori(sqlite_url, llm_history_messages=20)
    try:
        mem.attribution(entity_id=ENTITY, process_id=PROCESS)
        mem.capture([{"role": "user", "content": "Weather in Lisbon?"},
                     {"role": "assistant", "content": "", "tool_calls": [
                         {"id": "toolu_1", "type": "function", "function": {
                             "name": "get_weather", "arguments": "{\"city\": \"Lisbon\"}"}}]},
                     {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
                     {"role": "assistant", "content": "It is 18 C in Lisbon."}])
        client = client_for("sync")
        mem.llm.register(client)
        reply = create(client, "sync", model=MODEL,
                       messages=[{"role": "user", "content": "And tomorrow?"}])
        assert sent(vcr)["messages"] == [
            {"role": "user", "content": "Weather in Lisbon?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                               "name": "get_weather",
                                               "input": {"city": "Lisbon"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": "18 C"}]},
            {"role": "assistant", "content": "It is 18 C in Lisbon."},
            {"role": "user", "content": "And tomorrow?"}]
        assert turns(mem)[-2:] == [("user", "And tomorrow?"), ("assistant", reply)]
    finally:
        mem.close()
