"""Google Gemini (``google.genai.Client``) through ``mem.llm.register``, replayed from cassettes
(matched on method, URI and JSON body, so the exact ``systemInstruction`` sent is checked)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from google import genai
from google.genai import types
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

CASSETTE_PROVIDER = "google"
pytestmark = pytest.mark.vcr

MODEL = MODELS["google"]
WEATHER_DECL = {"name": "get_weather", "description": "Current weather in a city",
                "parameters_json_schema": {"type": "object",
                                           "properties": {"city": {"type": "string"}},
                                           "required": ["city"]}}


def new_client() -> genai.Client:
    return genai.Client(api_key=api_key("google"))


def generate(client: genai.Client, mode: str, **kwargs: Any) -> str:
    """``generate_content`` / ``generate_content_stream`` in ``mode``; the reply text."""
    if mode == "sync":
        return str(client.models.generate_content(**kwargs).text)
    if mode == "stream":
        return "".join(c.text or "" for c in client.models.generate_content_stream(**kwargs))

    async def run() -> str:
        try:
            if mode == "async":
                return str((await client.aio.models.generate_content(**kwargs)).text)
            out = []
            async for c in await client.aio.models.generate_content_stream(**kwargs):
                out.append(c.text or "")
            return "".join(out)
        finally:
            await client.aio.aclose()

    return asyncio.run(run())


def sent(vcr: Any, i: int = 0) -> Any:
    return json.loads(vcr.requests[i].body)


def turns(mem: Memori) -> list[tuple[str, Any]]:
    return [(m["role"], m["content"]) for m in mem.session_messages()]


@pytest.mark.parametrize("mode", MODES)
def test_generate_content_gets_the_block_in_system_instruction(lmem: Memori, vcr: Any,
                                                               mode: str) -> None:
    lmem.remember(MEMORY)
    client = new_client()
    lmem.llm.register(client)
    reply = generate(client, mode, model=MODEL, contents=QUESTION)
    assert vcr.all_played
    assert sent(vcr)["systemInstruction"] == {"parts": [{"text": BLOCK}], "role": "user"}
    assert reply
    assert turns(lmem) == [("user", QUESTION), ("assistant", reply)]
    api = "models.generate_content_stream" if "stream" in mode else "models.generate_content"
    assert lmem.session_messages()[1]["metadata"] == {
        "provider": "google", "api": api, "model": MODEL,
        **({"stream": "complete"} if "stream" in mode else {})}


def test_nothing_is_injected_when_no_memory_clears_the_threshold(lmem: Memori,
                                                                 vcr: Any) -> None:
    lmem.remember(MEMORY)
    client = new_client()
    lmem.llm.register(client)
    reply = generate(client, "sync", model=MODEL, contents=UNRELATED)
    assert sent(vcr) == {"contents": [{"parts": [{"text": UNRELATED}], "role": "user"}]}
    assert turns(lmem) == [("user", UNRELATED), ("assistant", reply)]


def test_config_is_copied_and_keeps_its_system_instruction(lmem: Memori, vcr: Any) -> None:
    lmem.remember(MEMORY)
    client = new_client()
    lmem.llm.register(client)
    config = types.GenerateContentConfig(system_instruction="You are a chef.", temperature=0.2)
    generate(client, "sync", model=MODEL, contents=QUESTION, config=config)
    assert sent(vcr)["systemInstruction"] == {
        "parts": [{"text": "You are a chef.\n\n" + BLOCK}], "role": "user"}
    assert config.system_instruction == "You are a chef."  # the caller's config is unchanged


def test_function_call_round_trip_is_captured_in_order(lmem: Memori, vcr: Any) -> None:
    client = new_client()
    lmem.llm.register(client)
    config = {"tools": [{"function_declarations": [WEATHER_DECL]}]}
    question = types.Content(role="user", parts=[types.Part(text="What is the weather in Lisbon?")])
    first = client.models.generate_content(model=MODEL, contents=[question], config=config)
    call = first.function_calls[0]
    answer = types.Content(role="user", parts=[types.Part.from_function_response(
        name=call.name, response={"result": "18 C and sunny"})])
    final = client.models.generate_content(
        model=MODEL, config=config, contents=[question, first.candidates[0].content, answer])
    session = lmem.session_messages()
    assert [m["role"] for m in session] == ["user", "assistant", "tool", "assistant"]
    tool_call = session[1]["tool_calls"][0]
    assert tool_call["function"]["name"] == "get_weather"
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "Lisbon"}
    assert session[2]["name"] == "get_weather"
    assert json.loads(session[2]["content"]) == {"result": "18 C and sunny"}
    assert session[3]["content"] == final.text


def get_weather(city: str) -> str:
    """Current weather in a city."""
    return "18 C and sunny"


def test_automatic_function_calling_is_captured(lmem: Memori, vcr: Any) -> None:
    client = new_client()
    lmem.llm.register(client)
    reply = client.models.generate_content(
        model=MODEL, contents="What is the weather in Lisbon?",
        config=types.GenerateContentConfig(tools=[get_weather]))
    assert len(vcr.requests) == 2 and vcr.all_played  # the SDK called the function itself
    session = lmem.session_messages()
    assert [m["role"] for m in session] == ["user", "assistant", "tool", "assistant"]
    assert json.loads(session[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Lisbon"}
    assert json.loads(session[2]["content"]) == {"result": "18 C and sunny"}
    assert session[3]["content"] == reply.text


def test_chat_sessions_send_their_own_history_which_is_not_replayed(sqlite_url: str,
                                                                    vcr: Any) -> None:
    mem = new_memori(sqlite_url, llm_history_messages=10)
    try:
        mem.attribution(entity_id=ENTITY, process_id=PROCESS)
        client = new_client()
        mem.llm.register(client)
        chat = client.chats.create(model=MODEL)
        first = chat.send_message("My name is Ana.")
        reply = chat.send_message("What is my name?")
        assert sent(vcr, 1)["contents"][0] == {"parts": [{"text": "My name is Ana."}],
                                               "role": "user"}
        assert turns(mem) == [("user", "My name is Ana."),
                              ("assistant", first.text),
                              ("user", "What is my name?"), ("assistant", reply.text)]
    finally:
        mem.close()


def test_history_replay_becomes_gemini_contents(sqlite_url: str, vcr: Any) -> None:
    mem = new_memori(sqlite_url, llm_history_messages=20)
    try:
        mem.attribution(entity_id=ENTITY, process_id=PROCESS)
        mem.capture([{"role": "user", "content": "Weather in Lisbon?"},
                     {"role": "assistant", "content": "", "tool_calls": [
                         {"id": "get_weather", "type": "function", "function": {
                             "name": "get_weather", "arguments": "{\"city\": \"Lisbon\"}"}}]},
                     {"role": "tool", "tool_call_id": "get_weather", "name": "get_weather",
                      "content": "{\"result\": \"18 C\"}"},
                     {"role": "assistant", "content": "It is 18 C in Lisbon."}])
        client = new_client()
        mem.llm.register(client)
        reply = generate(client, "sync", model=MODEL, contents="And tomorrow?")
        assert sent(vcr)["contents"] == [
            {"parts": [{"text": "Weather in Lisbon?"}], "role": "user"},
            {"parts": [{"functionCall": {"args": {"city": "Lisbon"}, "name": "get_weather"}}],
             "role": "model"},
            {"parts": [{"functionResponse": {"name": "get_weather",
                                             "response": {"result": "18 C"}}}], "role": "user"},
            {"parts": [{"text": "It is 18 C in Lisbon."}], "role": "model"},
            {"parts": [{"text": "And tomorrow?"}], "role": "user"}]
        assert turns(mem)[-2:] == [("user", "And tomorrow?"), ("assistant", reply)]
    finally:
        mem.close()
