"""LangChain messages <-> memori's message dicts, and memori's block in a system message.

A captured message keeps, in ``metadata["langchain"]``, its own serialisation (as
``messages_from_dict`` reads it), so reading it back gives an equal message. Images, audio and
files are named (``named_part``), never copied into the database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
    message_chunk_to_message,
    messages_from_dict,
)
from langchain_core.messages.tool import default_tool_parser
from langchain_core.runnables.config import run_in_executor

from memori_core import ConfigurationError, Memori
from memori_core.integration import Turn, named_part, prompt_context, query_of, tool_call
from memori_langchain._target import Target

__all__ = ["Call", "from_memori", "new_input", "to_memori", "visible", "with_block"]

_ROLES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant",
          "system": "system", "developer": "system", "tool": "tool", "function": "tool"}
#: content part types that carry binary data (LangChain's standard and OpenAI-style blocks)
_BINARY = {"image", "image_url", "audio", "input_audio", "file", "video"}
R = TypeVar("R")


def _kind(message: BaseMessage) -> str:
    if isinstance(message, ChatMessage):
        return message.role
    return next((name for cls, name in ((HumanMessage, "human"), (AIMessage, "ai"),
                                        (SystemMessage, "system"), (ToolMessage, "tool"))
                 if isinstance(message, cls)), message.type)  # chunks subclass their types


def _role(message: object, index: int) -> str:
    if not isinstance(message, BaseMessage) or isinstance(message, RemoveMessage):
        raise ConfigurationError(
            f"messages[{index}] must be a LangChain message to store (not a RemoveMessage, a "
            f"LangGraph reducer instruction), got {type(message).__name__}", argument="messages")
    kind = _kind(message)
    if kind not in _ROLES:
        raise ConfigurationError(f"messages[{index}] has role {kind!r}, which memori cannot "
                                 f"store; use one of {', '.join(sorted(_ROLES))}",
                                 argument="messages")
    return _ROLES[kind]


def _named(part: Any) -> Any:
    if not isinstance(part, Mapping) or part.get("type") not in _BINARY:
        return part
    url = part.get("url") or part.get("image_url") or ""
    url = url.get("url", "") if isinstance(url, Mapping) else str(url)
    name = part.get("filename") or part.get("name") or (url if url.startswith("http") else None)
    return named_part(str(part["type"]), name, part.get("mime_type"))


def to_memori(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """Messages as ``Memori.capture`` takes them: ``role``, ``content`` (binary parts named),
    OpenAI-style ``tool_calls`` / ``tool_call_id``, ``name``, and the serialisation.

    Raises:
        ConfigurationError: (argument ``messages``) something not a storable message, or
            content that is not JSON.
    """
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = _role(message, i)
        try:
            data = message.model_dump(mode="json")
        except ValueError as exc:  # pydantic's PydanticSerializationError
            raise ConfigurationError(f"messages[{i}] holds a value that is not JSON: {exc}",
                                     argument="messages") from exc
        if isinstance(data["content"], list):
            data["content"] = [_named(p) for p in data["content"]]
        row: dict[str, Any] = {"role": role, "content": data["content"],
                               "metadata": {"langchain": {"type": message.type, "data": data}}}
        if isinstance(message.name, str) and message.name.strip() and len(message.name) <= 255:
            row["name"] = message.name
        if isinstance(message, AIMessage) and message.tool_calls:
            row["tool_calls"] = [tool_call(c.get("id") or "", c["name"], c["args"])
                                 for c in message.tool_calls]
        if isinstance(message, ToolMessage):
            row["tool_call_id"] = message.tool_call_id
        out.append(row)
    return out


def _rebuild(row: Mapping[str, Any]) -> BaseMessage:
    role, content, name = row["role"], row["content"], row.get("name")
    if role == "user":
        return HumanMessage(content=content, name=name)
    if role == "system":
        return SystemMessage(content=content, name=name)
    if role == "tool":
        return ToolMessage(content=content, name=name, tool_call_id=row.get("tool_call_id") or "")
    calls, invalid = default_tool_parser(list(row.get("tool_calls") or []))
    return AIMessage(content=content, name=name, tool_calls=calls, invalid_tool_calls=invalid)


def from_memori(rows: Sequence[Mapping[str, Any]]) -> list[BaseMessage]:
    """Rows of ``Memori.session_messages`` as LangChain messages: equal to the stored ones
    when captured here, else rebuilt by role."""
    out: list[BaseMessage] = []
    for row in rows:
        stored = (row.get("metadata") or {}).get("langchain")
        if isinstance(stored, Mapping) and "type" in stored and "data" in stored:
            out.extend(messages_from_dict([dict(stored)]))
        else:
            out.append(_rebuild(row))
    return out


def visible(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """What the model is shown, as ``{"role", "content"}`` for ``prompt_context`` (recall
    query and history check); unknown roles count as user text."""
    return [{"role": _ROLES.get(_kind(m), "user"), "content": m.content} for m in messages]


def new_input(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """What a model call adds to the conversation: the messages after the last AI message
    (the user message, or tool results), without system messages."""
    start = next((i + 1 for i in range(len(messages) - 1, -1, -1)
                  if isinstance(messages[i], AIMessage)), 0)
    return [m for m in messages[start:] if not isinstance(m, SystemMessage)]


def with_block(messages: Sequence[BaseMessage], block: str | None) -> list[BaseMessage]:
    """``messages`` with ``block`` appended to the leading system message (a new text part for
    part lists; a system message is inserted when there is none). Inputs are not modified."""
    if not block:
        return list(messages)
    rest = list(messages)
    first = rest.pop(0) if rest and isinstance(rest[0], SystemMessage) else None
    if first is None:
        return [SystemMessage(content=block), *rest]
    content = first.content
    new: str | list[str | dict[Any, Any]] = (
        (f"{content}\n\n{block}" if content else block) if isinstance(content, str)
        else [*content, {"type": "text", "text": block}])
    return [first.model_copy(update={"content": new}), *rest]


class Call:
    """One model call's memori work: one implementation, two faces (``with`` and ``async
    with``, which runs the database work in LangChain's executor).

    Entering recalls under ``target`` for the messages' latest user text (``block``: the
    context pipeline's block, None with nothing to show; memories the messages hold are left
    out) and starts the turn with the new input (``new_input``); a turn that cannot be stored
    is logged and counted, and the call goes on. Leaving captures it with the reply ``done``
    or ``add`` saw (whole, or what a stream gave before it stopped): complete; stopped for a
    closed stream or a cancelled task; error for an exception, which propagates. Capturing
    never raises.

    Args:
        skip: gets the reply's id when the turn holds it (a ``MemoriChatMessageHistory`` in
            the same chain then stores it no more).
    """

    def __init__(self, memori: Memori, target: Target, messages: Sequence[BaseMessage], *,
                 inject: bool, capture: bool, limit: int | None, scope: Any,
                 skip: Callable[[str], None] | None = None) -> None:
        self.memori, self.target, self.messages, self.skip = memori, target, messages, skip
        self._options = (inject, capture, limit, scope)
        self.block: str | None = None
        self.turn: Turn | None = None
        self._replies: list[BaseMessage] = []
        self._chunks: AIMessageChunk | None = None

    @property
    def sent(self) -> list[BaseMessage]:
        """The messages with the block in their system message."""
        return with_block(self.messages, self.block)

    def __enter__(self) -> Call:
        inject, capture, limit, scope = self._options
        shown = visible(self.messages)
        with self.target.scope(self.memori):
            ctx = prompt_context(self.memori, query_of(shown), history=shown, limit=limit,
                                 scope=scope) if inject else None
            try:
                self.turn = Turn(self.memori, to_memori(new_input(self.messages)),
                                 framework="langchain") if capture else None
            except ConfigurationError:
                self.memori.llm.failure("capture_errors", "a LangChain turn cannot be captured")
        self.block = ctx.block if ctx else None
        return self

    async def __aenter__(self) -> Call:
        return await run_in_executor(None, self.__enter__)

    def done(self, result: R, replies: Sequence[BaseMessage] | None = None) -> R:
        """``result``, the model's reply; ``replies``: its messages when it is not one."""
        self._replies = list(replies) if replies is not None else [cast(BaseMessage, result)]
        return result

    def add(self, chunk: AIMessageChunk) -> AIMessageChunk:
        """``chunk``, the next piece of a streamed reply."""
        self._chunks = chunk if self._chunks is None else self._chunks + chunk
        return chunk

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.turn is None:
            return
        replies = self._replies if self._chunks is None else [
            message_chunk_to_message(self._chunks)]
        for reply in replies:
            if self.skip is not None and reply.id:
                self.skip(reply.id)
        try:
            self.turn.reply(to_memori(replies))
        except ConfigurationError:
            self.turn.add_text("\n".join(m.text for m in replies))
        self.turn.__exit__(kind, error, tb)  # the kit's outcome: complete, stopped or error

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        if error is None:
            await run_in_executor(None, self.__exit__, None, None, None)
        else:  # a cancelled task cannot wait for the executor
            self.__exit__(kind, error, tb)
