"""The MCP tools' logic over a ``Memori``-like object, with no transport in it.

Every call runs under the configured entity (and process) through the integration kit's
``attributed``, so the model's arguments never choose whose memories are touched. A memori
error comes back as ``ToolError`` naming the tool's argument, which the MCP SDK returns to the
client as a tool error (``isError: true``); the server keeps running.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from pydantic import BaseModel, Field

from memori_core.errors import ConfigurationError, MemoriError
from memori_core.integration import attributed, check_limit, check_text, storable
from memori_core.types import check_id

if TYPE_CHECKING:
    from memori_core._memori import Memori
    from memori_core.context import MemoryContext

__all__ = ["ENTITY_ENV", "PROCESS_ENV", "DeleteResult", "ForgetResult", "MemoryItem",
           "MemoryList", "MemoryTools", "RememberResult", "SearchHit", "SearchResult",
           "ToolArgumentError", "identity_from_env"]

ENTITY_ENV = "MEMORI_ENTITY_ID"
PROCESS_ENV = "MEMORI_PROCESS_ID"

#: the kinds ``remember`` accepts (``Memori.remember``'s, episodic aside: that one is made
#: from captured turns)
Kind = Literal["fact", "preference", "skill", "attribute", "event"]


class MemoriLike(Protocol):
    """What the tools need of a ``Memori``: the local instance today, the SDK's remote client
    (``Memori(url=...)``) once it exists."""

    @property
    def augmentation(self) -> Any: ...
    @property
    def llm(self) -> Any: ...
    def attribution(self, entity_id: str | None = None,
                    process_id: str | None = None) -> Any: ...
    def set_session(self, session_id: str) -> str: ...
    def capture(self, messages: list[dict[str, Any]]) -> list[int]: ...
    def remember(self, content: str, *, kind: str = "fact") -> int: ...
    def context(self, query: str, *, limit: int | None = None) -> MemoryContext: ...
    def memories(self, *, limit: int | None = None) -> Sequence[Any]: ...
    def forget_memories(self, memory_ids: Sequence[int]) -> int: ...
    def forget(self, entity_id: str, process_id: str | None = None) -> dict[str, int]: ...


class ToolArgumentError(Exception):
    """A tool call failed; ``argument`` names the tool argument at fault, when one is.

    The server turns it into the SDK's ``ToolError`` (an MCP tool error, ``isError: true``),
    whose text starts with the argument's name.
    """

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(f"{argument}: {message}" if argument else message)
        self.argument = argument


def identity_from_env(env: Mapping[str, str]) -> tuple[str, str | None]:
    """The entity and process the server acts for: ``MEMORI_ENTITY_ID`` and the optional
    ``MEMORI_PROCESS_ID`` of the server's environment (an MCP client's ``env`` for the
    server), never the model's arguments.

    Returns:
        ``(entity_id, process_id or None)``.

    Raises:
        ConfigurationError: ``MEMORI_ENTITY_ID`` is missing, empty or not a valid id
            (``argument`` is the variable's name); likewise an invalid ``MEMORI_PROCESS_ID``.
    """
    entity = env.get(ENTITY_ENV, "")
    if not entity.strip():
        raise ConfigurationError(
            f"memori mcp needs {ENTITY_ENV} in its environment: the entity (user) whose "
            "memories the tools read and write, set by the MCP client's server configuration "
            f'(e.g. "env": {{"{ENTITY_ENV}": "user_123"}})', argument=ENTITY_ENV)
    process = env.get(PROCESS_ENV) or None
    for name, value in ((ENTITY_ENV, entity), (PROCESS_ENV, process)):
        if value is not None:
            try:
                check_id(value, name)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{name}: {exc}", argument=name) from exc
    return entity, process


# ---- results (the tools' structured content; their JSON schemas are the output schemas) --------
class RememberResult(BaseModel):
    """What ``remember`` stored."""

    message_ids: list[int] = Field(description="ids of the captured message (kind not given)")
    memory_id: int | None = Field(description="id of the memory stored at once (kind given)")
    augmented: bool = Field(description="the turn's memories are searchable now (False: "
                            "augmentation still runs in the background)")


class SearchHit(BaseModel):
    """One line of the context block."""

    memory_ids: list[int] = Field(description="the memories this line stands for; the first "
                                  "is the one shown")
    content: str
    kind: str
    created_at: datetime | None = Field(description="the day it was said (UTC)")
    score: float = Field(description="recall score (0 for an essential memory)")
    similarity: float = Field(description="cosine similarity to the query")
    essential: bool = Field(description="from the profile (conscious_ingest), not the query")


class SearchResult(BaseModel):
    """The framed block a model is shown for the query, and its lines as data."""

    block: str | None = Field(description="the <memori_context> block, None when no memory "
                              "is relevant enough")
    hits: list[SearchHit]


class MemoryItem(BaseModel):
    """One stored memory."""

    id: int
    content: str
    kind: str
    created_at: datetime
    last_seen_at: datetime
    mention_count: int
    importance: float


class MemoryList(BaseModel):
    """One page of memories, newest first."""

    memories: list[MemoryItem]
    next_offset: int | None = Field(description="offset of the next page; None on the last")


class DeleteResult(BaseModel):
    """The memory deleted."""

    deleted: int = Field(description="the id of the memory deleted")


class ForgetResult(BaseModel):
    """Rows erased per table."""

    deleted: dict[str, int]


# ---- the tools ------------------------------------------------------------------------------------
class MemoryTools:
    """The memory tools of one MCP server: every call acts for one entity.

    Args:
        memori: a ``Memori`` (or an object with its API) on the server's database; the
            server owns it (its augmentation workers run in the server process).
        entity_id: the entity every call acts for (``MEMORI_ENTITY_ID``).
        process_id: the process (agent / persona) memories are captured under and recalled
            for (``MEMORI_PROCESS_ID``), or None.
        augment_wait_seconds: how long ``remember`` waits for the turn's augmentation so
            that what it stored is searchable when it returns (seconds; 0: not at all).

    Raises:
        ConfigurationError: an invalid id (naming ``entity_id`` / ``process_id``).
    """

    def __init__(self, memori: MemoriLike, entity_id: str, process_id: str | None = None, *,
                 augment_wait_seconds: float = 10.0) -> None:
        check_id(entity_id, "entity_id")
        if process_id is not None:
            check_id(process_id, "process_id")
        self.memori = memori
        self.entity_id = entity_id
        self.process_id = process_id
        self.augment_wait_seconds = augment_wait_seconds

    @contextmanager
    def _call(self, names: Mapping[str, str] | None = None) -> Iterator[MemoriLike]:
        """The memori instance attributed to the server's entity for one tool call, with
        memori errors as ``ToolArgumentError`` naming the tool's argument (``names``: memori's
        argument -> the tool's)."""
        rename = dict(names or {})
        try:
            with attributed(cast("Memori", self.memori), self.entity_id, self.process_id):
                yield self.memori
        except ConfigurationError as exc:
            argument = rename.get(exc.argument or "", exc.argument)
            raise ToolArgumentError(str(exc), argument=argument) from exc
        except MemoriError as exc:
            raise ToolArgumentError(f"memori could not do it: {exc}") from exc

    def remember(self, text: str, kind: str | None = None) -> RememberResult:
        """Store ``text`` for the entity.

        Without ``kind`` the text is captured as a user message, like any turn: the
        augmentation workers make its memories (an episodic one, and what the extractor
        finds, e.g. "I'm allergic to peanuts" -> attribute "The user is allergic to peanuts");
        this waits up to ``augment_wait_seconds`` for them. With ``kind`` the text is stored
        as one memory of that kind at once (``Memori.remember``), without a turn.

        Raises:
            ToolArgumentError: an empty ``text``, an unknown ``kind``, a database failure.
        """
        with self._call({"content": "text", "messages": "text"}) as mem:
            text = check_text(text, "text")
            if kind is not None:
                memory_id = mem.remember(text, kind=kind)
                return RememberResult(message_ids=[], memory_id=memory_id, augmented=True)
            ids = mem.capture(storable(cast("Memori", mem), [
                {"role": "user", "content": text, "metadata": {"via": "mcp"}}], "mcp"))
            augmented = self.augment_wait_seconds > 0 and \
                bool(mem.augmentation.wait(timeout=self.augment_wait_seconds))
            return RememberResult(message_ids=ids, memory_id=None, augmented=augmented)

    def search(self, query: str, limit: int | None = None) -> SearchResult:
        """The context block ``Memori.context`` builds for ``query`` (what a registered
        client would put into the system prompt), and its lines as hits, best first.

        Raises:
            ToolArgumentError: an empty ``query``, a bad ``limit``, a recall failure.
        """
        with self._call() as mem:
            query = check_text(query, "query")
            ctx = mem.context(query, limit=limit)
            return SearchResult(block=ctx.block, hits=[SearchHit(
                memory_ids=list(ln.memory_ids), content=ln.content, kind=ln.kind,
                created_at=ln.created_at, score=ln.score, similarity=ln.similarity,
                essential=ln.essential) for ln in ctx.lines])

    def list(self, limit: int = 20, offset: int = 0) -> MemoryList:
        """One page of the entity's current memories, newest first.

        Args:
            limit: at most this many (1-100).
            offset: how many of the newest to skip (``next_offset`` of the previous page).

        Raises:
            ToolArgumentError: a bad ``limit`` or ``offset``, a database failure.
        """
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ToolArgumentError(f"must be an int >= 0, got {offset!r}", argument="offset")
        with self._call() as mem:
            check_limit(limit, "limit", optional=False)
            rows = list(mem.memories(limit=offset + limit + 1))
        page = rows[offset:offset + limit]
        return MemoryList(memories=[MemoryItem(
            id=m.id, content=m.content, kind=m.kind, created_at=m.created_at,
            last_seen_at=m.last_seen_at, mention_count=m.mention_count,
            importance=m.importance) for m in page],
            next_offset=offset + limit if len(rows) > offset + limit else None)

    def delete(self, memory_id: int) -> DeleteResult:
        """Delete one memory of the entity by id (with its provenance and triples).

        Raises:
            ToolArgumentError: naming ``memory_id`` when the entity has no memory with that id
                (another entity's memory is never deleted).
        """
        with self._call({"memory_ids": "memory_id"}) as mem:
            n = mem.forget_memories([memory_id])
        if n == 0:
            raise ToolArgumentError(f"no memory {memory_id} among this entity's memories; "
                                    "nothing was deleted", argument="memory_id")
        return DeleteResult(deleted=memory_id)

    def forget(self, confirm: bool) -> ForgetResult:
        """Erase everything stored for the entity (``Memori.forget``): messages, sessions,
        memories, triples, jobs, the entity itself.

        Raises:
            ToolArgumentError: naming ``confirm`` unless it is true; a database failure.
        """
        if confirm is not True:
            raise ToolArgumentError("must be true to erase every memory of this entity; "
                                    "nothing was deleted", argument="confirm")
        with self._call() as mem:
            return ForgetResult(deleted=dict(mem.forget(self.entity_id)))
