"""What both entry points share: Agno's ids as memori's entity (never a shared ``default``),
Agno messages in ``Memori.capture`` form, memori memories as Agno ``UserMemory``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timezone
from typing import Any

from agno.memory import UserMemory
from agno.models.message import Message

from memori_core import ConfigurationError, Memory, RecallHit
from memori_core.integration import named_part, named_parts, text_of, tool_call

__all__ = ["FRAMEWORK", "NAMES", "entity_of", "memory_id_to_int", "slot_of", "threaded",
           "to_messages", "to_user_memory"]

_log = logging.getLogger("memori_agno")

FRAMEWORK = "agno"
NAMES = {"entity_id": "user_id", "process_id": "agent_id"}  # memori's argument -> Agno's
_TOPICS = "agno-topics:"
_MEDIA = (("image", "images"), ("audio", "audio"), ("video", "videos"), ("file", "files"))
_ROLES = {"user": "user", "assistant": "assistant", "model": "assistant", "system": "system",
          "developer": "system", "tool": "tool"}


def threaded(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self, name), *args, **kwargs)
    method.__doc__ = f"``{name}`` in a worker thread."
    return method


def entity_of(user_id: str | None, session_id: str | None, warned: set[str]) -> str | None:
    """memori's entity for Agno's ``user_id``; without one (None, ``""`` or Agno's stand-in
    ``"default"``) the session's own entity ``agno-session:<session_id>``, so nothing is
    shared across anonymous visitors, or None (nothing captured or recalled) without a
    session either. Warns once per case (``warned``: the cases warned about)."""
    if user_id and user_id != "default":  # what Agno passes for a run without user_id
        return user_id
    case = "session" if session_id else "none"
    if case not in warned:
        warned.add(case)
        _log.warning("memori_agno: a call without user_id is %s (memori never shares a "
                     "'default' user); pass user_id=...", "remembered for its session only"
                     if session_id else "neither captured nor recalled")
    return f"agno-session:{session_id}" if session_id else None


def memory_id_to_int(memory_id: object) -> int:
    """Agno's memory id (memori's row id as a decimal string) as an int."""
    if isinstance(memory_id, str) and memory_id.strip().isdigit():
        return int(memory_id)
    raise ConfigurationError(f"memory_id must be the id of a memori memory (a decimal string "
                             f"such as '42'), got {memory_id!r}", argument="memory_id")


def slot_of(text: str, topics: Sequence[str] | None) -> str | None:
    """The memori ``slot`` keeping Agno ``topics`` (``agno-topics:["travel"]#<text hash>``):
    unique per text, so it supersedes no other memory. None without topics."""
    names = [t for t in topics or () if isinstance(t, str) and t.strip()]
    digest = hashlib.sha256(text.strip().encode("utf-8", "replace")).hexdigest()[:12]
    while names and len(_TOPICS + json.dumps(names, ensure_ascii=False)) > 240:
        names.pop()  # a slot is at most 255 characters
    return f"{_TOPICS}{json.dumps(names, ensure_ascii=False)}#{digest}" if names else None


def _topics(memory: Memory | RecallHit) -> list[str]:
    slot = getattr(memory, "slot", None) or ""
    if slot.startswith(_TOPICS):
        return [str(t) for t in json.loads(slot[len(_TOPICS):].rsplit("#", 1)[0])]
    return [memory.kind]


def _seconds(value: datetime) -> int:
    return int(value.replace(tzinfo=value.tzinfo or timezone.utc).timestamp())


def to_user_memory(memory: Memory | RecallHit, user_id: str) -> UserMemory:
    """A memori memory as Agno's ``UserMemory``: memori's id, the topics it was added with
    (else ``[kind]``), its process as ``agent_id``, times in Unix seconds."""
    last = memory.last_seen_at if isinstance(memory, Memory) else memory.created_at
    return UserMemory(memory=memory.content, memory_id=str(memory.id), topics=_topics(memory),
                      user_id=user_id, agent_id=memory.process_id,
                      created_at=_seconds(memory.created_at), updated_at=_seconds(last))


def _content(message: Message) -> str | list[dict[str, Any]]:
    """Text, and media named, never copied (the message's images, audio, videos, files and
    non-text parts)."""
    content = message.content
    text = content if isinstance(content, str) else text_of(content) if isinstance(
        content, list) else message.get_content_string() if content is not None else ""
    parts: list[dict[str, Any]] = []
    for kind, attr in _MEDIA:
        for item in getattr(message, attr, None) or ():
            name = next((str(v) for a in ("url", "filepath", "filename", "id")
                         if (v := getattr(item, a, None))), None)
            parts.append(named_part(kind, name, getattr(item, "mime_type", None)))
    parts += [p for p in (named_parts(content) if isinstance(content, list) else ())
              if isinstance(p, dict) and p.get("type") not in (None, "text", "input_text",
                                                                "output_text")]
    if not parts:
        return text
    return [{"type": "text", "text": text}, *parts] if text else parts


def to_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """Agno messages in ``Memori.capture`` form (role, text and named media, tool calls, tool
    call id, name, ``created_at``, ``metadata["agno_message_id"]``); empty ones left out."""
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = _ROLES.get(message.role) if isinstance(message, Message) else None
        if role is None:
            raise ConfigurationError(f"messages[{i}] must be an agno Message with a role in "
                                     f"{sorted(_ROLES)}, got {message!r:.80}", argument="messages")
        content = _content(message)
        if not message.tool_calls and not (content if isinstance(content, list)
                                           else content.strip()):
            continue
        item: dict[str, Any] = {
            "role": role, "content": content, "metadata": {"agno_message_id": message.id},
            "created_at": datetime.fromtimestamp(message.created_at, tz=timezone.utc)}
        if message.name:
            item["name"] = message.name
        if message.tool_calls:
            calls = [(c.get("id"), c.get("function") or {}) for c in message.tool_calls]
            item["tool_calls"] = [tool_call(str(i), str(f.get("name")), f.get("arguments"))
                                  for i, f in calls]
        if message.tool_call_id:
            item["tool_call_id"] = message.tool_call_id
        out.append(item)
    return out
