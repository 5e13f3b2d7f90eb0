"""Pydantic AI messages in the form ``Memori.capture`` stores, through the integration kit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_ai import messages as pm

from memori_core.integration import named_part, tool_call

__all__ = ["to_memori_messages"]


def _user_content(content: str | Sequence[Any]) -> str | list[dict[str, Any]]:
    """A user prompt as a str, or as content parts: text parts for text; images, audio and
    other files named (``named_part``), never copied."""
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for item in content:
        if isinstance(item, (str, pm.TextContent)):
            parts.append({"type": "text", "text": item if isinstance(item, str) else item.content})
        elif not isinstance(item, pm.CachePoint):
            name = getattr(item, "url", None) or getattr(item, "identifier", None)
            parts.append(named_part(str(getattr(item, "kind", type(item).__name__)),
                                    name if isinstance(name, str) else None,
                                    getattr(item, "media_type", None)))
    return parts


def to_memori_messages(message: pm.ModelMessage) -> list[dict[str, Any]]:
    """One Pydantic AI message as ``Memori.capture`` message dicts, in order: a ``user`` message
    per user prompt, a ``tool`` message per tool return, a ``system`` message per output-retry
    feedback, one ``assistant`` message per response (text and OpenAI-style ``tool_calls``).
    System prompts, thinking and bookkeeping parts are left out. Each carries
    ``metadata={"pydantic_ai": {"run_id", "conversation_id"[, "model_name"]}}`` and the
    message's timestamp as ``created_at``."""
    meta: dict[str, Any] = {"run_id": message.run_id, "conversation_id": message.conversation_id}
    out: list[dict[str, Any]] = []
    if isinstance(message, pm.ModelRequest):
        for part in message.parts:
            if isinstance(part, pm.UserPromptPart):
                out.append({"role": "user", "content": _user_content(part.content)})
            elif isinstance(part, pm.ToolReturnPart):
                out.append({"role": "tool", "content": part.model_response_str(),
                            "tool_call_id": part.tool_call_id, "name": part.tool_name})
            elif isinstance(part, pm.RetryFeedbackPart):
                out.append({"role": "system", "content": part.model_response()})
    else:
        text = "".join(p.content for p in message.parts if isinstance(p, pm.TextPart))
        calls = [tool_call(p.tool_call_id, p.tool_name, p.args_as_json_str())
                 for p in message.parts if isinstance(p, pm.ToolCallPart)]
        if text or calls:
            out.append({"role": "assistant", "content": text, **({"tool_calls": calls}
                                                                  if calls else {})})
        if isinstance(message, pm.ModelResponse) and message.model_name:
            meta["model_name"] = message.model_name
    for msg in out:
        msg["metadata"] = {"pydantic_ai": dict(meta)}
        if message.timestamp is not None:
            msg["created_at"] = message.timestamp
    return out
