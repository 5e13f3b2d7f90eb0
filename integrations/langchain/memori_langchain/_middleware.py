"""``MemoriMiddleware``: memori for ``langchain.agents.create_agent`` (the ``agents`` extra)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ModelRequest,
    ModelResponse,
    Runtime,
)
from langchain.agents.middleware.types import ModelCallResult, OmitFromSchema
from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage

from memori_core import ConfigurationError, Memori
from memori_langchain import _target
from memori_langchain._context import add_to_system, memory_block
from memori_langchain._messages import last_human_text, to_memori

try:
    from typing import NotRequired
except ImportError:  # Python 3.10; typing_extensions is a requirement of langchain-core
    from typing_extensions import NotRequired

__all__ = ["MemoriMiddleware"]

#: private agent-state key: id of the last message captured, so a resumed or continued thread
#: (with a checkpointer) captures each message once
CAPTURED_KEY = "memori_captured_through"


class MemoriAgentState(AgentState[Any]):
    """Agent state with the middleware's private capture marker."""

    memori_captured_through: NotRequired[Annotated[str, OmitFromSchema(input=True,
                                                                         output=True)]]


class MemoriMiddleware(AgentMiddleware[MemoriAgentState, Any, Any]):
    """Agent middleware: recalled memories in the system message of every model call, and the
    agent's turn captured when the agent finishes.

    ``create_agent(model, tools, middleware=[MemoriMiddleware(mem)])``; then run the agent
    with the user in its context or config, e.g.
    ``agent.invoke({"messages": [...]}, {"configurable": {"user_id": "u1", "thread_id": "t1"}})``.

    - ``wrap_model_call`` / ``awrap_model_call``: recall on the last human message; the hits
      are appended to the request's system message (one is created when the agent has none).
    - ``after_agent`` / ``aafter_agent``: capture the turn: the messages after the last one
      captured in this thread (tracked in private agent state, so with a checkpointer every
      message is captured once), or, on a fresh state, from the last human message on; AI
      messages with tool calls and tool results included, system messages excluded.

    The target of each call: the explicit ids, else ``entity_key`` / ``session_key`` read
    from the run's context (``agent.invoke(..., context=...)``; an object attribute or dict
    key), else from its ``configurable``, else memori's current attribution. The default
    session key is ``thread_id``, LangGraph's conversation id.

    Args:
        memori: the ``Memori`` instance.
        entity_id: fixed entity for every run (default: from context / config / memori).
        process_id: fixed process (default: memori's current process).
        session_id: fixed session (default: ``session_key`` from context / config, else
            memori's current session).
        entity_key: context / ``configurable`` key of the entity id (default ``"user_id"``).
        session_key: context / ``configurable`` key of the session id (default
            ``"thread_id"``).
        recall_limit: at most this many memories per model call; default
            ``Config.recall_facts_limit`` of the ``Memori`` instance (5).
        scope: ``"process"`` (default) or ``"entity"`` (see ``Memori.recall``).
        inject: recall and inject memories (default True).
        capture: capture each agent turn (default True).

    Raises:
        ConfigurationError: ``memori`` is not a ``Memori``, or a bad ``scope`` /
            ``recall_limit`` / key; during a run, no entity anywhere (argument
            ``entity_id``). Recall and capture failures (``RecallError``, ``StorageError``)
            propagate out of the agent run.
    """

    state_schema = MemoriAgentState

    def __init__(self, memori: Memori, *, entity_id: str | None = None,
                 process_id: str | None = None, session_id: str | None = None,
                 entity_key: str = "user_id", session_key: str = "thread_id",
                 recall_limit: int | None = None, scope: _target.Scope = "process",
                 inject: bool = True, capture: bool = True) -> None:
        super().__init__()
        self.memori = _target.check_memori(memori, "MemoriMiddleware")
        self.scope = _target.check_scope(scope)
        self.recall_limit = _target.check_limit(recall_limit, "recall_limit")
        for key, value in (("entity_key", entity_key), ("session_key", session_key)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{key} must be a non-empty str", argument=key)
        self.entity_id, self.process_id, self.session_id = entity_id, process_id, session_id
        self.entity_key, self.session_key = entity_key, session_key
        self.inject, self.capture = inject, capture
        self.tools = []

    def _target_for(self, runtime: Runtime[Any] | None) -> _target.Target:
        context = runtime.context if runtime is not None else None
        return _target.resolve_target(
            self.memori, what="MemoriMiddleware", entity_id=self.entity_id,
            process_id=self.process_id, session_id=self.session_id,
            entity_key=self.entity_key, session_key=self.session_key,
            sources=[("context", context), ("config['configurable']", _target.configurable())])

    # ---- one implementation --------------------------------------------------------------------
    def _with_memories(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        """``request`` with recalled memories in its system message (unchanged without a
        human message or hits)."""
        query = last_human_text(request.messages) if self.inject else None
        if query is None:
            return request
        block = memory_block(_target.recall(self.memori, self._target_for(request.runtime),
                                            query, self.recall_limit, self.scope))
        if block is None:
            return request
        return request.override(system_message=add_to_system(request.system_message, block))

    def _capture_turn(self, state: MemoriAgentState, runtime: Runtime[Any]
                      ) -> dict[str, Any] | None:
        """Capture the messages not captured yet; the state update moving the marker."""
        if not self.capture:
            return None
        marker = state.get(CAPTURED_KEY)
        turn = _uncaptured(state["messages"], marker if isinstance(marker, str) else None)
        if not turn:
            return None
        _target.capture(self.memori, self._target_for(runtime), to_memori(turn))
        return {CAPTURED_KEY: turn[-1].id} if turn[-1].id else None

    # ---- the agent hooks, sync and async --------------------------------------------------------
    def wrap_model_call(self, request: ModelRequest[Any],
                        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
                        ) -> ModelCallResult[Any]:
        """Recall into the system message, then call the model."""
        return handler(self._with_memories(request))

    async def awrap_model_call(self, request: ModelRequest[Any],
                               handler: Callable[[ModelRequest[Any]],
                                                 Awaitable[ModelResponse[Any]]]
                               ) -> ModelCallResult[Any]:
        """Async ``wrap_model_call`` (recall runs in LangChain's executor)."""
        return await handler(await _target.arun(self._with_memories, request))

    def after_agent(self, state: MemoriAgentState, runtime: Runtime[Any]
                    ) -> dict[str, Any] | None:
        """Capture the agent's turn."""
        return self._capture_turn(state, runtime)

    async def aafter_agent(self, state: MemoriAgentState, runtime: Runtime[Any]
                           ) -> dict[str, Any] | None:
        """Async ``after_agent`` (capture runs in LangChain's executor)."""
        return await _target.arun(self._capture_turn, state, runtime)


def _uncaptured(messages: Sequence[AnyMessage], marker: str | None) -> list[AnyMessage]:
    start = None
    if marker is not None:
        start = next((i + 1 for i, m in enumerate(messages) if m.id == marker), None)
    if start is None:
        humans = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
        start = humans[-1] if humans else 0
    return [m for m in messages[start:] if not isinstance(m, SystemMessage)]
