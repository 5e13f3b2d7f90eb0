"""Author the provider cassettes from the providers' API references (no provider is reachable
from where memori is built). Run from the repository root::

    .venv/bin/python tests/llm/author_cassettes.py

Each request body is written out as the wire JSON the SDK sends, with the exact memori block
the test expects; each response follows the provider's documented format:

- OpenAI Chat Completions: a ``chat.completion`` object; streams as ``data:`` lines of
  ``chat.completion.chunk`` objects ending with ``data: [DONE]``.
- OpenAI Responses: a ``response`` object; streams as ``event:`` / ``data:`` pairs from
  ``response.created`` to ``response.completed``.
- Anthropic Messages: a ``message`` object; streams as ``message_start``,
  ``content_block_start`` / ``_delta`` / ``_stop``, ``message_delta``, ``message_stop`` events.
- Gemini: a ``GenerateContentResponse`` from ``:generateContent``; streams from
  ``:streamGenerateContent?alt=sse`` as ``data:`` lines, one partial response each.

``make record`` replaces these with real recordings (see cassettes/README.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from memori_cassettes import CASSETTES, interaction, write

from memori_core.context import BLOCK_END, BLOCK_HEADER, BLOCK_START

MEMORY = "The user is allergic to peanuts"
QUESTION = "Which snack is safe for someone allergic to peanuts like me?"
UNRELATED = "Tell me a joke"
WEATHER_Q = "What is the weather in Lisbon?"
#: the day every memory of a test was stored: tests/conftest.py's TEST_CLOCK_START
DAY = "2026-01-01"


def block(*lines: str) -> str:
    """The injected block around ``lines``: its frame and header are memori's own."""
    return "\n".join([BLOCK_START, BLOCK_HEADER, *lines, BLOCK_END])


#: the block every injection test expects: the one memory, dated, framed and quoted
BLOCK = block(f'- {DAY} fact: "{MEMORY}"')
SNACK = "Try apple slices with sunflower seed butter: no peanuts involved."
JOKE = "Why did the chef quit? He lost his thyme."
WEATHER = "It is 18 C and sunny in Lisbon."
CREATED = 1767225600
MODES = ("sync", "async", "stream", "async_stream")
_registry: dict[str, Callable[[], list[dict[str, Any]]]] = {}


def cassette(path: str) -> Callable[[Callable[[], list[dict[str, Any]]]],
                                    Callable[[], list[dict[str, Any]]]]:
    """Register a function returning a cassette's interactions under
    ``cassettes/<path>.yaml``."""

    def deco(fn: Callable[[], list[dict[str, Any]]]) -> Callable[[], list[dict[str, Any]]]:
        _registry[path] = fn
        return fn

    return deco


def sse(events: Iterable[tuple[str | None, Any]], done: bool = False) -> str:
    """Server-sent events: ``event:`` (when named) and ``data:`` lines, a blank line each."""
    out = []
    for name, data in events:
        head = f"event: {name}\n" if name else ""
        out.append(f"{head}data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out)


def pieces(text: str) -> list[str]:
    """``text`` in word-sized stream deltas."""
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


# ---- OpenAI Chat Completions ---------------------------------------------------------------
OPENAI = "https://api.openai.com/v1"
GPT = "gpt-4o-mini"
WEATHER_FN = {"name": "get_weather", "description": "Current weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"]}}
CITY_ARGS = '{"city": "Lisbon"}'


def completion(text: str | None, tool_calls: list[Any] | None = None,
               model: str = "gpt-4o-mini-2024-07-18") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None,
                               "annotations": []}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion",
            "created": CREATED, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if tool_calls else "stop"}],
            "usage": {"prompt_tokens": 81, "completion_tokens": 17, "total_tokens": 98},
            "service_tier": "default", "system_fingerprint": "fp_06737a9306"}


