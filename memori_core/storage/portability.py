"""Export, import and forget: everything stored for one entity, or for one entity's process.

An export is a JSON-ready dict, versioned (``FORMAT``, ``VERSION``)::

    {"format": "memori.export", "version": 1, "exported_at": "2025-06-01T12:00:00+00:00",
     "entity_id": "user_123",
     "process_id": null,                 # null: every process of the entity; else only this one
     "embedding_model": "all-MiniLM-L6-v2", "dimension": 384,   # null when nothing was embedded
     "sessions": [{"session_id": "...", "process_id": "coach", "created_at": "...",
                   "conversations": [{"process_id": "coach", "summary": null,
                                      "created_at": "...", "last_activity_at": "...",
                                      "messages": [{"id": 1, "process_id": "coach",
                                                    "role": "user", "content": "...",
                                                    "created_at": "..."}]}]}],
     "memories": [{"id": 7, "process_id": "coach", "kind": "fact", "content": "...",
                   "search_text": null, "slot": "lives_in", "mention_count": 2,
                   "importance": 0.6,
                   "created_at": "...", "last_seen_at": "...", "superseded_by": null,
                   "source_message_ids": [1], "embedding": "<base64>"}],
     "triples": [{"process_id": "coach", "subject": "user", "predicate": "lives_in",
                  "object": "lisbon", "memory_id": 7, "mention_count": 1,
                  "created_at": "...", "last_seen_at": "..."}],
     "process_attributes": [{"process_id": "coach", "content": "...", "mention_count": 1,
                             "created_at": "...", "last_seen_at": "..."}],
     "jobs": [{"process_id": "coach", "message_ids": [1], "status": "queued",
               "attempts": 0, "error": null, "created_at": "..."}]}

- Timestamps are ISO 8601, UTC. Messages are what ``Memori.session_messages`` returns
  (``content`` a str or the content parts as captured, ``name``, ``tool_calls``,
  ``tool_call_id``, ``metadata`` when captured) plus their ``process_id``.
- ``id``, ``superseded_by``, ``source_message_ids``, ``memory_id`` and ``message_ids`` refer to
  records of the same export (they are the source database's row ids); an import gives new ids
  and keeps every link: provenance, supersession, triple -> memory, message -> conversation ->
  session.
- ``embedding`` is the memory's vector as base64 of float32 little-endian bytes, of
  ``embedding_model`` (``dimension`` values), or null (embedded on import). An import into a
  database on another embedding model re-embeds every memory with the importing instance's
  embedder (episodic memories from their message, as augmentation does).
- ``importance`` is a number in [0, 1] (0: an ordinary memory; ``Memory.importance``). It is
  optional on import (absent or null: 0), so exports written before it existed still import;
  the format version stays 1.
- ``jobs`` are the turns whose augmentation had not finished (``queued``) or ``failed``: an
  import queues them again, so their memories are built in the target.

Import refuses (``ConfigurationError``) an export whose entity (for a ``process_id`` export:
entity and process) already has rows in the target: importing the same export twice never
duplicates. Forget deletes in one transaction, in foreign-key order, and returns the number of
rows deleted per table.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from memori_core.augmentation.base import MEMORY_KINDS, dated_text
from memori_core.embeddings.base import Embedder
from memori_core.errors import ConfigurationError, StorageError
from memori_core.storage import packed
from memori_core.storage import schema as s
from memori_core.storage.store import (
    Store,
    _message_dict,
    _message_ids,
    normalize_text,
    sha,
    utcnow,
)
from memori_core.types import CapturedMessage, check_id, normalize_messages, to_utc_naive

__all__ = ["FORGET_TABLES", "FORMAT", "SUPPORTED_VERSIONS", "VERSION", "ExportData",
           "export_rows", "forget_rows", "import_rows", "parse_export"]

FORMAT = "memori.export"
VERSION = 1
SUPPORTED_VERSIONS = (1,)

#: the tables holding an entity's rows, in the order ``forget_rows`` deletes them
FORGET_TABLES = (s.augmentation_job, s.fact_mention, s.knowledge_graph, s.vector_block,
                 s.entity_fact, s.process_attribute, s.conversation_message, s.conversation,
                 s.session, s.entity)

_CHUNK = 500  # ids per IN (...) list
_EMBED_BATCH = 256


# ---- export -------------------------------------------------------------------------------------
@contextmanager
def _snapshot(store: Store) -> Iterator[Connection]:
    """One read transaction over a consistent snapshot (REPEATABLE READ on PostgreSQL and
    MariaDB, a WAL read transaction on SQLite), so an export is never half of a write."""
    try:
        with store.engine.connect() as conn:
            if store.dialect != "sqlite":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
    except SQLAlchemyError as exc:
        raise StorageError(f"database read failed: {exc}") from exc


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=timezone.utc).isoformat()


def _scope(table: Any, e: int, p: int | None) -> Any:
    """Rows of entity ``e`` (and, when ``p`` is given, of process ``p``)."""
    if p is None:
        return table.c.entity_id == e
    return and_(table.c.entity_id == e, table.c.process_id == p)


def _pks(conn: Connection, entity_id: str, process_id: str | None
         ) -> tuple[int | None, int | None, bool]:
    """(entity pk, process pk, whether anything can match)."""
    en, pr = s.entity.c, s.process.c
    e = conn.execute(select(en.id).where(en.external_key == sha("entity", entity_id))).scalar()
    p = None
    if process_id is not None:
        p = conn.execute(select(pr.id).where(pr.external_key == sha("process", process_id))
                         ).scalar()
    found = e is not None and (process_id is None or p is not None)
    return (None if e is None else int(e)), (None if p is None else int(p)), found


def export_rows(store: Store, entity_id: str, process_id: str | None) -> dict[str, Any]:
    """Everything stored for ``entity_id`` (and only ``process_id``'s rows when given), read in
    one snapshot, as the JSON-ready export of this module's docstring. An unknown entity or
    process gives an export with empty lists.

    Raises:
        StorageError: the database failed.
    """
    out: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "exported_at": _iso(utcnow()),
        "entity_id": entity_id, "process_id": process_id, "embedding_model": None,
        "dimension": None, "sessions": [], "memories": [], "triples": [],
        "process_attributes": [], "jobs": []}
    m, c, ss, f = (s.conversation_message.c, s.conversation.c, s.session.c, s.entity_fact.c)
    with _snapshot(store) as conn:
        e, p, found = _pks(conn, entity_id, process_id)
        model_row = conn.execute(select(s.meta.c.value)
                                 .where(s.meta.c.key == "embedding_model")).scalar()
        model = json.loads(model_row) if model_row is not None else None
        if model is not None:
            out["embedding_model"], out["dimension"] = model["model"], int(model["dim"])
        if not found:
            return out
        assert e is not None
        messages = conn.execute(
            select(m.id, m.conversation_id, m.process_id, m.role, m.name, m.content,
                   m.content_json, m.extra_json, m.created_at)
            .where(_scope(s.conversation_message, e, p)).order_by(m.id)).all()
        conv_cond = c.entity_id == e
        if p is not None:
            conv_cond = and_(conv_cond, or_(c.process_id == p, c.id.in_(
                select(m.conversation_id).where(_scope(s.conversation_message, e, p)))))
        summary: Any = c.summary
        if p is not None:  # a summary of a conversation shared with other processes is theirs too
            summary = case((exists().where(m.conversation_id == c.id, or_(
                m.process_id.is_(None), m.process_id != p)), None), else_=c.summary)
        conversations = conn.execute(select(c.id, c.session_id, c.process_id,
                                            summary.label("summary"), c.created_at,
                                            c.last_activity_at)
                                     .where(conv_cond).order_by(c.id)).all()
        sess_cond = ss.entity_id == e
        if p is not None:
            sess_cond = and_(sess_cond, or_(ss.process_id == p, ss.id.in_(
                select(c.session_id).where(conv_cond))))
        sessions = conn.execute(select(ss.id, ss.external_id, ss.process_id, ss.created_at)
                                .where(sess_cond).order_by(ss.id)).all()
        facts = conn.execute(
            select(f.id, f.process_id, f.kind, f.content, f.search_text, f.slot,
                   f.mention_count, f.importance, f.created_at, f.last_seen_at, f.superseded_by,
                   f.embedding, f.embedding_model, f.embedding_dim)
            .where(_scope(s.entity_fact, e, p)).order_by(f.id)).all()
        mn = s.fact_mention.c
        mentions = conn.execute(select(mn.fact_id, mn.message_id).where(mn.fact_id.in_(
            select(f.id).where(_scope(s.entity_fact, e, p))))
            .order_by(mn.fact_id, mn.message_id)).all()
        kg = s.knowledge_graph.c
        triples = conn.execute(select(kg.process_id, kg.subject, kg.predicate, kg.object,
                                      kg.fact_id, kg.mention_count, kg.created_at,
                                      kg.last_seen_at)
                               .where(_scope(s.knowledge_graph, e, p)).order_by(kg.id)).all()
        pa = s.process_attribute.c
        attributes = conn.execute(select(pa.process_id, pa.content, pa.mention_count,
                                         pa.created_at, pa.last_seen_at)
                                  .where(_scope(s.process_attribute, e, p))
                                  .order_by(pa.id)).all()
        j = s.augmentation_job.c
        jobs = conn.execute(select(j.process_id, j.message_ids, j.status, j.attempts, j.error,
                                   j.created_at)
                            .where(_scope(s.augmentation_job, e, p), j.status != "done")
                            .order_by(j.id)).all()
        wanted = {r.process_id for rows in (messages, conversations, sessions, facts, triples,
                                             attributes, jobs) for r in rows} - {None}
        names: dict[int, str] = {}
        pr = s.process.c
        ordered = sorted(int(x) for x in wanted)
        for start in range(0, len(ordered), _CHUNK):
            names.update((int(i), str(n)) for i, n in conn.execute(
                select(pr.id, pr.external_id).where(pr.id.in_(ordered[start:start + _CHUNK]))))

    def proc(pk: Any) -> str | None:
        return None if pk is None else names[int(pk)]

    by_conv: dict[int, list[dict[str, Any]]] = {}
    for r in messages:
        msg = _message_dict(r)
        msg["created_at"] = _iso(msg["created_at"])
        by_conv.setdefault(int(r.conversation_id), []).append(
            {"id": msg.pop("id"), "process_id": proc(r.process_id), **msg})
    by_session: dict[int, list[dict[str, Any]]] = {}
    for cr in conversations:
        by_session.setdefault(int(cr.session_id), []).append({
            "process_id": proc(cr.process_id), "summary": cr.summary,
            "created_at": _iso(cr.created_at), "last_activity_at": _iso(cr.last_activity_at),
            "messages": by_conv.get(int(cr.id), [])})
    out["sessions"] = [{"session_id": r.external_id, "process_id": proc(r.process_id),
                        "created_at": _iso(r.created_at),
                        "conversations": by_session.get(int(r.id), [])} for r in sessions]
    message_ids = {int(r.id) for r in messages}
    sources: dict[int, list[int]] = {}
    for fid, mid in mentions:
        if int(mid) in message_ids:
            sources.setdefault(int(fid), []).append(int(mid))
    fact_ids = {int(r.id) for r in facts}
    out["memories"] = [{
        "id": int(r.id), "process_id": proc(r.process_id), "kind": r.kind, "content": r.content,
        "search_text": r.search_text, "slot": r.slot, "mention_count": int(r.mention_count),
        "importance": float(r.importance), "created_at": _iso(r.created_at),
        "last_seen_at": _iso(r.last_seen_at),
        "superseded_by": int(r.superseded_by) if r.superseded_by is not None
        and int(r.superseded_by) in fact_ids else None,
        "source_message_ids": sources.get(int(r.id), []),
        # a vector of another model than the database's (a re-embed in progress) is left out:
        # the import embeds that memory again
        "embedding": base64.b64encode(bytes(r.embedding)).decode("ascii")
        if model is not None and r.embedding_model == model["model"]
        and int(r.embedding_dim) == int(model["dim"]) else None,
    } for r in facts]
    out["triples"] = [{
        "process_id": proc(r.process_id), "subject": r.subject, "predicate": r.predicate,
        "object": r.object, "memory_id": int(r.fact_id) if r.fact_id is not None
        and int(r.fact_id) in fact_ids else None, "mention_count": int(r.mention_count),
        "created_at": _iso(r.created_at), "last_seen_at": _iso(r.last_seen_at)}
        for r in triples]
    out["process_attributes"] = [{
        "process_id": proc(r.process_id), "content": r.content,
        "mention_count": int(r.mention_count), "created_at": _iso(r.created_at),
        "last_seen_at": _iso(r.last_seen_at)} for r in attributes]
    for jr in jobs:
        try:
            ids = [i for i in _message_ids(jr.message_ids) if i in message_ids]
        except (TypeError, ValueError):
            ids = []  # a corrupt job row: its turn's messages are exported all the same
        if ids:  # a running job is exported as queued: its results are not in the snapshot
            failed = jr.status == "failed"
            out["jobs"].append({
                "process_id": proc(jr.process_id), "message_ids": ids,
                "status": "failed" if failed else "queued",
                "attempts": int(jr.attempts) if failed else 0,
                "error": jr.error if failed else None, "created_at": _iso(jr.created_at)})
    return out


# ---- validation ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Message:
    id: int
    process_id: str | None
    message: CapturedMessage
    raw: dict[str, Any]  # as Memori.session_messages gives it (for episodic re-embedding)


@dataclass(frozen=True)
class _Conversation:
    process_id: str | None
    summary: str | None
    created_at: datetime
    last_activity_at: datetime
    messages: list[_Message]


@dataclass(frozen=True)
class _Session:
    session_id: str
    process_id: str | None
    created_at: datetime
    conversations: list[_Conversation]


@dataclass(frozen=True)
class _Memory:
    id: int
    process_id: str | None
    kind: str
    content: str
    search_text: str | None
    slot: str | None
    mention_count: int
    created_at: datetime
    last_seen_at: datetime
    superseded_by: int | None
    source_message_ids: list[int]
    embedding: np.ndarray | None
    importance: float = 0.0


@dataclass(frozen=True)
class _Triple:
    process_id: str | None
    subject: str
    predicate: str
    object: str
    memory_id: int | None
    mention_count: int
    created_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class _Attribute:
    process_id: str
    content: str
    mention_count: int
    created_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class _Job:
    process_id: str | None
    message_ids: list[int]
    status: str
    attempts: int
    error: str | None
    created_at: datetime


@dataclass(frozen=True)
class ExportData:
    """A validated export (``parse_export``)."""

    version: int
    entity_id: str
    process_id: str | None
    embedding_model: str | None
    dimension: int | None
    sessions: list[_Session] = field(default_factory=list)
    memories: list[_Memory] = field(default_factory=list)
    triples: list[_Triple] = field(default_factory=list)
    process_attributes: list[_Attribute] = field(default_factory=list)
    jobs: list[_Job] = field(default_factory=list)

    def messages(self) -> Iterator[_Message]:
        for session in self.sessions:
            for conv in session.conversations:
                yield from conv.messages


#: largest count (mention_count, attempts) every backend stores: a 32-bit signed integer
MAX_COUNT = 2**31 - 1
#: largest id in an export: ids are only links inside it, a 64-bit signed integer
MAX_ID = 2**63 - 1


def _bad(path: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"export field {path} {problem}", argument="data")


_MISSING = object()


class _Obj:
    """Typed reads of one JSON object of an export; errors name the field's path."""

    def __init__(self, value: object, path: str, fields: Sequence[str]) -> None:
        if not isinstance(value, Mapping):
            raise _bad(path or "(top level)", f"must be a JSON object, got {type(value).__name__}")
        unknown = sorted(str(k) for k in value if k not in fields)
        if unknown:
            raise _bad(self._at(path, unknown[0]), f"is not part of format version {VERSION} "
                       f"(fields here: {', '.join(fields)})")
        self.value = value
        self.path = path

    @staticmethod
    def _at(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def at(self, key: str) -> str:
        return self._at(self.path, key)

    def get(self, key: str, default: Any = _MISSING) -> Any:
        if key in self.value and self.value[key] is not None:
            return self.value[key]
        if default is _MISSING:
            raise _bad(self.at(key), "is required" if key not in self.value else
                       "must not be null")
        return default

    def text(self, key: str, default: Any = _MISSING, *, nonempty: bool = True,
             max_len: int | None = None) -> Any:
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise _bad(self.at(key), f"must be a string, got {type(value).__name__}")
        if nonempty and not value.strip():
            raise _bad(self.at(key), "must be a non-empty string")
        if max_len is not None and len(value) > max_len:
            raise _bad(self.at(key), f"is {len(value)} characters; at most {max_len} fit")
        if "\x00" in value:
            raise _bad(self.at(key), "contains NUL bytes, which SQL text columns cannot hold")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _bad(self.at(key), "is not valid Unicode (a lone surrogate)") from exc
        return value

    def ident(self, key: str, optional: bool) -> str | None:
        value = self.get(key, None if optional else _MISSING)
        if value is None:
            return None
        try:
            return check_id(value, self.at(key))
        except ConfigurationError as exc:
            raise _bad(self.at(key), f"is invalid: {exc}") from exc

    def integer(self, key: str, default: Any = _MISSING, minimum: int = 0,
                maximum: int = MAX_COUNT) -> Any:
        """An int in [minimum, maximum]; the default maximum fits the 32-bit count columns
        of every backend, so SQLite, PostgreSQL and MariaDB accept and refuse alike."""
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or \
                not minimum <= value <= maximum:
            raise _bad(self.at(key), f"must be an integer in [{minimum}, {maximum}], got "
                       f"{value!r:.40}")
        return value

    def unit(self, key: str, default: Any = _MISSING) -> Any:
        """A number in [0, 1] (an int or a float; not a bool, NaN or infinity)."""
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not 0.0 <= value <= 1.0:
            raise _bad(self.at(key), f"must be a number in [0, 1], got {value!r}")
        return float(value)

    def time(self, key: str, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        try:
            return to_utc_naive(value, self.at(key))
        except ConfigurationError as exc:
            raise _bad(self.at(key), f"is not an ISO 8601 timestamp: {value!r}") from exc

    def items(self, key: str) -> list[tuple[str, Any]]:
        value = self.get(key, [])
        if not isinstance(value, list):
            raise _bad(self.at(key), f"must be a list, got {type(value).__name__}")
        return [(f"{self.at(key)}[{i}]", v) for i, v in enumerate(value)]

    def ids(self, key: str) -> list[int]:
        out = []
        for path, v in self.items(key):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_ID:
                raise _bad(path, f"must be an integer id, got {v!r:.40}")
            out.append(v)
        return out


_TOP = ("format", "version", "exported_at", "entity_id", "process_id", "embedding_model",
        "dimension", "sessions", "memories", "triples", "process_attributes", "jobs")
_SESSION = ("session_id", "process_id", "created_at", "conversations")
_CONVERSATION = ("process_id", "summary", "created_at", "last_activity_at", "messages")
_MESSAGE = ("id", "process_id", "role", "content", "name", "tool_calls", "tool_call_id",
            "metadata", "created_at")
_MEMORY = ("id", "process_id", "kind", "content", "search_text", "slot", "mention_count",
           "importance", "created_at", "last_seen_at", "superseded_by", "source_message_ids",
           "embedding")
_TRIPLE = ("process_id", "subject", "predicate", "object", "memory_id", "mention_count",
           "created_at", "last_seen_at")
_ATTRIBUTE = ("process_id", "content", "mention_count", "created_at", "last_seen_at")
_JOB = ("process_id", "message_ids", "status", "attempts", "error", "created_at")


def parse_export(data: object) -> ExportData:
    """Validate an export (a dict as ``export_rows`` makes it, e.g. read back with
    ``json.load``) before anything is written.

    Raises:
        ConfigurationError: naming the first offending field, e.g. ``memories[3].kind``; an
            unsupported ``format`` or ``version`` names what this memori reads.
    """
    top = _Obj(data, "", _TOP)
    fmt = top.get("format")
    if fmt != FORMAT:
        raise _bad("format", f"is {fmt!r}; this memori reads {FORMAT!r} (made by "
                   "mem.export() / memori export)")
    version = top.get("version")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise _bad("version", f"is {version!r}; this memori reads version(s) "
                   f"{', '.join(map(str, SUPPORTED_VERSIONS))} of {FORMAT!r}: upgrade memori "
                   "to import a newer export")
    top.time("exported_at")
    entity_id = top.ident("entity_id", optional=False)
    assert entity_id is not None
    process_id = top.ident("process_id", optional=True)
    model = top.text("embedding_model", None, max_len=255)
    dim = top.integer("dimension", None, minimum=1)
    if (model is None) != (dim is None):
        raise _bad("dimension", "and embedding_model must be given together (or both null)")

    sessions, messages = [], {}
    for spath, sv in top.items("sessions"):
        so = _Obj(sv, spath, _SESSION)
        convs = []
        for cpath, cv in so.items("conversations"):
            co = _Obj(cv, cpath, _CONVERSATION)
            created = co.time("created_at")
            msgs = []
            for mpath, mv in co.items("messages"):
                mo = _Obj(mv, mpath, _MESSAGE)
                mid = mo.integer("id", maximum=MAX_ID)
                if mid in messages:
                    raise _bad(mo.at("id"), f"{mid} is used by two messages")
                mo.time("created_at")  # required here; normalize_messages converts it
                raw = {k: v for k, v in mv.items() if k not in ("id", "process_id")}
                try:
                    (captured,) = normalize_messages([raw])
                except ConfigurationError as exc:
                    raise ConfigurationError(str(exc).replace("messages[0]", mpath),
                                             argument="data") from exc
                msg = _Message(mid, mo.ident("process_id", optional=True), captured,
                               {**raw, "id": mid, "created_at": captured.created_at})
                messages[mid] = msg
                msgs.append(msg)
            convs.append(_Conversation(co.ident("process_id", optional=True),
                                       co.text("summary", None, nonempty=False), created,
                                       co.time("last_activity_at", created), msgs))
        sessions.append(_Session(str(so.ident("session_id", optional=False)),
                                 so.ident("process_id", optional=True), so.time("created_at"),
                                 convs))

    memories: list[_Memory] = []
    seen_keys: dict[tuple[str | None, str, str], int] = {}
    for path, v in top.items("memories"):
        o = _Obj(v, path, _MEMORY)
        kind = o.text("kind")
        if kind not in MEMORY_KINDS:
            raise _bad(o.at("kind"), f"is {kind!r}; use one of {', '.join(MEMORY_KINDS)}")
        content = o.text("content")
        proc = o.ident("process_id", optional=True)
        key = (proc, kind, normalize_text(content))
        if key in seen_keys:
            raise _bad(path, f"repeats memory {seen_keys[key]} (same process, kind and text)")
        seen_keys[key] = o.integer("id", maximum=MAX_ID)
        created = o.time("created_at")
        vector = None
        encoded = o.get("embedding", None)
        if encoded is not None:
            if model is None or dim is None:
                raise _bad(o.at("embedding"), "needs embedding_model and dimension at the top")
            try:
                if not isinstance(encoded, str):
                    raise ValueError(type(encoded).__name__)
                raw_vec = base64.b64decode(encoded, validate=True)
            except (ValueError, binascii.Error) as exc:
                raise _bad(o.at("embedding"), f"is not base64 ({exc})") from exc
            if len(raw_vec) != 4 * dim:
                raise _bad(o.at("embedding"), f"holds {len(raw_vec)} bytes; {dim} float32 "
                           f"values are {4 * dim}")
            vector = np.frombuffer(raw_vec, dtype="<f4").astype(np.float32)
            norm = float(np.linalg.norm(vector)) if np.isfinite(vector).all() else math.nan
            if not abs(norm - 1.0) <= 1e-3:
                raise _bad(o.at("embedding"), f"must be a finite, L2-normalised float32 "
                           f"vector (norm 1), got norm {norm:.4g}: leave it out to embed the "
                           "memory again")
        superseded = o.get("superseded_by", None)
        if superseded is not None:
            superseded = o.integer("superseded_by", maximum=MAX_ID)
        memories.append(_Memory(
            o.integer("id", maximum=MAX_ID), proc, kind, content, o.text("search_text", None, nonempty=False),
            o.text("slot", None, max_len=255), o.integer("mention_count", 1, minimum=1),
            created, o.time("last_seen_at", created), superseded, o.ids("source_message_ids"),
            vector, o.unit("importance", 0.0)))
    memory_ids = {mem.id for mem in memories}
    if len(memory_ids) != len(memories):
        raise _bad("memories", "use one id twice")
    for i, mem in enumerate(memories):
        if mem.superseded_by is not None and mem.superseded_by not in memory_ids:
            raise _bad(f"memories[{i}].superseded_by", f"is {mem.superseded_by}, not the id "
                       "of a memory in this export")
        for mid in mem.source_message_ids:
            if mid not in messages:
                raise _bad(f"memories[{i}].source_message_ids", f"has {mid}, not the id of a "
                           "message in this export")

    triples = []
    for path, v in top.items("triples"):
        o = _Obj(v, path, _TRIPLE)
        memory_id = o.get("memory_id", None)
        if memory_id is not None:
            memory_id = o.integer("memory_id", maximum=MAX_ID)
        if memory_id is not None and memory_id not in memory_ids:
            raise _bad(o.at("memory_id"), f"is {memory_id!r}, not the id of a memory in this "
                       "export")
        created = o.time("created_at")
        triples.append(_Triple(o.ident("process_id", optional=True), o.text("subject"),
                               o.text("predicate"), o.text("object"), memory_id,
                               o.integer("mention_count", 1, minimum=1), created,
                               o.time("last_seen_at", created)))

    attributes = []
    for path, v in top.items("process_attributes"):
        o = _Obj(v, path, _ATTRIBUTE)
        created = o.time("created_at")
        attributes.append(_Attribute(str(o.ident("process_id", optional=False)),
                                     o.text("content"), o.integer("mention_count", 1, minimum=1),
                                     created, o.time("last_seen_at", created)))

    jobs = []
    conv_of = {m.id: id(conv) for session in sessions for conv in session.conversations
               for m in conv.messages}
    for path, v in top.items("jobs"):
        o = _Obj(v, path, _JOB)
        ids = o.ids("message_ids")
        if not ids or any(i not in messages for i in ids):
            raise _bad(o.at("message_ids"), "must list ids of messages in this export")
        if len({conv_of[i] for i in ids}) != 1:
            raise _bad(o.at("message_ids"), "must be messages of one conversation")
        status = o.text("status")
        if status not in ("queued", "failed"):
            raise _bad(o.at("status"), f"is {status!r}; use 'queued' or 'failed'")
        jobs.append(_Job(o.ident("process_id", optional=True), ids, status,
                         o.integer("attempts", 0), o.text("error", None, nonempty=False),
                         o.time("created_at")))
    return ExportData(int(version), entity_id, process_id, model, dim, sessions, memories,
                      triples, attributes, jobs)


# ---- import -------------------------------------------------------------------------------------
def _vectors(data: ExportData, embedder: Embedder) -> list[np.ndarray]:
    """One unit vector per memory, in order: the exported one when it is of the embedder's
    model, else embedded now from what augmentation embeds (episodic: the dated message)."""
    if not data.memories:
        return []  # the embedder (maybe a model to load) is not needed
    same = data.embedding_model == embedder.name and data.dimension == embedder.dim
    out: list[np.ndarray | None] = [m.embedding if same else None for m in data.memories]
    messages = {m.id: m.raw for m in data.messages()}
    todo = [i for i, v in enumerate(out) if v is None]
    texts = []
    for i in todo:
        mem = data.memories[i]
        first = min(mem.source_message_ids) if mem.source_message_ids else None
        texts.append(dated_text(messages[first]) if mem.kind == "episodic" and first is not None
                     else mem.content)
    for start in range(0, len(todo), _EMBED_BATCH):
        batch = embedder.embed(texts[start:start + _EMBED_BATCH])
        for i, vec in zip(todo[start:start + _EMBED_BATCH], batch, strict=True):
            out[i] = vec
    return [v for v in out if v is not None]


def _has_rows(conn: Connection, e: int, p: int | None, whole_entity: bool) -> str | None:
    """The first table holding rows of entity ``e`` (of process ``p`` unless
    ``whole_entity``), or None."""
    tables = [s.conversation_message, s.entity_fact, s.knowledge_graph, s.process_attribute,
              s.augmentation_job] + ([s.session] if whole_entity else [])
    for table in tables:
        cond = table.c.entity_id == e if whole_entity else _scope(table, e, p)
        if conn.execute(select(table.c.entity_id).where(cond).limit(1)).first() is not None:
            return str(table.name)
    return None


def import_rows(store: Store, embedder: Embedder, data: ExportData,
                entity_id: str | None = None) -> dict[str, int]:
    """Write a validated export into ``store`` as entity ``entity_id`` (default the export's),
    in one transaction, with new row ids and every link kept.

    Returns:
        rows written per table name.

    Raises:
        ConfigurationError: the entity (for a ``process_id`` export: entity and process)
            already has rows in this database; nothing was written.
        StorageError: the database failed (nothing was written).
    """
    target = data.entity_id if entity_id is None else entity_id
    vectors = _vectors(data, embedder)
    if data.memories:
        store.check_embedding_model(embedder.name, embedder.dim)
    model = embedder.name
    en = s.entity.c

    def tx(conn: Connection, state: Any) -> dict[str, int]:
        counts = {t.name: 0 for t in FORGET_TABLES}
        created = conn.execute(select(en.id).where(
            en.external_key == sha("entity", target))).scalar() is None
        e = store.entity_pk(conn, state, target)
        if store.dialect != "sqlite":  # serializes with forget and other imports
            conn.execute(select(en.id).where(en.id == e).with_for_update())
        procs: dict[str | None, int | None] = {None: None}

        def proc(name: str | None) -> int | None:
            if name not in procs:
                procs[name] = store.process_pk(conn, state, name)
            return procs[name]

        where = _has_rows(conn, e, proc(data.process_id), data.process_id is None)
        if where is not None:
            scope = f"entity {target!r}" + (f" / process {data.process_id!r}"
                                             if data.process_id is not None else "")
            raise ConfigurationError(
                f"{scope} already has rows in this database ({where}): an import never merges "
                "(importing the same export twice would duplicate it); forget it first "
                "(mem.forget / memori forget) or import under another entity_id",
                argument="data")
        counts["memori_entity"] = int(created)
        new_msg: dict[int, int] = {}
        conv_of: dict[int, int] = {}
        for session in data.sessions:
            key = sha("session", e, session.session_id)
            # a process export may continue a session the entity's other processes share
            counts["memori_session"] += conn.execute(select(s.session.c.id).where(
                s.session.c.external_key == key)).first() is None
            sess = store._get_or_create(  # the store's own get-or-create (session cache)
                conn, state, s.session, key,
                {"entity_id": e, "process_id": proc(session.process_id),
                 "external_id": session.session_id, "created_at": session.created_at})
            for conv in session.conversations:
                conv_pk = int(conn.execute(insert(s.conversation).returning(s.conversation.c.id),
                                           dict(session_id=sess, entity_id=e,
                                                process_id=proc(conv.process_id),
                                                summary=conv.summary,
                                                created_at=conv.created_at,
                                                last_activity_at=conv.last_activity_at)
                                           ).scalar_one())
                counts["memori_conversation"] += 1
                for start in range(0, len(conv.messages), _CHUNK):
                    chunk = conv.messages[start:start + _CHUNK]
                    rows = [dict(conversation_id=conv_pk, session_id=sess, entity_id=e,
                                 process_id=proc(m.process_id), role=m.message.role,
                                 name=m.message.name, content=m.message.content,
                                 content_json=m.message.content_json,
                                 extra_json=m.message.extra_json,
                                 created_at=m.message.created_at) for m in chunk]
                    ids = conn.execute(insert(s.conversation_message).returning(
                        s.conversation_message.c.id, sort_by_parameter_order=True),
                        rows).scalars().all()
                    for m, new in zip(chunk, ids, strict=True):
                        new_msg[m.id] = int(new)
                        conv_of[m.id] = conv_pk
                    counts["memori_conversation_message"] += len(chunk)

        new_fact: dict[int, int] = {}
        for start in range(0, len(data.memories), _CHUNK):
            mems = data.memories[start:start + _CHUNK]
            fact_rows: list[dict[str, Any]] = []
            for mem, vec in zip(mems, vectors[start:start + _CHUNK], strict=True):
                v = np.ascontiguousarray(vec, dtype="<f4")
                p = proc(mem.process_id)
                fact_rows.append(dict(
                    entity_id=e, process_id=p, kind=mem.kind, content=mem.content,
                    dedup_key=sha("fact", e, p or "", mem.kind, normalize_text(mem.content)),
                    slot=mem.slot, search_text=mem.search_text, embedding=v.tobytes(),
                    embedding_model=model, embedding_dim=int(v.shape[0]),
                    mention_count=mem.mention_count, importance=mem.importance,
                    created_at=mem.created_at, last_seen_at=mem.last_seen_at,
                    superseded_by=None))
            ids = conn.execute(insert(s.entity_fact).returning(
                s.entity_fact.c.id, sort_by_parameter_order=True), fact_rows).scalars().all()
            new_fact.update((mem.id, int(new)) for mem, new in zip(mems, ids, strict=True))
        counts["memori_entity_fact"] = len(new_fact)
        f = s.entity_fact.c
        links = [{"fid": new_fact[m.id], "by": new_fact[m.superseded_by]}
                 for m in data.memories if m.superseded_by is not None]
        if links:
            conn.execute(update(s.entity_fact).where(f.id == bindparam("fid"))
                         .values(superseded_by=bindparam("by")), links)
        now = utcnow()
        mentions = [{"fact_id": new_fact[m.id], "message_id": new_msg[mid], "created_at": now}
                    for m in data.memories for mid in sorted(set(m.source_message_ids))]
        for start in range(0, len(mentions), _CHUNK):
            conn.execute(insert(s.fact_mention), mentions[start:start + _CHUNK])
        counts["memori_fact_mention"] = len(mentions)

        triples = []
        for t in data.triples:
            p = proc(t.process_id)
            triples.append(dict(
                entity_id=e, process_id=p, subject=t.subject[:255], predicate=t.predicate[:255],
                object=t.object, dedup_key=sha("triple", e, p or "", normalize_text(t.subject),
                                                normalize_text(t.predicate),
                                                normalize_text(t.object)),
                fact_id=None if t.memory_id is None else new_fact[t.memory_id],
                mention_count=t.mention_count, created_at=t.created_at,
                last_seen_at=t.last_seen_at))
        _insert_unique(conn, s.knowledge_graph, triples, "triples")
        counts["memori_knowledge_graph"] = len(triples)
        attributes = []
        for a in data.process_attributes:
            p = proc(a.process_id)
            attributes.append(dict(
                process_id=p, entity_id=e, content=a.content,
                dedup_key=sha("process_attribute", p, e, normalize_text(a.content)),
                mention_count=a.mention_count, created_at=a.created_at,
                last_seen_at=a.last_seen_at))
        _insert_unique(conn, s.process_attribute, attributes, "process_attributes")
        counts["memori_process_attribute"] = len(attributes)
        for job in data.jobs:
            ids = [new_msg[i] for i in job.message_ids]
            conn.execute(insert(s.augmentation_job), dict(
                entity_id=e, process_id=proc(job.process_id),
                conversation_id=conv_of[job.message_ids[0]], message_ids=json.dumps(ids),
                status=job.status, attempts=job.attempts, error=job.error,
                created_at=job.created_at, run_after=now,
                finished_at=now if job.status == "failed" else None))
        counts["memori_augmentation_job"] = len(data.jobs)
        conn.execute(update(s.entity).where(en.id == e)
                     .values(memory_version=en.memory_version + 1))
        if new_fact:  # the imported memories packed for cold recall, as a write packs them
            b = s.vector_block.c
            before = int(conn.execute(select(func.count()).where(b.entity_id == e)).scalar_one())
            packed.pack(conn, [e], embedder.dim, written={e: list(new_fact.values())})
            counts["memori_vector_block"] = max(int(conn.execute(
                select(func.count()).where(b.entity_id == e)).scalar_one()) - before, 0)
        return counts

    return store.write(tx)


def _insert_unique(conn: Connection, table: Any, rows: list[dict[str, Any]], what: str) -> None:
    """Insert rows whose dedup keys must be new.

    Raises:
        ConfigurationError: two rows of the export are the same (same dedup key).
    """
    keys = [r["dedup_key"] for r in rows]
    if len(set(keys)) != len(keys):
        dup = next(i for i, k in enumerate(keys) if keys.index(k) != i)
        raise _bad(f"{what}[{dup}]", "repeats an earlier one (same process and normalized text)")
    for start in range(0, len(rows), _CHUNK):
        conn.execute(insert(table), rows[start:start + _CHUNK])


# ---- forget -------------------------------------------------------------------------------------
def forget_rows(store: Store, entity_id: str, process_id: str | None
                ) -> tuple[dict[str, int], int | None]:
    """Delete every row of ``entity_id`` in every table (with ``process_id``: every row of
    that entity under that process, and the sessions and conversations left empty), in one
    transaction, children before parents.

    The entity row is locked first, so a capture or augmentation write for the entity either
    commits before (and is deleted too) or after (and then sees the entity gone: an
    augmentation job's results are dropped, a capture starts a new entity).

    Returns:
        (rows deleted per table name, every name of ``FORGET_TABLES`` present; the entity's
        row id, or None when it was unknown).

    Raises:
        StorageError: the database failed (nothing was deleted).
    """
    en = s.entity.c

    def tx(conn: Connection, _state: Any) -> tuple[dict[str, int], int | None]:
        counts = {t.name: 0 for t in FORGET_TABLES}
        e, p, found = _pks(conn, entity_id, process_id)
        if not found:
            return counts, e
        assert e is not None
        if store.dialect != "sqlite":  # SQLite: the write transaction is exclusive already
            conn.execute(select(en.id).where(en.id == e).with_for_update())
        if p is None:
            _forget_entity(conn, counts, e)
        else:
            _forget_process(conn, counts, e, p)
        return counts, e

    return store.write(tx)


def _count(conn: Connection, counts: dict[str, int], table: Any, stmt: Any) -> None:
    counts[table.name] += max(int(conn.execute(stmt).rowcount or 0), 0)


def _forget_entity(conn: Connection, counts: dict[str, int], e: int) -> None:
    f, m, mn, kg = (s.entity_fact.c, s.conversation_message.c, s.fact_mention.c,
                    s.knowledge_graph.c)
    facts = select(f.id).where(f.entity_id == e)
    _count(conn, counts, s.augmentation_job,
           delete(s.augmentation_job).where(s.augmentation_job.c.entity_id == e))
    _count(conn, counts, s.fact_mention, delete(s.fact_mention).where(mn.fact_id.in_(facts)))
    _count(conn, counts, s.fact_mention, delete(s.fact_mention).where(
        mn.message_id.in_(select(m.id).where(m.entity_id == e))))
    # a triple of someone else pointing at one of these memories keeps its text, not the link
    conn.execute(update(s.knowledge_graph).where(kg.fact_id.in_(facts), kg.entity_id != e)
                 .values(fact_id=None))
    counts[s.vector_block.name] += packed.drop(conn, [e])  # with their postings
    for table in (s.knowledge_graph, s.entity_fact, s.process_attribute,
                  s.conversation_message, s.conversation, s.session):
        _count(conn, counts, table, delete(table).where(table.c.entity_id == e))
    _count(conn, counts, s.entity, delete(s.entity).where(s.entity.c.id == e))


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start:start + _CHUNK])


def _forget_process(conn: Connection, counts: dict[str, int], e: int, p: int) -> None:
    f, m, mn, kg, c, ss, j = (s.entity_fact.c, s.conversation_message.c, s.fact_mention.c,
                              s.knowledge_graph.c, s.conversation.c, s.session.c,
                              s.augmentation_job.c)
    facts = select(f.id).where(_scope(s.entity_fact, e, p))
    # sessions and conversations are shared by the entity's processes (one session id across
    # personas): the ones this process created or wrote into go when nothing else is left in them
    convs = [int(i) for i in conn.execute(select(c.id).where(
        c.entity_id == e, or_(c.process_id == p, c.id.in_(
            select(m.conversation_id).where(_scope(s.conversation_message, e, p)))))).scalars()]
    sessions: list[int] = []
    for chunk in _chunks(convs):
        sessions += [int(i) for i in conn.execute(select(c.session_id).where(c.id.in_(chunk))
                                                   .distinct()).scalars()]
    sessions = sorted(set(sessions) | {int(i) for i in conn.execute(select(ss.id).where(
        ss.entity_id == e, ss.process_id == p)).scalars()})
    _count(conn, counts, s.augmentation_job,
           delete(s.augmentation_job).where(_scope(s.augmentation_job, e, p)))
    _count(conn, counts, s.fact_mention, delete(s.fact_mention).where(mn.fact_id.in_(facts)))
    _count(conn, counts, s.fact_mention, delete(s.fact_mention).where(mn.message_id.in_(
        select(m.id).where(_scope(s.conversation_message, e, p)))))
    conn.execute(update(s.knowledge_graph).where(
        kg.fact_id.in_(facts), or_(kg.entity_id != e, kg.process_id.is_(None),
                                   kg.process_id != p)).values(fact_id=None))
    # the entity's packed vectors hold the process's memories too: packed again when next
    # written or recalled (storage/packed.py)
    counts[s.vector_block.name] += packed.drop(conn, [e])  # with their postings
    for table in (s.knowledge_graph, s.entity_fact, s.process_attribute,
                  s.conversation_message):
        _count(conn, counts, table, delete(table).where(_scope(table, e, p)))
    for chunk in _chunks(convs):
        _count(conn, counts, s.conversation, delete(s.conversation).where(
            c.id.in_(chunk), ~exists().where(m.conversation_id == c.id),
            ~exists().where(j.conversation_id == c.id)))
        # kept for another process's messages: no longer attributed to the forgotten one,
        # and without a summary (it may hold the forgotten process's words)
        conn.execute(update(s.conversation).where(c.id.in_(chunk), c.process_id == p)
                     .values(process_id=None))
        conn.execute(update(s.conversation).where(c.id.in_(chunk)).values(summary=None))
    for chunk in _chunks(sessions):
        _count(conn, counts, s.session, delete(s.session).where(
            ss.id.in_(chunk), ~exists().where(c.session_id == ss.id),
            ~exists().where(m.session_id == ss.id)))
        conn.execute(update(s.session).where(ss.id.in_(chunk), ss.process_id == p)
                     .values(process_id=None))
    conn.execute(update(s.entity).where(s.entity.c.id == e)
                 .values(memory_version=s.entity.c.memory_version + 1))

