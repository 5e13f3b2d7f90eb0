"""Who a call is for: entity, process and session, held in context variables.

Each ``Memori`` instance has its own context variables, so attribution set on one instance never
applies to another, and each thread and asyncio task has its own value, so one instance serves
many users at once without mixing them. A new thread starts with none set; an asyncio task
starts with a copy of its creator's.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass

from memori_core.types import check_id

__all__ = ["Attribution", "AttributionState"]


@dataclass(frozen=True)
class Attribution:
    entity_id: str | None = None
    process_id: str | None = None
    session_id: str | None = None


_NONE = Attribution()


class AttributionState:
    """The attribution of one ``Memori`` instance, per thread / asyncio task.

    Besides the current value it keeps what ``with mem.attribution(...):`` needs: the token of
    the latest ``attribution()`` call (which a following ``__enter__`` turns into a scope) and the
    stack of open scopes.
    """

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self._current: ContextVar[Attribution] = ContextVar(f"memori_attribution_{tag}",
                                                            default=_NONE)
        self.pending: ContextVar[Token[Attribution] | None] = ContextVar(
            f"memori_pending_{tag}", default=None)
        self.scopes: ContextVar[tuple[Token[Attribution] | None, ...]] = ContextVar(
            f"memori_scopes_{tag}", default=())

    def current(self) -> Attribution:
        return self._current.get()

    def set(self, entity_id: str | None, process_id: str | None) -> Token[Attribution]:
        """Set entity and process. The session is kept when the entity is unchanged or was not
        set yet (``new_session()`` before ``attribution()``), else cleared: a session belongs
        to one entity. Returns the token that restores the previous value.

        Raises:
            ConfigurationError: for an invalid id.
        """
        if entity_id is not None:
            check_id(entity_id, "entity_id")
        if process_id is not None:
            check_id(process_id, "process_id")
        old = self._current.get()
        session = old.session_id if old.entity_id in (None, entity_id) else None
        return self._current.set(Attribution(entity_id, process_id, session))

    def set_session(self, session_id: str) -> str:
        check_id(session_id, "session_id")
        old = self._current.get()
        self._current.set(Attribution(old.entity_id, old.process_id, session_id))
        return session_id

    def new_session(self) -> str:
        return self.set_session(str(uuid.uuid4()))

    def reset(self, token: Token[Attribution]) -> None:
        self._current.reset(token)
