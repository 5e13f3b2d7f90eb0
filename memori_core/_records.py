"""``Memori``'s browsing API: one memory by id (read, new version, history, provenance), an
entity's processes, sessions, conversations, messages, triples and augmentation jobs, and
every entity with counts. ``memori serve`` is this API with a transport.

Every method but ``entities`` and ``schema_status`` reads or writes the current attribution's
entity only (``Memori.attribution``): an id of another entity's row is "not found" (None or
False), never read. Listings are paged by row id: each returns ``(items, cursor)``, where
``cursor`` is None on the last page, else the value to pass as ``before`` (newest-first
listings) or ``after`` (oldest-first ones) for the next page.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from memori_core.augmentation.base import MEMORY_KINDS, check_kinds
from memori_core.errors import ConfigurationError
from memori_core.recall.rank import Scope, check_scope, scope_processes
from memori_core.storage import records
from memori_core.types import Memory, check_id, check_limit, to_utc_naive

if TYPE_CHECKING:
    from memori_core._attribution import Attribution
    from memori_core.augmentation.worker import Augmentation
    from memori_core.embeddings.base import Embedder
    from memori_core.recall.rank import Recaller
    from memori_core.storage.store import Store

__all__ = ["Records"]

T = TypeVar("T")
#: row ids are 64-bit signed integers in every database
_MAX_ROW_ID = 2**63 - 1
#: rows per page when no ``limit`` is given, and the most a page holds
DEFAULT_PAGE = 100
MAX_PAGE = 1000
#: the longest ``q`` of ``memory_page``, in characters
MAX_QUERY_CHARS = 200

Page = tuple[list[T], int | None]


def _row_id(value: object, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{argument} must be an int row id, got {value!r}",
                                 argument=argument)
    return value


def _cursor(value: object, argument: str) -> int | None:
    return None if value is None else _row_id(value, argument)


def check_memory_search(q: object, since: object, until: object
                        ) -> tuple[str | None, datetime | None, datetime | None]:
    """``memory_page``'s ``q``, ``since`` and ``until``, checked: (the text or None, the bounds
    as naive UTC or None).

    Raises:
        ConfigurationError: as ``memory_page`` says, naming the argument.
    """
    text = _search_text(q)
    start, end = _instant(since, "since"), _instant(until, "until")
    if start is not None and end is not None and end <= start:
        raise ConfigurationError(f"until ({end.isoformat()}) must be after since "
                                 f"({start.isoformat()}): the window is [since, until)",
                                 argument="until")
    return text, start, end


def _search_text(value: object) -> str | None:
    """``memory_page``'s ``q``: None for no text condition.

    Raises:
        ConfigurationError: not a str, longer than ``MAX_QUERY_CHARS``, NUL bytes or a lone
            surrogate in it.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"q must be a str or None, got {type(value).__name__}",
                                 argument="q")
    if len(value) > MAX_QUERY_CHARS:
        raise ConfigurationError(f"q is at most {MAX_QUERY_CHARS} characters, got "
                                 f"{len(value)}: search for a shorter part of the text",
                                 argument="q")
    if "\x00" in value:
        raise ConfigurationError("q contains NUL bytes, which no stored text holds; strip "
                                 "them first", argument="q")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError("q is not valid Unicode (a lone surrogate)",
                                 argument="q") from None
    return value


def _instant(value: object, argument: str) -> datetime | None:
    """A ``since`` / ``until`` bound as naive UTC: a datetime, a date (its midnight) or an ISO
    8601 string of either; None stays None.

    Raises:
        ConfigurationError: anything else, naming ``argument``.
    """
    if value is None:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    try:
        return to_utc_naive(value, argument)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} (give a date or datetime, e.g. 2024-05-01 or "
                                 "2024-05-01T09:30:00+00:00)", argument=argument) from None


def _page_size(limit: object) -> int:
    size = check_limit(limit, "limit") or DEFAULT_PAGE
    if size > MAX_PAGE:
        raise ConfigurationError(f"limit is at most {MAX_PAGE}, got {size}", argument="limit")
    return size


