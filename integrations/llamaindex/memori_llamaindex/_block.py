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
from memori_core import integration as kit
from memori_llamaindex._capture import Conversation
from memori_llamaindex._convert import message_text

__all__ = ["MemoriMemoryBlock"]

_SESSIONS = 256  # sessions a block keeps state for; the least recently used goes


def defaults(memori: object, entity_id: str | None, process_id: str | None,
             session_id: str | None, who: str) -> tuple[Memori, str, str | None, str | None]:
    """``memori`` and the ids (default: its current attribution), checked."""
    mem = kit.check_memori(memori)
    entity_id = mem.entity_id if entity_id is None else entity_id
    if entity_id is None:
        raise ConfigurationError(f"{who} needs a user: pass entity_id=\"...\" or call mem."
                                 "attribution(entity_id=...) first", argument="entity_id")
    process_id = mem.process_id if process_id is None else process_id
    with kit.attributed(mem, entity_id, process_id, session_id):
        pass  # validates the ids
    return mem, entity_id, process_id, session_id


class MemoriMemoryBlock(BaseMemoryBlock[str]):
    """memori's long-term memory of a user as a block of LlamaIndex's ``Memory``, next to
    its other blocks: ``Memory.from_defaults(memory_blocks=[MemoriMemoryBlock(...), ...])``.

    - **Capture**: ``Memory`` hands its blocks its whole queue on every ``get`` (and what it
      flushes on ``put``); each message is captured once, when first seen, in turns
      (``Conversation``); the latest user message on the next ``get`` (``Memory.get(input=)``
      appends it). A history sent again adds only what is new.
    - **Recall**: once per user message, the kit's framed ``<memori_context>`` block
      (bounded, without what the history shows), under the block's ``name``.

    A memori failure is logged and counted, never raised. memori runs in a worker thread.

    Args:
        memori: the ``Memori`` instance.
        entity_id: the user (default: ``memori``'s attribution when the block is created).
        process_id: the agent or persona, recall's scope (default: as ``entity_id``).
        session_id: memori session of the captured turns (default: ``Memory``'s).
        recall_limit: ``limit`` of ``Memori.recall`` (default 5).
        scope: as for ``Memori.recall`` (default ``"process"``).
        capture: False to only recall (``MemoriMemory`` captures through its store).
        **block_fields: as for ``BaseMemoryBlock`` (``name`` default ``"memori"``).

    Raises:
        ConfigurationError: ``memori`` is not a ``Memori``, no entity, an invalid id, or a bad
            limit or scope; its ``argument`` names the parameter.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = "memori"
    description: str | None = "Long-term memories about the user, recalled by memori."
    memori: Memori = Field(exclude=True)
    entity_id: str
    process_id: str | None = None
    session_id: str | None = None
    recall_limit: int | None = None
    scope: Literal["process", "entity"] = "process"
    capture: bool = True
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
            "session_id": session_id, "recall_limit": kit.check_limit(recall_limit, "recall_limit"),
            "scope": kit.check_scope(scope), "capture": bool(capture)}
        super().__init__(**fields, **block_fields)

    async def _aget(self, messages: list[ChatMessage] | None = None,
                    **block_kwargs: Any) -> str:
        """Capture what is new; the block for the latest user message or ``""``. Never raises."""
        session = self.session_id or block_kwargs.get("session_id")
        return await asyncio.to_thread(self._get, list(messages or ()), session)

    async def _aput(self, messages: list[ChatMessage]) -> None:
        """Capture what ``Memory`` flushes that is not captured yet. Never raises."""
        tag = messages[0].additional_kwargs.get("session_id") if messages else None  # aput's
        session = self.session_id or (tag if isinstance(tag, str) else None)
        await asyncio.to_thread(self._capture, messages, session, flushed=True)

    def _capture(self, messages: list[ChatMessage], session: str | None, *,
                 flushed: bool = False) -> None:
        if not self.capture or not messages:
            return
        try:
            conversation = self.conversation(session)
            conversation.add(conversation.new(messages, flushed=flushed))
        except Exception:  # noqa: BLE001 - logged and counted; the framework call goes on
            self.memori.llm.failure("capture_errors", "capturing a llamaindex turn failed")

    def _get(self, messages: list[ChatMessage], session: str | None) -> str:
        last_is_user = bool(messages) and messages[-1].role == MessageRole.USER
        self._capture(messages[:-1] if last_is_user else messages, session)
        query = next((t for m in reversed(messages) if m.role == MessageRole.USER
                      and (t := message_text(m).strip())), "")
        with kit.attributed(self.memori, self.entity_id, self.process_id, session) as mem:
            slot = mem.session_id
            with self._lock:
                cached = self._recalled.get(slot)
            if cached is not None and cached[0] == query:
                return cached[1]
            seen = [{"role": m.role.value, "content": message_text(m)} for m in messages]
            ctx = kit.prompt_context(mem, query, history=seen, limit=self.recall_limit,
                                 scope=self.scope)
        text = ctx.block if ctx is not None and ctx.block else ""
        with self._lock:
            self._recalled[slot] = (query, text)
            while len(self._recalled) > _SESSIONS:
                self._recalled.popitem(last=False)
        return text

    def conversation(self, session: str | None) -> Conversation:
        """The capture state of ``session`` (default: memori's), read from memori once."""
        with kit.attributed(self.memori, self.entity_id, self.process_id, session) as mem:
            sid = mem.session_id
            with self._lock:
                if (found := self._conversations.get(sid)) is not None:
                    self._conversations.move_to_end(sid)
                    return found
            found = Conversation(mem, self.entity_id, self.process_id, sid)
            found.load(mem.session_messages(sid))
        with self._lock:
            found = self._conversations.setdefault(sid, found)
            while len(self._conversations) > _SESSIONS:
                self._conversations.popitem(last=False)[1].close()
        return found
