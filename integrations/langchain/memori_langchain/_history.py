"""``MemoriChatMessageHistory``: LangChain chat history kept in memori's conversation tables."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage

from memori_core import ConfigurationError, Memori
from memori_langchain import _target
from memori_langchain._messages import from_memori, to_memori

__all__ = ["MemoriChatMessageHistory"]


class MemoriChatMessageHistory(BaseChatMessageHistory):
    """A LangChain chat history stored by memori, per entity, process and session.

    ``add_messages`` goes through ``Memori.capture``: the messages land in
    ``memori_conversation_message`` under the entity / process / session, one turn per call,
    and are augmented in the background, so they become recallable memories. Reading
    (``messages``) always queries the database, so every instance (in any process) on the
    same entity and session sees the same history. Human, AI (with tool calls), tool and
    system messages round-trip equal, ids and metadata included.

    Use it on its own or as ``get_session_history`` of ``RunnableWithMessageHistory``::

        def get_session_history(user_id: str, conversation_id: str):
            return MemoriChatMessageHistory(conversation_id, memori=mem, entity_id=user_id)

    Args:
        session_id: the conversation (memori session id, per entity): 1-255 characters.
        memori: the ``Memori`` instance to use (the usual choice: one instance shared by the
            app; it is not closed by the history).
        conn: instead of ``memori``: a database (URL, Engine, ... anything ``Memori(conn=)``
            takes); the history then owns a ``Memori`` on it, builds the schema if missing and
            releases it on ``close()``. With neither, the embedded default ``./memori.db``
            (or ``MEMORI_DATABASE_URL``) is used.
        entity_id: whose history this is; default: ``memori``'s current entity
            (``mem.attribution(entity_id=...)`` in this thread / task).
        process_id: the agent / app; default: ``memori``'s current process.

    Raises:
        ConfigurationError: both ``memori`` and ``conn`` given, ``memori`` not a ``Memori``,
            no entity anywhere (argument ``entity_id``), or an invalid id.
        StorageError: the owned database could not be opened or built.
    """

    def __init__(self, session_id: str, *, memori: Memori | None = None, conn: object = None,
                 entity_id: str | None = None, process_id: str | None = None) -> None:
        super().__init__()
        if memori is not None and conn is not None:
            raise ConfigurationError(
                "pass either memori=Memori(...) (shared) or conn=<database> (owned), not both",
                argument="conn")
        if not isinstance(session_id, str):
            raise ConfigurationError(
                f"session_id must be a str, got {type(session_id).__name__}: pass e.g. "
                "MemoriChatMessageHistory(\"conversation-1\", ...)", argument="session_id")
        self._owned = memori is None
        if memori is None:
            memori = Memori(conn=conn)
            try:
                memori.config.storage.build()  # idempotent; needed once for a passed conn
            except BaseException:
                memori.close()
                raise
        self.memori = _target.check_memori(memori, "MemoriChatMessageHistory")
        try:
            self._target = _target.resolve_target(
                self.memori, what="MemoriChatMessageHistory", entity_id=entity_id,
                process_id=process_id, session_id=session_id)
            with _target.attributed(self.memori, self._target):  # validates the three ids
                pass
        except BaseException:
            self.close()
            raise

    @property
    def session_id(self) -> str:
        """The session (conversation) id."""
        return self._target.session_id or ""

    @property
    def entity_id(self) -> str:
        """The entity whose history this is."""
        return self._target.entity_id

    @property
    def process_id(self) -> str | None:
        """The process the messages are captured under, or None."""
        return self._target.process_id

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]  # read from the database
        """The session's messages, oldest first, read from the database.

        Raises:
            StorageError: the database failed.
        """
        return from_memori(_target.session_messages(self.memori, self._target))

    async def aget_messages(self) -> list[BaseMessage]:
        """Async ``messages`` (the same query, run in LangChain's executor)."""
        return from_memori(await _target.arun(_target.session_messages, self.memori,
                                              self._target))

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store ``messages`` as one turn (``Memori.capture``: one transaction, augmentation
        queued). Nothing happens for an empty sequence.

        Raises:
            ConfigurationError: (argument ``messages``) for something that cannot be stored.
            StorageError: the database failed; nothing of the turn was kept.
        """
        _target.capture(self.memori, self._target, to_memori(messages))

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Async ``add_messages`` (the same capture, run in LangChain's executor)."""
        rows = to_memori(messages)
        await _target.arun(_target.capture, self.memori, self._target, rows)

    def clear(self) -> None:
        """Delete the session's messages (``Memori.clear_session``). Memories already
        extracted from them stay: they are the entity's long-term memory.

        Raises:
            StorageError: the database failed (nothing was deleted).
        """
        _target.clear_session(self.memori, self._target)

    async def aclear(self) -> None:
        """Async ``clear`` (the same delete, run in LangChain's executor)."""
        await _target.arun(_target.clear_session, self.memori, self._target)

    def close(self) -> None:
        """Release the ``Memori`` this history created from ``conn`` (a passed ``memori`` is
        left open). Idempotent."""
        if self._owned:
            self.memori.close()

    def __enter__(self) -> MemoriChatMessageHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"MemoriChatMessageHistory(session_id={self.session_id!r}, "
                f"entity_id={self.entity_id!r}, process_id={self.process_id!r})")
