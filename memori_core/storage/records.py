"""Reads and edits of single records behind ``Memori``'s browsing API (and ``memori serve``):
one memory by id, its versions and provenance; an entity's processes, sessions, conversations,
messages, triples and augmentation jobs; every entity, with counts.

Every function but ``entities`` and ``schema_status`` takes an entity row id and only ever
reads or writes that entity's rows: an id of another entity's row is "not found". Listings are
paged by row id (``before`` / ``after``: the last id of the previous page) and return at most
``limit`` rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, false, func, or_, select, update

from memori_core.errors import StorageError
from memori_core.storage import migrations
from memori_core.storage import schema as s
from memori_core.storage.store import (
    NewMemory,
    Store,
    _message_dict,
    _opt_int,
    _sources,
    _TxState,
    normalize_text,
    sha,
    utcnow,
)

__all__ = ["JOB_STATUSES", "conversation_messages", "conversations", "entities", "job_counts",
           "jobs", "memory", "memory_filters", "memory_history", "memory_page", "processes",
           "provenance", "retry_job",
           "schema_status", "sessions", "triples", "update_memory"]

#: statuses of ``memori_augmentation_job`` rows
JOB_STATUSES = ("queued", "running", "done", "failed")
#: the longest chain of versions ``memory_history`` follows
_MAX_VERSIONS = 10_000
#: characters a LIKE pattern gives a meaning to, escaped with ``!`` (``memory_filters``)
_LIKE_SPECIAL = re.compile(r"[!%_]")

_f, _p = s.entity_fact.c, s.process.c
_MEMORY = (select(_f.id, _f.content, _f.kind, _f.created_at, _f.last_seen_at, _f.mention_count,
                  _f.slot, _f.superseded_by, _f.importance, _p.external_id.label("process_id"))
           .select_from(s.entity_fact.outerjoin(s.process, _p.id == _f.process_id)))


def _memory_dicts(conn: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """``Memory`` fields of ``_MEMORY`` rows, with their source message ids."""
    sources = _sources(conn, [int(r.id) for r in rows])
    return [{**r._mapping, "id": int(r.id), "superseded_by": _opt_int(r.superseded_by),
             "importance": float(r.importance),
             "source_message_ids": tuple(sources.get(int(r.id), ()))} for r in rows]


def memory(store: Store, entity_pk: int, memory_id: int) -> dict[str, Any] | None:
    """One memory of the entity as ``Memory`` fields, or None (no such memory, or another
    entity's)."""
    with store.read() as conn:
        rows = conn.execute(_MEMORY.where(_f.entity_id == entity_pk, _f.id == memory_id)).all()
        found = _memory_dicts(conn, rows)
    return found[0] if found else None


def memory_page(store: Store, entity_pk: int, *, processes_: Sequence[int | None] | None,
                kinds: Sequence[str] | None, include_superseded: bool, before: int | None,
                limit: int, text: str | None = None, since: datetime | None = None,
                until: datetime | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """The entity's memories, newest first, as ``Memory`` fields (what
    ``Store.list_memories`` gives, paged), optionally only those whose content holds ``text``
    and created in ``[since, until)`` (``memory_filters``).

    Returns:
        (the page, the next page's cursor or None).
    """
    q = _MEMORY.where(_f.entity_id == entity_pk, *_in_page(_f.id, before, None),
                      *memory_filters(text, since, until))
    if processes_ is not None:
        q = q.where(_processes_in(_f.process_id, processes_))
    if kinds is not None:
        q = q.where(_f.kind.in_(list(kinds)))
    if not include_superseded:
        q = q.where(_f.superseded_by.is_(None))
    with store.read() as conn:
        page = _memory_dicts(conn, conn.execute(q.order_by(_f.id.desc()).limit(limit)).all())
    return page, (page[-1]["id"] if len(page) == limit else None)


def memory_filters(text: str | None, since: datetime | None, until: datetime | None
                   ) -> list[Any]:
    """SQL conditions on ``memori_entity_fact`` rows: the content holds ``text`` (a substring,
    case-insensitive as the database's ``lower()`` folds: ASCII letters everywhere, other
    letters on MariaDB and on PostgreSQL with a non-C locale; ``%`` and ``_`` taken
    literally), and ``created_at`` is
    at or after ``since`` and before ``until`` (naive UTC). None (or ``""`` for ``text``):
    no condition. The entity's rows are read through ``ix_memori_fact_entity`` (entity, id),
    newest first; these conditions filter them (at 10,000 memories a scan is a few ms)."""
    conds: list[Any] = []
    if text:
        pattern = "%" + _LIKE_SPECIAL.sub(r"!\g<0>", text.lower()) + "%"
        conds.append(func.lower(_f.content).like(pattern, escape="!"))
    if since is not None:
        conds.append(_f.created_at >= since)
    if until is not None:
        conds.append(_f.created_at < until)
    return conds


def _processes_in(column: Any, processes_: Sequence[int | None]) -> Any:
    """``column`` (a process row id) is one of ``processes_`` (None: no process)."""
    known = [x for x in processes_ if x is not None]
    conds = [column.in_(known)] if known else []
    if None in processes_:
        conds.append(column.is_(None))
    return or_(*conds) if conds else false()


def memory_history(store: Store, entity_pk: int, memory_id: int
                   ) -> list[dict[str, Any]] | None:
    """The versions a memory replaced, directly or through earlier versions (every memory of
    the entity whose ``superseded_by`` chain leads to it), newest first, as ``Memory`` fields;
    None when the memory is not the entity's."""
    with store.read() as conn:
        if conn.execute(select(_f.id).where(_f.entity_id == entity_pk,
                                            _f.id == memory_id)).scalar() is None:
            return None
        seen = {memory_id}
        frontier = [memory_id]
        found: list[Any] = []
        while frontier and len(seen) < _MAX_VERSIONS:
            rows = conn.execute(_MEMORY.where(
                _f.entity_id == entity_pk, _f.superseded_by.in_(frontier[:500]),
                _f.id.not_in(seen))).all()
            frontier = frontier[500:]
            for r in rows:
                if int(r.id) not in seen:
                    seen.add(int(r.id))
                    frontier.append(int(r.id))
                    found.append(r)
        found.sort(key=lambda r: int(r.id), reverse=True)
        return _memory_dicts(conn, found)


def provenance(store: Store, entity_pk: int, memory_id: int) -> dict[str, Any] | None:
    """Where a memory came from: ``{"messages": [...], "conversations": [...]}``, or None when
    the memory is not the entity's.

    ``messages``: its source messages oldest first, as ``Memori.session_messages`` gives them
    plus ``conversation_id`` and ``session_id`` (external). ``conversations``: each of their
    conversations as ``conversations`` lists them. Both empty for a memory given directly
    (``remember``).
    """
    m, mn, c, ss = (s.conversation_message.c, s.fact_mention.c, s.conversation.c,
                    s.session.c)
    with store.read() as conn:
        if conn.execute(select(_f.id).where(_f.entity_id == entity_pk,
                                            _f.id == memory_id)).scalar() is None:
            return None
        rows = conn.execute(
            select(m.id, m.role, m.name, m.content, m.content_json, m.extra_json, m.created_at,
                   m.conversation_id, ss.external_id.label("session_id"))
            .select_from(s.conversation_message.join(s.session, ss.id == m.session_id))
            .where(m.entity_id == entity_pk,
                   m.id.in_(select(mn.message_id).where(mn.fact_id == memory_id)))
            .order_by(m.id)).all()
        convs = sorted({int(r.conversation_id) for r in rows})
        conversations_ = _conversation_rows(conn, entity_pk, c.id.in_(convs)) if convs else []
    messages = [{**_message_dict(r), "conversation_id": int(r.conversation_id),
                 "session_id": r.session_id} for r in rows]
    return {"messages": messages, "conversations": conversations_}


def update_memory(store: Store, entity_pk: int, memory_id: int, *, content: str,
                  kind: str | None, slot: str | None, importance: float | None,
                  embedding: np.ndarray, model: str) -> int | None:
    """Write a new version of a memory: a memory with ``content`` (and ``kind``, ``slot``,
    ``importance``, each defaulting to the old version's) under the same process, holding
    the old version's provenance; the old version gets ``superseded_by`` = the new id and
    stays as history. Text the entity already holds (same process and kind) is that memory,
    made current again. One transaction.

    Returns:
        the new version's id (the old id when ``content`` and the rest are unchanged), or None
        when the memory is not the entity's.
    """
    mn = s.fact_mention.c

    def tx(conn: Connection, _state: _TxState) -> int | None:
        old = conn.execute(select(_f.id, _f.process_id, _f.kind, _f.slot, _f.importance,
                                  _f.content)
                           .where(_f.entity_id == entity_pk, _f.id == memory_id)).first()
        if old is None:
            return None
        if normalize_text(content) == normalize_text(old.content) and \
                kind in (None, old.kind) and slot in (None, old.slot) and \
                importance in (None, float(old.importance)):
            return memory_id  # nothing changes
        sources = tuple(int(i) for i in conn.execute(
            select(mn.message_id).where(mn.fact_id == memory_id)).scalars())
        new = NewMemory(entity_pk, _opt_int(old.process_id), kind or old.kind, content,
                        embedding, sources, slot if slot is not None else old.slot,
                        importance=float(old.importance if importance is None else importance))
        [new_id] = store.upsert_memories(conn, [new], model)
        if importance is not None:  # an edit sets it, where a mention only raises it
            conn.execute(update(s.entity_fact).where(_f.id == new_id)
                         .values(importance=float(importance)))
        if new_id != memory_id:
            conn.execute(update(s.entity_fact).where(_f.id == memory_id)
                         .values(superseded_by=new_id))
            conn.execute(update(s.entity_fact).where(_f.id == new_id)
                         .values(superseded_by=None, last_seen_at=utcnow()))
        store._bump_version(conn, [entity_pk])
        return int(new_id)

    return store.write(tx)


def _in_page(column: Any, before: int | None, after: int | None) -> list[Any]:
    conds = []
    if before is not None:
        conds.append(column < before)
    if after is not None:
        conds.append(column > after)
    return conds


def entities(store: Store, *, ids: Sequence[str] | None, prefix: str | None,
             after: int | None, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """Entities in id order, with counts: ``{"entity_id", "created_at", "memories",
    "messages", "sessions"}`` each.

    Args:
        ids: only these external ids (None: any).
        prefix: only external ids starting with it, compared exactly (case included).
        after: the ``cursor`` of the previous page.
        limit: rows scanned per page.

    Returns:
        (the page, the cursor of the next one or None at the end); a page can hold fewer than
        ``limit`` rows while a cursor is returned (``prefix`` is rechecked exactly).
    """
    e, f, m, ss = s.entity.c, s.entity_fact.c, s.conversation_message.c, s.session.c
    q = (select(e.id, e.external_id, e.created_at,
                select(func.count()).where(f.entity_id == e.id).scalar_subquery()
                .label("memories"),
                select(func.count()).where(m.entity_id == e.id).scalar_subquery()
                .label("messages"),
                select(func.count()).where(ss.entity_id == e.id).scalar_subquery()
                .label("sessions"))
         .where(*_in_page(e.id, None, after)).order_by(e.id).limit(limit))
    if ids is not None:
        q = q.where(e.external_key.in_([sha("entity", i) for i in ids]))
    if prefix:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(e.external_id.like(escaped + "%", escape="\\"))
    with store.read() as conn:
        rows = conn.execute(q).all()
    page = [{"entity_id": r.external_id, "created_at": r.created_at,
             "memories": int(r.memories), "messages": int(r.messages),
             "sessions": int(r.sessions)} for r in rows
            if not prefix or str(r.external_id).startswith(prefix)]
    return page, (int(rows[-1].id) if len(rows) == limit else None)


def processes(store: Store, entity_pk: int) -> list[dict[str, Any]]:
    """The processes the entity has rows under (None: captured without one), with counts:
    ``{"process_id", "memories", "messages", "sessions"}`` each, by process id."""
    f, m, ss, p = s.entity_fact.c, s.conversation_message.c, s.session.c, s.process.c
    counts: dict[int | None, dict[str, int]] = {}
    with store.read() as conn:
        for name, table, col in (("memories", s.entity_fact, f), ("messages",
                                 s.conversation_message, m), ("sessions", s.session, ss)):
            for pk, n in conn.execute(select(col.process_id, func.count()).select_from(table)
                                      .where(col.entity_id == entity_pk)
                                      .group_by(col.process_id)).all():
                counts.setdefault(_opt_int(pk), {})[name] = int(n)
        known = [pk for pk in counts if pk is not None]
        names: dict[int, str] = dict(conn.execute(
            select(p.id, p.external_id).where(p.id.in_(known))).all()) if known else {}
    out = [{"process_id": None if pk is None else names.get(pk),
            **{k: c.get(k, 0) for k in ("memories", "messages", "sessions")}}
           for pk, c in counts.items() if pk is None or pk in names]
    return sorted(out, key=lambda r: (r["process_id"] is not None, r["process_id"] or ""))


def sessions(store: Store, entity_pk: int, *, process_pk: int | None | bool,
             before: int | None, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """The entity's sessions, newest first: ``{"session_id", "process_id", "created_at",
    "last_activity_at" (None without a conversation), "conversations", "messages"}``.

    Args:
        process_pk: only sessions started under this process row id; False: every session.

    Returns:
        (the page, the next page's cursor or None).
    """
    ss, c, m, p = s.session.c, s.conversation.c, s.conversation_message.c, s.process.c
    q = (select(ss.id, ss.external_id, ss.created_at, p.external_id.label("process_id"),
                select(func.count()).where(c.session_id == ss.id).scalar_subquery()
                .label("conversations"),
                select(func.count()).where(m.session_id == ss.id).scalar_subquery()
                .label("messages"),
                select(func.max(c.last_activity_at)).where(c.session_id == ss.id)
                .scalar_subquery().label("last_activity_at"))
         .select_from(s.session.outerjoin(s.process, p.id == ss.process_id))
         .where(ss.entity_id == entity_pk, *_in_page(ss.id, before, None))
         .order_by(ss.id.desc()).limit(limit))
    if process_pk is not False:
        q = q.where(ss.process_id.is_(None) if process_pk is None else ss.process_id == process_pk)
    with store.read() as conn:
        rows = conn.execute(q).all()
    page = [{"session_id": r.external_id, "process_id": r.process_id,
             "created_at": r.created_at, "last_activity_at": r.last_activity_at,
             "conversations": int(r.conversations), "messages": int(r.messages)} for r in rows]
    return page, (int(rows[-1].id) if len(rows) == limit else None)


def _conversation_rows(conn: Connection, entity_pk: int, *where: Any, before: int | None = None,
                       limit: int | None = None) -> list[dict[str, Any]]:
    c, m, ss, p = s.conversation.c, s.conversation_message.c, s.session.c, s.process.c
    q = (select(c.id, ss.external_id.label("session_id"), p.external_id.label("process_id"),
                c.summary, c.created_at, c.last_activity_at,
                select(func.count()).where(m.conversation_id == c.id).scalar_subquery()
                .label("messages"))
         .select_from(s.conversation.join(s.session, ss.id == c.session_id)
                      .outerjoin(s.process, p.id == c.process_id))
         .where(c.entity_id == entity_pk, *where, *_in_page(c.id, before, None))
         .order_by(c.id.desc()))
    if limit is not None:
        q = q.limit(limit)
    return [{**r._mapping, "id": int(r.id), "messages": int(r.messages)}
            for r in conn.execute(q).all()]


def conversations(store: Store, entity_pk: int, *, session_id: str | None,
                  before: int | None, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """The entity's conversations (of one session when ``session_id``, external), newest
    first: ``{"id", "session_id", "process_id", "summary", "created_at", "last_activity_at",
    "messages"}``.

    Returns:
        (the page, the next page's cursor or None).
    """
    c = s.conversation.c
    where = []
    if session_id is not None:
        where.append(c.session_id == select(s.session.c.id).where(
            s.session.c.external_key == sha("session", entity_pk, session_id))
            .scalar_subquery())
    with store.read() as conn:
        page = _conversation_rows(conn, entity_pk, *where, before=before, limit=limit)
    return page, (page[-1]["id"] if len(page) == limit else None)


def conversation_messages(store: Store, entity_pk: int, conversation_id: int, *,
                          after: int | None, limit: int
                          ) -> tuple[list[dict[str, Any]], int | None] | None:
    """Messages of one of the entity's conversations, oldest first, shaped as
    ``Memori.session_messages`` gives them; None when the conversation is not the entity's.

    Returns:
        (the page, the next page's cursor or None), or None.
    """
    c, m = s.conversation.c, s.conversation_message.c
    with store.read() as conn:
        if conn.execute(select(c.id).where(c.id == conversation_id,
                                           c.entity_id == entity_pk)).scalar() is None:
            return None
        rows = conn.execute(select(m.id, m.role, m.name, m.content, m.content_json,
                                   m.extra_json, m.created_at)
                            .where(m.conversation_id == conversation_id,
                                   m.entity_id == entity_pk, *_in_page(m.id, None, after))
                            .order_by(m.id).limit(limit)).all()
    return [_message_dict(r) for r in rows], (int(rows[-1].id) if len(rows) == limit else None)


def triples(store: Store, entity_pk: int, *, processes_: Sequence[int | None] | None,
            before: int | None, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """The entity's knowledge-graph triples, newest first: ``{"id", "subject", "predicate",
    "object", "process_id", "memory_id" (the memory it was drawn from, or None),
    "mention_count", "created_at", "last_seen_at"}``.

    Args:
        processes_: process row ids to keep (None in it: captured without one); None: all.

    Returns:
        (the page, the next page's cursor or None).
    """
    kg, p = s.knowledge_graph.c, s.process.c
    q = (select(kg.id, kg.subject, kg.predicate, kg.object, p.external_id.label("process_id"),
                kg.fact_id, kg.mention_count, kg.created_at, kg.last_seen_at)
         .select_from(s.knowledge_graph.outerjoin(s.process, p.id == kg.process_id))
         .where(kg.entity_id == entity_pk, *_in_page(kg.id, before, None))
         .order_by(kg.id.desc()).limit(limit))
    if processes_ is not None:
        q = q.where(_processes_in(kg.process_id, processes_))
    with store.read() as conn:
        rows = conn.execute(q).all()
    page = [{"id": int(r.id), "subject": r.subject, "predicate": r.predicate,
             "object": r.object, "process_id": r.process_id, "memory_id": _opt_int(r.fact_id),
             "mention_count": int(r.mention_count), "created_at": r.created_at,
             "last_seen_at": r.last_seen_at} for r in rows]
    return page, (int(rows[-1].id) if len(rows) == limit else None)


def job_counts(store: Store, entity_pk: int) -> dict[str, int]:
    """The entity's augmentation jobs per status (every one of ``JOB_STATUSES``)."""
    j = s.augmentation_job.c
    with store.read() as conn:
        found: dict[str, int] = dict(conn.execute(select(j.status, func.count()).where(j.entity_id == entity_pk)
                                  .group_by(j.status)).all())
    return {status: int(found.get(status, 0)) for status in JOB_STATUSES}


def jobs(store: Store, entity_pk: int, *, statuses: Sequence[str] | None, before: int | None,
         limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """The entity's augmentation jobs, newest first: ``{"id", "status", "process_id",
    "conversation_id", "message_ids", "attempts", "error", "created_at", "run_after",
    "claimed_at", "finished_at"}``.

    Returns:
        (the page, the next page's cursor or None).
    """
    j, p = s.augmentation_job.c, s.process.c
    q = (select(j.id, j.status, p.external_id.label("process_id"), j.conversation_id,
                j.message_ids, j.attempts, j.error, j.created_at, j.run_after, j.claimed_at,
                j.finished_at)
         .select_from(s.augmentation_job.outerjoin(s.process, p.id == j.process_id))
         .where(j.entity_id == entity_pk, *_in_page(j.id, before, None))
         .order_by(j.id.desc()).limit(limit))
    if statuses is not None:
        q = q.where(j.status.in_(list(statuses)))
    with store.read() as conn:
        rows = conn.execute(q).all()
    page = []
    for r in rows:
        try:
            ids = json.loads(r.message_ids)
        except (TypeError, ValueError):
            ids = None  # a corrupt row is listed without them
        page.append({**r._mapping, "id": int(r.id), "conversation_id": int(r.conversation_id),
                     "attempts": int(r.attempts),
                     "message_ids": ids if isinstance(ids, list) else []})
    return page, (int(rows[-1].id) if len(rows) == limit else None)


def retry_job(store: Store, entity_pk: int, job_id: int) -> bool:
    """Queue a failed job of the entity again, due now, with its attempts reset (its last
    error is kept until it runs). Returns False when the entity has no failed job
    ``job_id``."""
    j = s.augmentation_job.c

    def tx(conn: Connection, _state: _TxState) -> bool:
        return bool(conn.execute(
            update(s.augmentation_job)
            .where(j.id == job_id, j.entity_id == entity_pk, j.status == "failed")
            .values(status="queued", attempts=0, run_after=utcnow(), finished_at=None,
                    claimed_at=None, claimed_by=None)).rowcount)

    return store.write(tx)


def schema_status(store: Store) -> dict[str, int]:
    """``{"version": applied migration, "latest": this memori-core's}``, read now (not
    cached: what a readiness probe needs).

    Raises:
        StorageError: the database is unreachable.
    """
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with store.read() as conn:
            version = migrations.current_version(conn)
    except SQLAlchemyError as exc:  # pragma: no cover - read() wraps them already
        raise StorageError(f"cannot reach the database: {exc}") from exc
    return {"version": version, "latest": len(migrations.MIGRATIONS)}

