"""One implementation of a memory-aware provider call, with a sync and an async face.

A wrapped method builds a ``Call`` (the caller's attribution, taken at once), then:

1. ``Call.prepare``: recall on the last user message and, when configured, the session's
   history; the adapter puts them into a copy of the request (the caller's objects are never
   changed). Memory failures are logged and counted, and the request goes out unchanged.
2. the original SDK method runs with the prepared arguments; its errors are the caller's.
3. ``Call.finish``: the new request messages and the response go to ``capture`` (through the
   registry: a failed capture is spilled, never raised). Streams are wrapped in a proxy that
   yields every chunk unchanged and finishes once, when the stream ends, errors, is closed or
   is abandoned.

The sync face runs the memory steps inline; the async face runs the very same functions in a
worker thread (``asyncio.to_thread``), so the event loop never blocks on the database.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from memori_core.errors import ConfigurationError

if TYPE_CHECKING:
    from memori_core.llm.registry import LLMRegistry

__all__ = ["Accumulator", "Adapter", "Call", "Target", "wrap"]

_log = logging.getLogger("memori_core.llm")


class Accumulator(Protocol):
    """Assembles a streamed response from its chunks."""

    def add(self, chunk: Any) -> None:
        """Take one chunk, exactly as the SDK yielded it."""

    def messages(self) -> list[dict[str, Any]]:
        """The canonical assistant message(s) assembled so far (empty when nothing arrived)."""


class Adapter(Protocol):
    """What a provider API tells the engine. Every method takes the SDK method's keyword
    arguments as the caller passed them and never mutates them.

    Attributes:
        provider: ``openai``, ``anthropic`` or ``google``.
        api: the wrapped method, e.g. ``chat.completions.create``.
        iterable_args: arguments that may be one-shot iterators (``messages``): the call
            turns them into lists first, so reading them does not consume the request.
    """

    provider: str
    api: str
    iterable_args: tuple[str, ...]

    def is_stream(self, kwargs: dict[str, Any]) -> bool:
        """Whether the call returns a stream."""

    def query(self, kwargs: dict[str, Any]) -> str | None:
        """The text of the last user message (the recall query), or None."""

    def carries_history(self, kwargs: dict[str, Any]) -> bool:
        """Whether the request already holds earlier turns (then none is replayed)."""

    def visible(self, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        """Every message of the request as ``{"role", "content"}`` (text): what the model
        sees, so the context pipeline does not repeat it."""

    def new_messages(self, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        """The canonical messages to capture: those after the last assistant turn."""

    def inject(self, kwargs: dict[str, Any], block: str | None,
               history: list[dict[str, Any]]) -> dict[str, Any]:
        """New keyword arguments with ``block`` in the system slot and ``history`` (canonical
        messages) before the request's own messages."""

    def response_messages(self, response: Any) -> list[dict[str, Any]]:
        """The canonical assistant message(s) of a complete response."""

    def accumulator(self) -> Accumulator:
        """A fresh accumulator for one stream."""

    def model(self, kwargs: dict[str, Any]) -> str | None:
        """The model name asked for."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Call:
    """One provider call through a registered client.

    Args:
        registry: the ``mem.llm`` registry doing recall, history and capture.
        adapter: the provider API's adapter.
        kwargs: the caller's keyword arguments (not modified).
        recall: inject recalled memories (``register(..., recall=...)``).

    Raises:
        ConfigurationError: no attribution is set (``argument="entity_id"``): the call is not
            sent, since it could not be remembered for anyone.
    """

    def __init__(self, registry: LLMRegistry, adapter: Adapter, kwargs: dict[str, Any],
                 recall: bool) -> None:
        mem = registry.memori
        if mem.entity_id is None:
            raise ConfigurationError(
                f"{adapter.api} on a client registered with mem.llm.register() needs an "
                "attribution: call mem.attribution(entity_id=\"...\") first, or "
                "mem.llm.unregister(client) to call it without memory",
                argument="entity_id")
        for name in adapter.iterable_args:
            if isinstance(kwargs.get(name), Iterator):
                kwargs = {**kwargs, name: list(kwargs[name])}
        self.registry = registry
        self.adapter = adapter
        self.kwargs = kwargs
        self.recall = recall
        self.entity_id: str = mem.entity_id
        self.process_id = mem.process_id
        self.session_id = mem.session_id
        self.started = _utcnow()
        self.streaming = adapter.is_stream(kwargs)
        self.request: list[dict[str, Any]] = []
        self._finished = False

    def prepare(self) -> dict[str, Any]:
        """The keyword arguments to send. Never raises for a memory failure."""
        registry, adapter = self.registry, self.adapter
        registry.count("calls")
        try:
            self.request = adapter.new_messages(self.kwargs)
        except Exception:  # noqa: BLE001 - an unexpected request shape must not break the call
            registry.failure("capture_errors", f"cannot read the {adapter.api} request")
            self.request = []
        block = None
        if self.recall:
            query = None
            try:
                query = adapter.query(self.kwargs)
            except Exception:  # noqa: BLE001 - logged and counted; the call goes out as is
                registry.failure("recall_errors", f"cannot read the {adapter.api} request")
            if query:
                try:
                    visible = adapter.visible(self.kwargs)
                except Exception:  # noqa: BLE001 - logged and counted; nothing is filtered
                    registry.failure("recall_errors", f"cannot read the {adapter.api} request")
                    visible = []
                block = registry.recall_block(self, query, visible)
        history: list[dict[str, Any]] = []
        if registry.history_enabled():
            try:
                carries = adapter.carries_history(self.kwargs)
            except Exception:  # noqa: BLE001 - logged and counted; the call goes out as is
                registry.failure("history_errors", f"cannot read the {adapter.api} request")
                carries = True
            if not carries:
                history = registry.history(self)
        if block is None and not history:
            return self.kwargs
        try:
            sent = adapter.inject(self.kwargs, block, history)
        except Exception:  # noqa: BLE001 - logged and counted; the call goes out as is
            registry.failure("recall_errors", f"cannot add memories to the {adapter.api} request")
            return self.kwargs
        if block is not None:
            registry.count("injected")
        return sent

    def finish(self, response_messages: list[dict[str, Any]], status: str | None = None) -> None:
        """Capture the turn once (later calls are ignored). ``status`` is None for a plain
        response, else how the stream ended: ``complete``, ``stopped`` or ``error`` (a stream
        that failed before its first chunk is not captured, like a failed call). Never
        raises."""
        if self._finished:
            return
        self._finished = True
        if status == "error" and not response_messages:
            return  # failed before anything arrived: like a failed call, nothing to remember
        meta: dict[str, Any] = {"provider": self.adapter.provider, "api": self.adapter.api}
        try:
            model = self.adapter.model(self.kwargs)
        except Exception:  # noqa: BLE001 - metadata only
            model = None
        if model:
            meta["model"] = model
        if status is not None:
            meta["stream"] = status
        now = _utcnow()
        messages = [{**m, "created_at": self.started} for m in self.request]
        for m in response_messages:
            messages.append({**m, "created_at": now, "metadata": meta})
        if messages:
            self.registry.capture_turn(self, messages)

    def finish_response(self, response: Any) -> None:
        """Capture a complete (non-streamed) response. Never raises."""
        try:
            out = self.adapter.response_messages(response)
        except Exception:  # noqa: BLE001 - the user's response is returned regardless
            self.registry.failure("capture_errors",
                                  f"cannot read the {self.adapter.api} response")
            out = []
        self.finish(out)

    def finish_stream(self, accumulator: Accumulator, status: str) -> None:
        """Capture what a stream delivered. Never raises."""
        try:
            out = accumulator.messages()
        except Exception:  # noqa: BLE001 - the user's stream is unaffected
            self.registry.failure("capture_errors",
                                  f"cannot assemble the {self.adapter.api} stream")
            out = []
        self.finish(out, status)


class _StreamBase:
    """Shared state of the stream proxies: the wrapped stream, its accumulator, and the
    attributes of the SDK stream (``response``, ...) passed through."""

    def __init__(self, inner: Any, call: Call) -> None:
        self._inner = inner
        self._call = call
        self._acc = call.adapter.accumulator()
        self._status: str | None = None

    def __getattr__(self, name: str) -> Any:
        if name in ("_inner", "_call", "_acc", "_status"):  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)

    def _feed(self, chunk: Any) -> None:
        try:
            self._acc.add(chunk)
        except Exception:  # noqa: BLE001 - the chunk still reaches the caller
            self._call.registry.failure("capture_errors",
                                        f"cannot read a {self._call.adapter.api} chunk")

    def _end(self, status: str) -> bool:
        """Record how the stream ended; True the first time only."""
        if self._status is not None:
            return False
        self._status = status
        return True

    def __del__(self) -> None:
        # abandoned without being exhausted or closed: keep what arrived
        if getattr(self, "_status", "done") is None and self._end("stopped"):
            self._call.finish_stream(self._acc, "stopped")


class SyncStream(_StreamBase):
    """A sync SDK stream, chunk for chunk, captured once when it ends."""

    def __next__(self) -> Any:
        try:
            chunk = next(self._inner)
        except StopIteration:
            self._finish("complete")
            raise
        except BaseException:
            self._finish("error")
            raise
        self._feed(chunk)
        return chunk

    def __iter__(self) -> Any:
        # a generator, so a ``for`` loop left early closes it at once: GeneratorExit
        try:
            while True:
                try:
                    chunk = self.__next__()
                except StopIteration:
                    return
                yield chunk
        finally:
            self._finish("stopped")

    def _finish(self, status: str) -> None:
        if self._end(status):
            self._call.finish_stream(self._acc, status)

    def close(self) -> None:
        """Close the SDK stream and capture what arrived."""
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._finish("stopped")

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStream(_StreamBase):
    """An async SDK stream, chunk for chunk, captured once when it ends."""

    async def __anext__(self) -> Any:
        try:
            chunk = await self._inner.__anext__()
        except StopAsyncIteration:
            await self._finish("complete")
            raise
        except BaseException:
            await self._finish("error")
            raise
        self._feed(chunk)
        return chunk

    async def __aiter__(self) -> Any:
        # an async generator: one left early is closed by the event loop's finalizer
        try:
            while True:
                try:
                    chunk = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            await self._finish("stopped")

    async def _finish(self, status: str) -> None:
        if self._end(status):
            await asyncio.to_thread(self._call.finish_stream, self._acc, status)

    async def close(self) -> None:
        """Close the SDK stream and capture what arrived."""
        try:
            close = getattr(self._inner, "aclose", None) or getattr(self._inner, "close", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
        finally:
            await self._finish("stopped")

    async def aclose(self) -> None:
        """Same as ``close``."""
        await self.close()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SnapshotAdapter(Adapter, Protocol):
    """An adapter whose SDK has a stream helper that assembles the message itself
    (Anthropic's ``messages.stream``)."""

    def snapshot(self, stream: Any) -> tuple[list[dict[str, Any]], bool]:
        """(canonical messages assembled so far, whether the stream completed)."""


class SyncStreamManager:
    """Wraps an SDK stream-manager method (``with client.messages.stream(...) as s:``): the
    request is prepared on ``__enter__`` and the turn captured on ``__exit__`` from the SDK's
    own assembled snapshot."""

    def __init__(self, original: Callable[..., Any], args: tuple[Any, ...], call: Call) -> None:
        self._original = original
        self._args = args
        self._call = call
        self._manager: Any = None
        self._stream: Any = None

    def __enter__(self) -> Any:
        sent = self._call.prepare()
        self._manager = self._original(*self._args, **sent)
        self._stream = self._manager.__enter__()
        return self._stream

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self._manager.__exit__(exc_type, exc, tb)
        finally:
            _finish_snapshot(self._call, self._stream, exc is not None)


class AsyncStreamManager:
    """The async twin face of ``SyncStreamManager`` (``async with``)."""

    def __init__(self, original: Callable[..., Any], args: tuple[Any, ...], call: Call) -> None:
        self._original = original
        self._args = args
        self._call = call
        self._manager: Any = None
        self._stream: Any = None

    async def __aenter__(self) -> Any:
        sent = await asyncio.to_thread(self._call.prepare)
        self._manager = self._original(*self._args, **sent)
        self._stream = await self._manager.__aenter__()
        return self._stream

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self._manager.__aexit__(exc_type, exc, tb)
        finally:
            await asyncio.to_thread(_finish_snapshot, self._call, self._stream, exc is not None)


def _finish_snapshot(call: Call, stream: Any, errored: bool) -> None:
    adapter: SnapshotAdapter = call.adapter  # type: ignore[assignment]
    try:
        messages, complete = adapter.snapshot(stream)
    except Exception:  # noqa: BLE001 - the user's stream is unaffected
        call.registry.failure("capture_errors", f"cannot assemble the {adapter.api} stream")
        messages, complete = [], False
    call.finish(messages, "error" if errored else "complete" if complete else "stopped")


@dataclass(frozen=True)
class Target:
    """One SDK method to wrap.

    Attributes:
        owner: the SDK resource object holding the method (e.g. ``client.chat.completions``).
        attr: the method's name on it.
        adapter: the provider API's adapter.
        is_async: the method is async (or returns an async stream manager).
        shape: ``"call"`` (returns a response, or a stream when the adapter says so) or
            ``"manager"`` (returns a context manager yielding a stream).
    """

    owner: Any
    attr: str
    adapter: Adapter
    is_async: bool
    shape: str = "call"


#: header the OpenAI and Anthropic SDKs set for ``with_raw_response`` / streaming-response
#: calls, which return the raw HTTP response instead of a parsed one: passed through untouched
RAW_RESPONSE_HEADER = "x-stainless-raw-response"


def _raw(kwargs: Mapping[str, Any]) -> bool:
    headers = kwargs.get("extra_headers")
    return isinstance(headers, Mapping) and any(
        str(k).lower() == RAW_RESPONSE_HEADER for k in headers)


def wrap(registry: LLMRegistry, adapter: Adapter, original: Callable[..., Any], *,
         is_async: bool, shape: str, recall: bool) -> Callable[..., Any]:
    """The memory-aware replacement of one SDK method.

    Args:
        registry: ``mem.llm``.
        adapter: the provider API's adapter.
        original: the SDK's bound method (kept by the registry to restore it).
        is_async: the method is a coroutine function (or returns an async stream manager).
        shape: ``"call"`` (returns a response, or a stream when the adapter says so) or
            ``"manager"`` (returns a context manager yielding a stream).
        recall: inject recalled memories.

    Returns:
        a function with the original's name and docstring; ``wrapper.__memori_registry__`` is
        ``registry`` and ``wrapper.__wrapped__`` the original.
    """
    if shape == "manager":
        manager_cls = AsyncStreamManager if is_async else SyncStreamManager

        def manager(*args: Any, **kwargs: Any) -> Any:
            if _raw(kwargs):
                return original(*args, **kwargs)
            return manager_cls(original, args, Call(registry, adapter, kwargs, recall))

        wrapper: Callable[..., Any] = manager
    elif is_async:

        async def acall(*args: Any, **kwargs: Any) -> Any:
            if _raw(kwargs):
                return await original(*args, **kwargs)
            call = Call(registry, adapter, kwargs, recall)
            sent = await asyncio.to_thread(call.prepare)
            result = await original(*args, **sent)
            if call.streaming:
                return AsyncStream(result, call)
            await asyncio.to_thread(call.finish_response, result)
            return result

        wrapper = acall
    else:

        def call_(*args: Any, **kwargs: Any) -> Any:
            if _raw(kwargs):
                return original(*args, **kwargs)
            call = Call(registry, adapter, kwargs, recall)
            sent = call.prepare()
            result = original(*args, **sent)
            if call.streaming:
                return SyncStream(result, call)
            call.finish_response(result)
            return result

        wrapper = call_
    wrapper = functools.wraps(original)(wrapper)
    wrapper.__memori_registry__ = registry  # type: ignore[attr-defined]
    return wrapper
