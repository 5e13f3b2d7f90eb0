"""The context pipeline: what memori puts into a prompt, the same for the provider wrappers,
the plugins, ``memori recall`` and the server.

``build`` composes small pure steps (``memori_core.context._steps``)::

    recall (auto_ingest)  ->  one line per source turn  ->  informative only
      ->  drop what the visible history holds  ->  relevance cut (relative to the best left)
      ->  essential memories first (conscious_ingest)
      ->  budget (Config.context_tokens, each memory cut past Config.context_memory_tokens)
      ->  one framing (``render_block``: dated, kind, quoted and escaped lines)

``Memori.context(query, history=...)`` runs it for the current attribution and returns a
``MemoryContext``: its ``block`` is what a wrapper puts into the system slot (None: nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from memori_core.context._framing import (
    BLOCK_END,
    BLOCK_HEADER,
    BLOCK_START,
    quote,
    read_block,
    render_block,
    strip_block,
)
from memori_core.context._steps import (
    ContextLine,
    drop_visible,
    estimate_tokens,
    fit,
    informative,
    lead_with,
    relevance_cut,
)
from memori_core.storage.store import normalize_text
from memori_core.types import RecallHit

__all__ = ["BLOCK_END", "BLOCK_HEADER", "BLOCK_START", "ContextLine", "ContextSettings",
           "MemoryContext", "build", "drop_visible", "estimate_tokens", "fit", "informative",
           "lead_with", "quote", "read_block", "relevance_cut", "render_block", "strip_block",
           "visible_history"]


@dataclass(frozen=True)
class ContextSettings:
    """The pipeline's settings (``Config.context_*``; defaults documented there).

    Attributes:
        tokens: budget of the whole block, in estimated tokens (characters / 4).
        memory_tokens: most tokens of one memory's text before it is cut.
        essential_share: fraction of ``tokens`` the essential memories may take, in [0, 1].
        relative: a hit needs this fraction of the best hit's similarity.
        semantic: similarity a hit sharing no query term needs.
    """

    tokens: int
    memory_tokens: int
    essential_share: float
    relative: float
    semantic: float


@dataclass(frozen=True)
class MemoryContext:
    """What the model is shown.

    Attributes:
        lines: the memories shown, essential first, then the query's best first.
        block: the framed block (``render_block``), or None when ``lines`` is empty.
        tokens: estimated tokens of ``block`` (0 without one); never over ``budget``.
        budget: the token budget it was fitted to.
    """

    lines: list[ContextLine]
    block: str | None
    tokens: int
    budget: int


def visible_history(messages: Sequence[Mapping[str, Any]] | None
                    ) -> tuple[set[int], set[str]]:
    """(stored message ids, normalized texts) of the messages a model is given: what the
    pipeline need not repeat. Content parts contribute their text; memori's own block is
    stripped first."""
    ids: set[int] = set()
    texts: set[str] = set()
    for m in messages or ():
        mid = m.get("id")
        if isinstance(mid, int) and not isinstance(mid, bool):
            ids.add(mid)
        content = m.get("content")
        if isinstance(content, list):
            content = "\n".join(str(p.get("text")) for p in content
                                if isinstance(p, Mapping) and isinstance(p.get("text"), str))
        if isinstance(content, str) and content.strip():
            texts.add(normalize_text(strip_block(content)))
    return ids, texts


def build(hits: Sequence[RecallHit], essentials: Sequence[RecallHit],
          settings: ContextSettings, *, history: Sequence[Mapping[str, Any]] | None = None,
          source_texts: Callable[[Sequence[int]], Mapping[int, str]] | None = None
          ) -> MemoryContext:
    """Compose the pipeline over recalled ``hits`` and the entity's ``essentials``.

    Args:
        hits: ``Memori.recall`` hits for the query, best first (one per source turn).
        essentials: the entity's essential memories, most important first (empty unless
            ``conscious_ingest``).
        settings: budgets and cut-offs.
        history: the messages the model is given with this call (dicts with ``content``,
            optionally ``id``): memories already in them are not repeated.
        source_texts: message id -> text of stored messages, for the history check (called
            only when ``history`` is non-empty).

    Returns:
        the ``MemoryContext``.
    """
    # what could be shown first, then the cut relative to the best of it: a question asked
    # before (or a memory the history already shows) must not set the bar and then vanish,
    # taking the answer with it
    shown = informative(hits)
    ids, texts = visible_history(history)
    if ids or texts:
        wanted = sorted({m for h in [*shown, *essentials] for m in h.source_message_ids})
        sources = source_texts(wanted) if source_texts and wanted else {}
        shown = drop_visible(shown, ids, texts, sources)
        essentials = drop_visible(essentials, ids, texts, sources)
    shown = relevance_cut(shown, relative=settings.relative, semantic=settings.semantic)
    lines = fit(lead_with(essentials, shown), tokens=settings.tokens,
                memory_tokens=settings.memory_tokens,
                essential_tokens=int(settings.tokens * settings.essential_share))
    block = render_block(lines, [ln.text for ln in lines])
    return MemoryContext(lines=lines, block=block,
                         tokens=estimate_tokens(block) if block else 0, budget=settings.tokens)
