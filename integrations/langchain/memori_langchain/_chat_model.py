"""``with_memori(model, memori)``: any LangChain chat model with memori recall and capture."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Sequence
from contextlib import aclosing, closing
from typing import Any, cast

from langchain_core.callbacks import CallbackManager
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.tracers.base import BaseTracer
from pydantic import ConfigDict, Field

from memori_core import ConfigurationError, Memori
from memori_core.integration import check_limit, check_memori, check_scope, check_text
from memori_langchain._common import Call, configurable, resolve
from memori_langchain._history import MemoriChatMessageHistory

__all__ = ["MemoriChatModel", "with_memori"]

#: ``configurable`` key under which ``RunnableWithMessageHistory`` passes the run's history
#: to its listeners: not documented API, pinned by test_langchain_framework_pins.py.
HISTORY_KEY = "message_history"


def check_options(data: dict[str, Any], session_key: str) -> None:
    """The options ``with_memori`` and ``MemoriMiddleware`` share, checked as
    ``ConfigurationError`` naming the argument."""
    check_memori(data.get("memori"))
    check_scope(data.get("scope", "process"))
    check_limit(data.get("recall_limit"), "recall_limit")
    check_text(data.get("entity_key", "user_id"), "entity_key")
    check_text(data.get("session_key", session_key), "session_key")


class MemoriChatModel(BaseChatModel):
    """A chat model wrapper made by ``with_memori(model, memori)`` (see there).

    Every public call (``invoke``, ``ainvoke``, ``stream``, ``astream``, ``batch``,
    ``abatch``, in chains, after ``bind_tools`` / ``with_structured_output``) puts the context
    block into the system message and captures the turn with the kit's ``Turn`` (complete,
    stream stopped early, model error). The wrapper's own run is traced with the messages
    the model got.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: BaseChatModel
    memori: Memori = Field(exclude=True)
    bound: Runnable[LanguageModelInput, BaseMessage] | None = Field(default=None, exclude=True)
    entity_id: str | None = None
    process_id: str | None = None
    session_id: str | None = None
    entity_key: str = "user_id"
    session_key: str = "session_id"
    recall_limit: int | None = None
    scope: str = "process"
    inject: bool = True
    capture: bool = True

    def __init__(self, **data: Any) -> None:
        # checked here, not by pydantic validators, so errors stay ConfigurationError
        model = data.get("model")
        if not isinstance(model, BaseChatModel) or isinstance(model, MemoriChatModel):
            raise ConfigurationError(
                "with_memori wraps a LangChain chat model once (a BaseChatModel such as "
                f"ChatBedrockConverse), got {type(model).__name__}; bind tools on the result",
                argument="model")
        if data.get("disable_streaming"):  # BaseChatModel.stream would fall back to invoke
            raise ConfigurationError("set disable_streaming on the wrapped model",
                                     argument="disable_streaming")
        check_options(data, "session_id")
        super().__init__(**{"profile": model.profile, **data})  # the model's capabilities

    @property
    def _llm_type(self) -> str:
        return "memori-chat-model"

    def _call(self, input: LanguageModelInput, config: RunnableConfig | None) -> Call:
        messages = self._convert_input(input).to_messages()  # BaseChatModel's own conversion
        run = configurable(config)
        history = run.get(HISTORY_KEY) if self.capture else None
        if not isinstance(history, MemoriChatMessageHistory) or history.memori is not self.memori:
            history = None
        target = history.target if history else resolve(
            self.memori, "with_memori", entity_id=self.entity_id, process_id=self.process_id,
            session_id=self.session_id, entity_key=self.entity_key,
            session_key=self.session_key, sources=[("config['configurable']", run)])
        return Call(self, target, messages, skip=history.skip if history else None)

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        with self._call(input, config) as call:
            return call.done(super().invoke(call.sent, config, stop=stop, **kwargs))

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None,
                      *, stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        async with self._call(input, config) as call:
            return call.done(await super().ainvoke(call.sent, config, stop=stop, **kwargs))

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        with self._call(input, config) as call, closing(cast("Generator[AIMessageChunk]",
                super().stream(call.sent, config, stop=stop, **kwargs))) as chunks:
            for chunk in chunks:
                yield call.add(chunk)

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None,
                      *, stop: list[str] | None = None, **kwargs: Any
                      ) -> AsyncIterator[AIMessageChunk]:
        async with self._call(input, config) as call, aclosing(cast(
                "AsyncGenerator[AIMessageChunk]",
                super().astream(call.sent, config, stop=stop, **kwargs))) as chunks:
            async for chunk in chunks:
                yield call.add(chunk)

    # ---- the wrapped model, called by BaseChatModel's machinery -------------------------------
    def _inner(self, run_manager: Any) -> tuple[Runnable[LanguageModelInput, BaseMessage],
                                                RunnableConfig]:
        """The wrapped model (tools bound) and its config: its run nests under the wrapper's
        for tracers only, so streaming and event handlers (LangGraph's "messages" mode) see
        each token once, from the wrapper's run."""
        child = CallbackManager(handlers=[], parent_run_id=getattr(run_manager, "run_id", None))
        if run_manager is not None:
            child.set_handlers([h for h in run_manager.inheritable_handlers
                                if isinstance(h, BaseTracer)])
        return (self.bound if self.bound is not None else self.model), {"callbacks": child}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        model, config = self._inner(run_manager)
        out = model.invoke(messages, config, stop=stop, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=out)])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        model, config = self._inner(run_manager)
        out = await model.ainvoke(messages, config, stop=stop, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=out)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        model, config = self._inner(run_manager)
        for chunk in model.stream(messages, config, stop=stop, **kwargs):
            yield ChatGenerationChunk(message=_as_chunk(chunk))

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: Any = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:
        model, config = self._inner(run_manager)
        async for chunk in model.astream(messages, config, stop=stop, **kwargs):
            yield ChatGenerationChunk(message=_as_chunk(chunk))

    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
                   *, tool_choice: str | None = None, **kwargs: Any
                   ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind ``tools`` on the wrapped model (its own format and options) and keep memori in
        front; binding again replaces the tools."""
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.model_copy(update={"bound": self.model.bind_tools(tools, **kwargs)})


def _as_chunk(chunk: BaseMessage) -> AIMessageChunk:
    return chunk if isinstance(chunk, AIMessageChunk) else AIMessageChunk(
        content=chunk.content, id=chunk.id)


def with_memori(model: BaseChatModel, memori: Memori, *, entity_id: str | None = None,
                process_id: str | None = None, session_id: str | None = None,
                entity_key: str = "user_id", session_key: str = "session_id",
                recall_limit: int | None = None, scope: str = "process",
                inject: bool = True, capture: bool = True) -> MemoriChatModel:
    """Give any LangChain chat model (``ChatBedrockConverse``, ``ChatBedrock``, ``ChatOpenAI``,
    ...) memori's memory: the context block in its system message, every turn captured.
    Memory failures are logged and counted; they never fail the call.

    Args:
        model: a ``BaseChatModel``; bind tools on the result, not before.
        entity_id: a fixed entity; default: ``configurable[entity_key]`` of the run, else
            memori's attribution.
        process_id: a fixed process; default memori's attribution.
        session_id: a fixed session; default: ``configurable[session_key]`` of the run, else
            memori's attribution.
        recall_limit: at most this many memories per call (default
            ``Config.recall_facts_limit``); scope: ``"process"`` or ``"entity"``.
        inject: put memories into the prompt; capture: capture each turn (inside
            ``RunnableWithMessageHistory`` with a ``MemoriChatMessageHistory``, once, under
            the history's entity and session).

    Raises:
        ConfigurationError: a bad argument; at call time no entity anywhere (argument
            ``entity_id``).
    """
    return MemoriChatModel(model=model, memori=memori, entity_id=entity_id,
                           process_id=process_id, session_id=session_id, entity_key=entity_key,
                           session_key=session_key, recall_limit=recall_limit, scope=scope,
                           inject=inject, capture=capture)
