"""OpenAI (and OpenAI-compatible) clients: Chat Completions and the Responses API.

- ``chat.completions.create`` / ``parse``: the memori block is appended to the leading
  system (or developer) message, or sent as a new first system message; replayed history goes
  right after the leading system messages. Captured: the messages after the request's last
  assistant message (user messages and tool results; system prompts are not captured) and
  the first choice of the response (content or refusal, tool calls).
- ``responses.create``: the block is appended to ``instructions``; history is prepended to
  ``input`` (and skipped when ``previous_response_id`` or ``conversation`` carry the state).
  Captured: the input items after the last assistant / function-call item, and the output
  messages and function calls.

``chat.completions.stream`` and ``responses.stream`` call ``create`` on the same resource, so
they are covered. Clients made by ``with_options()`` / ``copy()`` are new instances and are not
registered; ``with_raw_response`` calls pass through without memory.
"""

from __future__ import annotations

from typing import Any

from memori_core.llm._engine import Target
from memori_core.llm._messages import (
    MessageListAdapter,
    clean_content,
    dump,
    field,
    text_of,
    tool_call,
)

__all__ = ["ChatCompletions", "Responses", "targets"]

_SYSTEM_ROLES = ("system", "developer")


def _given(value: Any) -> bool:
    """False for None, empty values and the SDK's ``omit`` / ``NOT_GIVEN`` sentinels (both
    falsy)."""
    return value is not None and bool(value)


def _name(message: Any) -> dict[str, str]:
    name = field(message, "name")
    return {"name": name} if isinstance(name, str) and name.strip() and len(name) <= 255 else {}


