"""LlamaIndex ``ChatMessage`` <-> the message dicts of ``Memori.capture`` / ``session_messages``.

A ``ChatMessage`` is stored so that it comes back equal:

- ``role``: memori's four roles; LlamaIndex's others (``developer``, ``function``, ``chatbot``,
  ``model``) are stored as the nearest one (system, tool, assistant, assistant) with the
  original kept in the message metadata.
- ``blocks``: one ``TextBlock`` is stored as plain text; anything else (no block too) as
  content parts, each the block's own JSON (``block_type`` ...), text blocks also carrying
  ``"type": "text"`` so memori indexes their text. Parts captured by other memori clients
  (OpenAI style ``{"type": "text"}`` / ``{"type": "image_url"}``) are read back as text and
  image blocks; other foreign parts, which LlamaIndex has no block for, are left out.
- ``additional_kwargs``: ``tool_call_id`` goes to memori's ``tool_call_id``; the rest, as
  LlamaIndex serialises it, to ``metadata["llama_index"]["additional_kwargs"]``.
- tool calls: ``ToolCallBlock`` blocks are also stored as memori's OpenAI-style ``tool_calls``,
  so every memori reader sees them; an OpenAI-style ``additional_kwargs["tool_calls"]`` (older
  LLM integrations) is stored there only and put back on reading; a message captured elsewhere
  with ``tool_calls`` reads back with ``ToolCallBlock`` blocks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    AudioBlock,
    ChatMessage,
    ContentBlock,
    DocumentBlock,
    ImageBlock,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    VideoBlock,
)
from llama_index.core.bridge.pydantic import TypeAdapter

from memori_core import ConfigurationError

__all__ = ["from_memori", "message_text", "to_memori", "token_estimate"]

_ROLE_TO_MEMORI = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
    MessageRole.TOOL: "tool",
    MessageRole.FUNCTION: "tool",
}
_META_KEY = "llama_index"
_BLOCK: TypeAdapter[Any] = TypeAdapter(ContentBlock)


# ---- ChatMessage -> memori ----------------------------------------------------------------------
def to_memori(message: ChatMessage, *, drop_kwargs: Sequence[str] = ()) -> dict[str, Any]:
    """One ``ChatMessage`` as a ``Memori.capture`` message dict.

    Args:
        message: the message; its ``additional_kwargs`` must be JSON-serialisable the way
            LlamaIndex serialises them (pydantic models become dicts).
        drop_kwargs: ``additional_kwargs`` keys not to store (e.g. the ``session_id`` tag
            LlamaIndex's ``Memory`` puts on messages it hands to memory blocks).

    Raises:
        ConfigurationError: ``message`` is not a ``ChatMessage`` (argument ``messages``).
    """
    if not isinstance(message, ChatMessage):
        raise ConfigurationError(
            f"expected a llama_index ChatMessage, got {type(message).__name__}: wrap text as "
            "ChatMessage(role='user', content=...)", argument="messages")
    dumped = message.model_dump(mode="json")
    kwargs: dict[str, Any] = {k: v for k, v in dumped["additional_kwargs"].items()
                              if k not in drop_kwargs}
    out: dict[str, Any] = {"role": _ROLE_TO_MEMORI[message.role]}
    blocks: list[dict[str, Any]] = dumped["blocks"]
    if len(blocks) == 1 and blocks[0]["block_type"] == "text":
        out["content"] = blocks[0]["text"]
    else:
        out["content"] = [{**b, "type": "text"} if b["block_type"] == "text" else b
                          for b in blocks]
    tool_call_id = kwargs.pop("tool_call_id", None)
    if isinstance(tool_call_id, str):
        out["tool_call_id"] = tool_call_id
    elif tool_call_id is not None:
        kwargs["tool_call_id"] = tool_call_id  # not a str: kept verbatim with the rest
    meta: dict[str, Any] = {}
    tool_calls = _openai_tool_calls(message)
    legacy = kwargs.get("tool_calls")
    if not tool_calls and isinstance(legacy, list) and legacy and all(
            isinstance(c, dict) for c in legacy):
        # OpenAI-style tool calls in additional_kwargs (older LlamaIndex LLM integrations):
        # stored once, in memori's column, and put back into additional_kwargs on reading
        tool_calls = kwargs.pop("tool_calls")
        meta["tool_calls_in"] = "additional_kwargs"
    if tool_calls:
        out["tool_calls"] = tool_calls
    if message.role.value != out["role"]:
        meta["role"] = message.role.value
    if kwargs:
        meta["additional_kwargs"] = kwargs
    if meta:
        out["metadata"] = {_META_KEY: meta}
    return out


def _openai_tool_calls(message: ChatMessage) -> list[dict[str, Any]]:
    """The message's ``ToolCallBlock`` blocks in OpenAI's shape, for memori's ``tool_calls``."""
    return [{"id": b.tool_call_id, "type": "function",
             "function": {"name": b.tool_name,
                          "arguments": b.tool_kwargs if isinstance(b.tool_kwargs, str)
                          else json.dumps(b.tool_kwargs, ensure_ascii=False)}}
            for b in message.blocks if isinstance(b, ToolCallBlock)]


# ---- memori -> ChatMessage ----------------------------------------------------------------------
def from_memori(row: Mapping[str, Any]) -> ChatMessage:
    """A message of ``Memori.session_messages`` as a ``ChatMessage`` (the inverse of
    ``to_memori`` for messages it stored)."""
    meta = (row.get("metadata") or {}).get(_META_KEY) or {}
    kwargs: dict[str, Any] = dict(meta.get("additional_kwargs") or {})
    if row.get("tool_call_id") is not None:
        kwargs["tool_call_id"] = row["tool_call_id"]
    if meta.get("tool_calls_in") == "additional_kwargs" and row.get("tool_calls"):
        kwargs["tool_calls"] = row["tool_calls"]
    content = row.get("content")
    blocks: list[Any]
    if isinstance(content, str):
        blocks = [TextBlock(text=content)]
    else:
        blocks = [b for b in (_block(p) for p in content or ()) if b is not None]
    if (row.get("tool_calls") and "tool_calls" not in kwargs
            and not any(isinstance(b, ToolCallBlock) for b in blocks)):
        blocks.extend(_tool_call_block(c) for c in row["tool_calls"] if isinstance(c, Mapping))
    return ChatMessage(role=MessageRole(meta.get("role", row["role"])), blocks=blocks,
                       additional_kwargs=kwargs)


def _block(part: object) -> Any:
    if isinstance(part, str):
        return TextBlock(text=part)
    if not isinstance(part, Mapping):
        return None
    if part.get("block_type") == "text":
        return TextBlock(text=str(part.get("text", "")))
    if "block_type" in part:
        return _BLOCK.validate_python(dict(part))
    ptype = part.get("type")
    if ptype in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
        return TextBlock(text=part["text"])
    if ptype == "image_url":
        url = part.get("image_url")
        url = url.get("url") if isinstance(url, Mapping) else url
        if isinstance(url, str):
            return ImageBlock(url=url)
    return None  # a part LlamaIndex has no block for


def _tool_call_block(call: Mapping[str, Any]) -> ToolCallBlock:
    function = call.get("function") or {}
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass  # partial / non-JSON arguments stay the string the model produced
    return ToolCallBlock(tool_call_id=call.get("id"), tool_name=str(function.get("name", "")),
                         tool_kwargs=arguments)


def message_text(message: ChatMessage) -> str:
    """The text of a message's text blocks, joined by newlines."""
    return "\n".join(b.text for b in message.blocks if isinstance(b, TextBlock))


def token_estimate(message: ChatMessage, tokenizer: Any) -> int:
    """Tokens of a message, estimated as LlamaIndex's ``Memory`` does: the text (and thinking
    and tool-call JSON) through ``tokenizer``, 256 per image, audio or video block, 2048 per
    document, plus the ``additional_kwargs`` as text."""
    count = 0
    for block in message.blocks:
        if isinstance(block, TextBlock):
            count += len(tokenizer(block.text))
        elif isinstance(block, ThinkingBlock):
            count += len(tokenizer(block.content or ""))
        elif isinstance(block, ToolCallBlock):
            count += len(tokenizer(block.model_dump_json()))
        elif isinstance(block, (ImageBlock, AudioBlock, VideoBlock)):
            count += 256
        elif isinstance(block, DocumentBlock):
            count += 2048
    if message.additional_kwargs:
        count += len(tokenizer(str(message.additional_kwargs)))
    return count