def encode_cursor(row_id: int | None) -> str | None:
    """The opaque page cursor of the ``/v1`` API for a row id (None stays None): what
    ``memori serve`` answers as ``next_cursor`` and its remote clients decode."""
    return None if row_id is None else base64.urlsafe_b64encode(
        f"v1:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The row id of a cursor from ``encode_cursor``.

    Raises:
        ValueError: not such a cursor.
    """
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("not a cursor this server gave") from exc
    version, _, number = text.partition(":")
    if version != "v1" or not number.lstrip("-").isdigit():
        raise ValueError("not a cursor this server gave")
    return int(number)


def in_row_range(row_id: int) -> bool:
    """Whether ``row_id`` fits a 64-bit row id column (others name no row)."""
    return -_MAX_ROW_ID <= row_id <= _MAX_ROW_ID


def check_update(content: object, kind: object, slot: object, importance: object) -> str:
    """``update_memory``'s arguments checked; the content stripped.

    Raises:
        ConfigurationError: empty content (or NUL bytes, a lone surrogate), an unknown kind,
            a bad slot, an importance outside [0, 1].
    """
    if not isinstance(content, str) or not content.strip():
        raise ConfigurationError("content must be a non-empty str", argument="content")
    if "\x00" in content:
        raise ConfigurationError("content contains NUL bytes, which SQL text columns cannot "
                                 "hold; strip them first", argument="content")
    if kind is not None and kind not in MEMORY_KINDS:
        raise ConfigurationError(f"kind is {kind!r}; use one of {', '.join(MEMORY_KINDS)}",
                                 argument="kind")
    if slot is not None:
        check_id(slot, "slot")
    if importance is not None and (isinstance(importance, bool) or not isinstance(
            importance, (int, float)) or not 0.0 <= importance <= 1.0):
        raise ConfigurationError(f"importance must be a number in [0, 1] or None, got "
                                 f"{importance!r}", argument="importance")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigurationError("content is not valid Unicode (a lone surrogate)",
                                 argument="content") from exc
    return content.strip()


def check_entity_filter(ids: Sequence[str] | None, prefix: object) -> list[str] | None:
    """``entities``' ``ids`` and ``prefix`` checked; the ids as a list.

    Raises:
        ConfigurationError: ids that are a str or hold an invalid id; a prefix not a str.
    """
    if ids is not None:
        if isinstance(ids, str):
            raise ConfigurationError("ids must be a list of entity ids", argument="ids")
        ids = [check_id(i, "ids") for i in ids]
    if prefix is not None and not isinstance(prefix, str):
        raise ConfigurationError(f"prefix must be a str, got {prefix!r}", argument="prefix")
    return None if ids is None else list(ids)


def check_statuses(statuses: Sequence[str] | str | None) -> list[str] | None:
    """``jobs``' ``statuses`` checked (a single status as a list of one).

    Raises:
        ConfigurationError: empty, or a status that is not a job status.
    """
    if statuses is None:
        return None
    found = [statuses] if isinstance(statuses, str) else list(statuses)
    if not found or any(x not in records.JOB_STATUSES for x in found):
        raise ConfigurationError(
            f"statuses must be a non-empty list of {', '.join(records.JOB_STATUSES)}, "
            f"got {found!r}", argument="statuses")
    return found


class Records:
    """The browsing methods of ``Memori`` (a base class of it; not used alone)."""

    if TYPE_CHECKING:
        _store: Store
        _recaller: Recaller
        embedder: Embedder
        augmentation: Augmentation

        def _require_entity(self, what: str) -> Attribution: ...
        def _ensure_ready(self) -> None: ...

    def _on_entity(self, entity_id: str, fn: Any, empty: Any, full: Any = None) -> Any:
        """``fn(entity row id)`` for an external entity id, ``empty`` for an unknown one. A
        result ``full`` does not call full (default: a page with items, or a truthy value) has
        the entity's cached row id checked first (``Store.for_entity``: forgotten and made
        again by another process)."""
        full = full or (lambda r: bool(r[0]) if isinstance(r, tuple) else bool(r))

        def call(pk: int) -> Any:
            result = fn(pk)
            return result if full(result) else None

        found = self._store.for_entity(entity_id, call, None)
        return empty if found is None else found

    def _paging(self, what: str, scope: Scope, before: object, limit: object
                ) -> tuple[Attribution, int, int | None]:
        """(the current attribution, the page size, the cursor), checked; the schema ready.

        Raises:
            ConfigurationError: no attribution, or a bad argument.
        """
        att = self._require_entity(what)
        check_scope(scope)
        size, cursor = _page_size(limit), _cursor(before, "before")
        self._ensure_ready()
        return att, size, cursor

    def _entity_call(self, what: str, fn: Any, empty: Any, full: Any = None) -> Any:
        """``fn(entity row id)`` for the current entity, ``empty`` for an unknown one."""
        att = self._require_entity(what)
        self._ensure_ready()
        return self._on_entity(att.entity_id or "", fn, empty, full)

    def _found(self, what: str, memory_id: object, fn: Any) -> Any:
        """``fn(entity row id, memory id)``, None when the entity is unknown."""
        mid = _row_id(memory_id, "memory_id")
        if not in_row_range(mid):
            self._require_entity(what)
            return None
        # None is "not the entity's memory"; an empty result ([] history) is an answer
        return self._entity_call(what, lambda pk: fn(pk, mid), None,
                                 full=lambda result: result is not None)

    # ---- one memory ---------------------------------------------------------------------------
    def memory(self, memory_id: int) -> Memory | None:
        """One memory of the current entity by id (``Memory.id``, ``RecallHit.id``), current
        or superseded.

        Returns:
            the ``Memory``, or None when the entity has no memory ``memory_id`` (another
            entity's id included).

        Raises:
            ConfigurationError: no attribution, or an id that is not an int.
            StorageError: the database failed.
        """
        row = self._found("memory", memory_id, lambda pk, mid: records.memory(
            self._store, pk, mid))
        return None if row is None else Memory(**row)

    def memory_page(self, *, kinds: Sequence[str] | None = None,
                    include_superseded: bool = False, scope: Scope = "process",
                    before: int | None = None, limit: int | None = None,
                    q: str | None = None, since: datetime | date | str | None = None,
                    until: datetime | date | str | None = None) -> Page[Memory]:
        """The current entity's memories, newest first, one page at a time (what
        ``Memori.memories`` lists, with a cursor), optionally searched by text and date.

        Args:
            kinds: as for ``Memori.memories``.
            include_superseded: as for ``Memori.memories``.
            scope: as for ``Memori.memories``.
            before: the cursor returned with the previous page (None: the first page).
            limit: at most this many (default 100, at most 1000).
            q: only memories whose content holds this text: a substring, case-insensitive
                (ASCII letters on every database; others as the database's ``lower()``
                folds them), ``%`` and ``_`` taken literally; at most ``MAX_QUERY_CHARS``
                (200) characters; None or ``""``: no text condition.
            since: only memories created at or after this instant: a ``datetime`` (naive:
                UTC), a ``date`` (its midnight, UTC) or an ISO 8601 string of either.
            until: only memories created before this instant (exclusive), as ``since``;
                after ``since`` when both are given.

        Returns:
            (memories, the next page's cursor or None).

        Raises:
            ConfigurationError: no attribution, or a bad argument (named by ``argument``:
                a ``q`` too long or not a str, a ``since`` / ``until`` that is no date,
                an ``until`` not after ``since``).
            StorageError: the database failed.
        """
        kinds = check_kinds(kinds)
        text, start, end = check_memory_search(q, since, until)
        att, size, cursor = self._paging("memory_page", scope, before, limit)
        processes = scope_processes(self._store, att.process_id, scope)
        page, nxt = self._on_entity(att.entity_id or "", lambda pk: records.memory_page(
            self._store, pk, processes_=processes, kinds=kinds,
            include_superseded=bool(include_superseded), before=cursor, limit=size,
            text=text, since=start, until=end),
            ([], None))
        return [Memory(**r) for r in page], nxt

    def update_memory(self, memory_id: int, content: str, *, kind: str | None = None,
                      slot: str | None = None, importance: float | None = None) -> int | None:
        """Correct a memory of the current entity: a new version with ``content`` replaces it
        (under the same process, with its provenance); the old one is kept as history
        (``superseded_by`` = the new id; ``memory_history`` lists it). Embedded at once.

        Args:
            memory_id: the memory to replace.
            content: the new text.
            kind: the new kind (default: the old one's), one of ``MEMORY_KINDS``.
            slot: the new slot (default: the old one's).
            importance: in [0, 1] (default: the old one's).

        Returns:
            the new version's id (the same id when nothing changed; an existing memory's id
            when the entity already holds this text), or None when the entity has no memory
            ``memory_id``.

        Raises:
            ConfigurationError: no attribution, empty content, an unknown kind, an importance
                outside [0, 1].
            StorageError: the database failed (nothing changed).
        """
        mid = _row_id(memory_id, "memory_id")
        att = self._require_entity("update_memory")
        content = check_update(content, kind, slot, importance)
        self._ensure_ready()
        pk = self._store.find_pk("entity", att.entity_id or "")
        if pk is None or not in_row_range(mid):
            return None
        vector = self.embedder.embed([content])[0]
        self._store.check_embedding_model(self.embedder.name, self.embedder.dim)
        new_id = records.update_memory(
            self._store, pk, mid, content=content, kind=kind, slot=slot,
            importance=None if importance is None else float(importance), embedding=vector,
            model=self.embedder.name)
        if new_id is not None:
            self._recaller.cache.discard(pk)
        return new_id

    def memory_history(self, memory_id: int) -> list[Memory] | None:
        """The versions a memory of the current entity replaced (an older value on its slot,
        an ``update_memory``, an ``LLMExtractor`` UPDATE), and the ones they replaced, newest
        first.

        Returns:
            the older versions (``[]`` for a first version), or None when the entity has no
            memory ``memory_id``.

        Raises:
            ConfigurationError: no attribution, or an id that is not an int.
            StorageError: the database failed.
        """
        rows = self._found("memory_history", memory_id, lambda pk, mid: records.memory_history(
            self._store, pk, mid))
        return None if rows is None else [Memory(**r) for r in rows]

    def memory_provenance(self, memory_id: int) -> dict[str, Any] | None:
        """Where a memory of the current entity came from.

        Returns:
            ``{"messages": [...], "conversations": [...]}`` (``records.provenance``: the
            source messages oldest first, each with ``conversation_id`` and ``session_id``, and
            their conversations with counts; both empty for a memory given by ``remember``), or
            None when the entity has no memory ``memory_id``.

        Raises:
            ConfigurationError: no attribution, or an id that is not an int.
            StorageError: the database failed.
        """
        return self._found("memory_provenance", memory_id, lambda pk, mid: records.provenance(
            self._store, pk, mid))

    # ---- the entity's records -----------------------------------------------------------------
    def processes(self) -> list[dict[str, Any]]:
        """The processes (personas) the current entity has rows under, with counts.

        Returns:
            ``{"process_id" (None: captured without one), "memories", "messages",
            "sessions"}`` each; ``[]`` for an unknown entity.

        Raises:
            ConfigurationError: no attribution.
            StorageError: the database failed.
        """
        return self._entity_call("processes", lambda pk: records.processes(self._store, pk), [])

    def sessions(self, *, scope: Scope = "process", before: int | None = None,
                 limit: int | None = None) -> Page[dict[str, Any]]:
        """The current entity's sessions, newest first.

        Args:
            scope: ``"process"`` with a process set: only sessions started under it;
                ``"entity"`` (or no process set): all.
            before: the previous page's cursor.
            limit: at most this many (default 100, at most 1000).

        Returns:
            (``{"session_id", "process_id", "created_at", "last_activity_at",
            "conversations", "messages"}`` each, the next page's cursor or None).

        Raises:
            ConfigurationError: no attribution, or a bad argument.
            StorageError: the database failed.
        """
        att, size, cursor = self._paging("sessions", scope, before, limit)
        process: int | None | bool = False
        if scope == "process" and att.process_id is not None:
            process = self._store.find_pk("process", att.process_id)
            if process is None:
                return [], None
        found: Page[dict[str, Any]] = self._on_entity(
            att.entity_id or "", lambda pk: records.sessions(
                self._store, pk, process_pk=process, before=cursor, limit=size), ([], None))
        return found

    def conversations(self, session_id: str | None = None, *, before: int | None = None,
                      limit: int | None = None) -> Page[dict[str, Any]]:
        """The current entity's conversations (of session ``session_id`` when given), newest
        first.

        Returns:
            (``{"id", "session_id", "process_id", "summary", "created_at",
            "last_activity_at", "messages"}`` each, the next page's cursor or None).

        Raises:
            ConfigurationError: no attribution, or a bad argument.
            StorageError: the database failed.
        """
        if session_id is not None:
            check_id(session_id, "session_id")
        size, cursor = _page_size(limit), _cursor(before, "before")
        return self._entity_call("conversations", lambda pk: records.conversations(
            self._store, pk, session_id=session_id, before=cursor, limit=size), ([], None))

    def conversation_messages(self, conversation_id: int, *, after: int | None = None,
                              limit: int | None = None) -> Page[dict[str, Any]] | None:
        """Messages of one of the current entity's conversations, oldest first, shaped as
        ``session_messages`` gives them.

        Args:
            conversation_id: ``conversations()[...]["id"]``.
            after: the previous page's cursor.
            limit: at most this many (default 100, at most 1000).

        Returns:
            (messages, the next page's cursor or None), or None when the entity has no
            conversation ``conversation_id``.

        Raises:
            ConfigurationError: no attribution, or a bad argument.
            StorageError: the database failed.
        """
        cid = _row_id(conversation_id, "conversation_id")
        size, cursor = _page_size(limit), _cursor(after, "after")
        if not in_row_range(cid):
            self._require_entity("conversation_messages")
            return None
        return self._entity_call("conversation_messages", lambda pk: records.conversation_messages(
            self._store, pk, cid, after=cursor, limit=size), None, lambda r: r is not None)

    def triples(self, *, scope: Scope = "process", before: int | None = None,
                limit: int | None = None) -> Page[dict[str, Any]]:
        """The current entity's knowledge-graph triples, newest first.

        Args:
            scope: as for ``Memori.memories``.
            before: the previous page's cursor.
            limit: at most this many (default 100, at most 1000).

        Returns:
            (``{"id", "subject", "predicate", "object", "process_id", "memory_id",
            "mention_count", "created_at", "last_seen_at"}`` each, the next page's cursor or
            None).

        Raises:
            ConfigurationError: no attribution, or a bad argument.
            StorageError: the database failed.
        """
        att, size, cursor = self._paging("triples", scope, before, limit)
        processes = scope_processes(self._store, att.process_id, scope)
        found: Page[dict[str, Any]] = self._on_entity(
            att.entity_id or "", lambda pk: records.triples(
                self._store, pk, processes_=processes, before=cursor, limit=size), ([], None))
        return found

    # ---- the augmentation queue ---------------------------------------------------------------
    def jobs(self, *, statuses: Sequence[str] | None = None, before: int | None = None,
             limit: int | None = None) -> tuple[dict[str, int], list[dict[str, Any]], int | None]:
        """The current entity's augmentation jobs: counts per status and a page of jobs,
        newest first (failed ones with their ``error``).

        Args:
            statuses: only these of ``queued``, ``running``, ``done``, ``failed`` (default
                all).
            before: the previous page's cursor.
            limit: at most this many jobs (default 100, at most 1000).

        Returns:
            (``{"queued", "running", "done", "failed"}`` counts, ``{"id", "status",
            "process_id", "conversation_id", "message_ids", "attempts", "error",
            "created_at", "run_after", "claimed_at", "finished_at"}`` each, the next page's
            cursor or None).

        Raises:
            ConfigurationError: no attribution, or a bad argument.
            StorageError: the database failed.
        """
        statuses = check_statuses(statuses)
        size, cursor = _page_size(limit), _cursor(before, "before")
        empty = {k: 0 for k in records.JOB_STATUSES}

        def read(pk: int) -> tuple[dict[str, int], list[dict[str, Any]], int | None]:
            page, nxt = records.jobs(self._store, pk, statuses=statuses, before=cursor,
                                     limit=size)
            return records.job_counts(self._store, pk), page, nxt

        return self._entity_call("jobs", read, (empty, [], None),
                                 lambda r: any(r[0].values()))

    def retry_job(self, job_id: int) -> bool:
        """Queue a failed augmentation job of the current entity again, due now, its
        attempts reset.

        Returns:
            True when it was queued; False when the entity has no failed job ``job_id``.

        Raises:
            ConfigurationError: no attribution, or an id that is not an int.
            StorageError: the database failed.
        """
        jid = _row_id(job_id, "job_id")
        if not in_row_range(jid):
            self._require_entity("retry_job")
            return False
        done = bool(self._entity_call("retry_job", lambda pk: records.retry_job(
            self._store, pk, jid), False))
        if done:
            self.augmentation.notify()
        return done

    # ---- across entities ------------------------------------------------------------------------
    def entities(self, *, ids: Sequence[str] | None = None, prefix: str | None = None,
                 after: int | None = None, limit: int | None = None) -> Page[dict[str, Any]]:
        """Entities of the database in creation order, with counts. Not scoped to the
        attribution (like ``export`` and ``forget``, it names entities itself): what an
        administrator, or a server filtering by a key's entities, lists.

        Args:
            ids: only these entity ids.
            prefix: only entity ids starting with it (case-sensitive).
            after: the previous page's cursor.
            limit: rows scanned per page (default 100, at most 1000); with ``prefix`` a page
                can hold fewer while a cursor follows.

        Returns:
            (``{"entity_id", "created_at", "memories", "messages", "sessions"}`` each, the
            next page's cursor or None).

        Raises:
            ConfigurationError: a bad argument.
            StorageError: the database failed.
        """
        ids = check_entity_filter(ids, prefix)
        size, cursor = _page_size(limit), _cursor(after, "after")
        self._ensure_ready()
        if ids is not None and not ids:
            return [], None
        return records.entities(self._store, ids=ids, prefix=prefix, after=cursor, limit=size)

    def schema_status(self) -> dict[str, int]:
        """The database's schema, read now: ``{"version": applied migration, "latest": this
        memori-core's}`` (equal when current). What a readiness probe asks.

        Raises:
            StorageError: the database is unreachable.
        """
        return records.schema_status(self._store)
