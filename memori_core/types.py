"""Value types shared across memori: messages in, recall hits out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from memori_core.errors import ConfigurationError

__all__ = ["ROLES", "MAX_ID_LENGTH", "CapturedMessage", "Memory", "RecallHit", "RecallWhy",
           "check_id",
           "check_limit",
           "normalize_messages", "to_utc_naive"]

#: Message roles accepted by ``Memori.capture`` (OpenAI chat roles).
ROLES = ("system", "user", "assistant", "tool")
#: Longest entity, process or session id accepted, in characters (a VARCHAR(255) column).
MAX_ID_LENGTH = 255


@dataclass(frozen=True)
class RecallWhy:
    """Why a recall hit scored what it did: ``score == fused + recency + mentions + context``
    (up to float rounding, within 1e-9).

    Attributes:
        dense_rank: 1-based rank of the memory among the vector (dense) candidates, or None
            when it was not one of them.
        lexical_rank: 1-based rank among the BM25 (lexical) candidates, or None when it was
            not one of them.
        fused: the reciprocal-rank fusion of the two ranks, in (0, 1]
            (``memori_core.recall.rank.fuse``).
        recency: ``recall_recency_weight * 0.5 ** (age_days / recall_recency_half_life_days)``.
        mentions: ``recall_mention_weight * (1 - 1 / mention_count)``.
        context: the conversation prior, named-participant and named-date bonuses together
            (0 when those weights are 0).
    """

    dense_rank: int | None
    lexical_rank: int | None
    fused: float
    recency: float
    mentions: float
    context: float


@dataclass(frozen=True)
class RecallHit:
    """One recalled memory.

    Attributes:
        id: row id in ``memori_entity_fact``.
        content: the memory text.
        kind: ``episodic``, ``fact``, ``preference``, ``skill``, ``attribute`` or ``event``.
        score: ranking score, higher is better (equals ``similarity`` for pure vector recall).
        similarity: cosine similarity between query and memory embeddings, in [-1, 1].
        created_at: when the memory was first stored (UTC, naive).
        source_message_ids: ids in ``memori_conversation_message`` the memory came from.
        process_id: the external process id the memory was captured under, or None.
        mention_count: how many times the same memory was seen.
        memory_ids: every memory this hit stands for, best first (``id`` among them): the
            memories of one source turn are one hit (``memori_core.recall.rank.one_per_turn``).
        lexical: BM25 score of the query against the memory's text (0: no query term in it).
        importance: in [0, 1], 0 for an ordinary memory; higher for what must not be missed
            (safety and health about 0.9-1.0, standing instructions 0.8, identity 0.6-0.7,
            strong preferences 0.4).
        why: the parts of ``score`` (``RecallWhy``) for a hit ranked by a query; None for
            hits not ranked by one (``essential`` memories) and from older servers. A hit
            standing for several memories of one turn carries the why of its best member,
            whose score it has.
    """

    id: int
    content: str
    kind: str
    score: float
    similarity: float
    created_at: datetime
    source_message_ids: tuple[int, ...] = field(default_factory=tuple)
    process_id: str | None = None
    mention_count: int = 1
    memory_ids: tuple[int, ...] = field(default_factory=tuple)
    lexical: float = 0.0
    importance: float = 0.0
    why: RecallWhy | None = None


@dataclass(frozen=True)
class Memory:
    """One stored memory, as listed by ``Memori.memories``.

    Attributes:
        id: row id in ``memori_entity_fact``.
        content: the memory text.
        kind: ``episodic``, ``fact``, ``preference``, ``skill``, ``attribute`` or ``event``.
        created_at: first stored (UTC, naive).
        last_seen_at: last mentioned (UTC, naive).
        mention_count: how many times the same memory was seen.
        process_id: external process id it was captured under, or None.
        slot: the key under which a newer value supersedes it (e.g. ``lives_in``), or None.
        superseded_by: id of the memory that replaced it (a newer value on its slot, or an
            ``LLMExtractor`` UPDATE), its own id when it was deleted as no longer true (an
            ``LLMExtractor`` DELETE), or None while it is current.
        source_message_ids: ids in ``memori_conversation_message`` it came from.
        importance: in [0, 1], 0 for an ordinary memory (see ``RecallHit.importance``).
    """

    id: int
    content: str
    kind: str
    created_at: datetime
    last_seen_at: datetime
    mention_count: int = 1
    process_id: str | None = None
    slot: str | None = None
    superseded_by: int | None = None
    source_message_ids: tuple[int, ...] = field(default_factory=tuple)
    importance: float = 0.0


@dataclass(frozen=True)
class CapturedMessage:
    """A validated message ready to store: ``content`` is the plain text, ``content_json`` the
    original JSON when the caller passed content parts (kept for an exact round-trip),
    ``extra_json`` the JSON of ``tool_calls`` / ``tool_call_id`` / ``metadata`` when given,
    ``created_at`` the caller's timestamp (UTC, naive) or None for "now"."""

    role: str
    content: str
    content_json: str | None = None
    name: str | None = None
    extra_json: str | None = None
    created_at: datetime | None = None


