"""What ``MemoriMemory`` and ``MemoriMemoryBlock`` share: attribution, recall, validation."""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.memory import InsertMethod

from memori_core import ConfigurationError, Memori
from memori_llamaindex._convert import message_text

__all__ = [
    "Scope",
    "bound",
    "check_insert_method",
    "check_limit",
    "check_memori",
    "check_scope",
    "check_template",
    "format_memories",
    "query_text",
    "recall_lines",
]

#: ``scope`` of ``Memori.recall``: the current process's memories (and those captured without
#: a process), or all of the entity's.
Scope = Literal["process", "entity"]


@contextmanager
def bound(memori: Memori, entity_id: str, process_id: str | None,
          session_id: str | None) -> Iterator[Memori]:
    """``memori`` attributed to ``entity_id`` / ``process_id`` (and ``session_id`` when given)
    for the ``with`` block, in the current thread or asyncio task only; the previous attribution
    and session come back on exit.

    Raises:
        ConfigurationError: an id is invalid (argument ``entity_id``, ``process_id`` or
            ``session_id``).
    """
    with memori.attribution(entity_id=entity_id, process_id=process_id):
        if session_id is not None:
            memori.set_session(session_id)
        yield memori


def query_text(messages: Sequence[ChatMessage]) -> str:
    """What to recall for: the text of the latest user message, else of the latest message
    with text; ``""`` when there is none."""
    for role in (MessageRole.USER, None):
        for message in reversed(messages):
            if role is not None and message.role != role:
                continue
            text = message_text(message).strip()
            if text:
                return text
    return ""


def format_memories(contents: Sequence[str]) -> str:
    """Memory texts as ``- text`` lines, escaped so that no memory can close the block around
    it or pass for more than one line: ``&``, ``<`` and ``>`` become HTML entities and each
    run of whitespace (newlines included) one space."""
    return "\n".join(f"- {html.escape(' '.join(c.split()), quote=False)}" for c in contents)


def recall_lines(memori: Memori, query: str, *, limit: int | None, scope: Scope) -> list[str]:
    """Contents of the memories recalled for ``query`` under the current attribution, best
    first; ``[]`` for an empty query.

    Raises:
        RecallError, StorageError: from ``Memori.recall``; never turned into "no memories".
    """
    if not query.strip():
        return []
    return [h.content for h in memori.recall(query, limit, scope=scope)]


def check_memori(memori: object) -> Memori:
    """``memori`` if it is a ``Memori``.

    Raises:
        ConfigurationError: naming ``memori``.
    """
    if not isinstance(memori, Memori):
        raise ConfigurationError(
            f"memori must be a memori_core.Memori, got {type(memori).__name__}: pass "
            "memori=Memori(...)", argument="memori")
    return memori


def check_limit(value: object, argument: str, *, optional: bool) -> int | None:
    """``value`` if it is a positive int (or None when ``optional``).

    Raises:
        ConfigurationError: naming ``argument``.
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "a positive int or None" if optional else "a positive int"
        raise ConfigurationError(f"{argument} must be {allowed}, got {value!r}",
                                 argument=argument)
    return value


def check_scope(scope: object) -> Scope:
    """``scope`` if it is ``"process"`` or ``"entity"``.

    Raises:
        ConfigurationError: naming ``scope``.
    """
    if scope == "process" or scope == "entity":
        return scope
    raise ConfigurationError(f"scope is {scope!r}; use 'process' or 'entity'", argument="scope")


def check_insert_method(value: object) -> InsertMethod:
    """``value`` as an ``InsertMethod`` (the enum or its value, ``"system"`` / ``"user"``).

    Raises:
        ConfigurationError: naming ``insert_method``.
    """
    try:
        return InsertMethod(value)
    except ValueError:
        raise ConfigurationError(
            f"insert_method is {value!r}; use InsertMethod.SYSTEM or InsertMethod.USER "
            "(from llama_index.core.memory)", argument="insert_method") from None


def check_template(template: object, argument: str) -> str:
    """``template`` if it is a str containing the ``{memories}`` placeholder.

    Raises:
        ConfigurationError: naming ``argument``.
    """
    if not isinstance(template, str) or "{memories}" not in template:
        raise ConfigurationError(
            f"{argument} must be a str containing the placeholder {{memories}}, got "
            f"{template!r}", argument=argument)
    return template
