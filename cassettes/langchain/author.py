"""Write the Bedrock runtime cassettes of the LangChain plugin's tests (authored, not recorded).

No AWS account is reachable from the test machines, so each interaction is written here from the
Bedrock runtime API reference: the request body is what the Converse / InvokeModel operation
takes (and what langchain-aws sends: the replay matches method, URI and JSON body, so a request
that differs by one byte of meaning fails the test), the response is the documented JSON or,
for streams, AWS event-stream binary frames (prelude with CRC32, ``:event-type`` /
``:content-type`` / ``:message-type`` string headers, JSON payload, message CRC32).

    .venv/bin/python cassettes/langchain/author.py     # rewrites every cassette listed below

``make record`` (pytest ``--record-mode=rewrite`` with real AWS keys) would replace them with
recorded traffic; the tests only read them.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from pathlib import Path
from typing import Any

import yaml

from memori_core.context import BLOCK_END, BLOCK_HEADER, BLOCK_START, quote

HERE = Path(__file__).resolve().parent
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
BASE = "https://bedrock-runtime.us-east-1.amazonaws.com/model/" + MODEL.replace(":", "%3A")
REQUEST_ID = "5d1a6c2e-7f3b-4c8e-9a0d-2b4f6e8a1c3d"


#: the day the tests store their memories on (tests/conftest.py's TEST_CLOCK_START): each
#: memory line carries it
DAY = "2026-01-01"


def memory_block(*memories: str) -> str:
    """The block memori injects into the system prompt (``memori_core.context.render_block``),
    around ``memories``, lines as it renders them: ``- 2026-01-01 fact: "..."``. Its frame and
    header are memori's own constants."""
    return "\n".join([BLOCK_START, BLOCK_HEADER, *memories, BLOCK_END])


def fact(text: str) -> str:
    """The block line of a fact stored during a test."""
    return f"- {DAY} fact: {quote(text)}"


# ---- AWS event-stream encoding (application/vnd.amazon.eventstream) -------------------------
def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">B", 7)
            + struct.pack(">H", len(raw_value)) + raw_value)


def event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    """One event-stream message: total length, headers length, prelude CRC32, headers,
    payload, message CRC32 (all big-endian)."""
    headers = (_header(":event-type", event_type) + _header(":content-type", "application/json")
               + _header(":message-type", "event"))
    body = json.dumps(payload, separators=(",", ":")).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message))


def converse_stream_events(text_parts: list[str], input_tokens: int) -> bytes:
    """ConverseStream: messageStart, contentBlockDelta per part, contentBlockStop,
    messageStop, metadata."""
    frames = [event_frame("messageStart", {"role": "assistant"})]
    frames += [event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": t}})
               for t in text_parts]
    frames.append(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(event_frame("messageStop", {"stopReason": "end_turn"}))
    out = len(text_parts) * 4
    frames.append(event_frame("metadata", {
        "usage": {"inputTokens": input_tokens, "outputTokens": out,
                  "totalTokens": input_tokens + out},
        "metrics": {"latencyMs": 412}}))
    return b"".join(frames)


def anthropic_stream_events(text_parts: list[str], input_tokens: int) -> bytes:
    """InvokeModelWithResponseStream of an Anthropic model: ``chunk`` events whose ``bytes``
    are base64 Anthropic Messages stream events."""
    out = len(text_parts) * 4
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {
            "id": "msg_bdrk_01StreamAuthored", "type": "message", "role": "assistant",
            "model": "claude-3-haiku-20240307", "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *({"type": "content_block_delta", "index": 0,
           "delta": {"type": "text_delta", "text": t}} for t in text_parts),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": out}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": input_tokens, "outputTokenCount": out,
            "invocationLatency": 640, "firstByteLatency": 221}},
    ]
    return b"".join(event_frame("chunk", {"bytes": base64.b64encode(
        json.dumps(e, separators=(",", ":")).encode()).decode()}) for e in events)


