"""Who a call is for: entity, process and session, held in context variables.

Context variables give each thread and each asyncio task its own attribution, so one ``Memori``
instance serves many users at once without mixing them. A new thread starts with none set; an
asyncio task starts with a copy of its creator's.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass

from memori_core.types import check_id

__all__ = ["Attribution", "current", "new_session", "set_attribution", "set_session"]


@dataclass(frozen=True)
class Attribution:
    entity_id: str | None = None
    process_id: str | None = None
    session_id: str | None = None


_current: ContextVar[Attribution] = ContextVar(
    "memori_attribution", default=Attribution())  # noqa: B039 - frozen, immutable


def current() -> Attribution:
    return _current.get()


def set_attribution(entity_id: str | None, process_id: str | None) -> Token[Attribution]:
    """Set entity and process; the session is kept when both are unchanged, else cleared (a
    session belongs to one entity). Returns the token that restores the previous value.

    Raises:
        ConfigurationError: for an invalid id.
    """
    if entity_id is not None:
        check_id(entity_id, "entity_id")
    if process_id is not None:
        check_id(process_id, "process_id")
    old = _current.get()
    session = old.session_id if (old.entity_id, old.process_id) == (entity_id, process_id) \
        else None
    return _current.set(Attribution(entity_id, process_id, session))


def set_session(session_id: str) -> str:
    check_id(session_id, "session_id")
    old = _current.get()
    _current.set(Attribution(old.entity_id, old.process_id, session_id))
    return session_id


def new_session() -> str:
    return set_session(str(uuid.uuid4()))


def reset(token: Token[Attribution]) -> None:
    _current.reset(token)
