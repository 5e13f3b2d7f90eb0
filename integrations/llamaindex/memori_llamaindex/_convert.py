"""LlamaIndex ``ChatMessage`` <-> ``Memori.capture`` dicts, by the kit: text (memori's block
stripped); media named, never copied; tool calls OpenAI-style; thinking not stored; other
roles as the nearest memori role (the original, and a fingerprint, ``key``, in metadata)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from llama_index.core.base.llms import types as li
from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock

from memori_core import ConfigurationError
from memori_core.integration import named_part, strip_block, tool_call

__all__ = ["from_memori", "key", "key_of_row", "message_text", "to_memori"]

_ROLES = {MessageRole.SYSTEM: "system", MessageRole.DEVELOPER: "system",
          MessageRole.USER: "user", MessageRole.ASSISTANT: "assistant",
          MessageRole.CHATBOT: "assistant", MessageRole.MODEL: "assistant",
          MessageRole.TOOL: "tool", MessageRole.FUNCTION: "tool"}
_META = "llama_index"
_MEDIA: list[tuple[type, str, str]] = [
    (li.ImageBlock, "image", "image_mimetype"), (li.AudioBlock, "audio", "format"),
    (li.VideoBlock, "video", "video_mimetype"), (li.DocumentBlock, "file", "document_mimetype")]


def _calls(message: ChatMessage) -> list[dict[str, Any]]:
    calls = [tool_call(b.tool_call_id or "", b.tool_name, b.tool_kwargs)
             for b in message.blocks if isinstance(b, ToolCallBlock)]
    legacy = message.additional_kwargs.get("tool_calls")
    if not calls and isinstance(legacy, list):  # older LLM integrations: OpenAI objects
        for c in legacy:
            c = c.model_dump() if hasattr(c, "model_dump") else c
            fn = c.get("function") if isinstance(c, Mapping) else None
            if isinstance(fn, Mapping):
                calls.append(tool_call(str(c.get("id") or ""), str(fn.get("name", "")),
                                       fn.get("arguments")))
    return calls


def _body(message: ChatMessage) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for block in message.blocks:
        if isinstance(block, TextBlock) and (text := strip_block(block.text)):
            parts.append({"type": "text", "text": text})
        for cls, kind, mime in _MEDIA:  # named by URL, path or title; data: URLs are bytes
            if isinstance(block, cls):
                src = str(getattr(block, "url", None) or getattr(block, "path", None) or "")
                parts.append(named_part(kind, "" if src.startswith("data:") else src or
                                        getattr(block, "title", None), getattr(block, mime, None)))
    out: dict[str, Any] = {"role": _ROLES[message.role]}
    out["content"] = ("\n".join(p["text"] for p in parts)
                      if all(p["type"] == "text" for p in parts) else parts)
    if calls := _calls(message):
        out["tool_calls"] = calls
    if isinstance(call_id := message.additional_kwargs.get("tool_call_id"), str):
        out["tool_call_id"] = call_id
    return out


def key(message: ChatMessage, body: Mapping[str, Any] | None = None) -> str:
    """A fingerprint of what memori stores of ``message`` (``body``: its stored form)."""
    data = json.dumps([message.role.value, body or _body(message)], sort_keys=True, default=str)
    return hashlib.sha1(data.encode("utf-8", "surrogatepass")).hexdigest()


def key_of_row(row: Mapping[str, Any]) -> str | None:
    """The fingerprint a stored message was captured with (None: captured elsewhere)."""
    return ((row.get("metadata") or {}).get(_META) or {}).get("key")


def to_memori(message: ChatMessage) -> dict[str, Any]:
    """One ``ChatMessage`` as a ``Memori.capture`` message dict, fingerprinted.

    Raises:
        ConfigurationError: ``message`` is not a ``ChatMessage`` (argument ``messages``).
    """
    if not isinstance(message, ChatMessage):
        raise ConfigurationError(
            f"expected a llama_index ChatMessage, got {type(message).__name__}: wrap text as "
            "ChatMessage(role='user', content=...)", argument="messages")
    out = _body(message)
    meta: dict[str, Any] = {"key": key(message, out)}
    if message.role.value != out["role"]:
        meta["role"] = message.role.value
    out["metadata"] = {_META: meta}
    return out


def from_memori(row: Mapping[str, Any]) -> ChatMessage:
    """A stored message (``Memori.session_messages`` row) as a ``ChatMessage``."""
    meta = (row.get("metadata") or {}).get(_META) or {}
    content = row.get("content")
    blocks: list[Any] = []
    for part in [content] if isinstance(content, str) else content or ():
        if isinstance(part, Mapping) and not isinstance(part.get("text"), str):
            named = " ".join(str(part[k]) for k in ("type", "name", "media_type") if part.get(k))
            part = f"[{named}]"  # an image, audio clip or file, named, not kept
        if text := part if isinstance(part, str) else part.get("text"):
            blocks.append(TextBlock(text=text))
    for call in row.get("tool_calls") or ():
        fn = call.get("function") or {}
        arguments = fn.get("arguments", "{}")
        try:
            arguments = json.loads(arguments)
        except (TypeError, ValueError):
            pass  # partial or non-JSON arguments stay the string the model produced
        blocks.append(ToolCallBlock(tool_call_id=call.get("id"), tool_name=str(fn.get("name")),
                                    tool_kwargs=arguments))
    blocks = blocks or [TextBlock(text="")]
    kwargs = {"tool_call_id": row["tool_call_id"]} if row.get("tool_call_id") else {}
    return ChatMessage(role=MessageRole(meta.get("role", row["role"])), blocks=blocks,
                       additional_kwargs=kwargs)


def message_text(message: ChatMessage) -> str:
    """The text of a message's text blocks, joined by newlines."""
    return "\n".join(b.text for b in message.blocks if isinstance(b, TextBlock))
