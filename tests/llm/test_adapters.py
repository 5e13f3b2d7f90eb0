"""The adapters on request shapes the cassette tests do not send: what is read, replayed or
captured, and that the caller's arguments are never changed."""

from __future__ import annotations

import copy
from typing import Any

from google.genai import types
from openai.types.chat import ChatCompletionMessage

from memori_core.llm.anthropic import Messages
from memori_core.llm.google import GenerateContent
from memori_core.llm.openai import ChatCompletions, Responses

CHAT = ChatCompletions("chat.completions.create")
RESPONSES = Responses("responses.create")
CLAUDE = Messages("messages.create")
GEMINI = GenerateContent("models.generate_content", stream=False)


def test_chat_reads_sdk_message_objects_and_captures_only_the_new_turn() -> None:
    earlier = ChatCompletionMessage(role="assistant", content="Hello!")
    kwargs: dict[str, Any] = {"model": "m", "messages": [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}, earlier,
        {"role": "user", "content": [{"type": "text", "text": "what now?"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
         "name": "ana"}]}
    before = copy.deepcopy(kwargs)
    assert CHAT.carries_history(kwargs)
    assert CHAT.query(kwargs) == "what now?"
    assert CHAT.new_messages(kwargs) == [{"role": "user", "name": "ana", "content": [
        {"type": "text", "text": "what now?"}, {"type": "image_url", "name": "https://x/y.png"}]}]
    sent = CHAT.inject(kwargs, "BLOCK", [])
    assert sent["messages"][0] == {"role": "system", "content": "sys\n\nBLOCK"}
    assert sent["messages"][2] is earlier
    assert kwargs == before


def test_chat_developer_prompt_with_parts_gets_a_text_part() -> None:
    kwargs = {"messages": [{"role": "developer", "content": [{"type": "text", "text": "dev"}]},
                           {"role": "user", "content": "q"}]}
    sent = CHAT.inject(kwargs, "BLOCK", [{"role": "user", "content": "old"},
                                         {"role": "assistant", "content": "reply"}])
    assert [m["role"] for m in sent["messages"]] == ["developer", "user", "assistant", "user"]
    assert sent["messages"][0]["content"][-1] == {"type": "text", "text": "BLOCK"}


def test_responses_state_kept_by_the_server_is_history() -> None:
    assert RESPONSES.carries_history({"input": "q", "previous_response_id": "resp_1"})
    assert RESPONSES.carries_history({"input": [{"type": "function_call", "call_id": "c"}]})
    assert not RESPONSES.carries_history({"input": "q"})
    sent = RESPONSES.inject({"input": "q"}, None, [
        {"role": "user", "content": "w?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
        {"role": "assistant", "content": "done"}])
    assert sent["input"] == [
        {"role": "user", "content": "w?"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "r"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "q"}]
    assert "instructions" not in sent


def test_anthropic_tool_results_become_tool_messages_before_the_text() -> None:
    kwargs = {"messages": [
        {"role": "user", "content": "w?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                           "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1",
             "content": [{"type": "text", "text": "18 C"}]},
            {"type": "text", "text": "and tomorrow?"}]}]}
    assert CLAUDE.query(kwargs) == "and tomorrow?"
    assert CLAUDE.new_messages(kwargs) == [
        {"role": "tool", "tool_call_id": "t1", "content": "18 C"},
        {"role": "user", "content": [{"type": "text", "text": "and tomorrow?"}]}]


def test_anthropic_history_merges_consecutive_roles() -> None:
    sent = CLAUDE.inject({"messages": [{"role": "user", "content": "q"}]}, None, [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}])
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user", "assistant",
                                                     "user"]


def test_gemini_reads_every_contents_form() -> None:
    assert GEMINI.query({"contents": "plain"}) == "plain"
    assert GEMINI.query({"contents": ["a", types.Part(text="b")]}) == "ab"
    content = types.Content(role="user", parts=[types.Part(text="typed")])
    assert GEMINI.query({"contents": [content]}) == "typed"
    assert GEMINI.query({"contents": {"role": "user", "parts": [{"text": "dict"}]}}) == "dict"
    assert GEMINI.carries_history({"contents": [
        content, {"role": "model", "parts": [{"text": "r"}]}, "next"]})
    # loose function-call parts are a model turn, as the SDK groups them
    assert GEMINI.carries_history({"contents": [
        "q", types.Part(function_call=types.FunctionCall(name="f", args={}))]})


def test_gemini_config_forms_are_copied_with_the_block() -> None:
    as_dict = {"systemInstruction": "sys", "temperature": 0}
    sent = GEMINI.inject({"contents": "q", "config": as_dict}, "BLOCK", [])
    assert sent["config"] == {"systemInstruction": "sys\n\nBLOCK", "temperature": 0}
    assert as_dict["systemInstruction"] == "sys"
    content = types.Content(parts=[types.Part(text="sys")])
    config = types.GenerateContentConfig(system_instruction=content)
    sent = GEMINI.inject({"contents": "q", "config": config}, "BLOCK", [])
    assert [p.text for p in sent["config"].system_instruction.parts] == ["sys", "BLOCK"]
    assert [p.text for p in content.parts or []] == ["sys"]


def test_binary_parts_are_named_never_stored() -> None:
    """An image sent as bytes (a data: URL, a base64 source) is captured as a named part: the
    provider keeps the data, memori's database only its name and type."""
    png = "data:image/png;base64," + "iVBORw0KGgo" * 1000
    chat = CHAT.new_messages({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": png}},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg" * 100, "format": "wav"}}]}]})
    assert chat[0]["content"] == [{"type": "text", "text": "what is this?"},
                                  {"type": "image_url"},
                                  {"type": "image_url", "name": "https://x/y.png"},
                                  {"type": "input_audio"}]
    claude = CLAUDE.new_messages({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo" * 1000}},
        {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}},
        {"type": "text", "text": "compare them"}]}]})
    assert claude[0]["content"] == [{"type": "image", "media_type": "image/png"},
                                    {"type": "document", "name": "https://x/a.pdf"},
                                    {"type": "text", "text": "compare them"}]
    responses = RESPONSES.new_messages({"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "and this?"},
        {"type": "input_image", "image_url": png},
        {"type": "input_file", "filename": "r.pdf", "file_data": "JVBERi0" * 100}]}]})
    assert responses[0]["content"][1:] == [{"type": "input_image"},
                                           {"type": "input_file", "name": "r.pdf"}]
