"""``MemoriMiddleware``: memori for ``langchain.agents.create_agent`` (the ``agents`` extra)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain.agents.middleware.types import ModelCallResult

from memori_core import ConfigurationError, Memori
from memori_langchain._chat_model import MemoriChatModel, check_options
from memori_langchain._common import Call, configurable, resolve, with_block

__all__ = ["MemoriMiddleware"]


class MemoriMiddleware(AgentMiddleware):
    """Agent middleware: the context block in the system message of every model call, and
    each model call's turn captured (the messages new since the last AI message, and the
    answer with its tool calls), once per message, with or without a checkpointer; a model
    error or a stopped run keeps the user message, marked. Memory never fails the run.

    ``create_agent(model, tools, middleware=[MemoriMiddleware(mem)])``, then
    ``agent.invoke(..., {"configurable": {"user_id": "u1", "thread_id": "t1"}})``.

    Args:
        entity_id: a fixed entity; default: ``entity_key`` (``"user_id"``) of the run's
            context (an attribute or a dict key), else of its ``configurable``, else memori's
            attribution.
        process_id: a fixed process; default memori's attribution.
        session_id: a fixed session; default: ``session_key`` (``"thread_id"``) of the run's
            context, else of its ``configurable``, else memori's attribution.
        recall_limit: as for ``with_memori``.
        scope: as for ``with_memori``.
        inject: as for ``with_memori``.
        capture: as for ``with_memori``.

    Raises:
        ConfigurationError: a bad argument; during a run, no entity anywhere (argument
            ``entity_id``) or a ``with_memori`` model as the agent's (argument ``model``).
    """

    def __init__(self, memori: Memori, *, entity_id: str | None = None,
                 process_id: str | None = None, session_id: str | None = None,
                 entity_key: str = "user_id", session_key: str = "thread_id",
                 recall_limit: int | None = None, scope: str = "process",
                 inject: bool = True, capture: bool = True) -> None:
        super().__init__()
        check_options({"memori": memori, "scope": scope, "recall_limit": recall_limit,
                       "entity_key": entity_key, "session_key": session_key}, "thread_id")
        self.memori, self.scope, self.recall_limit = memori, scope, recall_limit
        self.entity_key, self.session_key = entity_key, session_key
        self.entity_id, self.process_id, self.session_id = entity_id, process_id, session_id
        self.inject, self.capture = inject, capture
        self.tools = []

    def _call(self, request: ModelRequest) -> Call:
        model = request.model
        if isinstance(model, MemoriChatModel) and (model.inject or model.capture):
            raise ConfigurationError(
                "the agent's model is a with_memori model and MemoriMiddleware recalls and "
                "captures too, so every memory and message would come twice: pass the bare "
                "model to create_agent", argument="model")
        context = request.runtime.context if request.runtime else None
        return Call(self, resolve(
            self.memori, "MemoriMiddleware", entity_id=self.entity_id,
            process_id=self.process_id, session_id=self.session_id, entity_key=self.entity_key,
            session_key=self.session_key,
            sources=[("context", context), ("config['configurable']", configurable())]),
            request.messages)

    def wrap_model_call(self, request: ModelRequest,
                        handler: Callable[[ModelRequest], ModelResponse]) -> ModelCallResult:
        """The block into the system message, the model call, its turn captured."""
        with self._call(request) as call:
            response = handler(_with_block(request, call.block))
            return call.done(response, _replies(response))

    async def awrap_model_call(self, request: ModelRequest,
                               handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
                               ) -> ModelCallResult:
        """Async ``wrap_model_call`` (memori's work in LangChain's executor)."""
        async with self._call(request) as call:
            response = await handler(_with_block(request, call.block))
            return call.done(response, _replies(response))


def _with_block(request: ModelRequest, block: str | None) -> ModelRequest:
    if not block:
        return request
    system = request.system_message
    (message,) = with_block([system] if system else [], block)
    return request.override(system_message=message)  # type: ignore[arg-type]


def _replies(response: object) -> list[Any]:
    return list(response.result) if isinstance(response, ModelResponse) else [response]
