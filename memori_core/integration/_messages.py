"""A framework's messages in the form ``Memori.capture`` stores (OpenAI chat style)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from memori_core.llm._messages import text_of, tool_call

__all__ = ["BINARY_PARTS", "clean", "named_part", "named_parts", "query_of", "text_of",
           "tool_call"]

#: what replaces a character no database text column can hold (NUL, a lone surrogate)
REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: content part types that carry binary data (OpenAI-style parts, LangChain's standard blocks)
BINARY_PARTS = frozenset({"image", "image_url", "audio", "input_audio", "file", "video"})


def clean(value: Any) -> tuple[Any, bool]:
    """``value`` with every NUL byte and lone surrogate (in strings, and in the keys and
    values of nested dicts and lists) replaced by U+FFFD, so that a turn can always be stored.

    Returns:
        (the cleaned copy, or ``value`` itself when nothing changed; whether anything was
        replaced).
    """
    if isinstance(value, str):
        if _UNSTORABLE.search(value) is None:
            return value, False
        return _UNSTORABLE.sub(REPLACEMENT, value), True
    if isinstance(value, Mapping):
        changed = False
        out: dict[Any, Any] = {}
        for k, v in value.items():
            k2, c1 = clean(k)
            v2, c2 = clean(v)
            out[k2] = v2
            changed = changed or c1 or c2
        return (out if changed else value), changed
    if isinstance(value, (list, tuple)):
        items = [clean(v) for v in value]
        if any(c for _, c in items):
            return [v for v, _ in items], True
        return value, False
    return value, False


def named_part(kind: str, name: str | None = None, media_type: str | None = None
               ) -> dict[str, Any]:
    """A content part that names an image, audio clip, document or other binary part
    without its bytes: ``{"type": kind, "name": ..., "media_type": ...}``. memori stores
    the parts of a message as JSON; binary data would bloat every later read of the session,
    so a plugin names it and the framework keeps the data."""
    part: dict[str, Any] = {"type": kind}
    if name:
        part["name"] = name
    if media_type:
        part["media_type"] = media_type
    return part


def named_parts(content: Any) -> Any:
    """``content`` with each binary part (a dict whose ``type`` is in ``BINARY_PARTS``)
    replaced by a ``named_part`` of the same type, named by its ``filename``, ``name`` or
    http(s) URL (``url``, ``image_url`` or ``image_url.url``; a ``data:`` URL is bytes, not a
    name) with its ``mime_type``; other parts and non-list content unchanged."""
    if not isinstance(content, list):
        return content
    out = []
    for part in content:
        if isinstance(part, Mapping) and part.get("type") in BINARY_PARTS:
            url = part.get("url") or part.get("image_url") or ""
            url = str(url.get("url", "") if isinstance(url, Mapping) else url)
            name = part.get("filename") or part.get("name") or (
                url if url.startswith("http") else None)
            part = named_part(str(part["type"]), name, part.get("mime_type"))
        out.append(part)
    return out


def query_of(messages: Sequence[Mapping[str, Any]]) -> str:
    """What to recall for: the text of the latest user message with text, else ``""``
    (messages in ``Memori.capture`` form)."""
    for m in reversed(messages):
        if m.get("role") == "user":
            text = text_of(m.get("content")).strip()
            if text:
                return text
    return ""
