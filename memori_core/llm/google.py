"""Google Gemini (``google.genai.Client``): ``models.generate_content`` and
``models.generate_content_stream``, on ``client.models`` and ``client.aio.models``.

The memori block goes into ``config.system_instruction`` (appended after a blank line to a
string, as one more part to a ``Content`` or list); the caller's config, dict or
``GenerateContentConfig``, is copied, never changed. Replayed history goes before
``contents``. Captured: the contents after the request's last ``model`` content (text parts
as a user message, each ``function_response`` as a tool message) and the first candidate (text
parts, ``function_call`` parts as tool calls; thought parts are not captured). With automatic
function calling, the SDK's own calls and results (``automatic_function_calling_history``)
are captured too. ``client.chats`` sessions call ``generate_content`` on ``client.models``, so
they are covered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from memori_core.llm._engine import Target
from memori_core.llm._messages import field, text_of, tool_call

__all__ = ["GenerateContent", "targets"]


def _get(obj: Any, snake: str) -> Any:
    """A field of a genai object or dict, by snake_case or camelCase name."""
    value = field(obj, snake)
    if value is None and isinstance(obj, Mapping):
        head, *rest = snake.split("_")
        value = obj.get(head + "".join(w.title() for w in rest))
    return value


def _is_content(item: Any) -> bool:
    return _get(item, "parts") is not None or (isinstance(item, Mapping) and "role" in item)


def _items(contents: Any) -> list[Any]:
    """``contents`` as a list, items untouched."""
    if contents is None:
        return []
    if isinstance(contents, str) or not isinstance(contents, (list, tuple)):
        return [contents]
    return list(contents)


def _as_contents(contents: Any) -> list[Any]:
    """``contents`` in any accepted form as a list of content items to read (the caller's
    objects kept): consecutive loose parts (strings, parts) become one content, a model one
    when a part is a function call, else a user one, as the SDK groups them."""
    out: list[Any] = []
    parts: list[Any] = []

    def flush() -> None:
        if parts:
            role = "model" if _calls(parts) else "user"
            out.append({"role": role, "parts": list(parts)})
            parts.clear()

    for item in _items(contents):
        if _is_content(item):
            flush()
            out.append(item)
        else:
            parts.append({"text": item} if isinstance(item, str) else item)
    flush()
    return out


def _role(content: Any) -> str:
    return str(_get(content, "role") or "user")


def _parts(content: Any) -> list[Any]:
    return list(_get(content, "parts") or [])


def _text(parts: list[Any]) -> str:
    texts = [p if isinstance(p, str) else _get(p, "text") for p in parts
             if isinstance(p, str) or not _get(p, "thought")]
    return text_of("".join(t for t in texts if isinstance(t, str)))


def _calls(parts: list[Any]) -> list[dict[str, Any]]:
    out = []
    for part in parts:
        fc = None if isinstance(part, str) else _get(part, "function_call")
        if fc is not None:
            name = _get(fc, "name") or ""
            out.append(tool_call(_get(fc, "id") or name, name, _get(fc, "args") or {}))
    return out


def _canonical(contents: list[Any]) -> list[dict[str, Any]]:
    """Content items as canonical messages."""
    out: list[dict[str, Any]] = []
    for content in contents:
        parts = _parts(content)
        if _role(content) == "model":
            text, calls = _text(parts), _calls(parts)
            if text or calls:
                out.append({"role": "assistant", "content": text,
                            **({"tool_calls": calls} if calls else {})})
            continue
        for part in parts:
            fr = None if isinstance(part, str) else _get(part, "function_response")
            if fr is not None:
                name = _get(fr, "name") or ""
                out.append({"role": "tool", "tool_call_id": _get(fr, "id") or name, "name": name,
                            "content": json.dumps(_get(fr, "response") or {}, ensure_ascii=False,
                                                  default=str)})
        text = _text(parts)
        if text:
            out.append({"role": "user", "content": text})
    return out


class GenerateContent:
    """Adapter of ``generate_content`` (``stream=False``) and ``generate_content_stream``."""

    provider = "google"
    iterable_args: tuple[str, ...] = ("contents",)

    def __init__(self, api: str, *, stream: bool) -> None:
        self.api = api
        self._stream = stream

    def is_stream(self, kwargs: dict[str, Any]) -> bool:
        return self._stream

    def model(self, kwargs: dict[str, Any]) -> str | None:
        model = kwargs.get("model")
        return model if isinstance(model, str) else None

    def query(self, kwargs: dict[str, Any]) -> str | None:
        for content in reversed(_as_contents(kwargs.get("contents"))):
            if _role(content) == "user":
                text = _text(_parts(content))
                if text.strip():
                    return text
        return None

    def carries_history(self, kwargs: dict[str, Any]) -> bool:
        return any(_role(c) == "model" for c in _as_contents(kwargs.get("contents")))

    def visible(self, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        return _canonical(_as_contents(kwargs.get("contents")))

    def new_messages(self, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        contents = _as_contents(kwargs.get("contents"))
        start = 0
        for i, content in enumerate(contents):
            if _role(content) == "model":
                start = i + 1
        return _canonical(contents[start:])

    def inject(self, kwargs: dict[str, Any], block: str | None,
               history: list[dict[str, Any]]) -> dict[str, Any]:
        out = dict(kwargs)
        if block is not None:
            out["config"] = _with_instruction(kwargs.get("config"), block)
        if history:
            # complete contents first; the caller's items follow as given, grouped by the SDK
            out["contents"] = [*_to_contents(history), *_items(kwargs.get("contents"))]
        return out

    def response_messages(self, response: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        afc = list(_get(response, "automatic_function_calling_history") or [])
        # automatic function calling: the history ends with the SDK's own (call, result)
        # pairs; the answer after them is the candidate below
        start = len(afc)
        while start >= 2 and _role(afc[start - 1]) == "user" and _role(afc[start - 2]) == \
                "model" and _calls(_parts(afc[start - 2])) and any(
                    _get(p, "function_response") is not None for p in _parts(afc[start - 1])
                    if not isinstance(p, str)):
            start -= 2
        out += _canonical(afc[start:])
        candidates = _get(response, "candidates") or []
        if candidates:
            parts = _parts(_get(candidates[0], "content") or {})
            text, calls = _text(parts), _calls(parts)
            if text or calls:
                out.append({"role": "assistant", "content": text,
                            **({"tool_calls": calls} if calls else {})})
        return out

    def accumulator(self) -> _ChunkAccumulator:
        return _ChunkAccumulator()


def _with_instruction(config: Any, block: str) -> Any:
    """A copy of ``config`` whose ``system_instruction`` ends with ``block``."""
    if config is None:
        return {"system_instruction": block}
    if isinstance(config, Mapping):
        key = "systemInstruction" if "systemInstruction" in config else "system_instruction"
        return {**config, key: _append(config.get(key), block)}
    return config.model_copy(update={"system_instruction": _append(
        config.system_instruction, block)})


def _append(instruction: Any, block: str) -> Any:
    if instruction is None or instruction == "":
        return block
    if isinstance(instruction, str):
        return f"{instruction}\n\n{block}"
    if isinstance(instruction, (list, tuple)):
        return [*instruction, block]
    if isinstance(instruction, Mapping) and "parts" in instruction:
        return {**instruction, "parts": [*(instruction["parts"] or []), {"text": block}]}
    if hasattr(instruction, "parts") and hasattr(instruction, "model_copy"):
        from google.genai import types

        return instruction.model_copy(update={"parts": [*(instruction.parts or []),
                                                         types.Part(text=block)]})
    return [instruction, block]  # a single Part


def _to_contents(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Canonical messages as Gemini contents (dicts), consecutive roles merged."""
    names = {c.get("id"): (c.get("function") or {}).get("name")
             for m in history for c in m.get("tool_calls") or ()}
    out: list[dict[str, Any]] = []
    for message in history:
        role = message["role"]
        parts: list[dict[str, Any]] = []
        if role == "tool":
            try:
                response = json.loads(text_of(message.get("content")))
            except ValueError:
                response = None
            if not isinstance(response, dict):
                response = {"result": text_of(message.get("content"))}
            name = message.get("name") or names.get(message.get("tool_call_id")) or ""
            parts.append({"function_response": {"name": name, "response": response}})
        else:
            text = text_of(message.get("content"))
            if text:
                parts.append({"text": text})
            for call in message.get("tool_calls") or ():
                fn = call.get("function") or {}
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except ValueError:
                    args = {}
                parts.append({"function_call": {"name": fn.get("name", ""), "args": args}})
        gemini_role = "model" if role == "assistant" else "user"
        if out and out[-1]["role"] == gemini_role:
            out[-1]["parts"].extend(parts)
        elif parts:
            out.append({"role": gemini_role, "parts": parts})
    return out