#: Optional message keys kept verbatim (as JSON) besides role, content and name.
EXTRA_KEYS = ("tool_calls", "tool_call_id", "metadata")


def to_utc_naive(value: object, argument: str) -> datetime:
    """A ``datetime`` (aware: converted to UTC; naive: taken as UTC) or an ISO 8601 string, as
    the naive UTC datetime every timestamp column holds.

    Raises:
        ConfigurationError: for anything else.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ConfigurationError(f"{argument} is not an ISO 8601 timestamp: {value!r}",
                                     argument=argument) from exc
    if not isinstance(value, datetime):
        raise ConfigurationError(
            f"{argument} must be a datetime or an ISO 8601 string, got {type(value).__name__}",
            argument=argument)
    if value.tzinfo is not None:
        try:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError as exc:  # e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC
            raise ConfigurationError(f"{argument} is outside the years 1-9999 in UTC: {value!r}",
                                     argument=argument) from exc
    return value


def check_limit(value: object, argument: str = "limit", *, optional: bool = True) -> int | None:
    """``value`` if it is a positive int, or None when ``optional``.

    Raises:
        ConfigurationError: naming ``argument``.
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "a positive int or None" if optional else "a positive int"
        raise ConfigurationError(f"{argument} must be {allowed}, got {value!r}",
                                 argument=argument)
    return value


def check_id(value: object, argument: str) -> str:
    """Validate an entity, process or session id.

    Returns:
        the id unchanged.

    Raises:
        ConfigurationError: unless ``value`` is a non-empty ``str`` of at most 255 characters
            without NUL bytes or lone surrogates.
    """
    if not isinstance(value, str):
        raise ConfigurationError(
            f"{argument} must be a str, got {type(value).__name__}: pass e.g. {argument}=\"user_123\"",
            argument=argument,
        )
    if not value.strip():
        raise ConfigurationError(f"{argument} must be a non-empty string", argument=argument)
    if len(value) > MAX_ID_LENGTH:
        raise ConfigurationError(
            f"{argument} is {len(value)} characters; at most {MAX_ID_LENGTH} are allowed "
            "(hash longer keys first)",
            argument=argument,
        )
    if "\x00" in value:
        raise ConfigurationError(f"{argument} must not contain NUL bytes", argument=argument)
    if not _encodable(value):
        raise ConfigurationError(f"{argument} is not valid Unicode (a lone surrogate); it "
                                 "cannot be stored as UTF-8", argument=argument)
    return value


def _encodable(value: str) -> bool:
    """False for text with lone surrogates, which no database driver can encode as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_nul(value: object) -> bool:
    """A NUL character anywhere in a string, or in the keys and values of nested parts."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


def _has_non_str_key(value: object) -> bool:
    """A mapping key that is not a str anywhere in ``value``: JSON would turn it into a
    string (``{1: "a"}`` read back as ``{"1": "a"}``, ``{1: "a", "1": "b"}`` as one key)."""
    if isinstance(value, Mapping):
        return any(not isinstance(k, str) or _has_non_str_key(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_non_str_key(v) for v in value)
    return False


def _part_text(part: object, index: int, position: int) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, Mapping):
        ptype = part.get("type")
        if ptype in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
            return str(part["text"])
        return ""  # images, audio, files: kept in content_json, no text to index
    raise ConfigurationError(
        f"messages[{index}].content[{position}] must be a str or a dict content part, "
        f"got {type(part).__name__}",
        argument="messages",
    )


