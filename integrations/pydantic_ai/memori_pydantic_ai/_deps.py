"""``MemoriDeps``, and how the capability, its tools and the store find whose memory to use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from memori_core import ConfigurationError, Memori
from memori_core.integration import attributed, check_memori, check_text

__all__ = ["MemoriDeps", "Target", "resolve_target"]

T = TypeVar("T")


@dataclass
class MemoriDeps:
    """A Pydantic AI dependency: the ``Memori`` (used instead of the capability's) and whose
    memory a run uses, so one agent serves many users at once (``Agent(...,
    deps_type=MemoriDeps)``, ``agent.run(prompt, deps=MemoriDeps(mem, "user_123"))``). A
    dataclass: subclass it to carry your own dependencies. ``session_id`` is the memori session
    runs are captured into (default: the instance's current one). Invalid ids raise
    ``ConfigurationError`` naming the argument, as ``Memori.attribution`` does.
    """

    memori: Memori
    entity_id: str
    process_id: str | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        check_memori(self.memori)
        check_text(self.entity_id, "entity_id")  # None is no entity: MemoriDeps needs one
        Target(self.memori, self.entity_id, self.process_id, self.session_id).call(
            lambda mem: None)  # the core's rules, checked now rather than mid-run


@dataclass(frozen=True)
class Target:
    """A ``Memori`` and the attribution to use it with (``attributed``)."""

    memori: Memori
    entity_id: str
    process_id: str | None
    session_id: str | None

    def call(self, fn: Callable[[Memori], T]) -> T:
        with attributed(self.memori, self.entity_id, self.process_id, self.session_id) as mem:
            return fn(mem)

    async def run(self, fn: Callable[[Memori], T]) -> T:
        """``call`` in a worker thread: memori blocks on the database and the embedder."""
        return await asyncio.to_thread(self.call, fn)


def resolve_target(memori: Memori | None, deps: Any, fix: str) -> Target:
    """Whose memory to use: ``deps`` when it is a ``MemoriDeps``, else ``memori`` under the
    calling task's attribution. Raises ``ConfigurationError`` saying how to ``fix`` it."""
    if isinstance(deps, MemoriDeps):
        return Target(deps.memori, deps.entity_id, deps.process_id,
                      deps.session_id or deps.memori.session_id)
    if memori is None or memori.entity_id is None:
        raise ConfigurationError(f"memori needs to know whose memory to use: {fix}",
                                 argument="memori" if memori is None else "entity_id")
    return Target(memori, memori.entity_id, memori.process_id, memori.session_id)
