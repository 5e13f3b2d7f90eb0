"""Helpers shared by the provider adapters: reading SDK objects and dicts alike, the canonical
message form captured by memori (OpenAI chat style), and the choice of history to replay.

Canonical messages are what ``Memori.capture`` takes: ``{"role": "user" | "assistant" |
"tool", "content": str | parts, "tool_calls": [...], "tool_call_id": str, "name": str}``;
tool calls are OpenAI style (``{"id", "type": "function", "function": {"name", "arguments"}}``,
``arguments`` a JSON string). Each adapter converts its provider's request and response into
this form for capture, and the replayed history back into the provider's form.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from memori_core.llm.context import strip_block

__all__ = ["cut_messages", "dump", "estimate_tokens", "field", "select_history", "text_of",
           "tool_call"]

#: tokens added per message on top of its text, for role and framing
MESSAGE_OVERHEAD_TOKENS = 4


def field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` for a mapping, else ``getattr(obj, name)``; ``default`` when missing or
    None. SDK requests hold dicts (TypedDicts) or SDK models; responses hold models."""
    if isinstance(obj, Mapping):
        value = obj.get(name, default)
    else:
        value = getattr(obj, name, default)
    return default if value is None else value


def dump(obj: Any) -> Any:
    """A JSON-ready copy of ``obj``: pydantic models dumped (None fields left out), mappings
    and sequences copied recursively, anything else unchanged."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", exclude_none=True)
    if isinstance(obj, Mapping):
        return {str(k): dump(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [dump(v) for v in obj]
    return obj


def text_of(content: Any) -> str:
    """The text of a content value: a str, or the ``text`` of text-like parts (``text``,
    ``input_text``, ``output_text``), joined by newlines; the memori block is stripped."""
    if content is None:
        return ""
    if isinstance(content, str):
        return strip_block(content)
    if isinstance(content, (list, tuple)):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif field(part, "type", "text") in ("text", "input_text", "output_text") and \
                    isinstance(field(part, "text"), str):
                texts.append(field(part, "text"))
        return strip_block("\n".join(t for t in texts if t))
    return ""


#: content part types that carry binary data: OpenAI chat (``image_url``, ``input_audio``,
#: ``file``) and Responses (``input_image``, ``input_file``) parts, Anthropic's ``image`` and
#: ``document`` blocks, LangChain's standard ``image`` / ``audio`` / ``file`` / ``video`` blocks
BINARY_PARTS = frozenset({"image", "image_url", "audio", "input_audio", "file", "video",
                          "input_image", "input_file", "document"})


def named_part(kind: str, name: str | None = None, media_type: str | None = None
               ) -> dict[str, Any]:
    """A content part that names an image, audio clip, document or other binary part
    without its bytes: ``{"type": kind, "name": ..., "media_type": ...}``. memori stores
    the parts of a message as JSON; binary data would bloat every later read of the session,
    so the wrappers and plugins name it and the caller keeps the data."""
    part: dict[str, Any] = {"type": kind}
    if name:
        part["name"] = name
    if media_type:
        part["media_type"] = media_type
    return part


def named_parts(content: Any) -> Any:
    """``content`` with each binary part (a dict whose ``type`` is in ``BINARY_PARTS``)
    replaced by a ``named_part`` of the same type, named by its ``filename``, ``name`` or
    http(s) URL (``url``, ``image_url``, ``image_url.url`` or Anthropic's ``source.url``; a
    ``data:`` URL or base64 source is bytes, not a name) with its ``mime_type`` or
    ``media_type``; other parts and non-list content unchanged."""
    if not isinstance(content, list):
        return content
    out = []
    for part in content:
        if isinstance(part, Mapping) and part.get("type") in BINARY_PARTS:
            raw = part.get("source")
            source: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
            url = part.get("url") or part.get("image_url") or source.get("url") or ""
            url = str(url.get("url", "") if isinstance(url, Mapping) else url)
            name = part.get("filename") or part.get("name") or (
                url if url.startswith("http") else None)
            part = named_part(str(part["type"]), name, part.get("mime_type")
                              or part.get("media_type") or source.get("media_type"))
        out.append(part)
    return out


def clean_content(content: Any) -> str | list[Any]:
    """Content to capture: a str as is (block stripped), parts as JSON-ready dicts with text
    parts block-stripped and binary parts named (``named_parts``: no bytes are stored);
    parts that cannot be stored as JSON are reduced to their text."""
    if isinstance(content, str) or content is None:
        return text_of(content)
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append({"type": "text", "text": strip_block(part)})
            continue
        item = dump(part)
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            item = {**item, "text": strip_block(item["text"])}
        parts.append(item)
    parts = named_parts(parts)
    try:
        json.dumps(parts)
    except (TypeError, ValueError):
        return text_of(content)
    return parts


def tool_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    """An OpenAI-style tool call; ``arguments`` a JSON string, or anything else to dump as one."""
    if not isinstance(arguments, str):
        arguments = json.dumps(dump(arguments) if arguments is not None else {},
                               ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


#: appended to a message cut to ``Config.capture_max_message_chars``
CUT_MARK = "\n[... cut by memori: {shown:,} of {total:,} characters]"


def cut_messages(messages: Sequence[Mapping[str, Any]], max_chars: int
                 ) -> list[dict[str, Any]]:
    """``messages`` with each text content longer than ``max_chars`` cut to it, marked at the
    end (``CUT_MARK``) and in the message's metadata (``{"cut": {"shown", "total"}}``); a
    message whose content parts are larger keeps its text parts, cut the same way, and loses
    the others. What registered clients and plugins capture, so an oversized message is kept
    cut instead of refused by ``capture``."""
    out = []
    for m in messages:
        content = m.get("content")
        total = len(content) if isinstance(content, str) else \
            len(json.dumps(content, ensure_ascii=False, default=str)) \
            if isinstance(content, (list, tuple)) else 0
        if total <= max_chars:
            out.append(dict(m))
            continue
        text = text_of(content) if not isinstance(content, str) else content
        keep = max(0, max_chars - len(CUT_MARK.format(shown=max_chars, total=total)))
        cut = text[:keep] + CUT_MARK.format(shown=keep, total=total)
        meta = {**(m.get("metadata") or {}), "cut": {"shown": keep, "total": total}}
        out.append({**m, "content": cut, "metadata": meta})
    return out


def estimate_tokens(message: Mapping[str, Any]) -> int:
    """A tokenizer-free estimate: characters / 4 of the text and tool-call arguments, plus
    ``MESSAGE_OVERHEAD_TOKENS``."""
    chars = len(text_of(message.get("content")))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        chars += len(str(fn.get("name", ""))) + len(str(fn.get("arguments", "")))
    return math.ceil(chars / 4) + MESSAGE_OVERHEAD_TOKENS


def _units(messages: Sequence[Mapping[str, Any]]) -> list[tuple[list[dict[str, Any]], bool]]:
    """Split a session into units that can be replayed or dropped whole: a user message; an
    assistant message with the tool results answering its tool calls. Returns (messages,
    valid); a unit is invalid when a tool call has no result or a tool result no call."""
    units: list[tuple[list[dict[str, Any]], bool]] = []
    for raw in messages:
        msg = {k: raw[k] for k in ("role", "content", "name", "tool_calls", "tool_call_id")
               if raw.get(k) is not None}
        role = msg.get("role")
        if role == "tool":
            if units and units[-1][0][0].get("role") == "assistant" and \
                    units[-1][0][0].get("tool_calls"):
                units[-1][0].append(msg)
            else:
                units.append(([msg], False))  # a result without its call
            continue
        if role in ("user", "assistant"):
            units.append(([msg], True))
    out = []
    for unit, valid in units:
        head = unit[0]
        if valid and head.get("role") == "assistant" and head.get("tool_calls"):
            wanted = {c.get("id") for c in head["tool_calls"]}
            answered = {m.get("tool_call_id") for m in unit[1:]}
            valid = wanted <= answered and answered <= wanted
        out.append((unit, valid))
    return out


def select_history(messages: Sequence[Mapping[str, Any]], max_messages: int, max_tokens: int
                   ) -> list[dict[str, Any]]:
    """The newest part of a session to replay before a request.

    Whole units only (a tool call is replayed with all of its results or not at all), at most
    ``max_messages`` messages and ``max_tokens`` estimated tokens (``estimate_tokens``); it
    starts with a user message and ends with an assistant message without pending tool
    calls, so every provider accepts it in front of a new user turn. System messages are
    never replayed (the request carries its own).

    Args:
        messages: the session, oldest first (``Memori.session_messages()``).
        max_messages: ``Config.llm_history_messages``; 0 replays nothing.
        max_tokens: ``Config.llm_history_tokens``.

    Returns:
        canonical messages, oldest first.
    """
    if max_messages <= 0:
        return []
    chosen: list[list[dict[str, Any]]] = []
    count = tokens = 0
    for unit, valid in reversed(_units(messages)):
        if not valid:
            continue
        cost = sum(estimate_tokens(m) for m in unit)
        if count + len(unit) > max_messages or tokens + cost > max_tokens:
            break
        chosen.append(unit)
        count += len(unit)
        tokens += cost
    chosen.reverse()
    while chosen and chosen[0][0].get("role") != "user":
        chosen.pop(0)
    while chosen and (chosen[-1][0].get("role") != "assistant" or chosen[-1][0].get("tool_calls")):
        chosen.pop()
    return [m for unit in chosen for m in unit]


class MessageListAdapter:
    """What the adapters of APIs taking a list of role messages (Chat Completions, Responses,
    Anthropic Messages) share: the stream flag, the model, the last user message as the recall
    query, and whether the request already carries an assistant turn (history)."""

    provider = ""
    #: the request argument holding the messages (its first name)
    iterable_args: tuple[str, ...] = ("messages",)

    def __init__(self, api: str) -> None:
        self.api = api

    def is_stream(self, kwargs: dict[str, Any]) -> bool:
        return kwargs.get("stream") is True

    def model(self, kwargs: dict[str, Any]) -> str | None:
        model = kwargs.get("model")
        return model if isinstance(model, str) else None

    def _messages(self, kwargs: dict[str, Any]) -> list[Any]:
        value = kwargs.get(self.iterable_args[0])
        if isinstance(value, str):  # Responses' input="..."
            return [{"role": "user", "content": value}]
        return list(value) if isinstance(value, (list, tuple)) else []

    def query(self, kwargs: dict[str, Any]) -> str | None:
        for message in reversed(self._messages(kwargs)):
            if field(message, "role") == "user":
                text = text_of(field(message, "content"))
                if text.strip():
                    return text
        return None

    def carries_history(self, kwargs: dict[str, Any]) -> bool:
        return any(field(m, "role") == "assistant" for m in self._messages(kwargs))

    def visible(self, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"role": str(field(m, "role", "")), "content": text_of(field(m, "content"))}
                for m in self._messages(kwargs)]

    def _after_last_assistant(self, kwargs: dict[str, Any]) -> list[Any]:
        """The request's messages after its last assistant message: what this call adds."""
        messages = self._messages(kwargs)
        start = 0
        for i, message in enumerate(messages):
            if field(message, "role") == "assistant":
                start = i + 1
        return messages[start:]
