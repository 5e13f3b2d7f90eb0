"""``MemoriDeps``, and how the capability and the tools find whose memory a run uses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from memori_core import ConfigurationError, Memori

__all__ = ["MemoriDeps", "Target", "resolve_target"]

T = TypeVar("T")


@dataclass
class MemoriDeps:
    """A Pydantic AI dependency carrying the ``Memori`` instance and whose memory a run uses.

    Pass it per run (``agent.run(prompt, deps=MemoriDeps(...))`` with
    ``Agent(..., deps_type=MemoriDeps)``): ``MemoriCapability`` and its tools read the
    attribution from ``ctx.deps``, so one agent serves many users at once without a shared
    ``mem.attribution(...)``. Subclass it (it is a dataclass) to carry your own dependencies too.

    Args:
        memori: the ``Memori`` instance; used instead of the capability's own.
        entity_id: the end user (or other subject) the memories belong to; 1-255 characters.
        process_id: the agent, app or persona; recall is scoped to it (default none: all of the
            entity's memories captured without a process, see ``Memori.recall``).
        session_id: the memori session the run's messages are captured into (default: the
            ``Memori`` instance's current session in the calling context, see
            ``Memori.session_id``).

    Raises:
        ConfigurationError: ``memori`` is not a ``Memori`` (``argument="memori"``), or an id is
            invalid (``argument`` names it; the rules are ``Memori.attribution``'s and
            ``Memori.set_session``'s).
    """

    memori: Memori
    entity_id: str
    process_id: str | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.memori, Memori):
            raise ConfigurationError(
                f"MemoriDeps.memori must be a memori_core.Memori, got {type(self.memori).__name__}",
                argument="memori")
        if self.entity_id is None:
            raise ConfigurationError(
                "MemoriDeps needs entity_id: MemoriDeps(memori=mem, entity_id=\"user_123\")",
                argument="entity_id")
        # the core's own rules, checked now rather than mid-run; the scope restores the
        # caller's attribution on exit
        with self.memori.attribution(entity_id=self.entity_id, process_id=self.process_id):
            if self.session_id is not None:
                self.memori.set_session(self.session_id)


@dataclass(frozen=True)
class Target:
    """One ``Memori`` and the attribution to use it with, fixed when a hook or tool starts."""

    memori: Memori
    entity_id: str
    process_id: str | None
    session_id: str

    async def run(self, fn: Callable[[Memori], T]) -> T:
        """Call ``fn(memori)`` under this attribution in a worker thread (memori's calls block
        on the database and the embedder), so the event loop keeps serving other runs."""
        return await asyncio.to_thread(self.call, fn)

    def call(self, fn: Callable[[Memori], T]) -> T:
        """Call ``fn(memori)`` under this attribution in the current thread; the caller's
        attribution and session are restored afterwards."""
        with self.memori.attribution(entity_id=self.entity_id, process_id=self.process_id):
            self.memori.set_session(self.session_id)
            return fn(self.memori)


def resolve_target(memori: Memori | None, deps: Any, what: str) -> Target:
    """Whose memory a run uses: ``deps`` when it is a ``MemoriDeps``, else ``memori`` with the
    attribution set by ``memori.attribution(...)`` in the calling thread or task.

    Raises:
        ConfigurationError: no ``Memori`` anywhere (``argument="memori"``) or no entity
            (``argument="entity_id"``), naming both ways to fix it.
    """
    if isinstance(deps, MemoriDeps):
        session = deps.session_id if deps.session_id is not None else deps.memori.session_id
        return Target(deps.memori, deps.entity_id, deps.process_id, session)
    if memori is None:
        raise ConfigurationError(
            f"{what} has no Memori: pass it to the capability (MemoriCapability(mem)) or run the "
            "agent with deps=MemoriDeps(memori=mem, entity_id=...)", argument="memori")
    entity_id = memori.entity_id
    if entity_id is None:
        raise ConfigurationError(
            f"{what} needs to know whose memory to use: run the agent with "
            "deps=MemoriDeps(memori=mem, entity_id=\"user_123\") (and Agent(deps_type=MemoriDeps)),"
            " or call mem.attribution(entity_id=\"user_123\") before the run", argument="entity_id")
    return Target(memori, entity_id, memori.process_id, memori.session_id)
