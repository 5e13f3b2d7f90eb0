"""LangChain messages <-> memori's message dicts.

A message is captured with its memori role, its content (str or content parts, indexed for
recall), OpenAI-style ``tool_calls`` / ``tool_call_id`` and, in ``metadata["langchain"]``, the
message's own serialisation (``{"type": ..., "data": ...}``, as ``messages_from_dict`` reads it),
so reading it back gives an equal message: type, id, name, tool calls, additional kwargs,
response and usage metadata included. Rows captured by something else (memori's core, another
plugin) are rebuilt from role, content and tool fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
    messages_from_dict,
)
from langchain_core.messages.tool import default_tool_parser

from memori_core import ConfigurationError

__all__ = ["METADATA_KEY", "from_memori", "last_human_text", "new_input", "to_memori"]

#: key of the LangChain serialisation in a captured message's ``metadata``
METADATA_KEY = "langchain"

#: memori role of each LangChain message type (``ChatMessage`` roles are mapped the same way)
_ROLES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant",
          "system": "system", "developer": "system", "tool": "tool", "function": "tool"}


def _role(message: BaseMessage, index: int) -> str:
    if isinstance(message, RemoveMessage):
        raise ConfigurationError(
            f"messages[{index}] is a RemoveMessage, an instruction to a LangGraph reducer, not "
            "a message to store; apply it to the state instead", argument="messages")
    # chunks subclass their message types; ChatMessage carries its own role
    kind = message.role if isinstance(message, ChatMessage) else message.type
    for cls, name in ((HumanMessage, "human"), (AIMessage, "ai"), (SystemMessage, "system"),
                      (ToolMessage, "tool"), (FunctionMessage, "function")):
        if isinstance(message, cls):
            kind = name
    role = _ROLES.get(kind)
    if role is None:
        raise ConfigurationError(
            f"messages[{index}] has role {kind!r}, which memori cannot store; use a "
            "HumanMessage, AIMessage, SystemMessage or ToolMessage (or a ChatMessage with role "
            f"one of {', '.join(sorted(_ROLES))})", argument="messages")
    return role


def _openai_tool_calls(message: AIMessage) -> list[dict[str, Any]]:
    return [{"id": call.get("id"), "type": "function",
             "function": {"name": call["name"],
                          "arguments": json.dumps(call["args"], ensure_ascii=False)}}
            for call in message.tool_calls]


def to_memori(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """Messages as ``Memori.capture`` takes them.

    Args:
        messages: LangChain messages (human, ai with tool calls, tool, system; chunks too).

    Returns:
        one dict per message: ``role``, ``content``, ``metadata`` (with the message's own
        serialisation under ``"langchain"``) and, when set, ``name``, ``tool_calls``,
        ``tool_call_id``.

    Raises:
        ConfigurationError: (argument ``messages``) for something that is not a message, a
            ``RemoveMessage``, an unknown ``ChatMessage`` role or content that is not JSON.
    """
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, BaseMessage):
            raise ConfigurationError(
                f"messages[{i}] must be a LangChain message (BaseMessage), got "
                f"{type(message).__name__}", argument="messages")
        try:
            data = message.model_dump(mode="json")
        except ValueError as exc:  # pydantic's PydanticSerializationError
            raise ConfigurationError(
                f"messages[{i}] ({message.type}) holds a value that is not JSON-serialisable, "
                f"so it cannot be stored: {exc}", argument="messages") from exc
        row: dict[str, Any] = {"role": _role(message, i), "content": data["content"],
                               "metadata": {METADATA_KEY: {"type": message.type, "data": data}}}
        if isinstance(message.name, str) and message.name.strip() and len(message.name) <= 255:
            row["name"] = message.name
        if isinstance(message, AIMessage) and message.tool_calls:
            row["tool_calls"] = _openai_tool_calls(message)
        if isinstance(message, ToolMessage):
            row["tool_call_id"] = message.tool_call_id
        out.append(row)
    return out


def _rebuild(row: Mapping[str, Any]) -> BaseMessage:
    role, content, name = row["role"], row["content"], row.get("name")
    if role == "user":
        return HumanMessage(content=content, name=name)
    if role == "system":
        return SystemMessage(content=content, name=name)
    if role == "tool":
        return ToolMessage(content=content, name=name, tool_call_id=row.get("tool_call_id") or "")
    tool_calls, invalid = default_tool_parser(list(row.get("tool_calls") or []))
    return AIMessage(content=content, name=name, tool_calls=tool_calls,
                     invalid_tool_calls=invalid)


def from_memori(rows: Sequence[Mapping[str, Any]]) -> list[BaseMessage]:
    """Rows of ``Memori.session_messages`` as LangChain messages, in the same order.

    A row captured through this plugin gives back a message equal to the one stored; any
    other row becomes a ``HumanMessage`` / ``AIMessage`` (with tool calls) / ``SystemMessage``
    / ``ToolMessage`` by role.
    """
    out: list[BaseMessage] = []
    for row in rows:
        stored = (row.get("metadata") or {}).get(METADATA_KEY)
        if isinstance(stored, Mapping) and "type" in stored and "data" in stored:
            out.extend(messages_from_dict([dict(stored)]))
        else:
            out.append(_rebuild(row))
    return out


def last_human_text(messages: Sequence[BaseMessage]) -> str | None:
    """Text of the last human message (the query recall runs on), or None if there is none
    or it holds no text."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage) or (
                isinstance(message, ChatMessage) and _ROLES.get(message.role) == "user"):
            return message.text.strip() or None
    return None


def new_input(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """What a chat-model call adds to the conversation: the messages after the last AI
    message (the new user message, or the tool results answering the last tool calls),
    without system messages (the app's instructions, not conversation)."""
    start = 0
    for i in range(len(messages) - 1, -1, -1):
        if isinstance(messages[i], AIMessage):
            start = i + 1
            break
    return [m for m in messages[start:] if not isinstance(m, SystemMessage)]
