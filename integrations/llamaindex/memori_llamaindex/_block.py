"""``MemoriMemoryBlock``: memori's long-term memories as a block of LlamaIndex's own ``Memory``."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import ConfigDict, Field
from llama_index.core.memory import BaseMemoryBlock
from llama_index.core.utils import get_tokenizer

from memori_core import ConfigurationError, Memori
from memori_llamaindex._common import (
    Scope,
    bound,
    check_limit,
    check_memori,
    check_scope,
    format_memories,
    query_text,
    recall_lines,
)
from memori_llamaindex._convert import to_memori

__all__ = ["MemoriMemoryBlock"]

#: The tag LlamaIndex's ``Memory`` puts in ``additional_kwargs`` of messages it hands to blocks.
_SESSION_TAG = "session_id"


class MemoriMemoryBlock(BaseMemoryBlock[str]):
    """memori's long-term memories of a user, as a block of LlamaIndex's ``Memory``, for apps
    that keep LlamaIndex's own short-term memory:
    ``Memory.from_defaults(session_id=..., memory_blocks=[MemoriMemoryBlock(...)])``.

    - ``aget`` (``_aget``): recalls the memories for the latest user message of the messages
      ``Memory`` passes (its chat history plus the new input) and returns them as ``- text``
      lines (escaped), which ``Memory`` puts into its system message inside
      ``<memori_memories>`` (the block's ``name``); ``""`` (the block is left out) when none.
    - ``aput`` (``_aput``): captures the messages ``Memory`` hands over, as one memori turn per
      session, so augmentation turns them into memories. ``Memory`` hands a block only the
      messages it flushes out of its short-term queue (when that passes
      ``token_limit * chat_history_token_ratio``); use ``MemoriMemory`` to capture every
      message as it happens.

    Messages are captured in the session given here, else in the one ``Memory`` tags them with
    (its ``session_id``), else in ``memori``'s current one. Both methods run memori in a worker
    thread (``asyncio.to_thread``) under the attribution given here, set only for the call.

    Args:
        memori: the ``Memori`` instance (built: ``mem.config.storage.build()``).
        entity_id: the user. Default: ``memori.entity_id`` when the block is created.
        process_id: the agent or persona; recall is scoped to it (see ``scope``). Default:
            ``memori.process_id`` when the block is created.
        session_id: memori session for captured messages (default: see above).
        recall_limit: memories recalled at most (default None: memori's
            ``recall_facts_limit``, 5).
        scope: ``"process"`` (default) or ``"entity"``, as for ``Memori.recall``.
        name: the block's name, its tag in ``Memory``'s system message (default
            ``"memori_memories"``); unique among a ``Memory``'s blocks.
        description, priority, accept_short_term_memory: as for ``BaseMemoryBlock``
            (``priority`` 0, the default, means ``Memory`` never truncates the block; above 0
            it drops the lowest ranked memories first when over its token limit).

    Raises:
        ConfigurationError: ``memori`` is not a ``Memori``, no entity, an invalid id, or a bad
            limit or scope; its ``argument`` names the parameter.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = Field(default="memori_memories", description="The block's name and tag.")
    description: str | None = Field(
        default="Long-term memories about the user, recalled by memori.",
        description="A description of the memory block.")
    memori: Memori = Field(exclude=True, description="The Memori instance.")
    entity_id: str = Field(description="The user (memori entity).")
    process_id: str | None = Field(default=None, description="The agent or persona.")
    session_id: str | None = Field(default=None, description="Session for captured messages.")
    recall_limit: int | None = Field(default=None, description="Memories recalled at most.")
    scope: Scope = Field(default="process", description="'process' or 'entity' recall.")

    def __init__(self, *, memori: Memori, entity_id: str | None = None,
                 process_id: str | None = None, session_id: str | None = None,
                 recall_limit: int | None = None, scope: Scope = "process",
                 **block_fields: Any) -> None:
        memori = check_memori(memori)
        entity_id = memori.entity_id if entity_id is None else entity_id
        if entity_id is None:
            raise ConfigurationError(
                "MemoriMemoryBlock needs a user: pass entity_id=\"...\" or call "
                "mem.attribution(entity_id=\"...\") before creating it", argument="entity_id")
        process_id = memori.process_id if process_id is None else process_id
        with bound(memori, entity_id, process_id, session_id):
            pass  # validates the ids
        fields: dict[str, Any] = {
            "memori": memori, "entity_id": entity_id, "process_id": process_id,
            "session_id": session_id,
            "recall_limit": check_limit(recall_limit, "recall_limit", optional=True),
            "scope": check_scope(scope)}
        super().__init__(**fields, **block_fields)  # pydantic validates and sets them

    async def _aget(self, messages: list[ChatMessage] | None = None,
                    **block_kwargs: Any) -> str:
        """Memories recalled for the latest user message of ``messages``, as ``- text``
        lines, best first; ``""`` when none (or no text to recall for).

        Raises:
            RecallError, StorageError: memori failed; never answered with "no memories".
        """
        return await asyncio.to_thread(self._recall, list(messages or ()))

    async def _aput(self, messages: list[ChatMessage]) -> None:
        """Capture ``messages``: one memori turn per session (see the class).

        Raises:
            ConfigurationError: an item is not a ``ChatMessage`` or holds content memori
                cannot store; nothing was stored.
            StorageError: the database failed.
        """
        await asyncio.to_thread(self._capture, list(messages))

    async def atruncate(self, content: str, tokens_to_truncate: int) -> str | None:
        """``content`` without its lowest ranked memories (last lines) until about
        ``tokens_to_truncate`` tokens (LlamaIndex's global tokenizer) are saved; None when
        nothing is left. ``Memory`` calls this only for blocks with ``priority`` above 0."""
        tokenizer = get_tokenizer()
        lines = content.split("\n")
        saved = 0
        while lines and saved < tokens_to_truncate:
            saved += len(tokenizer(lines.pop())) + 1
        return "\n".join(lines) or None

    # ---- sync implementation, run in a worker thread ---------------------------------------------
    def _recall(self, messages: list[ChatMessage]) -> str:
        with bound(self.memori, self.entity_id, self.process_id, None) as mem:
            return format_memories(recall_lines(mem, query_text(messages),
                                                limit=self.recall_limit, scope=self.scope))

    def _capture(self, messages: list[ChatMessage]) -> None:
        turns: list[tuple[str | None, list[dict[str, Any]]]] = []
        for message in messages:
            session = self.session_id
            if session is None and isinstance(message, ChatMessage):
                tag = message.additional_kwargs.get(_SESSION_TAG)
                session = tag if isinstance(tag, str) else None
            converted = to_memori(message, drop_kwargs=(_SESSION_TAG,))
            if turns and turns[-1][0] == session:
                turns[-1][1].append(converted)
            else:
                turns.append((session, [converted]))
        for session, turn in turns:
            with bound(self.memori, self.entity_id, self.process_id, session) as mem:
                mem.capture(turn)
