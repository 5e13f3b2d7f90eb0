"""What the adapters share: whose memory a call uses (``resolve``), LangChain messages <->
memori's message dicts, and one model call's recall and capture (``Call``).

A captured message keeps its own serialisation in ``metadata["langchain"]`` (as
``messages_from_dict`` reads it), so it reads back equal. Images, audio and files are named
(``named_part``), never copied into the database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, NamedTuple, TypeVar, cast

from langchain_core import messages as lc
from langchain_core.messages.tool import default_tool_parser
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config, run_in_executor

from memori_core import ConfigurationError, Memori
from memori_core.integration import Turn, attributed, prompt_context, query_of, tool_call
from memori_core.integration import named_parts as _named_parts

__all__ = ["Call", "Target", "configurable", "from_memori", "resolve", "to_memori", "with_block"]

_ROLES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant",
          "system": "system", "developer": "system", "tool": "tool", "function": "tool"}
_TYPES = ((lc.HumanMessage, "human"), (lc.AIMessage, "ai"), (lc.SystemMessage, "system"),
          (lc.ToolMessage, "tool"))
R = TypeVar("R")


class Target(NamedTuple):
    """Whose memory one call uses (``attributed(memori, *target)``); ``session_id`` None:
    memori's current session."""

    entity_id: str
    process_id: str | None = None
    session_id: str | None = None


def configurable(config: RunnableConfig | None = None) -> Mapping[str, Any]:
    """The ``configurable`` of ``config`` merged into the run this code executes in."""
    return ensure_config(config).get("configurable") or {}


def _lookup(key: str | None, sources: Sequence[tuple[str, object]]) -> str | None:
    for where, source in sources if key else ():
        value = source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(f"{where}[{key!r}] must be a non-empty str, got "
                                         f"{value!r}", argument=key)
            return value
    return None


def resolve(memori: Memori, what: str, *, entity_id: str | None, process_id: str | None,
            session_id: str | None = None, entity_key: str | None = None,
            session_key: str | None = None, sources: Sequence[tuple[str, object]] = ()
            ) -> Target:
    """Each id from: the explicit argument; ``sources`` (the run's context, its
    ``configurable``) under ``entity_key`` / ``session_key``; memori's current attribution.

    Raises:
        ConfigurationError: no entity anywhere (argument ``entity_id``), or a source holds a
            non-string id (argument = the key).
    """
    entity = entity_id if entity_id is not None else (
        _lookup(entity_key, sources) or memori.entity_id)
    if entity is None:
        keys = f" or {entity_key!r} in the run's configurable / context" if entity_key else ""
        raise ConfigurationError(
            f"{what} does not know whose memory to use: pass entity_id=\"...\"{keys}, or call "
            "mem.attribution(entity_id=\"...\") first", argument="entity_id")
    session = session_id if session_id is not None else _lookup(session_key, sources)
    return Target(entity, memori.process_id if process_id is None else process_id, session)


def _kind(message: lc.BaseMessage) -> str:
    if isinstance(message, lc.ChatMessage):
        return message.role
    return next((name for cls, name in _TYPES if isinstance(message, cls)), message.type)


def to_memori(messages: Sequence[lc.BaseMessage]) -> list[dict[str, Any]]:
    """Messages as ``Memori.capture`` takes them: ``role``, ``content`` (binary parts named),
    OpenAI-style ``tool_calls`` / ``tool_call_id``, ``name``, and the serialisation.

    Raises:
        ConfigurationError: (argument ``messages``) something not a storable message (a
            ``RemoveMessage``, an unknown role), or content that is not JSON.
    """
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, lc.BaseMessage) or isinstance(m, lc.RemoveMessage):
            raise ConfigurationError(
                f"messages[{i}] must be a LangChain message to store (not a RemoveMessage, a "
                f"LangGraph reducer instruction), got {type(m).__name__}", argument="messages")
        if (kind := _kind(m)) not in _ROLES:
            raise ConfigurationError(f"messages[{i}] has role {kind!r}, which memori cannot "
                                     f"store; use one of {', '.join(sorted(_ROLES))}",
                                     argument="messages")
        try:
            data = m.model_dump(mode="json")
        except ValueError as exc:  # pydantic's PydanticSerializationError
            raise ConfigurationError(f"messages[{i}] holds a value that is not JSON: {exc}",
                                     argument="messages") from exc
        data["content"] = _named_parts(data["content"])
        row: dict[str, Any] = {"role": _ROLES[kind], "content": data["content"],
                               "metadata": {"langchain": {"type": m.type, "data": data}}}
        if isinstance(m.name, str) and m.name.strip() and len(m.name) <= 255:
            row["name"] = m.name
        if isinstance(m, lc.AIMessage) and m.tool_calls:
            row["tool_calls"] = [tool_call(c.get("id") or "", c["name"], c["args"])
                                 for c in m.tool_calls]
        if isinstance(m, lc.ToolMessage):
            row["tool_call_id"] = m.tool_call_id
        out.append(row)
    return out


