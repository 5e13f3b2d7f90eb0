"""What augmentation produces, and the extractor protocol.

An extractor reads one captured turn (``Conversation``) and returns an ``Extraction``. The worker
always adds episodic memories (each user message as it was said, so recall works when nothing
was extracted) and then whatever the configured extractor returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from memori_core.errors import ConfigurationError

__all__ = [
    "MEMORY_KINDS",
    "Conversation",
    "ExtractedMemory",
    "Extraction",
    "Extractor",
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
    """

    entity_id: str
    process_id: str | None
    messages: Sequence[dict[str, Any]]
    previous: dict[str, Any] | None = None


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
    """

    content: str
    kind: str
    source_message_ids: tuple[int, ...] = ()
    slot: str | None = None
    embed_text: str | None = None
    search_text: str | None = None


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
    """

    memories: list[ExtractedMemory] = field(default_factory=list)
    triples: list[Triple] = field(default_factory=list)
    process_attributes: list[str] = field(default_factory=list)
    summary: str | None = None


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
