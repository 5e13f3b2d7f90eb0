"""Capture of a framework call's turn in every outcome, and the block a plugin puts into a
prompt. Both follow the provider wrappers' rule: a memory failure never breaks the user's
call; it is logged on ``memori_core.integration`` and counted in ``mem.stats()["llm"]``."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from memori_core.context import MemoryContext
from memori_core.errors import ConfigurationError
from memori_core.integration._messages import clean
from memori_core.llm._engine import _utcnow  # the wrappers' clock (the tests set it)

if TYPE_CHECKING:
    from memori_core._memori import Memori

__all__ = ["Outcome", "Turn", "prompt_context", "storable"]

_log = logging.getLogger("memori_core.integration")

#: how a turn ended: the model answered; the caller stopped reading a stream (or abandoned
#: it); the model (or the framework around it) raised
Outcome = Literal["complete", "stopped", "error"]


class Turn:
    """One framework call's turn, captured exactly once whatever happens.

    The attribution (entity, process, session) is taken when the turn is made, so the turn is
    stored for that user even when it ends in another thread, task or a finalizer. Use it
    around the model call::

        turn = Turn(mem, [{"role": "user", "content": text}], framework="langchain")
        with turn:                        # exception -> "error", GeneratorExit -> "stopped"
            for chunk in model.stream(...):
                turn.add_text(chunk.text)  # a partial reply survives an early stop
                yield chunk

    ``finish`` stores the request's messages and the reply (``reply`` messages, then any
    streamed text as one assistant message) in one ``capture``. Unless the outcome is
    ``complete``, every message's metadata says so (``{"outcome": "stopped"}``, and
    ``"error"`` with the exception's type): the user message and any partial reply are kept
    and marked. Text a database cannot hold (NUL, lone surrogates) is replaced by U+FFFD
    (counted as ``text_cleaned``); a database failure spills the turn like the provider
    wrappers do (``mem.llm.flush()``); a turn an unreferenced, unfinished ``Turn`` held is
    stored as ``stopped`` when it is collected.

    Args:
        memori: the instance; its current attribution is the turn's.
        messages: the new request messages in ``Memori.capture`` form (usually the user
            message; tool results of an agent step too), without memori's block.
        framework: the plugin's name, kept in the reply's metadata (``{"framework": ...}``).

    Raises:
        ConfigurationError: no attribution is set (``argument="entity_id"``).
    """

    def __init__(self, memori: Memori, messages: Sequence[Mapping[str, Any]], *,
                 framework: str) -> None:
        entity_id = memori.entity_id
        if entity_id is None:
            raise ConfigurationError(
                f"{framework}: capturing a turn needs an attribution (an entity / user id)",
                argument="entity_id")
        self.memori = memori
        self.framework = framework
        self.entity_id: str = entity_id
        self.process_id = memori.process_id
        self.session_id = memori.session_id
        self.started = _utcnow()
        self.messages = [dict(m) for m in messages]
        self.replies: list[dict[str, Any]] = []
        self._text: list[str] = []
        self.finished = False

    def reply(self, messages: Sequence[Mapping[str, Any]]) -> None:
        """Add reply messages (assistant, tool calls, tool results), in order."""
        self.replies.extend(dict(m) for m in messages)

    def add_text(self, text: str) -> None:
        """Add streamed reply text; it becomes one assistant message after the ``reply``
        messages."""
        if text:
            self._text.append(text)

    def finish(self, outcome: Outcome = "complete", error: BaseException | None = None) -> None:
        """Store the turn (once; later calls do nothing). Never raises."""
        if self.finished:
            return
        self.finished = True
        registry = self.memori.llm
        try:
            replies = list(self.replies)
            if self._text:
                replies.append({"role": "assistant", "content": "".join(self._text)})
            mark: dict[str, Any] = {"framework": self.framework}
            if outcome != "complete":
                mark["outcome"] = outcome
                if error is not None:
                    mark["error"] = type(error).__name__
            now = _utcnow()
            out = []
            for m, at, is_reply in [*((m, self.started, False) for m in self.messages),
                                    *((m, now, True) for m in replies)]:
                meta = dict(m.get("metadata") or {})
                if outcome != "complete" or is_reply:
                    meta.update(mark)
                out.append({**m, "created_at": m.get("created_at") or at, "metadata": meta})
            out = storable(self.memori, out, self.framework)
            if out:
                registry.keep(self.entity_id, self.process_id, self.session_id, out)
        except Exception:  # noqa: BLE001 - the framework call has its answer: log and count
            registry.failure("capture_errors", f"capturing a {self.framework} turn failed")

    def __enter__(self) -> Turn:
        """Finish on exit: ``complete``; ``stopped`` for GeneratorExit (a stream closed
        early), KeyboardInterrupt and asyncio cancellation; ``error`` for any other
        exception (which propagates)."""
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.finish("complete")
        elif isinstance(exc, (GeneratorExit, KeyboardInterrupt, asyncio.CancelledError)):
            self.finish("stopped", exc)
        else:
            self.finish("error", exc)

    def __del__(self) -> None:
        if getattr(self, "finished", True) is False:
            self.finish("stopped")


def storable(memori: Memori, messages: Sequence[Mapping[str, Any]], framework: str
             ) -> list[dict[str, Any]]:
    """``messages`` as ``clean`` leaves them, ready for ``Memori.capture``; when any text was
    replaced (NUL bytes, lone surrogates) it is logged and counted as ``text_cleaned``."""
    out, cleaned = clean([dict(m) for m in messages])
    if cleaned:
        memori.llm.count("text_cleaned")
        _log.warning("memori: %s turn held NUL bytes or lone surrogates; they are stored as "
                     "U+FFFD", framework)
    return list(out)


def prompt_context(memori: Memori, query: str, *,
                   history: Sequence[Mapping[str, Any]] | None = None,
                   limit: int | None = None, scope: Literal["process", "entity"] = "process"
                   ) -> MemoryContext | None:
    """The context pipeline (``Memori.context``) for a plugin's prompt under the current
    attribution: its ``block`` is the one framing every plugin puts into a system prompt.

    Args:
        query: the latest user message's text; with none (``""``) only the essential
            memories (``conscious_ingest``) can be shown.
        history: the messages the model is given (``Memori.capture`` form, optionally with
            their stored ``id``): memories they hold are not repeated.
        limit: at most this many recalled memories (default ``Config.recall_facts_limit``).
        scope: ``"process"`` or ``"entity"``, as for ``Memori.recall``.

    Returns:
        the ``MemoryContext``, or None when recall failed or took longer than
        ``Config.database_timeout_seconds`` (logged and counted as ``recall_errors``: the
        model call goes on without memories, like a registered client's).
    """
    try:
        return memori.llm.bounded(
            functools.partial(memori.context, query, history=history, limit=limit, scope=scope))
    except TimeoutError:
        memori.llm.failure("recall_errors", "recall for a plugin's prompt did not answer within "
                           "database_timeout_seconds; the call goes on without memories")
        return None
    except Exception:  # noqa: BLE001 - logged and counted; the call goes on without memories
        memori.llm.failure("recall_errors", "recall for a plugin's prompt failed")
        return None