def chunks(text: str = "", *, tool_args: list[str] | None = None, error_after: int | None = None,
           model: str = "gpt-4o-mini-2024-07-18") -> str:
    base = {"id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion.chunk",
            "created": CREATED, "model": model, "system_fingerprint": "fp_06737a9306"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, Any]:
        return None, {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                           "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    for i, piece in enumerate(pieces(text) if text else []):
        if error_after is not None and i == error_after:
            events.append((None, {"error": {"message": "The server is overloaded, retry later",
                                            "type": "server_error", "code": None}}))
            return sse(events)
        events.append(chunk({"content": piece}))
    if tool_args is not None:
        events.append(chunk({"tool_calls": [{"index": 0, "id": "call_Wq3ZLm8xYz", "type": "function",
                                             "function": {"name": "get_weather", "arguments": ""}}]}))
        for frag in tool_args:
            events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": frag}}]}))
    events.append(chunk({}, "tool_calls" if tool_args is not None else "stop"))
    return sse(events, done=True)


def chat_body(messages: list[Any], *, model: str = GPT, stream: bool = False,
              **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": messages, **extra}
    if stream:
        body["stream"] = True
    return body


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


INJECTED = [{"role": "system", "content": BLOCK}, user(QUESTION)]

for _mode in MODES:
    def _chat(mode: str = _mode) -> list[dict[str, Any]]:
        stream = "stream" in mode
        return [interaction("POST", f"{OPENAI}/chat/completions",
                            chat_body(INJECTED, stream=stream),
                            chunks(SNACK) if stream else completion(SNACK), sse=stream)]

    cassette("openai/test_openai/test_chat_injects_recalled_memories_and_captures_the_turn"
             f"[{_mode}]")(_chat)


@cassette("openai/test_openai/test_streamed_turn_is_augmented_like_any_other")
def _augmented() -> list[dict[str, Any]]:
    return [interaction("POST", f"{OPENAI}/chat/completions",
                        chat_body([user(QUESTION)], stream=True), chunks(SNACK), sse=True)]


@cassette("openai/test_openai/test_nothing_is_injected_when_no_memory_clears_the_threshold")
def _plain() -> list[dict[str, Any]]:
    return [interaction("POST", f"{OPENAI}/chat/completions", chat_body([user(UNRELATED)]),
                        completion(JOKE))]


@cassette("openai/test_openai/test_block_joins_the_apps_system_prompt_which_is_never_captured")
def _system() -> list[dict[str, Any]]:
    return [interaction("POST", f"{OPENAI}/chat/completions", chat_body([
        {"role": "system", "content": "You are a chef.\n\n" + BLOCK}, user(QUESTION)]),
        completion(SNACK))]


WEATHER_CALL = {"id": "call_Wq3ZLm8xYz", "type": "function",
                "function": {"name": "get_weather", "arguments": CITY_ARGS}}


@cassette("openai/test_openai/test_tool_call_sequence_is_captured_in_order")
def _tools() -> list[dict[str, Any]]:
    tools = [{"type": "function", "function": WEATHER_FN}]
    return [
        interaction("POST", f"{OPENAI}/chat/completions",
                    chat_body([user(WEATHER_Q)], tools=tools),
                    completion(None, [WEATHER_CALL])),
        interaction("POST", f"{OPENAI}/chat/completions", chat_body([
            user(WEATHER_Q), {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
            {"role": "tool", "tool_call_id": "call_Wq3ZLm8xYz", "content": "18 C and sunny"}],
            tools=tools), completion(WEATHER)),
    ]


@cassette("openai/test_openai/test_streamed_tool_call_arguments_are_assembled")
def _stream_tools() -> list[dict[str, Any]]:
    return [interaction("POST", f"{OPENAI}/chat/completions",
                        chat_body([user(WEATHER_Q)], stream=True,
                                  tools=[{"type": "function", "function": WEATHER_FN}]),
                        chunks(tool_args=['{"ci', 'ty": "Lis', 'bon"}']), sse=True)]


@cassette("openai/test_openai/test_stream_left_early_keeps_what_arrived")
def _stopped() -> list[dict[str, Any]]:
    return [interaction("POST", f"{OPENAI}/chat/completions",
                        chat_body([user(UNRELATED)], stream=True), chunks(JOKE), sse=True)]


@cassette("openai/test_openai/test_async_stream_left_early_keeps_what_arrived")
def _async_stopped() -> list[dict[str, Any]]:
    return _stopped()


@cassette("openai/test_openai/test_stream_error_midway_is_raised_and_the_partial_turn_kept")
def _stream_error() -> list[dict[str, Any]]:
    return [interaction("POST", f"{OPENAI}/chat/completions",
                        chat_body([user(UNRELATED)], stream=True), chunks(JOKE, error_after=3),
                        sse=True)]


@cassette("openai/test_openai/test_chat_completions_stream_helper_goes_through_create")
def _stream_helper() -> list[dict[str, Any]]:
    return [interaction("POST", f"{OPENAI}/chat/completions",
                        chat_body(INJECTED, stream=True), chunks(SNACK), sse=True)]


@cassette("openai/test_openai/test_parse_is_memory_aware")
def _parse() -> list[dict[str, Any]]:
    schema = {"type": "json_schema", "json_schema": {"name": "Snack", "strict": True, "schema": {
        "properties": {"name": {"title": "Name", "type": "string"},
                       "peanut_free": {"title": "Peanut Free", "type": "boolean"}},
        "required": ["name", "peanut_free"], "title": "Snack", "type": "object",
        "additionalProperties": False}}}
    return [interaction("POST", f"{OPENAI}/chat/completions",
                        chat_body(INJECTED, stream=False, response_format=schema) | {"stream": False},
                        completion('{"name":"Apple slices","peanut_free":true}'))]


# ---- OpenAI Responses ----------------------------------------------------------------------
def response(text: str | None = None, call: dict[str, Any] | None = None, *,
             status: str = "completed", instructions: str | None = None) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if text is not None and status == "completed":
        output.append({"type": "message", "id": "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c",
                       "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": text, "annotations": [],
                                    "logprobs": []}]})
    if call is not None:
        output.append({"type": "function_call", "id": "fc_67ca09c6bedc8190a7abfec07b1a1332",
                       "call_id": "call_unLAR8MvFNptuiZK6K6HCy5k", "status": "completed", **call})
    return {"id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41", "object": "response",
            "created_at": CREATED, "status": status, "error": None, "incomplete_details": None,
            "instructions": instructions, "model": "gpt-4o-mini-2024-07-18", "output": output,
            "parallel_tool_calls": True, "previous_response_id": None, "temperature": 1.0,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
            "top_p": 1.0, "metadata": {},
            "usage": None if status != "completed" else {
                "input_tokens": 81, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 17, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 98}}


def response_events(text: str, instructions: str | None = None) -> str:
    item = "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c"
    seq = iter(range(1000))
    start = response(text, status="in_progress", instructions=instructions)
    events: list[tuple[str | None, Any]] = [
        ("response.created", {"type": "response.created", "sequence_number": next(seq),
                              "response": start}),
        ("response.in_progress", {"type": "response.in_progress", "sequence_number": next(seq),
                                  "response": start}),
        ("response.output_item.added", {
            "type": "response.output_item.added", "sequence_number": next(seq), "output_index": 0,
            "item": {"type": "message", "id": item, "status": "in_progress", "role": "assistant",
                     "content": []}}),
        ("response.content_part.added", {
            "type": "response.content_part.added", "sequence_number": next(seq), "item_id": item,
            "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}})]
    for piece in pieces(text):
        events.append(("response.output_text.delta", {
            "type": "response.output_text.delta", "sequence_number": next(seq), "item_id": item,
            "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}))
    part = {"type": "output_text", "text": text, "annotations": []}
    events += [
        ("response.output_text.done", {
            "type": "response.output_text.done", "sequence_number": next(seq), "item_id": item,
            "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
        ("response.content_part.done", {
            "type": "response.content_part.done", "sequence_number": next(seq), "item_id": item,
            "output_index": 0, "content_index": 0, "part": part}),
        ("response.output_item.done", {
            "type": "response.output_item.done", "sequence_number": next(seq), "output_index": 0,
            "item": {"type": "message", "id": item, "status": "completed", "role": "assistant",
                     "content": [part]}}),
        ("response.completed", {"type": "response.completed", "sequence_number": next(seq),
                                "response": response(text, instructions=instructions)})]
    return sse(events)


INSTRUCTIONS = "You are a chef.\n\n" + BLOCK

for _mode in MODES:
    def _responses(mode: str = _mode) -> list[dict[str, Any]]:
        stream = "stream" in mode
        body: dict[str, Any] = {"model": GPT, "input": QUESTION, "instructions": INSTRUCTIONS}
        if stream:
            body["stream"] = True
        return [interaction("POST", f"{OPENAI}/responses", body,
                            response_events(SNACK, INSTRUCTIONS) if stream
                            else response(SNACK, instructions=INSTRUCTIONS), sse=stream)]

    cassette(f"openai/test_openai/test_responses_api_gets_the_block_in_instructions[{_mode}]")(
        _responses)


@cassette("openai/test_openai/test_responses_stream_helper_goes_through_create")
def _responses_helper() -> list[dict[str, Any]]:
    body = {"model": GPT, "input": QUESTION, "instructions": INSTRUCTIONS, "stream": True}
    return [interaction("POST", f"{OPENAI}/responses", body,
                        response_events(SNACK, INSTRUCTIONS), sse=True)]


@cassette("openai/test_openai/test_responses_function_call_round_trip")
def _responses_tools() -> list[dict[str, Any]]:
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER_FN["parameters"]}
    call = {"name": "get_weather", "arguments": CITY_ARGS}
    return [
        interaction("POST", f"{OPENAI}/responses", {"model": GPT, "input": WEATHER_Q,
                                                     "tools": [tool]}, response(call=call)),
        interaction("POST", f"{OPENAI}/responses", {"model": GPT, "tools": [tool], "input": [
            user(WEATHER_Q),
            {"type": "function_call", "call_id": "call_unLAR8MvFNptuiZK6K6HCy5k", **call},
            {"type": "function_call_output", "call_id": "call_unLAR8MvFNptuiZK6K6HCy5k",
             "output": "18 C and sunny"}]}, response(WEATHER)),
    ]


# ---- OpenAI-compatible servers -------------------------------------------------------------
COMPATIBLE = {
    "azure": ("https://example-resource.openai.azure.com/openai/deployments/gpt-4o-mini/chat/"
              "completions?api-version=2024-10-21", GPT),
    "deepseek": ("https://api.deepseek.com/chat/completions", "deepseek-chat"),
    "xai": ("https://api.x.ai/v1/chat/completions", "grok-4"),
    "ollama": ("http://localhost:11434/v1/chat/completions", "llama3.2"),
}
for _server, (_uri, _model) in COMPATIBLE.items():
    def _compatible(uri: str = _uri, model: str = _model) -> list[dict[str, Any]]:
        return [interaction("POST", uri, chat_body(INJECTED, model=model),
                            completion(SNACK, model=model))]

    cassette(f"openai/test_openai/test_openai_compatible_servers[{_server}]")(_compatible)


@cassette("openai/test_openai/test_history_replay_keeps_tool_sequences_whole")
def _history() -> list[dict[str, Any]]:
    return [interaction("POST", f"{OPENAI}/chat/completions", chat_body([
        {"role": "system", "content": "Be brief."},
        user("Weather in Lisbon?"),
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": CITY_ARGS}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
        {"role": "assistant", "content": "It is 18 C in Lisbon."},
        user("And tomorrow?")]), completion("Tomorrow: 20 C, still sunny."))]


@cassette("openai/test_openai/test_recall_failure_is_logged_counted_and_the_call_goes_on")
def _recall_failure() -> list[dict[str, Any]]:
    return _plain()


@cassette("openai/test_openai/test_with_raw_response_passes_through_untouched")
def _raw() -> list[dict[str, Any]]:
    return _plain()


# ---- Anthropic Messages --------------------------------------------------------------------
ANTHROPIC = "https://api.anthropic.com/v1/messages"
CLAUDE = "claude-haiku-4-5"
CLAUDE_TOOL = {"name": "get_weather", "description": "Current weather in a city",
               "input_schema": WEATHER_FN["parameters"]}
TOOLU = "toolu_01A09q90qw90lq917835lq9"


def message(blocks: list[dict[str, Any]], stop: str = "end_turn") -> dict[str, Any]:
    return {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": "claude-haiku-4-5-20251001", "content": blocks, "stop_reason": stop,
            "stop_sequence": None, "usage": {"input_tokens": 81, "output_tokens": 17}}


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def message_events(text: str = "", tool_json: list[str] | None = None) -> str:
    start = message([], stop="end_turn") | {"stop_reason": None,
                                            "usage": {"input_tokens": 81, "output_tokens": 1}}
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"})]
    for piece in pieces(text):
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": piece}}))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    if tool_json is not None:
        events.append(("content_block_start", {
            "type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": TOOLU, "name": "get_weather",
                              "input": {}}}))
        for frag in tool_json:
            events.append(("content_block_delta", {
                "type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": frag}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 1}))
    events += [
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": "tool_use" if tool_json else "end_turn",
                                     "stop_sequence": None},
                           "usage": {"output_tokens": 17}}),
        ("message_stop", {"type": "message_stop"})]
    return sse(events)


def claude_body(messages: list[Any], *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"max_tokens": 256, "messages": messages, "model": CLAUDE, **extra}
    if stream:
        body["stream"] = True
    return body


for _mode in MODES:
    def _claude(mode: str = _mode) -> list[dict[str, Any]]:
        stream = "stream" in mode
        return [interaction("POST", ANTHROPIC,
                            claude_body([user(QUESTION)], system=BLOCK, stream=stream),
                            message_events(SNACK) if stream else message([text_block(SNACK)]),
                            sse=stream)]

    cassette("anthropic/test_anthropic/test_messages_get_the_block_in_system_and_the_turn_is_"
             f"captured[{_mode}]")(_claude)

for _mode in ("sync", "async"):
    cassette("anthropic/test_anthropic/test_stream_helper_is_captured_from_the_sdk_snapshot"
             f"[{_mode}]")(lambda: [interaction(
                 "POST", ANTHROPIC, claude_body([user(QUESTION)], system=BLOCK, stream=True),
                 message_events(SNACK), sse=True)])


@cassette("anthropic/test_anthropic/test_stream_helper_left_early_keeps_the_partial_message")
def _claude_early() -> list[dict[str, Any]]:
    return [interaction("POST", ANTHROPIC, claude_body([user(UNRELATED)], stream=True),
                        message_events(JOKE), sse=True)]


@cassette("anthropic/test_anthropic/test_nothing_is_injected_when_no_memory_clears_the_threshold")
def _claude_plain() -> list[dict[str, Any]]:
    return [interaction("POST", ANTHROPIC, claude_body([user(UNRELATED)]),
                        message([text_block(JOKE)]))]


@cassette("anthropic/test_anthropic/test_system_blocks_get_one_more_text_block")
def _claude_system() -> list[dict[str, Any]]:
    system = [{"type": "text", "text": "You are a chef.", "cache_control": {"type": "ephemeral"}},
              {"type": "text", "text": BLOCK}]
    return [interaction("POST", ANTHROPIC, claude_body([user(QUESTION)], system=system),
                        message([text_block(SNACK)]))]


@cassette("anthropic/test_anthropic/test_tool_use_round_trip_is_captured_in_order")
def _claude_tools() -> list[dict[str, Any]]:
    use = {"type": "tool_use", "id": TOOLU, "name": "get_weather", "input": {"city": "Lisbon"}}
    return [
        interaction("POST", ANTHROPIC, claude_body([user(WEATHER_Q)], tools=[CLAUDE_TOOL]),
                    message([use], stop="tool_use")),
        interaction("POST", ANTHROPIC, claude_body([
            user(WEATHER_Q), {"role": "assistant", "content": [use]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": TOOLU,
                                          "content": "18 C and sunny"}]}], tools=[CLAUDE_TOOL]),
            message([text_block(WEATHER)])),
    ]


@cassette("anthropic/test_anthropic/test_streamed_tool_use_input_is_assembled")
def _claude_stream_tools() -> list[dict[str, Any]]:
    return [interaction("POST", ANTHROPIC,
                        claude_body([user(WEATHER_Q)], stream=True, tools=[CLAUDE_TOOL]),
                        message_events("Let me check.", tool_json=['{"city"', ': "Lisbon"}']),
                        sse=True)]


@cassette("anthropic/test_anthropic/test_history_replay_alternates_roles")
def _claude_history() -> list[dict[str, Any]]:
    return [interaction("POST", ANTHROPIC, claude_body([
        user("Weather in Lisbon?"),
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                           "name": "get_weather", "input": {"city": "Lisbon"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "18 C"}]},
        {"role": "assistant", "content": "It is 18 C in Lisbon."},
        user("And tomorrow?")]), message([text_block("Tomorrow: 20 C, still sunny.")]))]


