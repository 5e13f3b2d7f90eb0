"""Request and response bodies of the ``/v1`` API, shared with clients (the SDK's remote
mode, the MCP server). Every request model refuses unknown fields (``extra="forbid"``); every
timestamp is UTC (ISO 8601 with an offset). Ids are ``memori_*`` row ids (ints) or the
caller's external ids (entity, process, session: 1-255 characters).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from memori_core._records import decode_cursor, encode_cursor

__all__ = [
    "ApiKeyOut", "ConversationOut", "ConversationPage", "Cursor", "EntityId", "EntityOut",
    "EntityPage", "ExportQuery", "ForgetOut", "ForgetQuery", "HistoryIn", "HitOut", "ImportIn",
    "ImportOut",
    "JobOut", "KeyCreated", "KeyIn", "KeyList", "Kind", "MemoryCreate", "MemoryOut",
    "MemoryPage", "MemoryQuery", "MemoryUpdate", "MemoryUpdated", "MessageIn", "MessageOut",
    "MessageList", "MessagePage", "PageQuery", "ProcessList", "ProcessOut", "ProvenanceOut",
    "QueueOut",
    "QueueQuery", "RecallIn", "RecallOut", "ContextOut", "ContextLineOut", "RetryOut",
    "SessionOut", "SessionPage", "TripleOut", "TriplePage", "TurnIn", "TurnOut", "WhyOut",
    "decode_cursor", "encode_cursor",
]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


#: a timestamp, UTC (stored naive, answered with its offset)
UTC = Annotated[datetime, AfterValidator(_utc)]


def _iso_instant(value: object) -> object:
    """A query string's date or datetime, read as ISO 8601 only (no Unix seconds), UTC when
    it has no offset."""
    if not isinstance(value, str):
        return value
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or datetime: {value[:40]!r} (e.g. 2024-05-01 "
                         "or 2024-05-01T09:30:00Z)") from None


#: a date or datetime bound of a query (ISO 8601; a date is its midnight; no offset: UTC)
Instant = Annotated[datetime, BeforeValidator(_iso_instant)]
#: an external entity, process or session id
EntityId = Annotated[str, Field(min_length=1, max_length=255)]
#: a memory kind
Kind = Literal["episodic", "fact", "preference", "skill", "attribute", "event"]
#: an opaque page cursor (``next_cursor`` of the previous page)
Cursor = Annotated[str, Field(min_length=1, max_length=64)]
_MAX_PAGE = 1000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- query strings ---------------------------------------------------------------------------
class PageQuery(_In):
    """``?entity_id=&limit=&cursor=``: an entity's records, one page."""

    entity_id: EntityId | None = Field(None, description="whose records (default: the key's "
                                       "only entity, for a key bound to one)")
    limit: int = Field(100, ge=1, le=_MAX_PAGE, description="at most this many items")
    cursor: Cursor | None = Field(None, description="next_cursor of the previous page")


class MemoryQuery(PageQuery):
    """``GET /v1/memories``: newest first."""

    process_id: EntityId | None = Field(None, description="with scope=process: this "
                                        "process's memories and those captured without one")
    kind: list[Kind] | None = Field(None, description="only these kinds (repeatable)")
    scope: Literal["process", "entity"] = "process"
    include_superseded: bool = False
    q: str | None = Field(None, max_length=200, description="only memories whose content "
                          "holds this text (case-insensitive substring; % and _ are literal; "
                          "empty: no condition)")
    since: Instant | None = Field(None, description="only memories created at or after this "
                                  "ISO 8601 date or datetime (a date: its midnight; no "
                                  "offset: UTC)")
    until: Instant | None = Field(None, description="only memories created before this ISO "
                                  "8601 date or datetime (exclusive; after since)")


class ProcessPageQuery(PageQuery):
    """An entity's records of one process (all without ``process_id``)."""

    process_id: EntityId | None = None


class ConversationQuery(PageQuery):
    """``GET /v1/conversations``."""

    session_id: EntityId | None = Field(None, description="only this session's")


class EntityQuery(_In):
    """``?entity_id=``: one entity's record."""

    entity_id: EntityId | None = None


class EntityListQuery(_In):
    """``GET /v1/entities``: in creation order."""

    entity_id: list[EntityId] | None = Field(None, description="only these entities "
                                             "(repeatable)")
    prefix: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    limit: int = Field(100, ge=1, le=_MAX_PAGE)
    cursor: Cursor | None = None


class ExportQuery(_In):
    """``GET /v1/export``."""

    entity_id: EntityId | None = None
    process_id: EntityId | None = Field(None, description="only this process's rows")


