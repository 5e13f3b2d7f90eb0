"""Recalled memories into a LangChain system message.

The block itself is memori's (``memori_core.llm.render_block``: framed, one quoted and escaped
line per memory, the same block the provider wrappers inject), so a memory can neither close
the frame nor pose as an instruction. This module only places it.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, SystemMessage

from memori_core import RecallHit
from memori_core.llm import render_block

__all__ = ["add_to_system", "inject", "memory_block"]


def memory_block(hits: Sequence[RecallHit]) -> str | None:
    """memori's framed block for ``hits`` (best first), or None for no hits."""
    return render_block(hits)


def add_to_system(system: SystemMessage | None, block: str) -> SystemMessage:
    """``system`` with ``block`` appended after a blank line (a new text part for content-part
    lists), or a new system message holding only the block. ``system`` itself is not
    modified."""
    if system is None:
        return SystemMessage(content=block)
    content = system.content
    if isinstance(content, str):
        new: str | list[str | dict] = f"{content}\n\n{block}" if content else block
    else:
        new = [*content, {"type": "text", "text": block}]
    return system.model_copy(update={"content": new})


def inject(messages: Sequence[BaseMessage], block: str | None) -> list[BaseMessage]:
    """``messages`` with ``block`` added to the leading system message (one is inserted first
    when there is none). Unchanged without a block."""
    if not block:
        return list(messages)
    if messages and isinstance(messages[0], SystemMessage):
        return [add_to_system(messages[0], block), *messages[1:]]
    return [add_to_system(None, block), *messages]
