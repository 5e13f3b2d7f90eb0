"""``MemoriMemoryManager``: memori behind Agno's ``MemoryManager`` (``Agent(memory_manager=...)``)."""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from agno.memory import MemoryManager, UserMemory
from agno.memory.strategies import MemoryOptimizationStrategyFactory, MemoryOptimizationStrategyType
from agno.models.message import Message

from memori_agno._common import (
    FRAMEWORK,
    NAMES,
    entity_of,
    memory_id_to_int,
    slot_of,
    threaded,
    to_messages,
    to_user_memory,
)
from memori_core import ConfigurationError, Memori
from memori_core import integration as kit

__all__ = ["MemoriMemoryManager"]

_KINDS = ("fact", "preference", "skill", "attribute", "event")


@dataclass
class _Run:  # one Agno run between the manager's pre- and post-hook
    entity: str
    process: str | None
    history: list[dict[str, Any]]  # the user's message first
    turn: kit.Turn
    ended: weakref.finalize  # stores the turn when the run is gone without post_hook


class MemoriMemoryManager(MemoryManager):
    """memori as an Agno agent's memory: ``Agent(memory_manager=m, pre_hooks=[m.pre_hook],
    post_hooks=[m.post_hook])`` (the README maps every Agno behaviour).

    ``pre_hook`` starts the run's turn under Agno's user (memori entity; without one the
    session's own), agent (process) and session, so ``get_user_memories`` (what Agno writes
    into its system prompt) is memori's framed block for the run's input; ``post_hook``
    stores the turn with the reply and tool calls. A run that never reaches it keeps the
    user's message, marked ``error`` or ``stopped``, when Agno lets go of the run.

    Args:
        memori: a ``memori_core.Memori``.
        process_id: the process of every read and write; default: captures under the
            agent's id, reads across the user's agents (as Agno's own memory).
        limit: at most this many recalled memories per prompt (the token budget applies).
        **agno: Agno's ``MemoryManager`` arguments (``model``, ``delete_memories``...).
    """

    def __init__(self, memori: Memori, *, process_id: str | None = None,
                 limit: int | None = None, **agno: Any) -> None:
        super().__init__(**agno)
        self.memori = kit.check_memori(memori)
        self.process_id = None if process_id is None else kit.check_text(process_id, "process_id")
        self._scope: Literal["process", "entity"] = "process" if process_id else "entity"
        self.limit = kit.check_limit(limit)
        # the run of this thread / task (per manager: a tool may run another agent in it)
        self._current: ContextVar[_Run | None] = ContextVar(f"memori_agno_{id(self)}",
                                                           default=None)
        self._hooked = False
        self._warned: set[str] = set()  # the no-user_id cases warned about

    def __deepcopy__(self, memo: dict[int, Any]) -> MemoriMemoryManager:
        return copy.copy(self)  # copies share the Memori instance (engine, workers)

    def _user(self, user_id: str | None) -> str:
        run = self._current.get()
        if run is not None and user_id in (None, "default", run.entity):
            return run.entity
        if user_id is None or user_id == "default":
            raise ConfigurationError("memori keeps no shared 'default' user: pass user_id=...",
                                     argument="user_id")
        return user_id

    def _attributed(self, user: str, process: str | None = None, session: str | None = None
                    ) -> Any:
        return kit.attributed(self.memori, user, process or self.process_id, session, names=NAMES)

    def pre_hook(self, run_input: Any, run_context: Any, agent: Any = None,
                 session: Any = None, user_id: str | None = None) -> None:
        """Agno pre-hook: start the run's turn under Agno's user, agent and session."""
        self._hooked = True
        if (previous := self._current.get()) is not None:  # a run that missed post_hook
            previous.ended()
        self._current.set(None)
        if (entity := entity_of(user_id, run_context.session_id, self._warned)) is None:
            return
        raw = run_input.input_content  # str, content parts, Message(s), a model, None
        if raw is not None and not isinstance(raw, str) and not (
                isinstance(raw, list) and all(isinstance(p, dict) for p in raw)):
            raw = run_input.input_content_string()
        user = to_messages([Message(role="user", content=raw,
                                    images=run_input.images, audio=run_input.audios,
                                    videos=run_input.videos, files=run_input.files)])
        history = list(user)
        if session is not None and getattr(agent, "add_history_to_context", False):
            history += to_messages(session.get_messages(last_n_runs=agent.num_history_runs))
        process = self.process_id or getattr(agent, "id", None)
        with self._attributed(entity, process, run_context.session_id) as mem:
            turn = kit.Turn(mem, user, framework=FRAMEWORK)
        ended = weakref.finalize(run_context, _ended, turn, session, run_context.run_id)
        self._current.set(_Run(entity, process, history, turn, ended))

    def post_hook(self, run_output: Any) -> None:
        """Agno post-hook: store the run's turn with the reply and tool calls."""
        if (run := self._current.get()) is None:
            return
        self._current.set(None)
        messages = [m for m in run_output.messages or [] if not m.from_history]
        users = [i for i, m in enumerate(messages) if m.role == "user"]
        replies = to_messages([m for m in messages[users[-1] + 1 if users else 0:]
                               if m.role in ("assistant", "model", "tool")])
        if not replies and isinstance(run_output.content, str):
            replies = [{"role": "assistant", "content": run_output.content}]
        run.ended.detach()
        run.turn.reply(replies)
        run.turn.finish("complete")

    def _context(self, user: str, query: str, history: Sequence[dict[str, Any]] = ()
                 ) -> kit.MemoryContext | None:
        run = self._current.get()
        with self._attributed(user, run.process if run else None) as mem:
            return kit.prompt_context(mem, query, history=history, limit=self.limit,
                                      scope=self._scope)

    def get_user_memories(self, user_id: str | None = None) -> list[UserMemory]:
        """What Agno writes, unescaped, into the system prompt: so never raw memories, but
        one entry holding memori's framed block for the run's input (without ``pre_hook``:
        the essential memories), or ``[]``. ``read_from_db`` lists memories."""
        run = self._current.get()
        if run is not None:
            user, query, history = run.entity, kit.query_of(run.history[:1]), run.history
        else:
            entity = entity_of(user_id, None, self._warned)
            if entity is None:
                return []
            user, query, history = entity, "", []
        context = self._context(user, query, history)
        if context is None or context.block is None:
            return []
        return [UserMemory(memory=context.block, topics=["memori_context"], user_id=user)]

    aget_user_memories = threaded("get_user_memories")

    def _list(self, user: str, *, limit: int | None = None, include_superseded: bool = False
              ) -> list[UserMemory]:
        with self._attributed(user) as mem:
            found = mem.memories(include_superseded=include_superseded, scope=self._scope,
                                 limit=limit)
        return [to_user_memory(m, user) for m in found]

    def get_user_memory(self, memory_id: str, user_id: str | None = None) -> UserMemory | None:
        """One of the user's memories by id (superseded ones included), or None."""
        wanted = str(memory_id_to_int(memory_id))
        return next((m for m in self._list(self._user(user_id), include_superseded=True)
                     if m.memory_id == wanted), None)

    def read_from_db(self, user_id: str | None = None) -> dict[str, list[UserMemory]]:
        """``{user_id: memories}``, newest first, superseded ones included (one user)."""
        user = self._user(user_id)
        return {user: self._list(user, include_superseded=True)}

    aread_from_db = threaded("read_from_db")

    def search_user_memories(self, query: str | None = None, limit: int | None = None,
                             retrieval_method: str | None = None,
                             user_id: str | None = None) -> list[UserMemory]:
        """By recall against ``query`` (``"agentic"``), newest (``"last_n"``) or oldest."""
        if retrieval_method not in (None, "agentic", "last_n", "first_n"):
            raise ConfigurationError(f"retrieval_method is {retrieval_method!r}; use 'agentic', "
                                     "'last_n', 'first_n' or None", argument="retrieval_method")
        limit = kit.check_limit(limit)
        user = self._user(user_id)
        if retrieval_method == "agentic" or (retrieval_method is None and query):
            text = kit.check_text(query, "query")
            with self._attributed(user) as mem:
                hits = mem.recall(text, limit, scope=self._scope)
            listed = {m.memory_id: m for m in self._list(user)}  # with their topics
            return [listed.get(str(h.id)) or to_user_memory(h, user) for h in hits]
        if retrieval_method == "first_n":
            return self._list(user)[::-1][:limit]
        return self._list(user, limit=limit)[::-1]

    def create_user_memories(self, message: str | None = None,
                             messages: list[Message] | None = None, agent_id: str | None = None,
                             team_id: str | None = None, user_id: str | None = None,
                             run_metrics: Any = None) -> str:
        """Agno's ``update_memory_on_run`` capture (no session, no reply): nothing once the
        hooks ran (they capture whole turns) or without a ``user_id``."""
        if message is not None:
            messages = [Message(role="user", content=kit.check_text(message, "message"))]
        converted = to_messages(messages or [])
        entity = entity_of(user_id, None, self._warned)
        if self._hooked or entity is None or not converted:
            return "Not captured here (the run hooks capture the turn, or no user_id)"
        with self._attributed(entity, agent_id or team_id) as mem:
            kit.Turn(mem, converted, framework=FRAMEWORK).finish()
        return f"Captured {len(converted)} message(s) in memori"

    acreate_user_memories = threaded("create_user_memories")

    def add_user_memory(self, memory: UserMemory, user_id: str | None = None) -> str:
        """Store ``memory`` with its ``topics`` (the first naming a memori kind is its kind,
        else ``fact``); returns memori's id (also set on ``memory``)."""
        if not isinstance(memory, UserMemory):
            raise ConfigurationError(f"memory must be an agno.memory.UserMemory, got "
                                     f"{type(memory).__name__}", argument="memory")
        text = kit.check_text(memory.memory, "memory")
        user = self._user(user_id)
        kind = next((t for t in memory.topics or () if t in _KINDS), "fact")
        with self._attributed(user) as mem:
            memory.memory_id = str(mem.remember(text, kind=kind,
                                                slot=slot_of(text, memory.topics)))
        memory.user_id = user
        return memory.memory_id

    def replace_user_memory(self, memory_id: str, memory: UserMemory,
                            user_id: str | None = None) -> str:
        """Store ``memory`` and delete ``memory_id``; returns the new id."""
        old = memory_id_to_int(memory_id)
        new_id = self.add_user_memory(memory, user_id)
        if int(new_id) != old:
            self._forget(self._user(user_id), [old])
        return new_id

    def _forget(self, user: str, ids: list[int]) -> None:
        with self._attributed(user) as mem:
            mem.forget_memories(ids)

    def delete_user_memory(self, memory_id: str, user_id: str | None = None) -> None:
        """Delete one of the user's memories (another user's id is ignored)."""
        self._forget(self._user(user_id), [memory_id_to_int(memory_id)])

    def clear_user_memories(self, user_id: str | None = None) -> None:
        """Delete all of the user's memories (``mem.forget`` also erases conversations)."""
        user = self._user(user_id)
        self._forget(user, [int(m.memory_id or 0)
                            for m in self._list(user, include_superseded=True)])

    aclear_user_memories = threaded("clear_user_memories")

    def clear(self) -> None:
        """Delete every user's memories under this manager's process (``Memori.entities``)."""
        page, after = self.memori.entities()
        while page:
            for entity in page:
                self.clear_user_memories(entity["entity_id"])
            page, after = self.memori.entities(after=after) if after else ([], None)

    def update_memory_task(self, task: str, user_id: str | None = None) -> str:
        """The ``update_user_memory`` tool's task: Agno's ``run_memory_task`` writing memori,
        shown memori's framed block for ``task`` (the ids, in its order, as the entry's id)."""
        text = kit.check_text(task, "task")
        user = self._user(user_id)
        context = self._context(user, text)
        existing = [] if context is None or context.block is None else [{
            "memory_id": ", ".join(str(line.memory_ids[0]) for line in context.lines),
            "memory": context.block}]
        return self.run_memory_task(text, existing, user, _Writer(self, user),  # type: ignore[arg-type]
                                    delete_memories=self.delete_memories,
                                    update_memories=self.update_memories,
                                    add_memories=self.add_memories,
                                    clear_memories=self.clear_memories)

    aupdate_memory_task = threaded("update_memory_task")

    def optimize_memories(self, user_id: str | None = None, strategy: Any =
                          MemoryOptimizationStrategyType.SUMMARIZE,
                          apply: bool = True) -> list[UserMemory]:
        """Rewrite the user's memories with an Agno strategy (with ``apply``: replace them)."""
        user = self._user(user_id)
        memories = self._list(user)
        if not memories:
            return []
        if isinstance(strategy, MemoryOptimizationStrategyType):
            strategy = MemoryOptimizationStrategyFactory.create_strategy(strategy)
        optimized: list[UserMemory] = strategy.optimize(memories=memories, model=self.get_model())
        if apply:
            kept = {self.add_user_memory(memory, user) for memory in optimized}
            self._forget(user, [int(m.memory_id or 0) for m in memories
                                if m.memory_id not in kept])
        return optimized

    aoptimize_memories = threaded("optimize_memories")


def _ended(turn: kit.Turn, session: Any, run_id: str) -> None:
    """A run gone without reaching post_hook: ``error`` when Agno recorded one, else
    ``stopped`` (a stream closed early)."""
    run = session.get_run(run_id) if session is not None else None
    failed = getattr(getattr(run, "status", None), "value", None) == "ERROR"
    turn.finish("error" if failed else "stopped")


@dataclass
class _Writer:
    """The database calls of Agno's memory-task tools, writing memori for one user."""
    manager: MemoriMemoryManager
    user: str

    def upsert_user_memory(self, memory: UserMemory) -> None:
        if (memory.memory_id or "").isdigit():  # update_memory; add_memory makes a uuid
            self.manager.replace_user_memory(memory.memory_id or "", memory, self.user)
        else:
            self.manager.add_user_memory(memory, self.user)

    def delete_user_memory(self, memory_id: str, user_id: str | None = None) -> None:
        self.manager.delete_user_memory(memory_id, self.user)

    def clear_memories(self) -> None:
        self.manager.clear_user_memories(self.user)
