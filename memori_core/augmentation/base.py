"""What augmentation produces, and the extractor protocol.

An extractor reads one captured turn (``Conversation``) and returns an ``Extraction``. The worker
always adds episodic memories (each user message as it was said, so recall works when nothing
was extracted) and then whatever the configured extractor returns.

An extractor with ``wants_related = True`` (``LLMExtractor``) also gets
``Conversation.related``, the entity's existing memories most similar to the turn, and may
change them: an ``ExtractedMemory.supersedes`` old ones (UPDATE), ``Extraction.deletes``
marks some no longer true (DELETE: ``superseded_by`` = the memory's own id). The worker
applies both in the job's write transaction, to the job's own entity and process only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from memori_core.errors import ConfigurationError

__all__ = [
    "MEMORY_KINDS",
    "Conversation",
    "ExtractedMemory",
    "Extraction",
    "Extractor",
    "RelatedMemory",
    "Triple",
    "check_kinds",
    "dated_text",
    "episodic_memories",
    "message_text",
]

#: Kinds of memory rows in ``memori_entity_fact``.
MEMORY_KINDS = ("episodic", "fact", "preference", "skill", "attribute", "event")


def check_kinds(kinds: object) -> list[str] | None:
    """Validate a ``kinds=`` filter: None (all) or a non-empty list of ``MEMORY_KINDS``.

    Raises:
        ConfigurationError: naming the unknown kind.
    """
    if kinds is None:
        return None
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, (list, tuple, set, frozenset)) or not kinds:
        raise ConfigurationError("kinds must be a non-empty list of memory kinds or None",
                                 argument="kinds")
    for k in kinds:
        if k not in MEMORY_KINDS:
            raise ConfigurationError(f"unknown kind {k!r} in kinds; use "
                                     f"{', '.join(MEMORY_KINDS)}", argument="kinds")
    return sorted(kinds)


@dataclass(frozen=True)
class RelatedMemory:
    """One of the entity's current memories, shown to an extractor that decides what a turn
    changes (``LLMExtractor``).

    Attributes:
        id: its ``memori_entity_fact`` row id (never shown to a model as such).
        content: its text, e.g. "The user lives in Lisbon".
        kind: one of ``MEMORY_KINDS`` (never ``episodic``).
        created_at: when it was said (UTC, naive).
        similarity: cosine similarity to the closest of the texts it was found for, in [-1, 1].
    """

    id: int
    content: str
    kind: str
    created_at: datetime | None = None
    similarity: float = 0.0


#: ``Conversation.related``: (texts, at most k) -> the entity's memories most similar to them
RelatedFn = Callable[[Sequence[str], int], list[RelatedMemory]]


@dataclass(frozen=True)
class Conversation:
    """One captured turn handed to an extractor.

    Attributes:
        entity_id: external entity id.
        process_id: external process id or None.
        messages: the turn: dicts with ``id``, ``role``, ``content`` (str or parts),
            ``created_at`` (UTC, naive), optional ``name``, ``tool_calls``, ``tool_call_id``,
            ``metadata``.
        previous: the message just before the turn in the same conversation (context, e.g.
            the question a short answer replies to), or None.
        related: given to extractors with ``wants_related = True``: ``related(texts, k)``
            returns at most ``k`` of the entity's current (not superseded), non-episodic
            memories of the turn's own process (exactly that process, or no process when the
            turn has none: supersession stays within one process, as on a slot), most similar
            to any of ``texts`` (exact cosine), best first, none under
            ``Config.recall_relevance_threshold``. None when not wanted or not available.
    """

    entity_id: str
    process_id: str | None
    messages: Sequence[dict[str, Any]]
    previous: dict[str, Any] | None = None
    related: RelatedFn | None = None


@dataclass(frozen=True)
class ExtractedMemory:
    """A memory to store.

    Attributes:
        content: the text, e.g. "The user uses Python".
        kind: one of ``MEMORY_KINDS``.
        source_message_ids: messages it came from (provenance).
        slot: a key (e.g. ``lives_in``) under which a newer value supersedes an older one.
        embed_text: the text embedded, when not ``content`` (episodic memories add the
            speaker and date).
        search_text: the text BM25 indexes, when not ``content`` (episodic memories add the
            message before them).
        importance: how much it matters that the memory is never missed, in [0, 1]: 0 for
            ordinary memories (and every episodic one), about 0.9-1.0 for safety and health
            (allergies, medication, diets), 0.8 for standing instructions, 0.6-0.7 for
            identity, 0.4 for strong preferences (``rules.rate_importance``). Stored values
            are clipped to [0, 1].
        supersedes: row ids of the entity's memories this one replaces (an UPDATE): each gets
            ``superseded_by`` = this memory's id and stays as history. Ids of another entity
            or process, and episodic memories, are ignored by the worker.
    """

    content: str
    kind: str
    source_message_ids: tuple[int, ...] = ()
    slot: str | None = None
    embed_text: str | None = None
    search_text: str | None = None
    importance: float = 0.0
    supersedes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Triple:
    """A knowledge-graph edge, e.g. ("user", "lives_in", "Lisbon"); stored in
    ``memori_knowledge_graph``."""

    subject: str
    predicate: str
    object: str


@dataclass
class Extraction:
    """What an extractor found in one turn.

    Attributes:
        memories: entity memories (kinds fact, preference, skill, attribute, event).
        triples: knowledge-graph triples.
        process_attributes: facts about the process (the agent / persona), e.g. its role.
        summary: a summary of the conversation so far, stored on ``memori_conversation``.
        deletes: row ids of the entity's memories the turn says are no longer true (a
            DELETE): each is marked superseded by itself (``superseded_by`` = its own id), so
            recall leaves it out and ``include_superseded=True`` still shows it as history.
            Ids of another entity or process, and episodic memories, are ignored.
    """

    memories: list[ExtractedMemory] = field(default_factory=list)
    triples: list[Triple] = field(default_factory=list)
    process_attributes: list[str] = field(default_factory=list)
    summary: str | None = None
    deletes: list[int] = field(default_factory=list)


@runtime_checkable
class Extractor(Protocol):
    def extract(self, conversation: Conversation) -> Extraction:
        """Return the memories found in one turn. Raise to fail the job (it is retried)."""
        ...


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    # a part's "text" may be anything JSON holds: only str text is text
    parts = [(p.get("text") if isinstance(p.get("text"), str) else "") if isinstance(p, dict)
             else str(p) for p in content or []]
    return "\n".join(p for p in parts if p)


def message_text(message: dict[str, Any]) -> str:
    """The plain text of a stored message (text parts joined)."""
    return _text(message.get("content")).strip()


def _speaker(message: dict[str, Any]) -> str:
    return str(message.get("name") or message.get("role", "user").capitalize())


def _day(when: Any) -> str:
    return f"{when.day} {when:%B %Y}" if when is not None else ""


#: characters of a message that go into its embedded and BM25 text (the embedding model reads
#: 256 tokens, ~1,000 characters; BM25 of a novel-length message is noise); content is whole
INDEXED_CHARS = 16_384


def dated_text(message: dict[str, Any]) -> str:
    """What an episodic memory's embedding is computed from: "Caroline (8 May 2023): text"
    (the first ``INDEXED_CHARS`` characters of the text)."""
    return (f"{_speaker(message)} ({_day(message.get('created_at'))}): "
            f"{message_text(message)[:INDEXED_CHARS]}")


def episodic_memories(conversation: Conversation) -> list[ExtractedMemory]:
    """Each non-empty user message as an episodic memory, prefixed with the speaker's name when
    the message has one ("Caroline: I went to the support group").

    The embedded text adds the speaker and day ("Caroline (8 May 2023): ..."), and the BM25 text
    also the message before it when another speaker said it, so "yes, last Sunday" is found by
    the question it answers (measured on LoCoMo: benchmarks/README.md)."""
    out = []
    before = conversation.previous
    for m in conversation.messages:
        text = message_text(m)
        if m["role"] == "user" and text:
            content = f"{m['name']}: {text}" if m.get("name") else text
            dated = dated_text(m)
            # the message it replies to: another speaker's (a user's own previous message is
            # its own memory)
            context = ""
            if before is not None and _speaker(before) != _speaker(m):
                context = f"{_speaker(before)}: {message_text(before)[:INDEXED_CHARS]}\n"
            out.append(ExtractedMemory(content=content, kind="episodic",
                                       source_message_ids=(m["id"],), embed_text=dated,
                                       search_text=context + dated))
        if text:
            before = m
    return out
