"""``MemoriMemoryManager``: memori behind Agno's ``MemoryManager`` (``Agent(memory_manager=...)``)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from typing import Any, Literal

from agno.memory import MemoryManager, UserMemory
from agno.memory.strategies import (
    MemoryOptimizationStrategy,
    MemoryOptimizationStrategyFactory,
    MemoryOptimizationStrategyType,
)
from agno.models.base import Model
from agno.models.message import Message

from memori_agno._common import (
    DEFAULT_USER_ID,
    attributed,
    check_memori,
    memory_id_to_int,
    reported,
    to_memori_messages,
    to_user_memory,
)
from memori_core import ConfigurationError, Memori, MemoriError

__all__ = ["MemoriMemoryManager"]

RetrievalMethod = Literal["last_n", "first_n", "agentic"]


class MemoriMemoryManager(MemoryManager):
    """memori as an Agno agent's memory: ``Agent(memory_manager=MemoriMemoryManager(mem),
    update_memory_on_run=True)``.

    Agno's ``user_id`` is memori's entity, the agent's (or team's) id its process. After each
    run Agno hands the manager the user's message (``create_user_memories``); it is captured,
    and memori's background augmentation turns it into memories: no extra LLM call per run.
    Before each run Agno lists the user's memories (``get_user_memories``) into the system
    prompt. With ``Agent(enable_agentic_memory=True)`` the agent's ``update_user_memory`` tool
    runs Agno's memory task (``update_memory_task``: one call of ``model`` with
    ``add_memory`` / ``update_memory`` / ``delete_memory`` / ``clear_memory`` tools), whose
    tools write memori's tables.

    Agno passes a ``MemoryManager`` no session id, so captures go to memori's current session
    (by default the ``Memori`` instance's own, per user); ``MemoriLearningStore`` receives
    Agno's ``session_id``. Calls without a ``user_id`` use Agno's ``"default"`` user, as
    Agno's own manager does. The ``a*`` methods run the same code in a worker thread
    (``asyncio.to_thread``): memori's core is synchronous.

    Args:
        memori: a built ``memori_core.Memori`` (call ``mem.config.storage.build()`` once on a
            database you passed as ``conn``).
        process_id: the memori process every call of this manager reads and writes, e.g. the
            agent's id. Default None: like Agno's own manager, reads span all of the user's
            memories whichever agent captured them, and captures are tagged with the agent
            (or team) id Agno passes to ``create_user_memories``.
        kinds: memory kinds ``get_user_memories`` returns (what the prompt holds), e.g.
            ``["fact", "preference"]``; default all kinds, including ``episodic`` (each
            captured user message) so a turn is remembered even when nothing was extracted.
        limit: at most this many memories from ``get_user_memories``, newest first; default
            None (all, Agno's contract). Bound it to cap the prompt, or use
            ``MemoriLearningStore`` for query-aware recall.
        model: the model of ``update_memory_task`` and ``optimize_memories``; default the
            agent's model (Agno sets it when the agent starts).
        system_message: replaces Agno's memory-task system message.
        memory_capture_instructions: replaces Agno's "what to remember" criteria in it.
        additional_instructions: appended to it.
        add_memories: whether the memory task may add memories (Agno's default True).
        update_memories: whether it may update them (True).
        delete_memories: whether it may delete them (False).
        clear_memories: whether it may clear all of the user's memories (False).
        debug_mode: Agno's debug logging.
        id: Agno component id (default ``memory_manager_<8 hex>``).
        name: Agno component name.

    Raises:
        ConfigurationError: ``memori`` is not a ``Memori``, or a bad ``process_id`` /
            ``kinds`` / ``limit``.
    """

    def __init__(self, memori: Memori, *, process_id: str | None = None,
                 kinds: Sequence[str] | None = None, limit: int | None = None,
                 model: Model | str | None = None, system_message: str | None = None,
                 memory_capture_instructions: str | None = None,
                 additional_instructions: str | None = None, add_memories: bool = True,
                 update_memories: bool = True, delete_memories: bool = False,
                 clear_memories: bool = False, debug_mode: bool = False, id: str | None = None,
                 name: str | None = None) -> None:
        super().__init__(model=model, system_message=system_message,
                         memory_capture_instructions=memory_capture_instructions,
                         additional_instructions=additional_instructions,
                         add_memories=add_memories, update_memories=update_memories,
                         delete_memories=delete_memories, clear_memories=clear_memories,
                         debug_mode=debug_mode, id=id, name=name)
        self.memori = check_memori(memori)
        if process_id is not None and (not isinstance(process_id, str) or not process_id.strip()
                                       or len(process_id) > 255 or "\x00" in process_id):
            raise ConfigurationError(f"process_id must be None or a str of 1-255 characters "
                                     f"without NUL, e.g. the agent's id; got {process_id!r}",
                                     argument="process_id")
        if kinds is not None and (isinstance(kinds, str) or not all(isinstance(k, str)
                                                                     for k in kinds)):
            raise ConfigurationError(f"kinds must be a list of memory kinds such as "
                                     f"['fact', 'preference'] or None, got {kinds!r}",
                                     argument="kinds")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise ConfigurationError(f"limit must be a positive int or None, got {limit!r}",
                                     argument="limit")
        self.process_id = process_id
        self.kinds = None if kinds is None else list(kinds)
        self.limit = limit

    def __deepcopy__(self, memo: dict[int, Any]) -> MemoriMemoryManager:
        # a copy (Agno copies components for isolated runs) shares the Memori instance: its
        # database engine and workers cannot be duplicated
        clone = copy.copy(self)
        clone.kinds = None if self.kinds is None else list(self.kinds)
        return clone

    # ---- attribution --------------------------------------------------------------------------
    def _process(self, agent_id: str | None = None, team_id: str | None = None) -> str | None:
        return self.process_id or agent_id or team_id

    @staticmethod
    def _user(user_id: str | None) -> str:
        return DEFAULT_USER_ID if user_id is None else user_id

    @property
    def _scope(self) -> Literal["process", "entity"]:
        return "process" if self.process_id else "entity"

    def _list(self, user_id: str, *, kinds: Sequence[str] | None = None,
              limit: int | None = None, include_superseded: bool = False) -> list[UserMemory]:
        with attributed(self.memori, user_id, self.process_id) as mem:
            found = mem.memories(kinds=kinds, include_superseded=include_superseded,
                                 scope=self._scope, limit=limit)
        return [to_user_memory(m, user_id) for m in found]

    # ---- reading ------------------------------------------------------------------------------
    def get_user_memories(self, user_id: str | None = None) -> list[UserMemory]:
        """The user's current memories, newest first: what Agno puts in the system prompt.

        Args:
            user_id: Agno's user (memori entity); default ``"default"``.

        Returns:
            at most ``limit`` memories of ``kinds`` (both from the constructor), as
            ``UserMemory`` (``memory_id`` memori's id, ``topics`` ``[kind]``); superseded ones
            are left out.

        Raises:
            ConfigurationError: a bad ``user_id``, or bad ``kinds`` given to the constructor.
            StorageError: the database failed.
        """
        return self._list(self._user(user_id), kinds=self.kinds, limit=self.limit)

    async def aget_user_memories(self, user_id: str | None = None) -> list[UserMemory]:
        """``get_user_memories`` in a worker thread."""
        return await asyncio.to_thread(self.get_user_memories, user_id)

    def get_user_memory(self, memory_id: str, user_id: str | None = None) -> UserMemory | None:
        """One of the user's memories by id (superseded ones included), or None.

        Raises:
            ConfigurationError: ``memory_id`` is not a memori id, or a bad ``user_id``.
            StorageError: the database failed.
        """
        wanted = str(memory_id_to_int(memory_id))
        found = self._list(self._user(user_id), include_superseded=True)
        return next((m for m in found if m.memory_id == wanted), None)

    def read_from_db(self, user_id: str | None = None) -> dict[str, list[UserMemory]]:
        """Agno's raw read: ``{user_id: memories}`` (all kinds, superseded ones included).

        Raises:
            ConfigurationError: ``user_id`` is None: memori reads one user at a time.
            StorageError: the database failed.
        """
        if user_id is None:
            raise ConfigurationError("memori reads one user's memories at a time: pass user_id",
                                     argument="user_id")
        return {user_id: self._list(user_id, include_superseded=True)}

    async def aread_from_db(self, user_id: str | None = None) -> dict[str, list[UserMemory]]:
        """``read_from_db`` in a worker thread."""
        return await asyncio.to_thread(self.read_from_db, user_id)

    def search_user_memories(self, query: str | None = None, limit: int | None = None,
                             retrieval_method: RetrievalMethod | None = None,
                             user_id: str | None = None) -> list[UserMemory]:
        """Search the user's memories.

        Args:
            query: text to match. With ``retrieval_method`` ``"agentic"`` or None, memori's
                recall ranks the memories against it (vector + lexical) instead of Agno's
                extra LLM call.
            limit: at most this many; default all for ``last_n`` / ``first_n``, memori's
                ``recall_facts_limit`` (5) for a query.
            retrieval_method: ``"agentic"`` (by ``query``), ``"last_n"`` (newest, returned
                oldest first as Agno does), ``"first_n"`` (oldest); default ``"agentic"``
                when a query is given, else ``"last_n"``.
            user_id: Agno's user; default ``"default"``.

        Returns:
            ``UserMemory`` objects, best first for a query.

        Raises:
            ConfigurationError: ``"agentic"`` without a query, an unknown
                ``retrieval_method``, or a bad ``limit`` / ``user_id``.
            RecallError: embedding or search failed.
            StorageError: the database failed.
        """
        if retrieval_method not in (None, "agentic", "last_n", "first_n"):
            raise ConfigurationError(f"retrieval_method is {retrieval_method!r}; use 'agentic', "
                                     "'last_n', 'first_n' or None", argument="retrieval_method")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise ConfigurationError(f"limit must be a positive int or None, got {limit!r}",
                                     argument="limit")
        user = self._user(user_id)
        if retrieval_method == "agentic" or (retrieval_method is None and query):
            if not query:
                raise ConfigurationError("retrieval_method='agentic' searches by query: pass "
                                         "query='...'", argument="query")
            with attributed(self.memori, user, self.process_id) as mem:
                hits = mem.recall(query, limit, scope=self._scope)
            return [to_user_memory(h, user) for h in hits]
        if retrieval_method == "first_n":
            oldest_first = self._list(user)[::-1]
            return oldest_first[:limit] if limit else oldest_first
        return self._list(user, limit=limit)[::-1]  # last_n: the newest, oldest of them first

    # ---- capture ------------------------------------------------------------------------------
    def create_user_memories(self, message: str | None = None,
                             messages: list[Message] | None = None, agent_id: str | None = None,
                             team_id: str | None = None, user_id: str | None = None,
                             run_metrics: Any = None) -> str:
        """Capture a run's messages; memori's augmentation extracts memories from them in the
        background (``memori.augmentation.wait()`` waits for it).

        Agno calls this after every run with ``update_memory_on_run=True``, from a background
        thread (asyncio task for ``arun``), with the run's user message as ``message``.

        Args:
            message: one user message.
            messages: Agno ``Message`` objects (used when ``message`` is not given); empty ones
                are skipped.
            agent_id: the agent: memori's process unless ``process_id`` was given.
            team_id: the team, used as process when there is no agent id.
            user_id: Agno's user; default ``"default"``.
            run_metrics: Agno's metrics collector (unused: no model call is made).

        Returns:
            a status line for Agno's logs.

        Raises:
            ConfigurationError: neither ``message`` nor ``messages``, or a bad message / id.
            StorageError: the database failed; nothing of the turn was kept. Agno catches
                errors of this background step and logs a warning (``Error in memory
                creation``), so a failed capture is also logged with its traceback on the
                ``memori_agno`` logger.
        """
        if message:
            if not isinstance(message, str):
                raise ConfigurationError(f"message must be a str, got {type(message).__name__}",
                                         argument="message")
            messages = [Message(role="user", content=message)]
        if not messages or isinstance(messages, (str, Message)) or not isinstance(messages, list):
            raise ConfigurationError("pass message='...' or messages=[agno Message, ...]",
                                     argument="messages")
        kept = [m for m in messages
                if not isinstance(m, Message) or (m.content and m.get_content_string().strip())
                or m.tool_calls]
        if not kept:
            return "No messages with content to capture"
        converted = to_memori_messages(kept)
        with reported("capture"), attributed(self.memori, self._user(user_id),
                                             self._process(agent_id, team_id)) as mem:
            ids = mem.capture(converted)
        return f"Captured {len(ids)} message(s) in memori; memories are extracted in the background"

    async def acreate_user_memories(self, message: str | None = None,
                                    messages: list[Message] | None = None,
                                    agent_id: str | None = None, team_id: str | None = None,
                                    user_id: str | None = None, run_metrics: Any = None) -> str:
        """``create_user_memories`` in a worker thread."""
        return await asyncio.to_thread(self.create_user_memories, message, messages, agent_id,
                                       team_id, user_id, run_metrics)

    # ---- writing ------------------------------------------------------------------------------
    def _remember(self, user_id: str, text: object) -> int:
        if not isinstance(text, str) or not text.strip():
            raise ConfigurationError("the memory text must be a non-empty str, e.g. "
                                     "UserMemory(memory='The user likes tea')", argument="memory")
        with attributed(self.memori, user_id, self.process_id) as mem:
            return mem.remember(text, kind="fact")

    def _forget(self, user_id: str, ids: list[int]) -> int:
        with attributed(self.memori, user_id, self.process_id) as mem:
            return mem.forget_memories(ids)

    def add_user_memory(self, memory: UserMemory, user_id: str | None = None) -> str:
        """Store ``memory.memory`` as a memori ``fact`` of the user (embedded at once, so it is
        listed and recalled when this returns; the same text again only bumps its mention
        count). Sets ``memory.memory_id`` and ``memory.user_id``.

        Returns:
            the memori id, as a string.

        Raises:
            ConfigurationError: ``memory`` is not a ``UserMemory`` with text, or a bad id.
            StorageError: the database failed.
        """
        if not isinstance(memory, UserMemory):
            raise ConfigurationError(f"memory must be an agno.memory.UserMemory, got "
                                     f"{type(memory).__name__}", argument="memory")
        user = self._user(user_id)
        memory.memory_id = str(self._remember(user, memory.memory))
        memory.user_id = user
        return memory.memory_id

    def replace_user_memory(self, memory_id: str, memory: UserMemory,
                            user_id: str | None = None) -> str:
        """Store ``memory`` and delete the memory ``memory_id`` it replaces.

        Returns:
            the new memory's id (memori ids are row ids: a new text gets a new id).

        Raises:
            ConfigurationError: a bad ``memory_id``, ``memory`` or ``user_id``.
            StorageError: the database failed.
        """
        old = memory_id_to_int(memory_id)
        new_id = self.add_user_memory(memory, user_id)
        if int(new_id) != old:
            self._forget(self._user(user_id), [old])
        return new_id

    def delete_user_memory(self, memory_id: str, user_id: str | None = None) -> None:
        """Delete one of the user's memories (another user's id is ignored, never deleted).

        Raises:
            ConfigurationError: ``memory_id`` is not a memori id, or a bad ``user_id``.
            StorageError: the database failed.
        """
        self._forget(self._user(user_id), [memory_id_to_int(memory_id)])

    def clear_user_memories(self, user_id: str | None = None) -> None:
        """Delete all of the user's memories (of ``process_id`` and those without a process
        when it was given), superseded ones included. The captured conversations stay.

        Raises:
            ConfigurationError: a bad ``user_id``.
            StorageError: the database failed.
        """
        user = self._user(user_id)
        ids = [int(m.memory_id or 0) for m in self._list(user, include_superseded=True)]
        if ids:
            self._forget(user, ids)

    async def aclear_user_memories(self, user_id: str | None = None) -> None:
        """``clear_user_memories`` in a worker thread."""
        await asyncio.to_thread(self.clear_user_memories, user_id)

    def clear(self) -> None:
        """Not supported: memori deletes memories one user at a time.

        Raises:
            NotImplementedError: always; call ``clear_user_memories(user_id=...)``.
        """
        raise NotImplementedError("memori deletes memories one user at a time: call "
                                  "clear_user_memories(user_id=...) for each user")

    # ---- the agentic memory task ----------------------------------------------------------------
    def _memory_tools(self, user_id: str, failures: list[BaseException]
                      ) -> list[Callable[..., str]]:
        """Agno's memory-task tools (same names, arguments and docstrings), on memori's tables.
        A failure is recorded for ``update_memory_task`` to raise, besides reaching the model;
        a success sets ``memories_updated``."""
        manager = self

        def guarded(action: Callable[[], str]) -> str:
            try:
                result = action()
            except MemoriError as exc:
                failures.append(exc)
                raise
            manager.memories_updated = True
            return result

        def add_memory(memory: str, topics: list[str] | None = None) -> str:
            """Use this function to add a memory to the database.
            Args:
                memory (str): The memory to be added.
                topics (Optional[List[str]]): The topics of the memory (e.g. ["name", "hobbies", "location"]).
            Returns:
                str: A message indicating if the memory was added successfully or not.
            """
            return guarded(lambda: f"Memory added successfully (id "
                                   f"{manager._remember(user_id, memory)})")

        def update_memory(memory_id: str, memory: str, topics: list[str] | None = None) -> str:
            """Use this function to update an existing memory in the database.
            Args:
                memory_id (str): The id of the memory to be updated.
                memory (str): The updated memory.
                topics (Optional[List[str]]): The topics of the memory (e.g. ["name", "hobbies", "location"]).
            Returns:
                str: A message indicating if the memory was updated successfully or not.
            """
            if memory == "":
                return ("Can't update memory with empty string. Use the delete memory function "
                        "if available.")
            return guarded(lambda: f"Memory updated successfully (new id "
                                   f"{manager.replace_user_memory(memory_id, UserMemory(memory=memory), user_id)})")

        def delete_memory(memory_id: str) -> str:
            """Use this function to delete a single memory from the database.
            Args:
                memory_id (str): The id of the memory to be deleted.
            Returns:
                str: A message indicating if the memory was deleted successfully or not.
            """
            def run() -> str:
                manager.delete_user_memory(memory_id, user_id)
                return "Memory deleted successfully"
            return guarded(run)

        def clear_memory() -> str:
            """Use this function to remove all (or clear all) memories from the database.

            Returns:
                str: A message indicating if the memory was cleared successfully or not.
            """
            def run() -> str:
                manager.clear_user_memories(user_id)
                return "Memory cleared successfully"
            return guarded(run)

        enabled: list[tuple[bool, Callable[..., str]]] = [
            (self.add_memories, add_memory), (self.update_memories, update_memory),
            (self.delete_memories, delete_memory), (self.clear_memories, clear_memory)]
        return [tool for on, tool in enabled if on]

    def update_memory_task(self, task: str, user_id: str | None = None) -> str:
        """Carry out a memory task in words ("remember that the user moved to Porto"): what the
        agent's ``update_user_memory`` tool calls with ``enable_agentic_memory=True``.

        One call of ``model`` (deep-copied, as Agno does) with Agno's memory-manager system
        message listing the user's current memories and the ``add_memory`` /
        ``update_memory`` / ``delete_memory`` / ``clear_memory`` tools allowed by the
        constructor flags; the tools write memori (``remember`` / ``forget_memories``).

        Returns:
            the model's final answer; ``memories_updated`` tells whether a tool wrote memori.

        Raises:
            ConfigurationError: an empty ``task`` or a bad ``user_id``.
            MemoriError: a memori write a tool made failed (the first failure, after the model
                call; the model also saw it as the tool's error).
        """
        if not isinstance(task, str) or not task.strip():
            raise ConfigurationError("task must be a non-empty str describing the memory change",
                                     argument="task")
        user = self._user(user_id)
        existing = [{"memory_id": m.memory_id, "memory": m.memory}
                    for m in self._list(user, kinds=self.kinds, limit=self.limit)]
        failures: list[BaseException] = []
        self.memories_updated = False
        tools = self.determine_tools_for_model(self._memory_tools(user, failures))
        system = self.get_system_message(
            existing, enable_delete_memory=self.delete_memories,
            enable_clear_memory=self.clear_memories, enable_update_memory=self.update_memories,
            enable_add_memory=self.add_memories)
        model = copy.deepcopy(self.get_model())
        response = model.response(messages=[system, Message(role="user", content=task)],
                                  tools=tools)
        if failures:
            raise failures[0]
        return response.content or "No response from model"

    async def aupdate_memory_task(self, task: str, user_id: str | None = None) -> str:
        """``update_memory_task`` in a worker thread."""
        return await asyncio.to_thread(self.update_memory_task, task, user_id)

    # ---- optimisation -------------------------------------------------------------------------
    def optimize_memories(self, user_id: str | None = None,
                          strategy: MemoryOptimizationStrategyType | MemoryOptimizationStrategy
                          = MemoryOptimizationStrategyType.SUMMARIZE,
                          apply: bool = True) -> list[UserMemory]:
        """Rewrite the user's current memories (all kinds, within ``process_id`` when given)
        with an Agno optimisation strategy (by default one summary written by ``model``); with
        ``apply``, the result is stored as ``fact`` memories and the rewritten ones are
        deleted.

        Returns:
            the optimised memories (with memori ids when applied); ``[]`` when the user has
            none.

        Raises:
            ConfigurationError: a bad ``user_id``.
            StorageError: the database failed.
        """
        user = self._user(user_id)
        memories = self._list(user)
        if not memories:
            return []
        if isinstance(strategy, MemoryOptimizationStrategyType):
            strategy = MemoryOptimizationStrategyFactory.create_strategy(strategy)
        optimized = strategy.optimize(memories=memories, model=self.get_model())
        if apply:
            kept = {self.add_user_memory(memory, user) for memory in optimized}
            self._forget(user, [int(m.memory_id or 0) for m in memories
                                if m.memory_id not in kept])
        return optimized

    async def aoptimize_memories(self, user_id: str | None = None,
                                 strategy: MemoryOptimizationStrategyType
                                 | MemoryOptimizationStrategy
                                 = MemoryOptimizationStrategyType.SUMMARIZE,
                                 apply: bool = True) -> list[UserMemory]:
        """``optimize_memories`` in a worker thread."""
        return await asyncio.to_thread(self.optimize_memories, user_id, strategy, apply)