# ---- request / response bodies ------------------------------------------------------------
def converse_request(system: str, messages: list[dict[str, Any]],
                     tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": messages, "system": [{"text": system}],
                            "inferenceConfig": {}}
    if tools:
        body["toolConfig"] = {"tools": tools}
    return body


def converse_response(content: list[dict[str, Any]], stop: str, input_tokens: int,
                      output_tokens: int) -> dict[str, Any]:
    return {"output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens,
                      "totalTokens": input_tokens + output_tokens},
            "metrics": {"latencyMs": 388}}


def anthropic_request(system: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"anthropic_version": "bedrock-2023-05-31", "messages": messages, "system": system,
            "max_tokens": 1024}


def anthropic_response(text: str, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {"id": "msg_bdrk_01InvokeAuthored", "type": "message", "role": "assistant",
            "model": "claude-3-haiku-20240307", "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": text}]}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"text": text}]}


# ---- interactions -------------------------------------------------------------------------
def _json_interaction(uri: str, request: dict[str, Any], response: dict[str, Any],
                      extra_headers: dict[str, str] | None = None) -> dict[str, Any]:
    headers = {"Content-Type": ["application/json"], "x-amzn-RequestId": [REQUEST_ID]}
    for name, value in (extra_headers or {}).items():
        headers[name] = [value]
    return {"request": {"method": "POST", "uri": uri,
                        "headers": {"Content-Type": ["application/json"]},
                        "body": json.dumps(request, indent=2, ensure_ascii=False) + "\n"},
            "response": {"status": {"code": 200, "message": "OK"}, "headers": headers,
                         "body": {"string": json.dumps(response, indent=2,
                                                       ensure_ascii=False) + "\n"}}}


def _stream_interaction(uri: str, request: dict[str, Any], frames: bytes) -> dict[str, Any]:
    return {"request": {"method": "POST", "uri": uri,
                        "headers": {"Content-Type": ["application/json"]},
                        "body": json.dumps(request, indent=2, ensure_ascii=False) + "\n"},
            "response": {"status": {"code": 200, "message": "OK"},
                         "headers": {"Content-Type": ["application/vnd.amazon.eventstream"],
                                     "x-amzn-RequestId": [REQUEST_ID],
                                     "X-Amzn-Bedrock-Content-Type": ["application/json"]},
                         "body": {"string": frames}}}


def _invoke_headers(input_tokens: int, output_tokens: int) -> dict[str, str]:
    return {"X-Amzn-Bedrock-Input-Token-Count": str(input_tokens),
            "X-Amzn-Bedrock-Output-Token-Count": str(output_tokens),
            "X-Amzn-Bedrock-Invocation-Latency": "612"}


# tests/integrations/langchain/test_langchain_bedrock.py (memories from HashEmbedder-based tests)
GUIDE = "You are a hiking guide. Answer in one sentence."
SNACK_Q = "Which snacks are safe for someone allergic to peanuts?"
PEANUTS = memory_block(fact("The user is allergic to peanuts"))
SNACK_A = ["Apple slices, ", "cheese and pretzels ", "are safe picks ", "without peanuts."]

# integrations/langchain/README.md examples (run by tests/integrations/langchain/test_langchain_readme.py)
HISTORY_SYSTEM = "You are a friendly hiking guide. Answer in one sentence."
HISTORY_Q1, HISTORY_A1 = ("I'm hiking in Sintra on Saturday.",
                          "Sintra on Saturday sounds lovely; start early to beat the crowds.")
HISTORY_Q2, HISTORY_A2 = "Which day did I say?", "You said Saturday, for your hike in Sintra."
AGENT_SYSTEM = "You are a helpful assistant.\n\n" + memory_block(
    fact("The user's home city is Lisbon"))
AGENT_Q = "Which city do I live in, and what's the weather there?"
WEATHER_TOOL = {"toolSpec": {"name": "weather", "description": "Today's weather in a city.",
                             "inputSchema": {"json": {
                                 "properties": {"city": {"type": "string"}},
                                 "required": ["city"], "type": "object"}}}}
TOOL_USE = {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "weather",
                        "input": {"city": "Lisbon"}}}
