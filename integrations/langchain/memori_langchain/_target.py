"""Who a LangChain call is for: entity, process and session, resolved the same way by every
adapter, then set with the kit's ``attributed`` (this thread or asyncio task only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config

from memori_core import ConfigurationError, Memori
from memori_core.integration import attributed

__all__ = ["Target", "configurable", "resolve"]


@dataclass(frozen=True)
class Target:
    """The attribution of one call; ``session_id`` None: memori's current session."""

    entity_id: str
    process_id: str | None = None
    session_id: str | None = None

    def scope(self, memori: Memori) -> AbstractContextManager[Memori]:
        """``memori`` attributed to this target for the block (restored on exit)."""
        return attributed(memori, self.entity_id, self.process_id, self.session_id)


def configurable(config: RunnableConfig | None = None) -> Mapping[str, Any]:
    """The ``configurable`` of ``config`` merged into the run this code executes in."""
    return ensure_config(config).get("configurable") or {}


def _lookup(key: str, sources: Sequence[tuple[str, object]]) -> str | None:
    for where, source in sources:
        value = source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(f"{where}[{key!r}] must be a non-empty str, got {value!r}",
                                     argument=key)
        return value
    return None


def resolve(memori: Memori, what: str, *, entity_id: str | None, process_id: str | None,
            session_id: str | None = None, entity_key: str | None = None,
            session_key: str | None = None, sources: Sequence[tuple[str, object]] = ()
            ) -> Target:
    """Each id from: the explicit argument; ``sources`` (the run's context, its
    ``configurable``) under ``entity_key`` / ``session_key``; memori's current attribution.

    Raises:
        ConfigurationError: no entity anywhere (argument ``entity_id``), or a source holds a
            non-string id (argument = the key).
    """
    entity = entity_id if entity_id is not None else (
        _lookup(entity_key, sources) if entity_key else None) or memori.entity_id
    if entity is None:
        keys = f" or {entity_key!r} in the run's configurable / context" if entity_key else ""
        raise ConfigurationError(
            f"{what} does not know whose memory to use: pass entity_id=\"...\"{keys}, or call "
            "mem.attribution(entity_id=\"...\") first", argument="entity_id")
    session = session_id if session_id is not None else (
        _lookup(session_key, sources) if session_key else None)
    return Target(entity, memori.process_id if process_id is None else process_id, session)