# ---- Google Gemini --------------------------------------------------------------------------
GEMINI_MODEL = "gemini-2.5-flash"
GEMINI = f"https://generativelanguage.googleapis.com/v1/models/{GEMINI_MODEL}"
DECL = {"name": "get_weather", "description": "Current weather in a city",
        "parameters_json_schema": WEATHER_FN["parameters"]}


def candidate(parts: list[dict[str, Any]], finish: str | None = "STOP") -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        out["finishReason"] = finish
    return out


def generated(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"candidates": [candidate(parts)],
            "usageMetadata": {"promptTokenCount": 81, "candidatesTokenCount": 17,
                              "totalTokenCount": 98},
            "modelVersion": GEMINI_MODEL, "responseId": "mJ0aaO2xH8SLmecPlq2h0Ag"}


def generated_events(text: str) -> str:
    words = pieces(text)
    events: list[tuple[str | None, Any]] = []
    for i, piece in enumerate(words):
        last = i == len(words) - 1
        chunk: dict[str, Any] = {"candidates": [candidate([{"text": piece}],
                                                          "STOP" if last else None)],
                                 "modelVersion": GEMINI_MODEL,
                                 "responseId": "mJ0aaO2xH8SLmecPlq2h0Ag"}
        if last:
            chunk["usageMetadata"] = {"promptTokenCount": 81, "candidatesTokenCount": 17,
                                      "totalTokenCount": 98}
        events.append((None, chunk))
    return sse(events)