AGENT_A = "You live in Lisbon, where it is sunny and 24 degrees C today."
BEDROCK_Q = "Any snack ideas for my hike? Remember my food allergy."
BEDROCK_A = "Pack apple slices, cheese and pretzels; I left out anything with peanuts."

CASSETTES: dict[str, list[dict[str, Any]]] = {
    "test_langchain_bedrock/test_converse_invoke.yaml": [_json_interaction(
        f"{BASE}/converse",
        converse_request(f"{GUIDE}\n\n{PEANUTS}", [user(SNACK_Q)]),
        converse_response([{"text": "".join(SNACK_A)}], "end_turn", 96, 14))],
    "test_langchain_bedrock/test_converse_stream.yaml": [_stream_interaction(
        f"{BASE}/converse-stream",
        converse_request(f"{GUIDE}\n\n{PEANUTS}", [user(SNACK_Q)]),
        converse_stream_events(SNACK_A, 96))],
    "test_langchain_bedrock/test_invoke_model.yaml": [_json_interaction(
        f"{BASE}/invoke",
        anthropic_request(f"{GUIDE}\n\n{PEANUTS}", [{"role": "user", "content": SNACK_Q}]),
        anthropic_response("".join(SNACK_A), 96, 14), _invoke_headers(96, 14))],
    "test_langchain_bedrock/test_invoke_model_stream.yaml": [_stream_interaction(
        f"{BASE}/invoke-with-response-stream",
        anthropic_request(f"{GUIDE}\n\n{PEANUTS}", [{"role": "user", "content": SNACK_Q}]),
        anthropic_stream_events(SNACK_A, 96))],
    "test_langchain_readme/history.yaml": [
        _json_interaction(f"{BASE}/converse",
                          converse_request(HISTORY_SYSTEM, [user(HISTORY_Q1)]),
                          converse_response([{"text": HISTORY_A1}], "end_turn", 31, 17)),
        _json_interaction(f"{BASE}/converse",
                          converse_request(HISTORY_SYSTEM, [user(HISTORY_Q1),
                                                            assistant(HISTORY_A1),
                                                            user(HISTORY_Q2)]),
                          converse_response([{"text": HISTORY_A2}], "end_turn", 55, 12)),
    ],
    "test_langchain_readme/agent.yaml": [
        _json_interaction(f"{BASE}/converse",
                          converse_request(AGENT_SYSTEM, [user(AGENT_Q)], [WEATHER_TOOL]),
                          converse_response([TOOL_USE], "tool_use", 402, 53)),
        _json_interaction(f"{BASE}/converse",
                          converse_request(AGENT_SYSTEM, [
                              user(AGENT_Q),
                              {"role": "assistant", "content": [TOOL_USE]},
                              {"role": "user", "content": [{"toolResult": {
                                  "content": [{"text": "Sunny, 24 degrees C in Lisbon"}],
                                  "toolUseId": TOOL_USE["toolUse"]["toolUseId"],
                                  "status": "success"}}]},
                          ], [WEATHER_TOOL]),
                          converse_response([{"text": AGENT_A}], "end_turn", 478, 19)),
    ],
    "test_langchain_readme/bedrock.yaml": [_json_interaction(
        f"{BASE}/invoke",
        anthropic_request(memory_block(fact("The user is allergic to peanuts")),
                          [{"role": "user", "content": BEDROCK_Q}]),
        anthropic_response(BEDROCK_A, 88, 21), _invoke_headers(88, 21))],
}


# ---- YAML as vcrpy reads it, JSON bodies as readable literal blocks ---------------------------
class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def main() -> None:
    for name, interactions in CASSETTES.items():
        path = HERE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.dump({"interactions": interactions, "version": 1}, Dumper=_Dumper,
                         sort_keys=False, allow_unicode=True, width=100)
        path.write_text("# authored by cassettes/langchain/author.py from the Bedrock runtime "
                        "API reference\n" + text, encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parents[1])}")


if __name__ == "__main__":
    main()
