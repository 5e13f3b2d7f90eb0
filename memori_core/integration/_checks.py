"""Argument checks and attribution for a framework call, naming the framework's arguments."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal, cast

from memori_core.errors import ConfigurationError
from memori_core.types import check_limit

if TYPE_CHECKING:
    from memori_core._memori import Memori

__all__ = ["attributed", "check_limit", "check_memori", "check_scope", "check_text"]

Scope = Literal["process", "entity"]


def check_memori(memori: object, argument: str = "memori") -> Memori:
    """``memori`` if it is a ``memori_core.Memori``.

    Raises:
        ConfigurationError: naming ``argument``, with how to make one.
    """
    from memori_core._memori import Memori  # the kit sits below the facade

    if not isinstance(memori, Memori):
        raise ConfigurationError(
            f"{argument} must be a memori_core.Memori, got {type(memori).__name__}: pass "
            f"{argument}=Memori() (embedded SQLite ./memori.db) or Memori(conn=URL)",
            argument=argument)
    return memori


def check_scope(value: object, argument: str = "scope") -> Scope:
    """``value`` if it is ``"process"`` (the current process's memories and those captured
    without one) or ``"entity"`` (all of the entity's).

    Raises:
        ConfigurationError: naming ``argument``.
    """
    if value not in ("process", "entity"):
        raise ConfigurationError(f"{argument} must be 'process' or 'entity', got {value!r}",
                                 argument=argument)
    return cast(Scope, value)


def check_text(value: object, argument: str, *, min_chars: int = 1) -> str:
    """``value`` stripped, if it is a str of at least ``min_chars`` non-blank characters: a
    memory a tool stores, a query a tool runs.

    Raises:
        ConfigurationError: naming ``argument``.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{argument} must be a str, got {type(value).__name__}",
                                 argument=argument)
    text = value.strip()
    if len(text) < min_chars:
        raise ConfigurationError(
            f"{argument} must hold at least {min_chars} non-blank characters, got {value!r}",
            argument=argument)
    return text


@contextmanager
def attributed(memori: Memori, entity_id: str, process_id: str | None = None,
               session_id: str | None = None, *, names: Mapping[str, str] | None = None
               ) -> Iterator[Memori]:
    """``memori`` attributed to ``entity_id`` / ``process_id`` (and ``session_id`` when
    given) for the ``with`` block, in the current thread or asyncio task only; the previous
    attribution and session come back on exit, also when the block raises. Frameworks call
    memory code from their own threads and tasks, where nothing is set, so every framework
    call sets it.

    Args:
        names: memori's argument (``entity_id``, ``process_id``, ``session_id``) -> the
            framework's (e.g. ``{"entity_id": "user_id"}``), for error messages.

    Raises:
        ConfigurationError: an id is invalid, naming the framework's argument.
    """
    rename = dict(names or {})

    def renamed(exc: ConfigurationError) -> ConfigurationError:
        argument = rename.get(exc.argument or "", exc.argument)
        if argument == exc.argument:
            return exc
        return ConfigurationError(f"{argument}: {exc}", argument=argument)

    try:
        scope = memori.attribution(entity_id=entity_id, process_id=process_id)
    except ConfigurationError as exc:
        raise renamed(exc) from exc
    with scope:
        if session_id is not None:
            try:
                memori.set_session(session_id)
            except ConfigurationError as exc:
                raise renamed(exc) from exc
        yield memori
