"""``MemoriCapability``: the context block in the instructions, memory tools, capture of every run."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import ModelRetry
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, UserPromptPart
from pydantic_ai.models import Model, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.tools import AgentDepsT, SystemPromptFunc
from pydantic_ai.toolsets import AbstractToolset, FunctionToolset

from memori_core import ConfigurationError, Memori
from memori_core import integration as kit
from memori_pydantic_ai._convert import to_memori_messages
from memori_pydantic_ai._deps import Target, resolve_target

__all__ = ["CAPTURED", "MAX_TOOL_LIMIT", "MIN_FACT_CHARS", "MemoriCapability"]

MAX_TOOL_LIMIT = 20  # the most memories one recall_memories call may ask for
MIN_FACT_CHARS = 8  # the fewest non-blank characters of a fact remember stores
#: set in ``ModelRequest.metadata`` of a run's first request once the capability captured the
#: run: ``MemoriConversationStore`` refuses to store it a second time
CAPTURED = "memori_captured"
_FIX = ("pass MemoriCapability(mem) and call mem.attribution(entity_id=\"user_123\") before the "
        "run, or run it with deps=MemoriDeps(memori=mem, entity_id=\"user_123\")")


def _messages(messages: Sequence[ModelMessage]) -> list[dict[str, Any]]:
    return [m for message in messages for m in to_memori_messages(message)]


class _Watch(WrapperModel):
    """The run's model; what a stream had produced when it ended is kept for the turn."""

    def __init__(self, wrapped: Model, run: MemoriCapability[Any]) -> None:
        super().__init__(wrapped)
        self._run = run

    @asynccontextmanager
    async def request_stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[StreamedResponse]:
        async with super().request_stream(*args, **kwargs) as stream:
            try:
                yield stream
            finally:
                self._run._partial = stream.get()


