"""Anthropic clients: ``messages.create`` (also ``stream=True``) and ``messages.stream``.

The memori block is appended to ``system`` (a string gets it after a blank line, a list of text
blocks gets one more text block); replayed history goes before ``messages``, merged so roles
still alternate. Captured: the messages after the request's last assistant message (text and
other content blocks as a user message, each ``tool_result`` block as a tool message) and the
response (text blocks joined, ``tool_use`` blocks as tool calls; thinking is not captured).
``messages.stream`` is captured on leaving its ``with`` block, from the SDK's own assembled
message snapshot.
"""

from __future__ import annotations

import json
from typing import Any

from memori_core.llm._engine import Target
from memori_core.llm._messages import (
    MessageListAdapter,
    clean_content,
    field,
    text_of,
    tool_call,
)

__all__ = ["Messages", "targets"]


class Messages(MessageListAdapter):
    """Adapter of ``messages.create`` and ``messages.stream``."""

    provider = "anthropic"
    iterable_args: tuple[str, ...] = ("messages",)

    def new_messages(self, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for message in self._after_last_assistant(kwargs):
            if field(message, "role") != "user":
                continue
            content = field(message, "content", "")
            if isinstance(content, str):
                out.append({"role": "user", "content": text_of(content)})
                continue
            rest = []
            for block in content:
                if field(block, "type") == "tool_result":
                    out.append({"role": "tool", "tool_call_id": str(field(block, "tool_use_id", "")),
                                "content": text_of(field(block, "content", ""))})
                else:
                    rest.append(block)
            if rest:
                out.append({"role": "user", "content": clean_content(rest)})
        return out

    def inject(self, kwargs: dict[str, Any], block: str | None,
               history: list[dict[str, Any]]) -> dict[str, Any]:
        out = dict(kwargs)
        if block is not None:
            system = kwargs.get("system")
            if isinstance(system, str) and system:
                out["system"] = f"{system}\n\n{block}"
            elif isinstance(system, (list, tuple)) and system:
                out["system"] = [*system, {"type": "text", "text": block}]
            else:
                out["system"] = block
        if history:
            out["messages"] = _merge([*(_to_anthropic(m) for m in history),
                                      *self._messages(kwargs)])
        return out

    def response_messages(self, response: Any) -> list[dict[str, Any]]:
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in field(response, "content", []):
            kind = field(block, "type")
            if kind == "text":
                texts.append(field(block, "text", ""))
            elif kind == "tool_use":
                calls.append(tool_call(field(block, "id", ""), field(block, "name", ""),
                                       field(block, "input", {})))
        return _assistant(texts, calls)

    def accumulator(self) -> _EventAccumulator:
        return _EventAccumulator()

    def snapshot(self, stream: Any) -> tuple[list[dict[str, Any]], bool]:
        """What ``messages.stream``'s ``MessageStream`` assembled, and whether it completed."""
        if stream is None:
            return [], False
        try:
            message = stream.current_message_snapshot
        except AssertionError:  # the SDK asserts when no event has arrived yet
            return [], False
        if message is None:
            return [], False
        return self.response_messages(message), field(message, "stop_reason") is not None


def _assistant(texts: list[str], calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not texts and not calls:
        return []
    out: dict[str, Any] = {"role": "assistant", "content": text_of("".join(texts))}
    if calls:
        out["tool_calls"] = calls
    return [out]


def _to_anthropic(message: dict[str, Any]) -> dict[str, Any]:
    """A canonical message as an Anthropic message: plain text, or content blocks."""
    role = message["role"]
    text = text_of(message.get("content"))
    if role == "tool":
        return {"role": "user", "content": [{"type": "tool_result",
                                             "tool_use_id": message.get("tool_call_id", ""),
                                             "content": text}]}
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        try:
            arguments = json.loads(fn.get("arguments") or "{}")
        except ValueError:
            arguments = {}
        blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""),
                       "input": arguments})
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return {"role": role, "content": text}
    return {"role": role, "content": blocks}


def _blocks(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _merge(messages: list[Any]) -> list[Any]:
    """Merge consecutive messages of one role: Anthropic alternates user and assistant."""
    out: list[Any] = []
    for message in messages:
        role = field(message, "role")
        if out and field(out[-1], "role") == role:
            out[-1] = {"role": role, "content": _blocks(field(out[-1], "content", ""))
                       + _blocks(field(message, "content", ""))}
        else:
            out.append(message)
    return out


class _EventAccumulator:
    """Assembles raw Messages stream events: ``content_block_start`` / ``_delta`` by block
    index (text, and ``tool_use`` input from ``input_json_delta`` fragments)."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}

    def add(self, event: Any) -> None:
        kind = field(event, "type")
        if kind == "content_block_start":
            block = field(event, "content_block")
            self.blocks[field(event, "index", 0)] = {
                "type": field(block, "type"), "text": field(block, "text", ""),
                "id": field(block, "id", ""), "name": field(block, "name", ""),
                "input": field(block, "input", {}), "json": ""}
        elif kind == "content_block_delta":
            slot = self.blocks.get(field(event, "index", 0))
            delta = field(event, "delta")
            if slot is None or delta is None:
                return
            if field(delta, "type") == "text_delta":
                slot["text"] += field(delta, "text", "")
            elif field(delta, "type") == "input_json_delta":
                slot["json"] += field(delta, "partial_json", "")

    def messages(self) -> list[dict[str, Any]]:
        texts, calls = [], []
        for _, block in sorted(self.blocks.items()):
            if block["type"] == "text":
                texts.append(block["text"])
            elif block["type"] == "tool_use":
                calls.append(tool_call(block["id"], block["name"],
                                       block["json"] or block["input"]))
        return _assistant(texts, calls)


def targets(client: Any) -> list[Target] | None:
    """The methods to wrap on an Anthropic client (``Anthropic``, ``AsyncAnthropic``, and the
    Bedrock / Vertex / Foundry clients: anything whose ``messages`` is the SDK's messages
    resource); None for any other object."""
    if not (type(client).__module__ or "").startswith("anthropic"):
        return None
    from anthropic.resources.messages import AsyncMessages
    from anthropic.resources.messages import Messages as SyncMessages

    messages = getattr(client, "messages", None)
    if isinstance(messages, AsyncMessages):
        is_async = True
    elif isinstance(messages, SyncMessages):
        is_async = False
    else:
        return None
    return [
        Target(messages, "create", Messages("messages.create"), is_async),
        Target(messages, "stream", Messages("messages.stream"), is_async, shape="manager"),
    ]
