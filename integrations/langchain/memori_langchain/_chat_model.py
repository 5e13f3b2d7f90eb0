"""``with_memori(model, memori)``: any LangChain chat model with memori recall and capture."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.utils import message_chunk_to_message
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, Field

from memori_core import ConfigurationError, Memori
from memori_langchain import _target
from memori_langchain._context import inject, memory_block
from memori_langchain._messages import last_human_text, new_input, to_memori

__all__ = ["MemoriChatModel", "with_memori"]

#: LangGraph's tag for runs whose tokens its "messages" stream mode skips: the wrapper's own run
#: streams the same tokens, so the inner model's run is tagged to avoid each token twice.
_NOSTREAM = "nostream"
#: private call argument carrying the run's ``configurable`` from invoke / stream to _generate /
#: _stream (popped there, never passed to the wrapped model)
_RUN = "memori_run_configurable"


class MemoriChatModel(BaseChatModel):
    """A chat model wrapper: recalled memories go into the system message, and each turn is
    captured. Made by ``with_memori(model, memori)``; see there for the arguments.

    Every way of calling a LangChain chat model goes through it: ``invoke``, ``ainvoke``,
    ``stream``, ``astream``, ``batch``, ``abatch``; ``bind_tools`` binds the tools on the
    wrapped model (so provider-specific tool formats are kept) and keeps memori in front, and
    ``with_structured_output`` works through that tool binding.

    Per call:

    1. the target (entity, process, session) is resolved: the explicit ids, else
       ``entity_key`` / ``session_key`` in the run's ``configurable`` (inside a chain or
       LangGraph node), else the ``Memori`` instance's current attribution;
    2. recall runs on the last human message and the hits are added to the leading system
       message (one is inserted when there is none), framed and escaped;
    3. the wrapped model runs on those messages; a stream passes through chunk by chunk;
    4. the turn is captured: the input messages after the last AI message (the new user
       message or tool results; system messages excluded) and the response. A stream is
       captured once it has been consumed to the end.

    Errors of memori are raised, never turned into "no memories": a recall failure raises
    before the model is called, a capture failure after it.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: BaseChatModel
    """The wrapped chat model."""
    memori: Memori = Field(exclude=True)
    """The ``Memori`` instance recall and capture go through."""
    bound: Runnable[LanguageModelInput, BaseMessage] | None = Field(default=None, exclude=True)
    """``model.bind_tools(...)`` when tools were bound through the wrapper, else None."""
    entity_id: str | None = None
    process_id: str | None = None
    session_id: str | None = None
    entity_key: str = "user_id"
    session_key: str = "session_id"
    recall_limit: int | None = None
    scope: _target.Scope = "process"
    inject: bool = True
    capture: bool = True

    def __init__(self, **data: Any) -> None:
        # checked here, not by pydantic validators, so errors stay ConfigurationError
        model = data.get("model")
        if not isinstance(model, BaseChatModel):
            raise ConfigurationError(
                "with_memori wraps a LangChain chat model (a BaseChatModel such as "
                f"ChatBedrockConverse or ChatOpenAI), got {type(model).__name__}; to add tools, "
                "call .bind_tools(...) on the wrapper", argument="model")
        if isinstance(model, MemoriChatModel):
            raise ConfigurationError("this model already goes through memori; wrap the inner "
                                     "model once", argument="model")
        _target.check_memori(data.get("memori"), "with_memori")
        _target.check_scope(data.get("scope", "process"))
        _target.check_limit(data.get("recall_limit"), "recall_limit")
        for key in ("entity_key", "session_key"):
            if not isinstance(data.get(key, "x"), str) or not data.get(key, "x"):
                raise ConfigurationError(f"{key} must be a non-empty str", argument=key)
        super().__init__(**data)

    @property
    def _llm_type(self) -> str:
        return f"memori-{self.model._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model._identifying_params, "scope": self.scope,
                "inject": self.inject, "capture": self.capture}

    def _resolve_model_profile(self) -> ModelProfile | None:
        return self.model.profile  # the wrapped model's capabilities are the wrapper's

    # ---- the run's configurable reaches _generate / _stream as a private call argument ---------
    # BaseChatModel.invoke / stream drop the config before _generate / _stream, and inside
    # Runnable.batch no run config is in context, so the public methods pass it down.
    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        return super().invoke(input, config, stop=stop, **_with_run(config, kwargs))

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None,
                      *, stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        return await super().ainvoke(input, config, stop=stop, **_with_run(config, kwargs))

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        return super().stream(input, config, stop=stop, **_with_run(config, kwargs))

    def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                stop: list[str] | None = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        return super().astream(input, config, stop=stop, **_with_run(config, kwargs))

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any
                               ) -> dict[str, Any]:
        kwargs.pop(_RUN, None)  # not a model parameter: kept out of traces and cache keys
        return super()._get_invocation_params(stop=stop, **kwargs)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        kwargs.pop(_RUN, None)
        return self.model._get_ls_params(stop=stop, **kwargs)  # traced as the wrapped model

    # ---- one implementation: resolve + recall + inject before, capture after ------------------
    def _target_now(self, configurable: Mapping[str, Any] | None) -> _target.Target:
        return _target.resolve_target(
            self.memori, what="with_memori", entity_id=self.entity_id,
            process_id=self.process_id, session_id=self.session_id,
            entity_key=self.entity_key, session_key=self.session_key,
            sources=[("config['configurable']",
                      _target.configurable() if configurable is None else configurable)])

    def _before(self, messages: list[BaseMessage], kwargs: dict[str, Any]
                ) -> tuple[_target.Target, list[BaseMessage]]:
        """The target and the messages to send (with recalled memories); takes the private
        run argument out of ``kwargs``."""
        target = self._target_now(kwargs.pop(_RUN, None))
        query = last_human_text(messages) if self.inject else None
        if query is None:
            return target, list(messages)
        hits = _target.recall(self.memori, target, query, self.recall_limit, self.scope)
        return target, inject(messages, memory_block(hits))

    def _after(self, target: _target.Target, messages: Sequence[BaseMessage],
               response: BaseMessage) -> None:
        """Capture the turn: the new input messages and the response."""
        if self.capture:
            _target.capture(self.memori, target, to_memori([*new_input(messages), response]))

    def _inner(self) -> Runnable[LanguageModelInput, BaseMessage]:
        return self.bound if self.bound is not None else self.model

    @staticmethod
    def _config(run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None
                ) -> RunnableConfig:
        """Config of the wrapped model's call: its run nests under the wrapper's (as
        ``ParentRunManager.get_child`` would make it; LLM run managers have no such method).
        Without a run manager (``stream()`` does not pass one) it runs untraced: the wrapper's
        own run is the traced one."""
        if run_manager is None:
            return {"callbacks": []}
        child = CallbackManager(handlers=[], parent_run_id=run_manager.run_id)
        child.set_handlers(run_manager.inheritable_handlers)
        child.add_tags(run_manager.inheritable_tags)
        child.add_tags([_NOSTREAM], inherit=False)
        child.add_metadata(run_manager.inheritable_metadata)
        return {"callbacks": child}

    # ---- the two faces --------------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                  ) -> ChatResult:
        target, sent = self._before(messages, kwargs)
        response = self._inner().invoke(sent, self._config(run_manager), stop=stop, **kwargs)
        self._after(target, messages, response)
        return ChatResult(generations=[ChatGeneration(message=response)])

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        target, sent = await _target.arun(self._before, messages, kwargs)
        response = await self._inner().ainvoke(sent, self._config(run_manager), stop=stop,
                                               **kwargs)
        await _target.arun(self._after, target, messages, response)
        return ChatResult(generations=[ChatGeneration(message=response)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any
                ) -> Iterator[ChatGenerationChunk]:
        target, sent = self._before(messages, kwargs)
        full: AIMessageChunk | None = None
        for chunk in self._inner().stream(sent, self._config(run_manager), stop=stop,
                                          **kwargs):
            piece = _as_chunk(chunk)
            full = piece if full is None else full + piece
            yield ChatGenerationChunk(message=piece)
        if full is not None:
            self._after(target, messages, message_chunk_to_message(full))

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        target, sent = await _target.arun(self._before, messages, kwargs)
        full: AIMessageChunk | None = None
        async for chunk in self._inner().astream(sent, self._config(run_manager), stop=stop,
                                                 **kwargs):
            piece = _as_chunk(chunk)
            full = piece if full is None else full + piece
            yield ChatGenerationChunk(message=piece)
        if full is not None:
            await _target.arun(self._after, target, messages, message_chunk_to_message(full))

    # ---- tools --------------------------------------------------------------------------------
    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
                   *, tool_choice: str | None = None, **kwargs: Any
                   ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind ``tools`` on the wrapped model (its own ``bind_tools``, so its tool format and
        options apply) and return a wrapper around that: memori stays in front. Binding again
        replaces the tools, as with any LangChain model.

        Raises:
            NotImplementedError: the wrapped model does not support tool calling.
        """
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.model_copy(update={"bound": self.model.bind_tools(tools, **kwargs)})


def _with_run(config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` plus the ``configurable`` of this call's config (merged with the enclosing
    run's, as ``ensure_config`` does)."""
    return {**kwargs, _RUN: dict(ensure_config(config).get("configurable") or {})}


def _as_chunk(chunk: BaseMessage) -> AIMessageChunk:
    if isinstance(chunk, AIMessageChunk):  # what chat models stream
        return chunk
    return AIMessageChunk(content=chunk.content, id=chunk.id)


def with_memori(model: BaseChatModel, memori: Memori, *, entity_id: str | None = None,
                process_id: str | None = None, session_id: str | None = None,
                entity_key: str = "user_id", session_key: str = "session_id",
                recall_limit: int | None = None, scope: _target.Scope = "process",
                inject: bool = True, capture: bool = True) -> MemoriChatModel:
    """Give any LangChain chat model memori's memory: recalled memories in the system
    message, every turn captured. This is how Bedrock (``ChatBedrockConverse``,
    ``ChatBedrock``) and other LangChain-only providers get memori.

    Args:
        model: a ``BaseChatModel`` (``ChatBedrockConverse``, ``ChatBedrock``, ``ChatOpenAI``,
            ``ChatAnthropic``, ...); bind tools on the result, not before.
        memori: the ``Memori`` instance.
        entity_id: fixed entity for every call; default: ``configurable[entity_key]`` of the
            run, else memori's current attribution (``mem.attribution(...)``).
        process_id: fixed process; default: memori's current process.
        session_id: fixed session for captured turns; default: ``configurable[session_key]``,
            else memori's current session.
        entity_key: ``configurable`` key holding the entity id (default ``"user_id"``).
        session_key: ``configurable`` key holding the session id (default ``"session_id"``,
            the key ``RunnableWithMessageHistory`` uses).
        recall_limit: at most this many memories per call; default
            ``Config.recall_facts_limit`` of the ``Memori`` instance (5).
        scope: ``"process"`` (default: the current process's memories and those without one)
            or ``"entity"`` (all of the entity's).
        inject: recall and inject memories (default True).
        capture: capture each turn (default True; turn it off when something else stores
            the conversation, e.g. ``MemoriChatMessageHistory`` or ``MemoriMiddleware``).

    Returns:
        a ``MemoriChatModel``, usable wherever the model was.

    Raises:
        ConfigurationError: ``model`` is not a chat model (or already wrapped), ``memori`` is
            not a ``Memori``, or a bad ``scope`` / ``recall_limit`` / key. At call time: no
            entity anywhere (argument ``entity_id``).
    """
    return MemoriChatModel(model=model, memori=memori, entity_id=entity_id,
                           process_id=process_id, session_id=session_id, entity_key=entity_key,
                           session_key=session_key, recall_limit=recall_limit, scope=scope,
                           inject=inject, capture=capture)