@dataclass(init=False)
class MemoriCapability(AbstractCapability[AgentDepsT]):
    """memori for a Pydantic AI agent: ``Agent(model, capabilities=[MemoriCapability(mem)])``.

    Per run: memori's context block (``prompt_context``: relevant memories, framed, dated,
    escaped, within the token budget, minus what ``message_history`` shows) in the instructions
    (``inject``); the tools ``recall_memories`` (answering with the same block) and ``remember``
    (``tools``); capture of the run's new messages in every outcome (``capture``): complete, a
    stream the caller stopped (partial answer kept), a model or tool error, marked
    ``{"outcome": "stopped" | "error"}``. Once the run started, memory never fails it.
    Whose memory: the run's ``MemoriDeps``, else ``memori`` under the calling task's
    attribution. ``recall_limit`` and ``scope`` are ``Memori.recall``'s. With
    ``MemoriConversationStore``, which captures what it saves, use ``capture=False``.

    Raises:
        ConfigurationError: a bad argument; when a run starts, before the model is called, if
            it has no ``Memori`` or no entity.
    """

    memori: Memori | None
    tools: bool
    inject: bool
    capture: bool
    recall_limit: int | None
    scope: Literal["process", "entity"]
    _toolset: FunctionToolset[AgentDepsT] = field(init=False, repr=False, compare=False)
    _block: tuple[str | None, str] | None = field(init=False, repr=False, compare=False)
    _sent: list[ModelMessage] = field(init=False, repr=False, compare=False)
    _partial: ModelResponse | None = field(init=False, repr=False, compare=False)

    def __init__(self, memori: Memori | None = None, *, tools: bool = True, inject: bool = True,
                 capture: bool = True, recall_limit: int | None = None,
                 scope: Literal["process", "entity"] = "process", id: str | None = "memori",
                 ) -> None:
        self.memori = None if memori is None else kit.check_memori(memori)
        for name, value in (("tools", tools), ("inject", inject), ("capture", capture)):
            if not isinstance(value, bool):
                raise ConfigurationError(f"{name} must be a bool, got {value!r}", argument=name)
        self.tools, self.inject, self.capture = tools, inject, capture
        self.recall_limit = kit.check_limit(recall_limit, "recall_limit")
        self.scope = kit.check_scope(scope)
        self.id = id
        self.description = "Long-term memory of the user (memori)"
        self._block, self._sent, self._partial = None, [], None
        self._toolset = self._build_toolset()

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None  # holds a live Memori: not spec-serializable

    def _target(self, ctx: RunContext[Any]) -> Target:
        return resolve_target(self.memori, ctx.deps, _FIX)

    async def for_run(self, ctx: RunContext[AgentDepsT]) -> MemoriCapability[AgentDepsT]:
        run = copy.copy(self)
        run._block, run._sent, run._partial = None, [], None
        return run

    async def wrap_run(self, ctx: RunContext[AgentDepsT], *, handler: Any) -> Any:
        target = self._target(ctx)
        if not self.capture:
            return await handler()
        asked = [] if ctx.prompt is None else [ModelRequest([UserPromptPart(ctx.prompt)])]
        turn = target.call(lambda mem: kit.Turn(mem, _messages(asked), framework="pydantic_ai"))
        try:
            result = await handler()
        except BaseException as exc:
            new = [m for m in self._sent if m.run_id == ctx.run_id]
            if self._partial is not None:
                new.append(replace(self._partial, run_id=ctx.run_id,
                                   conversation_id=ctx.conversation_id))
            self._fill(turn, new)
            stopped = isinstance(exc, (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt))
            turn.finish("stopped" if stopped else "error", exc)  # now: the task may be gone
            raise
        self._fill(turn, new := result.new_messages())
        await asyncio.to_thread(turn.finish)
        first = next((m for m in new if isinstance(m, ModelRequest)), None)
        if first is not None:
            first.metadata = {**(first.metadata or {}), CAPTURED: ctx.run_id}
        return result

    @staticmethod
    def _fill(turn: kit.Turn, messages: list[ModelMessage]) -> None:
        # the first request is the turn's (else the prompt alone is kept), the rest its reply
        turn.messages = _messages(messages[:1]) or turn.messages
        turn.reply(_messages(messages[1:]))

    async def before_model_request(self, ctx: RunContext[AgentDepsT], request_context: Any
                                   ) -> Any:
        self._sent, self._partial = list(request_context.messages), None
        return request_context

    def get_wrapper_model(self, model: Model) -> Model | None:
        return _Watch(model, self) if self.capture else None

    def get_instructions(self) -> SystemPromptFunc[AgentDepsT] | None:
        return self._instructions if self.inject else None

    async def _instructions(self, ctx: RunContext[AgentDepsT]) -> str:
        # once per run, with the history the model is given (memories it shows are left out)
        if self._block is None or self._block[0] != ctx.run_id:
            history = _messages(ctx.messages)
            query = kit.query_of(history)  # the run's prompt, else the last one it was given
            limit, scope = self.recall_limit, self.scope
            found = await self._target(ctx).run(
                lambda mem: kit.prompt_context(mem, query, history=history, limit=limit, scope=scope))
            self._block = (ctx.run_id, (found.block if found else None) or "")
        return self._block[1]

    def get_toolset(self) -> AbstractToolset[AgentDepsT] | None:
        return self._toolset if self.tools else None

    def _build_toolset(self) -> FunctionToolset[AgentDepsT]:
        toolset: FunctionToolset[AgentDepsT] = FunctionToolset(id=self.id or "memori")
        owner = self

        async def recall_memories(
                ctx: RunContext[Any],
                query: Annotated[str, Field(min_length=3, description=(
                    'what to look for, in plain words, e.g. "food allergies"'))],
                limit: Annotated[int, Field(ge=1, le=MAX_TOOL_LIMIT, description=(
                    "at most this many memories, best first"))] = 5) -> str:
            """Search the user's long-term memory: facts, preferences and earlier conversations."""
            try:
                text = kit.check_text(kit.clean(query)[0], "query", min_chars=3)
            except ConfigurationError as exc:
                raise ModelRetry(f"{exc}: say what to look for, e.g. 'food allergies'") from exc
            found = await owner._target(ctx).run(
                lambda mem: kit.prompt_context(mem, text, limit=limit, scope=owner.scope))
            return (found.block if found else None) or "No memories found."

        async def remember(ctx: RunContext[Any], fact: Annotated[str, Field(
                min_length=MIN_FACT_CHARS, description=(
                    'one self-contained sentence, e.g. "The user is allergic to peanuts"'))]
                           ) -> str:
            """Store a lasting fact about the user in long-term memory, so later conversations know it.

            Use it when the user shares something worth keeping (a preference, a detail about themselves) or asks you to remember something.
            """
            try:
                text = kit.check_text(kit.clean(fact)[0], "fact", min_chars=MIN_FACT_CHARS)
            except ConfigurationError as exc:
                raise ModelRetry(f"{exc}: pass the fact as one sentence") from exc
            if len(text.split()) < 2:  # what a schema cannot say: "aaaaaaaa" is no memory
                return "Not stored: a memory is a sentence of at least two words."
            memory_id = await owner._target(ctx).run(lambda mem: mem.remember(text))
            return f"Remembered (memory {memory_id})."

        toolset.add_function(recall_memories)
        toolset.add_function(remember)
        return toolset
