"""``MemoriChatMessageHistory``: LangChain chat history kept in memori's conversation tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage

from memori_core import ConfigurationError, Memori
from memori_core.integration import attributed, check_memori, check_text, storable
from memori_langchain._common import Target, from_memori, resolve, to_memori

__all__ = ["MemoriChatMessageHistory"]

T = TypeVar("T")


class MemoriChatMessageHistory(BaseChatMessageHistory):
    """A LangChain chat history stored by memori, per entity, process and session:
    ``add_messages`` is one ``Memori.capture`` (augmented into memories), ``messages`` reads
    the database. Messages round-trip equal; images, audio and files are named, not stored.
    With a ``with_memori`` model (``capture=True``) in the same ``RunnableWithMessageHistory``
    the model captures the turn and this history skips it.

    Args:
        session_id: the conversation (memori session id, per entity): 1-255 characters.
        memori: the shared ``Memori`` (not closed here); or ``conn``: anything
            ``Memori(conn=)`` takes, for a ``Memori`` the history owns (schema built, closed
            on ``close()``); with neither, the embedded default ``./memori.db``.
        entity_id: whose history; default memori's current.
        process_id: the agent / app; default memori's current.

    Raises:
        ConfigurationError: both ``memori`` and ``conn``, ``memori`` not a ``Memori``, no
            entity anywhere (argument ``entity_id``), or an invalid id.
        StorageError: the owned database could not be opened or built.
    """

    def __init__(self, session_id: str, *, memori: Memori | None = None, conn: object = None,
                 entity_id: str | None = None, process_id: str | None = None) -> None:
        super().__init__()
        if memori is not None and conn is not None:
            raise ConfigurationError("pass either memori=Memori(...) (shared) or "
                                     "conn=<database> (owned), not both", argument="conn")
        check_text(session_id, "session_id")  # None would be memori's current session
        self._owned = memori is None
        self._captured: set[str] = set()  # ids of AI messages a with_memori model captured
        self.memori = memori = Memori(conn=conn) if memori is None else memori
        try:
            if self._owned:
                memori.config.storage.build()  # idempotent; needed once for a passed conn
            check_memori(memori)
            self.target: Target = resolve(memori, "MemoriChatMessageHistory",
                                          entity_id=entity_id, process_id=process_id,
                                          session_id=session_id)
            self._run(lambda: None)  # validates the three ids
        except BaseException:
            if self._owned:
                memori.close()
            raise

    session_id = property(lambda self: self.target.session_id or "", doc="The session id.")
    entity_id = property(lambda self: self.target.entity_id, doc="Whose history this is.")
    process_id = property(lambda self: self.target.process_id, doc="The process, or None.")

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        with attributed(self.memori, *self.target):
            return fn(*args)

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]  # read from the database
        """The session's messages, oldest first (``StorageError`` when the database fails)."""
        return from_memori(self._run(self.memori.session_messages))

    def skip(self, message_id: str) -> None:
        """The AI message ``message_id`` was captured with its turn by a ``with_memori``
        model: the ``add_messages`` holding it stores nothing (capture once)."""
        self._captured.add(message_id)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store ``messages`` as one turn (one transaction, augmentation queued). NUL bytes
        and lone surrogates are stored as U+FFFD (logged, counted as ``text_cleaned``).

        Raises:
            ConfigurationError: (argument ``messages``) something that cannot be stored.
            StorageError: the database failed; nothing of the turn was kept.
        """
        ids = {m.id for m in messages if isinstance(m, BaseMessage) and m.id}
        if ids & self._captured:
            self._captured -= ids
            return
        rows = storable(self.memori, to_memori(messages), "langchain")
        if rows:
            self._run(self.memori.capture, rows)

    def clear(self) -> None:
        """Delete the session's messages; memories extracted from them stay."""
        self._run(self.memori.clear_session)

    def close(self) -> None:
        """Close the ``Memori`` made from ``conn`` (a passed ``memori`` stays open)."""
        if self._owned:
            self.memori.close()

    def __enter__(self) -> MemoriChatMessageHistory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"MemoriChatMessageHistory(session_id={self.session_id!r}, "
                f"entity_id={self.entity_id!r}, process_id={self.process_id!r})")