class ChatCompletions(MessageListAdapter):
    """Adapter of ``chat.completions.create`` and ``chat.completions.parse``."""

    provider = "openai"
    iterable_args: tuple[str, ...] = ("messages",)

    def new_messages(self, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for message in self._after_last_assistant(kwargs):
            role = field(message, "role")
            if role == "user":
                out.append({"role": "user", "content": clean_content(field(message, "content")),
                            **_name(message)})
            elif role == "tool":
                out.append({"role": "tool", "content": text_of(field(message, "content")),
                            "tool_call_id": str(field(message, "tool_call_id", ""))})
        return out

    def inject(self, kwargs: dict[str, Any], block: str | None,
               history: list[dict[str, Any]]) -> dict[str, Any]:
        messages = self._messages(kwargs)
        if block is not None:
            if messages and field(messages[0], "role") in _SYSTEM_ROLES:
                first = dict(dump(messages[0]))
                content = first.get("content")
                if isinstance(content, str) or content is None:
                    first["content"] = f"{content}\n\n{block}" if content else block
                else:
                    first["content"] = [*content, {"type": "text", "text": block}]
                messages[0] = first
            else:
                messages.insert(0, {"role": "system", "content": block})
        if history:
            lead = 0
            while lead < len(messages) and field(messages[lead], "role") in _SYSTEM_ROLES:
                lead += 1
            messages[lead:lead] = [_to_chat(m) for m in history]
        return {**kwargs, "messages": messages}

    def response_messages(self, response: Any) -> list[dict[str, Any]]:
        choices = field(response, "choices", [])
        if not choices:
            return []
        message = field(choices[0], "message")
        calls = [tool_call(field(c, "id", ""), field(field(c, "function"), "name", ""),
                           field(field(c, "function"), "arguments", "{}"))
                 for c in field(message, "tool_calls", []) if field(c, "function") is not None]
        return [_assistant(field(message, "content") or field(message, "refusal") or "", calls)]

    def accumulator(self) -> _ChatAccumulator:
        return _ChatAccumulator()


def _assistant(text: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": text_of(text)}
    if calls:
        out["tool_calls"] = calls
    return out


def _to_chat(message: dict[str, Any]) -> dict[str, Any]:
    """A canonical message as a Chat Completions message."""
    role = message["role"]
    out: dict[str, Any] = {"role": role, "content": message.get("content", "")}
    if role == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = message["tool_calls"]
        if not out["content"]:
            out["content"] = None
    if role == "tool":
        out["tool_call_id"] = message.get("tool_call_id", "")
    if role == "user" and message.get("name"):
        out["name"] = message["name"]
    return out


class _ChatAccumulator:
    """Assembles choice 0 of ``ChatCompletionChunk`` s: content, refusal and tool calls
    (their ``arguments`` fragments joined by index)."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}

    def add(self, chunk: Any) -> None:
        for choice in field(chunk, "choices", []):
            if field(choice, "index", 0) != 0:
                continue
            delta = field(choice, "delta")
            if delta is None:
                continue
            piece = field(delta, "content") or field(delta, "refusal")
            if piece:
                self.text.append(piece)
            for call in field(delta, "tool_calls", []):
                slot = self.calls.setdefault(field(call, "index", 0),
                                             {"id": "", "name": "", "arguments": ""})
                fn = field(call, "function")
                slot["id"] = field(call, "id") or slot["id"]
                if fn is not None:
                    slot["name"] = field(fn, "name") or slot["name"]
                    slot["arguments"] += field(fn, "arguments", "")

    def messages(self) -> list[dict[str, Any]]:
        calls = [tool_call(c["id"], c["name"], c["arguments"] or "{}")
                 for _, c in sorted(self.calls.items())]
        if not self.text and not calls:
            return []
        return [_assistant("".join(self.text), calls)]


# ---- Responses API ------------------------------------------------------------------------------
_ASSISTANT_ITEMS = ("function_call", "reasoning", "item_reference", "web_search_call",
                    "file_search_call", "computer_call", "code_interpreter_call",
                    "custom_tool_call", "mcp_call")


class Responses(MessageListAdapter):
    """Adapter of ``responses.create``."""

    provider = "openai"
    iterable_args: tuple[str, ...] = ("input",)

    def carries_history(self, kwargs: dict[str, Any]) -> bool:
        if _given(kwargs.get("previous_response_id")) or _given(kwargs.get("conversation")):
            return True
        return any(field(i, "role") == "assistant" or field(i, "type") in _ASSISTANT_ITEMS
                   for i in self._messages(kwargs))

    def new_messages(self, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        items = self._messages(kwargs)
        start = 0
        for i, item in enumerate(items):
            if field(item, "role") == "assistant" or field(item, "type") in _ASSISTANT_ITEMS:
                start = i + 1
        out: list[dict[str, Any]] = []
        for item in items[start:]:
            if field(item, "role") == "user":
                out.append({"role": "user", "content": clean_content(field(item, "content"))})
            elif field(item, "type") == "function_call_output":
                output = field(item, "output", "")
                out.append({"role": "tool", "tool_call_id": str(field(item, "call_id", "")),
                            "content": output if isinstance(output, str) else text_of(output)})
        return out

    def inject(self, kwargs: dict[str, Any], block: str | None,
               history: list[dict[str, Any]]) -> dict[str, Any]:
        out = dict(kwargs)
        if block is not None:
            instructions = kwargs.get("instructions")
            out["instructions"] = (f"{instructions}\n\n{block}"
                                   if isinstance(instructions, str) and instructions else block)
        if history:
            replay: list[Any] = []
            for message in history:
                replay.extend(_to_response_items(message))
            out["input"] = replay + self._messages(kwargs)
        return out

    def response_messages(self, response: Any) -> list[dict[str, Any]]:
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for item in field(response, "output", []):
            kind = field(item, "type")
            if kind == "message":
                for part in field(item, "content", []):
                    piece = field(part, "text") or field(part, "refusal")
                    if isinstance(piece, str):
                        texts.append(piece)
            elif kind == "function_call":
                calls.append(tool_call(field(item, "call_id", ""), field(item, "name", ""),
                                       field(item, "arguments", "{}")))
        if not texts and not calls:
            return []
        return [_assistant("".join(texts), calls)]

    def accumulator(self) -> _ResponsesAccumulator:
        return _ResponsesAccumulator(self)


def _to_response_items(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A canonical message as Responses API input items."""
    role = message["role"]
    text = text_of(message.get("content"))
    if role == "tool":
        return [{"type": "function_call_output", "call_id": message.get("tool_call_id", ""),
                 "output": text}]
    items: list[dict[str, Any]] = []
    if text or role == "user":
        items.append({"role": role, "content": text})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        items.append({"type": "function_call", "call_id": call.get("id", ""),
                      "name": fn.get("name", ""), "arguments": fn.get("arguments", "{}")})
    return items


class _ResponsesAccumulator:
    """Assembles a Responses API event stream: the final ``response`` of
    ``response.completed`` / ``incomplete`` / ``failed`` when it came, else the text deltas
    and finished function-call items seen so far."""

    def __init__(self, adapter: Responses) -> None:
        self.adapter = adapter
        self.final: Any = None
        self.text: list[str] = []
        self.calls: list[dict[str, Any]] = []

    def add(self, event: Any) -> None:
        kind = field(event, "type")
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.final = field(event, "response")
        elif kind == "response.output_text.delta":
            self.text.append(field(event, "delta", ""))
        elif kind == "response.output_item.done":
            item = field(event, "item")
            if field(item, "type") == "function_call":
                self.calls.append(tool_call(field(item, "call_id", ""), field(item, "name", ""),
                                            field(item, "arguments", "{}")))

    def messages(self) -> list[dict[str, Any]]:
        if self.final is not None:
            return self.adapter.response_messages(self.final)
        if not self.text and not self.calls:
            return []
        return [_assistant("".join(self.text), self.calls)]


def targets(client: Any) -> list[Target] | None:
    """The methods to wrap on an ``openai.OpenAI`` / ``AsyncOpenAI`` (or subclass: Azure,
    Bedrock) client; None for any other object."""
    import openai

    if isinstance(client, openai.AsyncOpenAI):
        is_async = True
    elif isinstance(client, openai.OpenAI):
        is_async = False
    else:
        return None
    completions = client.chat.completions
    found = [Target(completions, "create", ChatCompletions("chat.completions.create"), is_async)]
    if hasattr(completions, "parse"):  # out of beta since openai 1.92
        found.append(Target(completions, "parse", ChatCompletions("chat.completions.parse"),
                            is_async))
    responses = getattr(client, "responses", None)  # openai >= 1.66
    if responses is not None:
        found.append(Target(responses, "create", Responses("responses.create"), is_async))
    return found
