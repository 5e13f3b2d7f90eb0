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
    "episodic_memories",
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
            raise ConfigurationError(f"unknown kind {k!r}; use {', '.join(MEMORY_KINDS)}",
                                     argument="kinds")
    return sorted(kinds)


@dataclass(frozen=True)
class Conversation:
    """One captured turn handed to an extractor.

    Attributes:
        entity_id: external entity id.
        process_id: external process id or None.
        messages: dicts with ``id``, ``role``, ``content`` (str or parts), optional ``name``.
    """

    entity_id: str
    process_id: str | None
    messages: Sequence[dict[str, Any]]


@dataclass(frozen=True)
class ExtractedMemory:
    """A memory to store.

    Attributes:
        content: the text, e.g. "The user uses Python".
        kind: one of ``MEMORY_KINDS``.
        source_message_ids: messages it came from (provenance).
        slot: a key (e.g. ``lives_in``) under which a newer value supersedes an older one.
    """

    content: str
    kind: str
    source_message_ids: tuple[int, ...] = ()
    slot: str | None = None


@dataclass(frozen=True)
class Triple:
    subject: str
    predicate: str
    object: str


@dataclass
class Extraction:
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
    parts = [p.get("text", "") if isinstance(p, dict) else str(p) for p in content or []]
    return "\n".join(p for p in parts if p)


def episodic_memories(conversation: Conversation) -> list[ExtractedMemory]:
    """Each non-empty user message as an episodic memory, prefixed with the speaker's name when
    the message has one ("Caroline: I went to the support group")."""
    out = []
    for m in conversation.messages:
        if m["role"] != "user":
            continue
        text = _text(m["content"]).strip()
        if not text:
            continue
        if m.get("name"):
            text = f"{m['name']}: {text}"
        out.append(ExtractedMemory(content=text, kind="episodic", source_message_ids=(m["id"],)))
    return out