def normalize_messages(messages: object) -> list[CapturedMessage]:
    """Validate the ``messages`` argument of ``capture``.

    Args:
        messages: a list of dicts ``{"role": ..., "content": ...}``; ``role`` one of
            ``ROLES``; ``content`` a str or a list of content parts (OpenAI / Anthropic style
            ``{"type": "text", "text": ...}``); optional: ``name``, ``tool_calls`` (a list
            of OpenAI-style tool-call dicts), ``tool_call_id`` (str, on tool results),
            ``metadata`` (a JSON-serialisable dict kept with the message) and ``created_at``
            (a datetime or ISO 8601 string, for imported history; default: now). Parts,
            tool calls and metadata are stored as JSON, so their dict keys must be str.

    Raises:
        ConfigurationError: naming the offending message and key.
    """
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise ConfigurationError(
            "messages must be a list of {'role': ..., 'content': ...} dicts, got "
            f"{type(messages).__name__}",
            argument="messages",
        )
    if not messages:
        raise ConfigurationError("messages must not be empty", argument="messages")
    out: list[CapturedMessage] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping):
            raise ConfigurationError(
                f"messages[{i}] must be a dict with 'role' and 'content', got {type(msg).__name__}",
                argument="messages",
            )
        role = msg.get("role")
        if role not in ROLES:
            raise ConfigurationError(
                f"messages[{i}]['role'] is {role!r}; use one of {', '.join(ROLES)}",
                argument="messages",
            )
        content: Any = msg.get("content")
        content_json = None
        if isinstance(content, str):
            text = content
        elif isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
            text = "\n".join(
                t for t in (_part_text(p, i, j) for j, p in enumerate(content)) if t
            )
            try:
                content_json = json.dumps(list(content), ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(
                    f"messages[{i}]['content'] parts must be JSON-serialisable: {exc}",
                    argument="messages",
                ) from exc
            if _has_non_str_key(content):
                raise ConfigurationError(
                    f"messages[{i}]['content'] parts must have str keys only (JSON would "
                    "change the others)", argument="messages")
        else:
            raise ConfigurationError(
                f"messages[{i}]['content'] must be a str or a list of content parts, got "
                f"{type(content).__name__}; use '' for an empty message",
                argument="messages",
            )
        # content_json escapes a NUL as \u0000, which a literal "\u0000" in text also produces
        if "\x00" in text or (content_json is not None and _has_nul(content)):
            raise ConfigurationError(
                f"messages[{i}]['content'] contains NUL bytes, which SQL text columns cannot "
                "hold; strip them first",
                argument="messages",
            )
        if not _encodable(text) or (content_json is not None and not _encodable(content_json)):
            raise ConfigurationError(
                f"messages[{i}]['content'] is not valid Unicode (a lone surrogate); it cannot "
                "be stored as UTF-8", argument="messages")
        name = msg.get("name")
        if name is not None:
            name = check_id(name, f"messages[{i}]['name']")
        extra = {k: msg[k] for k in EXTRA_KEYS if msg.get(k) is not None}
        if "tool_calls" in extra and (not isinstance(extra["tool_calls"], (list, tuple)) or
                                      not all(isinstance(c, Mapping) for c in extra["tool_calls"])):
            raise ConfigurationError(f"messages[{i}]['tool_calls'] must be a list of dicts",
                                     argument="messages")
        if "tool_call_id" in extra and not isinstance(extra["tool_call_id"], str):
            raise ConfigurationError(f"messages[{i}]['tool_call_id'] must be a str",
                                     argument="messages")
        if "metadata" in extra and not isinstance(extra["metadata"], Mapping):
            raise ConfigurationError(f"messages[{i}]['metadata'] must be a dict",
                                     argument="messages")
        extra_json = None
        if extra:
            try:
                extra_json = json.dumps(extra, ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(
                    f"messages[{i}] tool_calls / metadata must be JSON-serialisable: {exc}",
                    argument="messages") from exc
            if _has_nul(extra) or not _encodable(extra_json):
                raise ConfigurationError(
                    f"messages[{i}] tool_calls / metadata contain NUL bytes or lone surrogates",
                    argument="messages")
            if _has_non_str_key(extra):
                raise ConfigurationError(
                    f"messages[{i}] tool_calls / metadata must have str keys only (JSON would "
                    "change the others)", argument="messages")
        created = msg.get("created_at")
        created_at = None if created is None else to_utc_naive(
            created, f"messages[{i}]['created_at']")
        out.append(CapturedMessage(role=role, content=text, content_json=content_json, name=name,
                                   extra_json=extra_json, created_at=created_at))
    return out
