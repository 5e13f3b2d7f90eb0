"""``MemoriMemory``: LlamaIndex's ``Memory`` over a memori chat store and memori's block."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.async_utils import asyncio_run
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.llms.llm import LLM
from llama_index.core.memory import BaseMemoryBlock, InsertMethod, Memory
from llama_index.core.storage.chat_store.base_db import AsyncDBChatStore, MessageStatus
from llama_index.core.utils import get_tokenizer

from memori_core import ConfigurationError, Memori
from memori_core.integration import attributed, check_limit
from memori_llamaindex._block import MemoriMemoryBlock, defaults
from memori_llamaindex._capture import Conversation
from memori_llamaindex._convert import from_memori, message_text

__all__ = ["DEFAULT_TOKEN_LIMIT", "MemoriChatStore", "MemoriMemory"]

DEFAULT_TOKEN_LIMIT = 30_000  #: default ``token_limit``, in tokens, as LlamaIndex's ``Memory``


def _fit(messages: list[ChatMessage], tokenizer: Callable[[str], list[Any]], budget: int) -> int:
    """How many of the oldest messages to leave out so that the text of the rest fits
    ``budget`` tokens (0: all fit), not starting with a reply cut from its turn."""
    total, start = 0, len(messages)
    while start > 0:
        total += len(tokenizer(message_text(messages[start - 1])))
        if budget and total > budget and start < len(messages):
            break
        start -= 1
    while 0 < start < len(messages) - 1 and messages[start].role in ("assistant", "tool"):
        start += 1
    return start


class MemoriChatStore(AsyncDBChatStore):
    """``Memory``'s chat store over memori's tables for one user; a key is a session, read
    once (the oldest past ``window_tokens`` archived), then kept here: no agent step re-reads
    it. Added messages are captured in turns (``Conversation``); ``set_messages`` captures
    only what is new. Archiving or deleting some messages changes only the queue; deleting
    all clears the session in memori (``clear_session``; the user's memories stay)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    memori: Memori = Field(exclude=True)
    entity_id: str
    process_id: str | None = None
    window_tokens: int | None = None
    tokenizer_fn: Callable[[str], list[Any]] = Field(default_factory=get_tokenizer,
                                                     exclude=True)
    _sessions: dict[str, Conversation] = PrivateAttr(default_factory=dict)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def _load(self, key: str) -> Conversation:
        s = Conversation(self.memori, self.entity_id, self.process_id, key)
        with attributed(self.memori, self.entity_id, self.process_id, key) as mem:
            s.load(rows := mem.session_messages(key))
        s.messages = [from_memori(r) for r in rows]
        s.archived = _fit(s.messages, self.tokenizer_fn, self.window_tokens or 0)
        with self._lock:
            return self._sessions.setdefault(key, s)

    async def _session(self, key: str) -> Conversation:
        found = self._sessions.get(key)  # one dict read: atomic
        return found if found is not None else await asyncio.to_thread(self._load, key)

    async def get_messages(self, key: str, status: MessageStatus | None = MessageStatus.ACTIVE,
                           limit: int | None = None, offset: int | None = None
                           ) -> list[ChatMessage]:
        s = await self._session(key)
        picked = (s.messages[s.archived:] if status == MessageStatus.ACTIVE else
                  s.messages[:s.archived] if status == MessageStatus.ARCHIVED else s.messages)
        picked = picked[offset or 0:][:limit]
        return [m.model_copy() for m in picked]  # Memory edits the blocks of what it gets

    async def count_messages(self, key: str, status: Any = MessageStatus.ACTIVE) -> int:
        return len(await self.get_messages(key, status))

    async def add_message(self, key: str, message: ChatMessage, status: Any = None) -> None:
        await self.add_messages(key, [message])

    async def add_messages(self, key: str, messages: list[ChatMessage], status: Any = None) -> None:
        s = await self._session(key)
        await asyncio.to_thread(s.add, messages)
        s.messages.extend(m.model_copy() for m in messages)

    async def set_messages(self, key: str, messages: list[ChatMessage], status: Any = None) -> None:
        s = await self._session(key)
        await asyncio.to_thread(s.add, s.unseen(messages))
        s.messages, s.archived = [m.model_copy() for m in messages], 0

    async def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        s = await self._session(key)
        if not 0 <= idx < len(s.messages):
            return None
        s.archived -= idx < s.archived
        return s.messages.pop(idx)

    async def delete_messages(self, key: str, status: MessageStatus | None = None) -> None:
        s = await self._session(key)
        if status is None:
            await asyncio.to_thread(s.clear)
            with self._lock:
                self._sessions.pop(key, None)
        elif status == MessageStatus.ACTIVE:
            del s.messages[s.archived:]
        else:
            del s.messages[:s.archived]
            s.archived = 0

    async def delete_oldest_messages(self, key: str, n: int) -> list[ChatMessage]:
        s = await self._session(key)
        gone, s.messages = s.messages[:n], s.messages[n:]
        s.archived = max(0, s.archived - len(gone))
        return gone

    async def archive_oldest_messages(self, key: str, n: int) -> list[ChatMessage]:
        s = await self._session(key)
        moved = s.messages[s.archived:s.archived + n]
        s.archived += len(moved)
        return moved

    async def get_keys(self) -> list[str]:
        return list(self._sessions)


class MemoriMemory(Memory):
    """LlamaIndex's ``Memory`` kept by memori: one session's history in memori's tables
    (``MemoriChatStore``), memori's long-term memory as its first block
    (``MemoriMemoryBlock``, ``"memori"``), then LlamaIndex's other blocks. For
    ``agent.run(user_msg, memory=...)`` and the chat engines; the rest is ``Memory``'s."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @classmethod
    def class_name(cls) -> str:
        return "MemoriMemory"

    @classmethod
    def from_defaults(  # type: ignore[override]
            cls, memori: Memori | None = None, *, entity_id: str | None = None,
            process_id: str | None = None, session_id: str | None = None,
            chat_history: Sequence[ChatMessage] | None = None, llm: LLM | None = None,
            token_limit: int | None = None, recall_limit: int | None = None,
            scope: str = "process", memory_blocks: Sequence[BaseMemoryBlock[Any]] = (),
            insert_method: InsertMethod | str = InsertMethod.SYSTEM,
            tokenizer_fn: Callable[[str], list[Any]] | None = None,
            chat_history_token_ratio: float = 0.7, **memory_fields: Any) -> MemoriMemory:
        """Create a ``MemoriMemory``.

        Args:
            memori: the ``Memori`` instance.
            entity_id: the user (default: ``memori``'s current attribution).
            process_id: the agent or persona, recall's scope (default: as ``entity_id``).
            session_id: the conversation whose stored messages are the history (default:
                ``memori``'s current session).
            chat_history: the history (``set``); what is not captured yet is.
            llm: the model whose context window sets the default ``token_limit``.
            token_limit: tokens of history and blocks (default: 75% of ``llm``'s context
                window, else 30,000, as ``Memory``).
            recall_limit: as for ``MemoriMemoryBlock``.
            scope: as for ``MemoriMemoryBlock``.
            memory_blocks: LlamaIndex's other blocks, after memori's.
            insert_method: ``"system"`` (default) or ``"user"`` (``ReActAgent`` without a
                ``system_prompt`` needs it: it drops the first system message).
            tokenizer_fn: as for ``Memory``.
            chat_history_token_ratio: as for ``Memory``.
            **memory_fields: as for ``Memory``.

        Raises:
            ConfigurationError: ``memori`` is not a ``Memori``, no entity, an invalid id,
                or a bad limit, scope or insert method; ``argument`` names the parameter.
        """
        mem, entity_id, process_id, session_id = defaults(memori, entity_id, process_id,
                                                          session_id, "MemoriMemory")
        with attributed(mem, entity_id, process_id, session_id) as m:
            session_id = m.session_id
        if token_limit is None:
            token_limit = int(llm.metadata.context_window * 0.75) if llm else DEFAULT_TOKEN_LIMIT
        limit = check_limit(token_limit, "token_limit", optional=False) or DEFAULT_TOKEN_LIMIT
        try:
            method = InsertMethod(getattr(insert_method, "value", insert_method))
        except ValueError:
            raise ConfigurationError(f"insert_method must be 'system' or 'user', got "
                                     f"{insert_method!r}", argument="insert_method") from None
        tokenizer = tokenizer_fn or get_tokenizer()
        store = MemoriChatStore(memori=mem, entity_id=entity_id, process_id=process_id,
                                window_tokens=int(limit * chat_history_token_ratio),
                                tokenizer_fn=tokenizer)
        block = MemoriMemoryBlock(memori=mem, entity_id=entity_id, process_id=process_id,
                                  session_id=session_id, recall_limit=recall_limit,
                                  scope=scope, capture=False, accept_short_term_memory=False)
        memory = cls(token_limit=limit, tokenizer_fn=tokenizer, sql_store=store,
                     session_id=session_id, memory_blocks=[block, *memory_blocks],
                     insert_method=method, chat_history_token_ratio=chat_history_token_ratio,
                     **memory_fields)
        if chat_history is not None:
            asyncio_run(store.set_messages(session_id, list(chat_history)))
        return memory

    def to_dict(self, **kwargs: Any) -> dict[str, Any]:
        """Not serializable (a live ``Memori``): a workflow ``Context.to_dict()`` skips it
        (``UnserializableKeyWarning``); pass ``memory=`` again to the next run.

        Raises:
            TypeError: always, as ``pickle`` does for an object it cannot store.
        """
        store: MemoriChatStore = self.sql_store  # type: ignore[assignment]
        raise TypeError(
            "MemoriMemory holds a live Memori instance and cannot be serialized; its messages "
            "are in memori's database: create it again with MemoriMemory.from_defaults("
            f"memori=..., entity_id={store.entity_id!r}, session_id={self.session_id!r})")
