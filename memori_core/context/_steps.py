"""The steps of the context pipeline, each a small pure function over plain values (hits in,
hits or lines out), tested alone and composed in ``memori_core.context.build``."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from memori_core.context._framing import BLOCK_END, BLOCK_HEADER, BLOCK_START, line
from memori_core.recall.rank import one_per_turn
from memori_core.storage.store import normalize_text
from memori_core.types import RecallHit

__all__ = ["ContextLine", "drop_visible", "estimate_tokens", "fit", "informative",
           "lead_with", "relevance_cut"]

#: characters per token in the budget's estimate (the same estimate as
#: ``Config.llm_history_tokens``: English text is about 4 characters per token)
CHARS_PER_TOKEN = 4

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[\w']+")
#: words of greetings, thanks and acknowledgements: a message made only of them says nothing
#: about the user
_SMALL_TALK = frozenset("""
hi hello hey hiya yo howdy greetings morning evening afternoon night good day bye goodbye cya
see you later thanks thank thx ty cheers much so very a lot ok okay k kk sure yes yeah yep yup
no nope nah cool great nice awesome perfect fine alright right got it lol haha hahaha hmm oh ah
wow please welcome there all the and too again how are doing what's up whats
""".split())
#: a question still tells something about the user when it says "my ..." or states a fact
#: ("I'm ...", "I have ..."): "Can you suggest a recipe for my daughter?"
_FIRST_PERSON_FACT = re.compile(
    r"\b(?:my|mine|our|i'm|i am|i've|i have|i had|i was|i'll|i will|i'd|we're|we have)\b", re.I)


@dataclass(frozen=True)
class ContextLine:
    """One memory as the model is shown it.

    Attributes:
        content: the memory text, cut to the per-memory budget when ``total_chars`` is set.
        kind: the memory's kind (``fact``, ``episodic``, ...).
        created_at: the day it was said (UTC, naive); None when unknown.
        essential: from the entity's profile (``conscious_ingest``), not from the query.
        memory_ids: the memories this line stands for (``RecallHit.memory_ids``).
        source_message_ids: the messages they came from.
        score: the recall score (0 for an essential memory not also recalled).
        similarity: cosine similarity of the shown memory to the query (0 likewise).
        total_chars: the memory's full length when ``content`` is a cut of it, else None.
    """

    content: str
    kind: str
    created_at: datetime | None
    essential: bool
    memory_ids: tuple[int, ...]
    source_message_ids: tuple[int, ...]
    score: float
    similarity: float
    total_chars: int | None = None

    @property
    def text(self) -> str:
        """The line as rendered in the block."""
        return line(self, self.total_chars)


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` as the budget counts them: ``ceil(len / 4)``."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _said(hit: RecallHit) -> str:
    """The words of a memory without a speaker prefix ("Caroline: ...")."""
    head, sep, tail = hit.content.partition(": ")
    return tail if sep and len(head) <= 40 and "\n" not in head else hit.content


def _small_talk(sentence: str) -> bool:
    """Only greetings, thanks and acknowledgements, maybe addressing someone by name ("Hey
    Caroline!")."""
    words = _WORD.findall(sentence)
    rest = [w for w in words if w.lower() not in _SMALL_TALK]
    return not rest or (len(rest) == 1 and rest[0][:1].isupper() and len(words) <= 4)


def informative(hits: Sequence[RecallHit]) -> list[RecallHit]:
    """``hits`` without the turns that say nothing about the user: an episodic memory made
    only of questions ("What time is it in Tokyo?") or of greetings and thanks ("hi",
    "thanks, bye!"). A question that states something ("...for my daughter?", "I'm vegan,
    what can I eat?") stays; extracted memories always stay."""
    out = []
    for h in hits:
        if h.kind != "episodic":
            out.append(h)
            continue
        sentences = [s for s in _SENTENCE.split(_said(h).strip()) if s.strip()]
        statements = [s for s in sentences if not s.rstrip().endswith("?")]
        if any(not _small_talk(s) for s in statements) or \
                any(_FIRST_PERSON_FACT.search(s) for s in sentences if s not in statements):
            out.append(h)
    return out


def relevance_cut(hits: Sequence[RecallHit], *, relative: float, semantic: float
                  ) -> list[RecallHit]:
    """The hits relevant enough to show.

    A hit stays when its similarity is at least ``relative`` times the best hit's, and it
    either shares a query term (``lexical > 0``) or is close in meaning on its own
    (similarity >= ``semantic``). Under ``Config.recall_relevance_threshold`` recall already
    dropped it.

    Args:
        hits: best first.
        relative: fraction of the best similarity, in [0, 1].
        semantic: cosine similarity a hit with no query term needs, in [-1, 1].
    """
    if not hits:
        return []
    best = max(h.similarity for h in hits)
    floor = relative * best if best > 0 else best
    return [h for h in hits if h.similarity >= floor and (h.lexical > 0 or h.similarity >= semantic)]


def drop_visible(hits: Sequence[RecallHit], visible_ids: Collection[int],
                 visible_texts: Collection[str], source_texts: Mapping[int, str]
                 ) -> list[RecallHit]:
    """``hits`` without those the model already sees in the conversation it is given.

    Args:
        hits: recalled memories.
        visible_ids: stored message ids in the visible history (messages read back from a
            session carry them).
        visible_texts: ``normalize_text`` of each visible message.
        source_texts: message id -> text of the hits' source messages.

    A hit is visible when one of its source messages is in the history, by id or by its
    normalized text, or when its own text is.
    """
    if not visible_ids and not visible_texts:
        return list(hits)
    out = []
    for h in hits:
        if any(m in visible_ids for m in h.source_message_ids):
            continue
        texts = [source_texts[m] for m in h.source_message_ids if m in source_texts]
        if any(normalize_text(t) in visible_texts for t in texts) or \
                normalize_text(_said(h)) in visible_texts:
            continue
        out.append(h)
    return out


def lead_with(essentials: Sequence[RecallHit], hits: Sequence[RecallHit]) -> list[ContextLine]:
    """Essential memories first, then the query's hits, one line per source turn.

    A memory in both lists is one line, in the essential part; its recall score and
    similarity are kept.
    """
    recalled = {i: h for h in hits for i in (h.memory_ids or (h.id,))}
    lines = []
    essential_ids: set[int] = set()
    for h in one_per_turn(essentials):
        ids = h.memory_ids or (h.id,)
        essential_ids.update(ids)
        match = next((recalled[i] for i in ids if i in recalled), None)
        lines.append(_line(h, True, match))
    essential_sources = {m for ln in lines for m in ln.source_message_ids}
    for h in hits:
        ids = h.memory_ids or (h.id,)
        if essential_ids.intersection(ids) or essential_sources.intersection(h.source_message_ids):
            continue
        lines.append(_line(h, False, h))
    return lines


def _line(h: RecallHit, essential: bool, recalled: RecallHit | None) -> ContextLine:
    return ContextLine(content=h.content, kind=h.kind, created_at=h.created_at,
                       essential=essential, memory_ids=h.memory_ids or (h.id,),
                       source_message_ids=h.source_message_ids,
                       score=recalled.score if recalled else 0.0,
                       similarity=recalled.similarity if recalled else 0.0)


def fit(lines: Sequence[ContextLine], *, tokens: int, memory_tokens: int,
        essential_tokens: int) -> list[ContextLine]:
    """The lines that fit the budget, in order; each memory cut past ``memory_tokens``.

    Args:
        lines: essential lines first, then the query's, best first.
        tokens: budget of the whole block (frame and header included), in estimated tokens.
        memory_tokens: most tokens of one memory's text; a longer one is cut, and its line
            says how long it was.
        essential_tokens: most tokens the essential lines may take.

    Returns:
        a prefix of each part (essential, query) that fits: the first line that does not
        fit ends its part. The rendered block is at most ``tokens`` estimated tokens.
    """
    used = estimate_tokens("\n".join([BLOCK_START, BLOCK_HEADER, BLOCK_END])) + 1
    cap = memory_tokens * CHARS_PER_TOKEN
    out: list[ContextLine] = []
    essential_used = 0
    full = {True: False, False: False}
    for ln in lines:
        if full[ln.essential]:
            continue
        if len(ln.content) > cap:
            ln = dataclasses.replace(ln, content=ln.content[:cap].rstrip() + "…",
                                     total_chars=len(ln.content))
        cost = estimate_tokens(ln.text) + 1  # the newline
        over_share = ln.essential and essential_used + cost > essential_tokens
        if used + cost > tokens or over_share:
            full[ln.essential] = True
            continue
        used += cost
        essential_used += cost if ln.essential else 0
        out.append(ln)
    return out