class _ChunkAccumulator:
    """Assembles streamed ``GenerateContentResponse`` chunks: text parts of candidate 0
    joined, ``function_call`` parts collected."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: list[dict[str, Any]] = []

    def add(self, chunk: Any) -> None:
        candidates = _get(chunk, "candidates") or []
        if not candidates:
            return
        parts = _parts(_get(candidates[0], "content") or {})
        self.text.append(_text(parts))
        self.calls += _calls(parts)

    def messages(self) -> list[dict[str, Any]]:
        text = "".join(self.text)
        if not text and not self.calls:
            return []
        return [{"role": "assistant", "content": text,
                 **({"tool_calls": self.calls} if self.calls else {})}]


def targets(client: Any) -> list[Target] | None:
    """The methods to wrap on a ``google.genai.Client`` (its ``models`` and ``aio.models``) or
    on its async face ``client.aio``; None for any other object."""
    from google.genai import client as genai_client

    if isinstance(client, genai_client.Client):
        owners = [(client.models, False), (client.aio.models, True)]
    elif isinstance(client, genai_client.AsyncClient):
        owners = [(client.models, True)]
    else:
        return None
    out = []
    for owner, is_async in owners:
        out.append(Target(owner, "generate_content",
                          GenerateContent("models.generate_content", stream=False), is_async))
        out.append(Target(owner, "generate_content_stream",
                          GenerateContent("models.generate_content_stream", stream=True),
                          is_async))
    return out
