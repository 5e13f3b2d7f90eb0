"""Who a LangChain call is for, and the memori operations every adapter runs for them.

Every adapter (history, chat-model wrapper, agent middleware, retriever) resolves one ``Target``
(entity, process, session) and then calls the functions below. They are synchronous because
memori's core is; the async faces of the adapters run the very same functions through
``langchain_core.runnables.config.run_in_executor`` (context variables copied), so sync and
async share one implementation.

Each operation scopes the attribution with ``with memori.attribution(...)``: the caller's own
attribution on the same ``Memori`` instance is restored afterwards, and concurrent threads or
asyncio tasks never see each other's target.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from langchain_core.runnables.config import ensure_config, run_in_executor

from memori_core import ConfigurationError, Memori, RecallHit

__all__ = [
    "Scope",
    "Target",
    "arun",
    "attributed",
    "capture",
    "check_limit",
    "check_memori",
    "check_scope",
    "clear_session",
    "configurable",
    "recall",
    "resolve_target",
    "session_messages",
]

Scope = Literal["process", "entity"]
T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """The attribution one call runs under.

    Attributes:
        entity_id: the end user (or other subject) memories belong to.
        process_id: the agent / app / persona, or None.
        session_id: the conversation, or None for the ``Memori`` instance's current session.
    """

    entity_id: str
    process_id: str | None = None
    session_id: str | None = None


def check_memori(memori: object, owner: str) -> Memori:
    """``memori`` itself, when it is a ``Memori`` instance.

    Raises:
        ConfigurationError: (argument ``memori``) for anything else.
    """
    if not isinstance(memori, Memori):
        raise ConfigurationError(
            f"{owner} needs memori=Memori(...) (from memori_core), got {type(memori).__name__}",
            argument="memori")
    return memori


def check_scope(scope: object) -> Scope:
    """``scope`` itself when it is ``"process"`` or ``"entity"``.

    Raises:
        ConfigurationError: (argument ``scope``) for anything else.
    """
    if scope not in ("process", "entity"):
        raise ConfigurationError(f"scope is {scope!r}; use 'process' or 'entity'",
                                 argument="scope")
    return scope


def check_limit(limit: object, argument: str) -> int | None:
    """``limit`` itself when it is None or a positive int.

    Raises:
        ConfigurationError: (naming ``argument``) for anything else.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 1):
        raise ConfigurationError(f"{argument} must be a positive int or None (memori's "
                                 f"default, Config.recall_facts_limit), got {limit!r}",
                                 argument=argument)
    return limit


def configurable() -> Mapping[str, Any]:
    """``configurable`` of the LangChain run this code executes in (a chain step, a LangGraph
    node), or ``{}`` outside of one."""
    return ensure_config().get("configurable") or {}


def _lookup(source: object, key: str) -> object:
    if source is None:
        return None
    if isinstance(source, Mapping):
        return source.get(key)
    return getattr(source, key, None)


def _from_sources(key: str, sources: Sequence[tuple[str, object]]) -> str | None:
    for where, source in sources:
        value = _lookup(source, key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(
                f"{where}[{key!r}] must be a non-empty str, got {value!r}: pass e.g. "
                f"{{{key!r}: \"user_123\"}}", argument=key)
        return value
    return None


def resolve_target(memori: Memori, *, what: str, entity_id: str | None = None,
                   process_id: str | None = None, session_id: str | None = None,
                   entity_key: str | None = None, session_key: str | None = None,
                   sources: Sequence[tuple[str, object]] = ()) -> Target:
    """The target of one call.

    Each id comes from, in order: the explicit argument; ``sources`` (e.g. the LangGraph
    runtime context, then the run's ``configurable``) under ``entity_key`` / ``session_key``;
    the attribution currently set on ``memori`` in this thread / task
    (``memori.attribution(...)``; a session set with ``memori.set_session(...)`` is kept for
    the same entity, else the instance's default session is used). The process is the
    explicit ``process_id`` or memori's current one.

    Raises:
        ConfigurationError: (argument ``entity_id``) when no entity is found anywhere, or
            (argument = the key) when a source holds a non-string id.
    """
    entity = entity_id
    if entity is None and entity_key:
        entity = _from_sources(entity_key, sources)
    if entity is None:
        entity = memori.entity_id
    if entity is None:
        keys = f" or {entity_key!r} in the run's configurable / context" if entity_key else ""
        raise ConfigurationError(
            f"{what} does not know whose memory to use: pass entity_id=\"...\"{keys}, or call "
            "mem.attribution(entity_id=\"...\") first", argument="entity_id")
    session = session_id
    if session is None and session_key:
        session = _from_sources(session_key, sources)
    return Target(entity, memori.process_id if process_id is None else process_id, session)


@contextmanager
def attributed(memori: Memori, target: Target) -> Iterator[Memori]:
    """``memori`` attributed to ``target`` for the block; the previous attribution (and
    session) of this thread / task is restored on exit.

    Raises:
        ConfigurationError: for an invalid entity, process or session id.
    """
    with memori.attribution(entity_id=target.entity_id, process_id=target.process_id):
        if target.session_id is not None:
            memori.set_session(target.session_id)
        yield memori


def recall(memori: Memori, target: Target, query: str, limit: int | None,
           scope: Scope) -> list[RecallHit]:
    """``Memori.recall`` for ``target``. Errors propagate (never turned into ``[]``)."""
    with attributed(memori, target):
        return memori.recall(query, limit, scope=scope)


def capture(memori: Memori, target: Target, messages: list[dict[str, Any]]) -> list[int]:
    """``Memori.capture`` of one turn for ``target``; ``[]`` for an empty turn."""
    if not messages:
        return []
    with attributed(memori, target):
        return memori.capture(messages)


def session_messages(memori: Memori, target: Target) -> list[dict[str, Any]]:
    """``Memori.session_messages`` of ``target``'s session, oldest first."""
    with attributed(memori, target):
        return memori.session_messages()


def clear_session(memori: Memori, target: Target) -> int:
    """``Memori.clear_session`` of ``target``'s session; returns the messages deleted."""
    with attributed(memori, target):
        return memori.clear_session()


async def arun(func: Callable[..., T], *args: Any) -> T:
    """Run one of the synchronous operations above from async code, in LangChain's executor
    (the caller's context variables are copied, so attribution and run config carry over)."""
    return await run_in_executor(None, func, *args)