class ForgetQuery(_In):
    """``DELETE /v1/entities/{entity_id}``."""

    process_id: EntityId | None = Field(None, description="only this process's rows")


class QueueQuery(PageQuery):
    """``GET /v1/queue``: jobs newest first."""

    status: list[Literal["queued", "running", "done", "failed"]] | None = Field(
        None, description="only these statuses (repeatable)")


# ---- capture ---------------------------------------------------------------------------------
class MessageIn(_In):
    """A message of a turn (OpenAI chat shape)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] = Field(description="text, or content parts "
                                                 "(OpenAI / Anthropic)")
    name: Annotated[str, Field(max_length=255)] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: Annotated[str, Field(max_length=255)] | None = None
    metadata: dict[str, Any] | None = None
    created_at: datetime | None = Field(None, description="when it was said (default now)")


class TurnIn(_In):
    """``POST /v1/turns``: one turn, stored and queued for augmentation in one transaction."""

    entity_id: EntityId | None = None
    process_id: EntityId | None = None
    session_id: EntityId | None = Field(None, description="continue this session (default: "
                                        "the server's current one for the entity)")
    messages: list[MessageIn] = Field(min_length=1, max_length=1000)


class HistoryIn(MessageIn):
    """A message the model is given with a recall's query (``RecallIn.history``): a
    ``MessageIn``, with its stored ``id`` when it was read back from memori (a memory drawn
    from it is then not repeated)."""

    id: int | None = None


class TurnOut(_Out):
    """The stored messages' ids, in order, and the session they went to."""

    message_ids: list[int]
    session_id: str


class MessageOut(_Out):
    """A stored message."""

    model_config = ConfigDict(extra="allow")  # tool_calls, tool_call_id, metadata as captured

    id: int
    role: str
    content: str | list[Any]
    created_at: UTC
    name: str | None = None
    conversation_id: int | None = None
    session_id: str | None = None


class MessagePage(_Out):
    items: list[MessageOut]
    next_cursor: str | None


class MessageList(_Out):
    items: list[MessageOut]


# ---- recall ----------------------------------------------------------------------------------
class RecallIn(_In):
    """``POST /v1/recall``: the hits for a query and the framed block a model is shown."""

    entity_id: EntityId | None = None
    process_id: EntityId | None = None
    query: Annotated[str, Field(max_length=100_000, description="empty: no hits; the block "
                                 "still holds the essential memories")]
    limit: int | None = Field(None, ge=1, le=100, description="at most this many hits "
                              "(default the server's recall_facts_limit, 5)")
    scope: Literal["process", "entity"] = "process"
    kinds: list[Kind] | None = Field(None, min_length=1)
    include_superseded: bool = False
    history: list[HistoryIn] | None = Field(None, description="messages the model is given "
                                            "anyway: the block does not repeat them")
    context: bool = Field(True, description="also build the context block")


class WhyOut(_Out):
    """Why a hit scored what it did (``RecallWhy``): score = fused + recency + mentions +
    context."""

    dense_rank: int | None = Field(description="1-based rank among the vector candidates; "
                                   "null: not one of them")
    lexical_rank: int | None = Field(description="1-based rank among the BM25 candidates; "
                                     "null: not one of them")
    fused: float = Field(description="reciprocal-rank fusion of the two ranks, in (0, 1]")
    recency: float = Field(description="the recency bonus")
    mentions: float = Field(description="the bonus for being mentioned repeatedly")
    context: float = Field(description="conversation, named-participant and named-date "
                           "bonuses together")


class HitOut(_Out):
    """A recalled memory (``RecallHit``)."""

    id: int
    content: str
    kind: str
    score: float
    similarity: float
    created_at: UTC
    source_message_ids: list[int]
    process_id: str | None
    mention_count: int
    memory_ids: list[int]
    lexical: float
    importance: float
    why: WhyOut | None = Field(None, description="the parts of score (null for a hit no "
                               "query ranked)")


class ContextLineOut(_Out):
    """A line of the context block (``ContextLine``)."""

    text: str
    content: str
    kind: str
    created_at: UTC | None
    essential: bool
    memory_ids: list[int]
    source_message_ids: list[int]
    score: float
    similarity: float
    total_chars: int | None


class ContextOut(_Out):
    """What the model is shown (``MemoryContext``): ``block`` is null when nothing is."""

    block: str | None
    tokens: int
    budget: int
    lines: list[ContextLineOut]


class RecallOut(_Out):
    hits: list[HitOut]
    context: ContextOut | None


