"""A framework's messages in the form ``Memori.capture`` stores (OpenAI chat style)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from memori_core.llm._messages import (
    BINARY_PARTS,
    named_part,
    named_parts,
    text_of,
    tool_call,
)

__all__ = ["BINARY_PARTS", "clean", "named_part", "named_parts", "query_of", "text_of",
           "tool_call"]

#: what replaces a character no database text column can hold (NUL, a lone surrogate)
REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

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


def query_of(messages: Sequence[Mapping[str, Any]]) -> str:
    """What to recall for: the text of the latest user message with text, else ``""``
    (messages in ``Memori.capture`` form)."""
    for m in reversed(messages):
        if m.get("role") == "user":
            text = text_of(m.get("content")).strip()
            if text:
                return text
    return ""
