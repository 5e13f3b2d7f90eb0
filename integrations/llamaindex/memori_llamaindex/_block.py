"""``MemoriMemoryBlock``: memori's long-term memories as a block of LlamaIndex's own ``Memory``."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from typing import Any, Literal

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.memory import BaseMemoryBlock

from memori_core import ConfigurationError, Memori
from memori_core.integration import (
    attributed,
    check_limit,
    check_memori,
    check_scope,
    prompt_context,
)
from memori_llamaindex._capture import Conversation
from memori_llamaindex._convert import message_text

__all__ = ["MemoriMemoryBlock"]

#: conversations (sessions) a block keeps state for at once; the least recently used goes
_SESSIONS = 256


def defaults(memori: object, entity_id: str | None, process_id: str | None,
             session_id: str | None, who: str) -> tuple[Memori, str, str | None, str | None]:
    """``memori`` checked and the ids, defaulting to its current attribution; validated.

    Raises:
        ConfigurationError: naming the argument.
    """
    mem = check_memori(memori)
    entity_id = mem.entity_id if entity_id is None else entity_id
    if entity_id is None:
        raise ConfigurationError(
            f"{who} needs a user: pass entity_id=\"...\" or call "
            "mem.attribution(entity_id=\"...\") before creating it", argument="entity_id")
    process_id = mem.process_id if process_id is None else process_id
    with attributed(mem, entity_id, process_id, session_id):
        pass  # validates the ids
    return mem, entity_id, process_id, session_id


def latest_user_text(messages: list[ChatMessage]) -> str:
    """The text of the latest user message with text; ``""`` when none."""
    for m in reversed(messages):
        if m.role == MessageRole.USER and (text := message_text(m).strip()):
            return text
    return ""


class MemoriMemoryBlock(BaseMemoryBlock[str]):
    """memori's long-term memory of a user as a block of LlamaIndex's ``Memory``:
    ``Memory.from_defaults(session_id=..., memory_blocks=[MemoriMemoryBlock(...)])``, next to
    LlamaIndex's other blocks (``StaticMemoryBlock``, ``FactExtractionMemoryBlock`` ...).

    - **Capture**: ``Memory`` hands a block its whole short-term history on every ``get``
      (and the messages it flushes on ``put``); the block captures each message once, as it
      first sees it, whatever the flush: a user message opens a turn, the answer completes
      it (``memori_core.integration.Turn``: one capture, marked ``stopped`` when no answer
      came). A history given again (``agent.run(chat_history=...)``) adds only what is new.
      The copy of a ``str`` input that ``Memory.get(input=...)`` appends is not captured twice.
    - **Recall**: once per user message (the latest of the history), through the context
      pipeline (``memori_core.integration.prompt_context``): the framed ``<memori_context>``
      block, bounded by memori's token budget, without memories the history already shows.
      ``Memory`` puts it into its system message under the block's ``name``. A failing recall
      is logged and counted, and the model is called without memories.

    memori runs in a worker thread (``asyncio.to_thread``) under the attribution given here,
    set only for the call; the session is the block's ``session_id``, else ``Memory``'s.

    Args:
        memori: the ``Memori`` instance (built: ``mem.config.storage.build()``).
        entity_id: the user. Default: ``memori.entity_id`` when the block is created.
        process_id: the agent or persona; recall is scoped to it (see ``scope``). Default:
            ``memori.process_id`` when the block is created.
        session_id: memori session of the captured turns (default: ``Memory``'s session).
        recall_limit: memories recalled at most (default None: memori's ``recall_facts_limit``).
        scope: ``"process"`` (default) or ``"entity"``, as for ``Memori.recall``.
        capture: False to only recall (``MemoriMemory`` captures through its store).
        name, description, priority, accept_short_term_memory: as for ``BaseMemoryBlock``
            (``name`` default ``"memori"``; ``priority`` above 0 lets ``Memory`` drop the
            block when over its token limit).

    Raises:
        ConfigurationError: ``memori`` is not a ``Memori``, no entity, an invalid id, or a bad
            limit or scope; its ``argument`` names the parameter.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = Field(default="memori", description="The block's name and tag.")
    description: str | None = Field(
        default="Long-term memories about the user, recalled by memori.",
        description="A description of the memory block.")
    memori: Memori = Field(exclude=True, description="The Memori instance.")
    entity_id: str = Field(description="The user (memori entity).")
    process_id: str | None = Field(default=None, description="The agent or persona.")
    session_id: str | None = Field(default=None, description="Session of captured turns.")
    recall_limit: int | None = Field(default=None, description="Memories recalled at most.")
    scope: Literal["process", "entity"] = Field(default="process", description="Recall scope.")
    capture: bool = Field(default=True, description="Capture the history it is handed.")
    _conversations: OrderedDict[str, Conversation] = PrivateAttr(default_factory=OrderedDict)
    _recalled: OrderedDict[str, tuple[str, str]] = PrivateAttr(default_factory=OrderedDict)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, *, memori: Memori, entity_id: str | None = None,
                 process_id: str | None = None, session_id: str | None = None,
                 recall_limit: int | None = None, scope: str = "process", capture: bool = True,
                 **block_fields: Any) -> None:
        mem, entity_id, process_id, session_id = defaults(memori, entity_id, process_id,
                                                          session_id, "MemoriMemoryBlock")
        fields: dict[str, Any] = {
            "memori": mem, "entity_id": entity_id, "process_id": process_id,
            "session_id": session_id, "recall_limit": check_limit(recall_limit, "recall_limit"),
            "scope": check_scope(scope), "capture": bool(capture)}
        super().__init__(**fields, **block_fields)

    async def _aget(self, messages: list[ChatMessage] | None = None,
                    **block_kwargs: Any) -> str:
        """Capture what is new in ``messages`` (see the class), then the memories for the
        latest user message: the framed block, or ``""`` (no block) when none. Never raises
        for memori's sake: failures are logged and counted."""
        session = self.session_id or block_kwargs.get("session_id")
        return await asyncio.to_thread(self._get, list(messages or ()), session)

    async def _aput(self, messages: list[ChatMessage]) -> None:
        """Capture the messages ``Memory`` flushes, those not captured yet (see the class).

        Raises:
            ConfigurationError: an item is not a ``ChatMessage``; nothing was stored.
        """
        if self.capture and messages:
            tag = messages[0].additional_kwargs.get("session_id")
            session = self.session_id or (tag if isinstance(tag, str) else None)
            conversation = await asyncio.to_thread(self.conversation, session)
            await asyncio.to_thread(conversation.add, conversation.flushed(messages))

    def _get(self, messages: list[ChatMessage], session: str | None) -> str:
        history = messages
        if messages and messages[-1].role == MessageRole.USER:
            history = messages[:-1]  # may be Memory.get(input=...)'s text: captured later
        if self.capture:
            conversation = self.conversation(session)
            conversation.add(conversation.in_window(history))
        query = latest_user_text(messages)
        with attributed(self.memori, self.entity_id, self.process_id, session) as mem:
            slot = mem.session_id
            with self._lock:
                cached = self._recalled.get(slot)
            if cached is not None and cached[0] == query:
                return cached[1]
            seen = [{"role": m.role.value, "content": message_text(m)} for m in history]
            ctx = prompt_context(mem, query, history=seen, limit=self.recall_limit,
                                 scope=self.scope)
        text = ctx.block if ctx is not None and ctx.block else ""
        with self._lock:
            self._recalled[slot] = (query, text)
            while len(self._recalled) > _SESSIONS:
                self._recalled.popitem(last=False)
        return text

    def conversation(self, session: str | None) -> Conversation:
        """The capture state of ``session`` (default: memori's current one); its stored
        messages are read once, when the block first sees it."""
        with attributed(self.memori, self.entity_id, self.process_id, session) as mem:
            sid = mem.session_id
            with self._lock:
                found = self._conversations.get(sid)
                if found is not None:
                    self._conversations.move_to_end(sid)
                    return found
            found = Conversation(mem, self.entity_id, self.process_id, sid)
            found.load(mem.session_messages(sid))
        with self._lock:
            found = self._conversations.setdefault(sid, found)
            while len(self._conversations) > _SESSIONS:
                self._conversations.popitem(last=False)[1].close()
        return found