def _rebuild(row: Mapping[str, Any]) -> lc.BaseMessage:
    role, content, name = row["role"], row["content"], row.get("name")
    if role == "user":
        return lc.HumanMessage(content=content, name=name)
    if role == "system":
        return lc.SystemMessage(content=content, name=name)
    if role == "tool":
        return lc.ToolMessage(content=content, name=name,
                              tool_call_id=row.get("tool_call_id") or "")
    calls, invalid = default_tool_parser(list(row.get("tool_calls") or []))
    return lc.AIMessage(content=content, name=name, tool_calls=calls, invalid_tool_calls=invalid)


def from_memori(rows: Sequence[Mapping[str, Any]]) -> list[lc.BaseMessage]:
    """Rows of ``Memori.session_messages`` as LangChain messages: equal to the stored ones
    when captured here, else rebuilt by role."""
    out: list[lc.BaseMessage] = []
    for row in rows:
        kept = (row.get("metadata") or {}).get("langchain")
        if isinstance(kept, Mapping) and "type" in kept and "data" in kept:
            out.extend(lc.messages_from_dict([dict(kept)]))
        else:
            out.append(_rebuild(row))
    return out


def with_block(messages: Sequence[lc.BaseMessage], block: str | None) -> list[lc.BaseMessage]:
    """``messages`` with ``block`` appended to the leading system message (a new text part for
    part lists; a system message is inserted when there is none). Inputs are not modified."""
    rest = list(messages)
    if not block:
        return rest
    if not rest or not isinstance(rest[0], lc.SystemMessage):
        return [lc.SystemMessage(content=block), *rest]
    content = rest[0].content
    new: str | list[str | dict[Any, Any]] = (
        (f"{content}\n\n{block}" if content else block) if isinstance(content, str)
        else [*content, {"type": "text", "text": block}])
    return [rest[0].model_copy(update={"content": new}), *rest[1:]]


class Call:
    """One model call's memori work, as ``with`` or ``async with`` (in LangChain's executor).

    Entering recalls for the latest user text (``block``, or None; memories the messages
    hold are left out) and starts the turn with the messages after the last AI message
    (system ones left out). Leaving captures it with the reply ``done`` or ``add`` saw, as
    complete, stopped (closed stream, cancelled task) or error (the exception propagates).
    Memory failures are logged and counted, never raised.

    Args:
        owner: the ``with_memori`` model or the middleware (``memori``, ``inject``,
            ``capture``, ``recall_limit``, ``scope``).
        skip: gets the reply's id when the turn holds it (``MemoriChatMessageHistory.skip``).
    """

    def __init__(self, owner: Any, target: Target, messages: Sequence[lc.BaseMessage],
                 skip: Callable[[str], None] | None = None) -> None:
        self.owner, self.memori, self.target = owner, owner.memori, target
        self.messages, self.skip = messages, skip
        self.block: str | None = None
        self.turn: Turn | None = None
        self._replies: list[lc.BaseMessage] = []
        self._chunks: lc.AIMessageChunk | None = None

    @property
    def sent(self) -> list[lc.BaseMessage]:
        """The messages with the block in their system message."""
        return with_block(self.messages, self.block)

    def __enter__(self) -> Call:
        owner, messages = self.owner, self.messages
        shown = [{"role": _ROLES.get(_kind(m), "user"), "content": m.content} for m in messages]
        start = max((i + 1 for i, m in enumerate(messages) if isinstance(m, lc.AIMessage)),
                    default=0)
        with attributed(self.memori, *self.target):
            ctx = prompt_context(self.memori, query_of(shown), history=shown,
                                 limit=owner.recall_limit, scope=owner.scope
                                 ) if owner.inject else None
            try:
                self.turn = Turn(self.memori, to_memori(
                    [m for m in messages[start:] if not isinstance(m, lc.SystemMessage)]),
                    framework="langchain") if owner.capture else None
            except ConfigurationError:
                self.memori.llm.failure("capture_errors", "a LangChain turn cannot be captured")
        self.block = ctx.block if ctx else None
        return self

    async def __aenter__(self) -> Call:
        return await run_in_executor(None, self.__enter__)

    def done(self, result: R, replies: Sequence[lc.BaseMessage] | None = None) -> R:
        """``result``, the model's reply; ``replies``: its messages when it is not one."""
        self._replies = list(replies) if replies is not None else [cast(lc.BaseMessage, result)]
        return result

    def add(self, chunk: lc.AIMessageChunk) -> lc.AIMessageChunk:
        """``chunk``, the next piece of a streamed reply."""
        self._chunks = chunk if self._chunks is None else self._chunks + chunk
        return chunk

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.turn is None:
            return
        replies = self._replies if self._chunks is None else [
            lc.message_chunk_to_message(self._chunks)]
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
