"""What both entry points share: attribution from Agno's ids, message and memory conversion,
the framed context block."""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from agno.memory import UserMemory
from agno.models.message import Message

from memori_core import ConfigurationError, Memori, Memory, RecallHit

__all__ = ["DEFAULT_USER_ID", "attributed", "check_memori", "format_memories",
           "memory_id_to_int", "reported", "to_memori_messages", "to_user_memory"]

_log = logging.getLogger("memori_agno")

#: The user Agno's ``MemoryManager`` files memories under when a call passes no ``user_id``.
DEFAULT_USER_ID = "default"

# Agno ids -> the memori attribution argument they become, for error messages
_AGNO_ARGUMENT = {"entity_id": "user_id", "process_id": "agent_id"}

# Agno message roles -> memori roles ("developer" is OpenAI's newer system role, "model" Gemini's
# assistant role; Agno passes both through from providers)
_ROLES = {"user": "user", "assistant": "assistant", "model": "assistant", "system": "system",
          "developer": "system", "tool": "tool"}

_SPACE = re.compile(r"\s+")


def check_memori(memori: object) -> Memori:
    """Raises: ConfigurationError unless ``memori`` is a ``memori_core.Memori``."""
    if not isinstance(memori, Memori):
        raise ConfigurationError(
            f"memori must be a memori_core.Memori, got {type(memori).__name__}: pass e.g. "
            "Memori(conn='sqlite:///memori.db')", argument="memori")
    return memori


@contextmanager
def attributed(memori: Memori, user_id: str, process_id: str | None,
               session_id: str | None = None) -> Iterator[Memori]:
    """Run the block as Agno's user (memori entity), agent (process) and, when given, session;
    the caller's own attribution is restored on exit. Agno calls memory code from its own
    background threads and asyncio tasks, where no attribution is set, so every call sets it.

    Raises:
        ConfigurationError: for an invalid id, naming the Agno argument (``user_id``,
            ``agent_id``, ``session_id``).
    """
    try:
        scope = memori.attribution(entity_id=user_id, process_id=process_id)
    except ConfigurationError as exc:
        argument = _AGNO_ARGUMENT.get(exc.argument or "", exc.argument)
        raise ConfigurationError(f"{argument}: {exc}", argument=argument) from exc
    with scope:
        if session_id is not None:
            memori.set_session(session_id)
        yield memori


@contextmanager
def reported(what: str) -> Iterator[None]:
    """Log a failure with its traceback on the ``memori_agno`` logger, then let it propagate.
    Agno runs memory capture and learning stores in background work whose errors it catches
    and logs as one-line warnings (the run goes on), so this is where the traceback stays
    visible."""
    try:
        yield
    except Exception:
        _log.exception("memori %s failed", what)
        raise


def memory_id_to_int(memory_id: object) -> int:
    """Agno's string memory id as memori's integer row id.

    Raises:
        ConfigurationError: for anything but the decimal id memori handed out (``"42"``).
    """
    if isinstance(memory_id, int) and not isinstance(memory_id, bool):
        return memory_id
    if isinstance(memory_id, str) and memory_id.strip().isdigit():
        return int(memory_id.strip())
    raise ConfigurationError(
        f"memory_id must be the id of a memori memory (a decimal string such as '42', as "
        f"UserMemory.memory_id holds), got {memory_id!r}", argument="memory_id")


def _epoch_seconds(value: datetime) -> int:
    """A naive UTC datetime (as memori stores them) as Unix seconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp())


def to_user_memory(memory: Memory | RecallHit, user_id: str) -> UserMemory:
    """A memori memory as an Agno ``UserMemory``: ``memory_id`` is memori's row id as a string,
    ``topics`` holds the memory kind, ``agent_id`` the process it was captured under,
    ``created_at`` / ``updated_at`` are Unix seconds (first stored / last mentioned)."""
    last_seen = memory.last_seen_at if isinstance(memory, Memory) else memory.created_at
    return UserMemory(memory=memory.content, memory_id=str(memory.id), topics=[memory.kind],
                      user_id=user_id, agent_id=memory.process_id,
                      created_at=_epoch_seconds(memory.created_at),
                      updated_at=_epoch_seconds(last_seen))


def _content(message: Message) -> str | list[Any]:
    content = message.content
    if content is None:
        return ""  # an assistant message that only calls tools
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, (str, dict)) for p in content):
        return content  # text / image parts: memori indexes the text and keeps the parts
    return message.get_content_string()


def to_memori_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Agno messages as ``Memori.capture`` input: role (``developer`` -> ``system``,
    ``model`` -> ``assistant``), content (str or content parts), name, tool calls, tool call
    id, Agno's ``created_at`` (Unix seconds) and its message id under
    ``metadata["agno_message_id"]``. Media objects (``images=``, ``audio=``...) are not
    stored; their text parts are.

    Raises:
        ConfigurationError: for something that is not an Agno ``Message`` or a role memori
            has no equivalent for (``argument="messages"``).
    """
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Message):
            raise ConfigurationError(
                f"messages[{i}] must be an agno.models.message.Message, got "
                f"{type(message).__name__}", argument="messages")
        role = _ROLES.get(message.role)
        if role is None:
            raise ConfigurationError(
                f"messages[{i}].role is {message.role!r}; memori stores "
                f"{', '.join(sorted(_ROLES))}", argument="messages")
        item: dict[str, Any] = {
            "role": role, "content": _content(message),
            "created_at": datetime.fromtimestamp(message.created_at, tz=timezone.utc),
            "metadata": {"agno_message_id": message.id}}
        if message.name:
            item["name"] = message.name
        if message.tool_calls:
            item["tool_calls"] = message.tool_calls
        if message.tool_call_id:
            item["tool_call_id"] = message.tool_call_id
        out.append(item)
    return out


def _line(text: str) -> str:
    """Memory text as one line that cannot close or open a tag of the block around it."""
    return html.escape(_SPACE.sub(" ", text).strip(), quote=False)


def format_memories(hits: Sequence[RecallHit]) -> str:
    """``- [kind] text`` lines, best first; text escaped and flattened to one line."""
    return "\n".join(f"- [{hit.kind}] {_line(hit.content)}" for hit in hits)