def content(role: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {"parts": list(parts), "role": role}


def gemini_body(contents: list[Any], *, system: str | None = None,
                config: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"contents": contents, **extra}
    if system is not None:
        body["systemInstruction"] = content("user", {"text": system})
    if config is not None:
        body["generationConfig"] = config
    return body


for _mode in MODES:
    def _gemini(mode: str = _mode) -> list[dict[str, Any]]:
        stream = "stream" in mode
        uri = f"{GEMINI}:streamGenerateContent?alt=sse" if stream else f"{GEMINI}:generateContent"
        return [interaction("POST", uri, gemini_body([content("user", {"text": QUESTION})],
                                                     system=BLOCK, config={}),
                            generated_events(SNACK) if stream
                            else generated([{"text": SNACK}]), sse=stream)]

    cassette("google/test_google/test_generate_content_gets_the_block_in_system_instruction"
             f"[{_mode}]")(_gemini)


@cassette("google/test_google/test_nothing_is_injected_when_no_memory_clears_the_threshold")
def _gemini_plain() -> list[dict[str, Any]]:
    return [interaction("POST", f"{GEMINI}:generateContent",
                        gemini_body([content("user", {"text": UNRELATED})]),
                        generated([{"text": JOKE}]))]


@cassette("google/test_google/test_config_is_copied_and_keeps_its_system_instruction")
def _gemini_config() -> list[dict[str, Any]]:
    return [interaction("POST", f"{GEMINI}:generateContent",
                        gemini_body([content("user", {"text": QUESTION})],
                                    system="You are a chef.\n\n" + BLOCK,
                                    config={"temperature": 0.2}),
                        generated([{"text": SNACK}]))]


CALL_PART = {"functionCall": {"name": "get_weather", "args": {"city": "Lisbon"}}}


@cassette("google/test_google/test_function_call_round_trip_is_captured_in_order")
def _gemini_tools() -> list[dict[str, Any]]:
    tools = [{"functionDeclarations": [DECL]}]
    ask = content("user", {"text": WEATHER_Q})
    return [
        interaction("POST", f"{GEMINI}:generateContent",
                    gemini_body([ask], config={}, tools=tools), generated([CALL_PART])),
        interaction("POST", f"{GEMINI}:generateContent", gemini_body([
            ask, content("model", CALL_PART),
            content("user", {"functionResponse": {"name": "get_weather",
                                                  "response": {"result": "18 C and sunny"}}})],
            config={}, tools=tools), generated([{"text": WEATHER}])),
    ]


@cassette("google/test_google/test_automatic_function_calling_is_captured")
def _gemini_afc() -> list[dict[str, Any]]:
    tools = [{"functionDeclarations": [{
        "description": "Current weather in a city.", "name": "get_weather",
        "parameters_json_schema": WEATHER_FN["parameters"],
        "response_json_schema": {"type": "string"}}]}]
    ask = content("user", {"text": WEATHER_Q})
    return [
        interaction("POST", f"{GEMINI}:generateContent",
                    gemini_body([ask], config={}, tools=tools), generated([CALL_PART])),
        interaction("POST", f"{GEMINI}:generateContent", gemini_body([
            ask, content("model", CALL_PART),
            content("user", {"functionResponse": {"name": "get_weather",
                                                  "response": {"result": "18 C and sunny"}}})],
            config={}, tools=tools), generated([{"text": WEATHER}])),
    ]


@cassette("google/test_google/test_chat_sessions_send_their_own_history_which_is_not_replayed")
def _gemini_chat() -> list[dict[str, Any]]:
    first = content("user", {"text": "My name is Ana."})
    return [
        interaction("POST", f"{GEMINI}:generateContent", gemini_body([first], config={}),
                    generated([{"text": "Nice to meet you, Ana."}])),
        interaction("POST", f"{GEMINI}:generateContent", gemini_body([
            first, content("model", {"text": "Nice to meet you, Ana."}),
            content("user", {"text": "What is my name?"})], config={}),
            generated([{"text": "Your name is Ana."}])),
    ]


@cassette("google/test_google/test_history_replay_becomes_gemini_contents")
def _gemini_history() -> list[dict[str, Any]]:
    return [interaction("POST", f"{GEMINI}:generateContent", gemini_body([
        content("user", {"text": "Weather in Lisbon?"}),
        content("model", CALL_PART),
        content("user", {"functionResponse": {"name": "get_weather",
                                              "response": {"result": "18 C"}}}),
        content("model", {"text": "It is 18 C in Lisbon."}),
        content("user", {"text": "And tomorrow?"})]),
        generated([{"text": "Tomorrow: 20 C, still sunny."}]))]


# ---- cross-provider: concurrency and outage ------------------------------------------------
def locker_block(i: int) -> str:
    return block(f'- {DAY} fact: "The locker code is {4000 + i}"')


LOCKER_Q = "What is my locker code?"


def plain_exchange(provider: str, text: str, reply: str, block: str | None = None
                   ) -> dict[str, Any]:
    """One non-streamed call on ``provider``, as tests/llm/conftest.py's drivers make it."""
    if provider == "openai":
        messages = ([{"role": "system", "content": block}] if block else []) + [user(text)]
        return interaction("POST", f"{OPENAI}/chat/completions", chat_body(messages),
                           completion(reply))
    if provider == "anthropic":
        extra = {"system": block} if block else {}
        return interaction("POST", ANTHROPIC, claude_body([user(text)], **extra),
                           message([text_block(reply)]))
    body = gemini_body([content("user", {"text": text})], system=block,
                       config={} if block else None)
    return interaction("POST", f"{GEMINI}:generateContent", body, generated([{"text": reply}]))


for _provider in ("openai", "anthropic", "google"):
    def _concurrent(provider: str = _provider) -> list[dict[str, Any]]:
        return [plain_exchange(provider, LOCKER_Q, f"Your locker code is {4000 + i}.",
                               locker_block(i)) for i in range(100)]

    def _outage(provider: str = _provider) -> list[dict[str, Any]]:
        return [plain_exchange(provider, QUESTION, SNACK, BLOCK)] + [
            plain_exchange(provider, q, f"Answer to: {q}.")
            for q in ("Second question", "Third question", "Fourth question", "Fifth question")]

    cassette(f"{_provider}/test_llm_concurrency/test_100_concurrent_async_calls_with_100_entities_"
             f"are_never_mixed[{_provider}]")(_concurrent)
    cassette(f"{_provider}/test_outage/test_calls_succeed_while_postgres_is_down_and_spilled_"
             f"turns_are_written_after[{_provider}]")(_outage)


# ---- README examples -------------------------------------------------------------------
@cassette("openai/test_readme_llm/test_readme_example_runs[openai]")
def _readme_openai() -> list[dict[str, Any]]:
    return [plain_exchange("openai", QUESTION, SNACK, BLOCK)]


@cassette("openai/test_readme_llm/test_readme_example_runs[xai]")
def _readme_xai() -> list[dict[str, Any]]:
    return [interaction("POST", "https://api.x.ai/v1/chat/completions",
                        chat_body(INJECTED, model="grok-4"), completion(SNACK, model="grok-4"))]


@cassette("anthropic/test_readme_llm/test_readme_example_runs[anthropic]")
def _readme_anthropic() -> list[dict[str, Any]]:
    return [interaction("POST", ANTHROPIC, claude_body([user(QUESTION)], system=BLOCK,
                                                       stream=True),
                        message_events(SNACK), sse=True)]


@cassette("google/test_readme_llm/test_readme_example_runs[google]")
def _readme_google() -> list[dict[str, Any]]:
    return [plain_exchange("google", QUESTION, SNACK, BLOCK)]


def main() -> None:
    for path, build in sorted(_registry.items()):
        write(CASSETTES / f"{path}.yaml", build())
    print(f"wrote {len(_registry)} cassettes under {CASSETTES}")


if __name__ == "__main__":
    main()