# ---- memories --------------------------------------------------------------------------------
class MemoryOut(_Out):
    """A stored memory (``Memory``)."""

    id: int
    content: str
    kind: str
    created_at: UTC
    last_seen_at: UTC
    mention_count: int
    process_id: str | None
    slot: str | None
    superseded_by: int | None
    source_message_ids: list[int]
    importance: float


class MemoryPage(_Out):
    items: list[MemoryOut]
    next_cursor: str | None


class MemoryList(_Out):
    items: list[MemoryOut]


class MemoryCreate(_In):
    """``POST /v1/memories``: remember directly (embedded at once)."""

    entity_id: EntityId | None = None
    process_id: EntityId | None = None
    content: Annotated[str, Field(min_length=1, max_length=100_000)]
    kind: Kind = "fact"
    slot: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    importance: float | None = Field(None, ge=0.0, le=1.0)


class MemoryUpdate(_In):
    """``PATCH /v1/memories/{id}``: a new version replaces the memory (kept as history)."""

    content: Annotated[str, Field(min_length=1, max_length=100_000)]
    kind: Kind | None = None
    slot: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    importance: float | None = Field(None, ge=0.0, le=1.0)


class MemoryUpdated(_Out):
    """The current version, and the id it replaced (equal when nothing changed)."""

    memory: MemoryOut
    supersedes: int


class ProvenanceOut(_Out):
    """A memory's source messages (oldest first) and their conversations."""

    memory_id: int
    messages: list[MessageOut]
    conversations: list[ConversationOut]


class DeletedOut(_Out):
    deleted: int


# ---- entities and their records --------------------------------------------------------------
class EntityOut(_Out):
    entity_id: str
    created_at: UTC
    memories: int
    messages: int
    sessions: int


class EntityPage(_Out):
    items: list[EntityOut]
    next_cursor: str | None


class ProcessOut(_Out):
    process_id: str | None = Field(description="null: captured without a process")
    memories: int
    messages: int
    sessions: int


class ProcessList(_Out):
    items: list[ProcessOut]


class SessionOut(_Out):
    session_id: str
    process_id: str | None
    created_at: UTC
    last_activity_at: UTC | None
    conversations: int
    messages: int


class SessionPage(_Out):
    items: list[SessionOut]
    next_cursor: str | None


class ConversationOut(_Out):
    id: int
    session_id: str
    process_id: str | None
    summary: str | None
    created_at: UTC
    last_activity_at: UTC
    messages: int


class ConversationPage(_Out):
    items: list[ConversationOut]
    next_cursor: str | None


class TripleOut(_Out):
    id: int
    subject: str
    predicate: str
    object: str
    process_id: str | None
    memory_id: int | None
    mention_count: int
    created_at: UTC
    last_seen_at: UTC


class TriplePage(_Out):
    items: list[TripleOut]
    next_cursor: str | None


# ---- export, import, forget ------------------------------------------------------------------
class ImportIn(_In):
    """``POST /v1/import``: restore an export (``GET /v1/export``)."""

    data: dict[str, Any] = Field(description="the export, as GET /v1/export answered it")
    entity_id: EntityId | None = Field(None, description="import under this entity instead")


class ImportOut(_Out):
    counts: dict[str, int] = Field(description="rows written per table")


class ForgetOut(_Out):
    counts: dict[str, int] = Field(description="rows deleted per table")


# ---- the augmentation queue ------------------------------------------------------------------
class JobOut(_Out):
    id: int
    status: str
    process_id: str | None
    conversation_id: int
    message_ids: list[int]
    attempts: int
    error: str | None
    created_at: UTC
    run_after: UTC
    claimed_at: UTC | None
    finished_at: UTC | None


class QueueOut(_Out):
    counts: dict[str, int] = Field(description="the entity's jobs per status")
    items: list[JobOut]
    next_cursor: str | None


class RetryOut(_Out):
    id: int
    status: Literal["queued"]


# ---- keys ------------------------------------------------------------------------------------
class KeyIn(_In):
    """``POST /v1/keys``."""

    scope: Literal["read", "write", "admin"]
    entity_ids: list[EntityId] | None = Field(None, min_length=1)
    entity_prefix: EntityId | None = None
    name: EntityId | None = None


class ApiKeyOut(_Out):
    key_id: str
    scope: str
    entity_ids: list[str] | None
    entity_prefix: str | None
    name: str | None
    created_at: UTC | None
    revoked_at: UTC | None


class KeyCreated(_Out):
    """The new key (shown once) and its grant."""

    key: str
    grant: ApiKeyOut


class KeyList(_Out):
    items: list[ApiKeyOut]


class StatusOut(_Out):
    status: str
    schema_version: int | None = None
