"""Every read and write memori makes, on one SQLAlchemy Engine.

The store is dialect-agnostic except where it must not be: insert-or-ignore (get-or-create of
entities, processes, sessions, memories), ``FOR UPDATE SKIP LOCKED`` job claims, and SQLite's single
writer (an in-process lock plus ``BEGIN IMMEDIATE`` and a busy timeout, so "database is locked"
never reaches a caller).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import (
    Connection,
    Double,
    Engine,
    and_,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import (
    column as sa_column,
)
from sqlalchemy import (
    inspect as sa_inspect,
)
from sqlalchemy import (
    table as sa_table,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from memori_core.errors import ConfigurationError, StorageError
from memori_core.storage import migrations, packed, pgvector
from memori_core.storage import schema as s
from memori_core.tokens import tokenize
from memori_core.types import CapturedMessage

__all__ = ["EntityGone", "JobRow", "JobsGone", "LexicalCorpus", "MemoryBlock", "MemoryRow",
           "NewMemory", "NewTriple", "Store", "clip_importance", "utcnow"]
_log = logging.getLogger(__name__)
#: ``memori_meta`` key of pgvector push-down's measured agreement (``Store.install_pgvector``)
PGVECTOR_META = "pgvector_agreement"
#: PostgreSQL's lexical candidates: rows ranked by summed IDF before ``ts_rank`` orders the
#: best of them, in multiples of the candidates asked (``Store._pg_lexical``)
LEXICAL_POOL = 4
#: ``Store.lexical_corpus``: the memories (and messages) whose text lengths estimate the mean
LENGTH_SAMPLE = 1000
#: ids per ``IN (...)`` list of a read by id (SQLite binds at most 32,766 parameters)
_IDS_PER_READ = 10_000

T = TypeVar("T")

#: attempts of a write transaction that hit a deadlock or serialization failure
WRITE_RETRIES = 8


def utcnow() -> datetime:
    """Naive UTC now, the form every timestamp column holds."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def clip_importance(value: float) -> float:
    """An importance as stored: ``value`` clipped to [0, 1], NaN as 0 (ordinary)."""
    v = float(value)
    return min(max(v, 0.0), 1.0) if v == v else 0.0


def sha(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()


def normalize_text(text: str) -> str:
    """Lower-case, collapse whitespace: the form used for dedup keys."""
    return " ".join(text.lower().split())


class EntityGone(StorageError):
    """A cached entity row id no longer exists: the entity was forgotten, maybe by another
    process, and maybe created again under a new id. The cached id is dropped; look it up
    again (``find_pk``)."""


class JobsGone(StorageError):
    """Claimed jobs were deleted while they ran (their entity was forgotten): the transaction
    writing their results is rolled back, so nothing of a forgotten entity comes back.

    Attributes:
        job_ids: the jobs that no longer exist.
    """

    def __init__(self, job_ids: set[int]) -> None:
        super().__init__(f"augmentation jobs {sorted(job_ids)} were deleted while they ran")
        self.job_ids = job_ids


class LeaseLost(StorageError):
    """Claimed jobs are no longer this claim's: their lease expired and another worker took
    them over (or they finished). The transaction writing their results is rolled back, so
    a job's results are committed once, by the worker holding its lease (fencing).

    Attributes:
        job_ids: the jobs whose lease was lost.
    """

    def __init__(self, job_ids: set[int]) -> None:
        super().__init__(f"augmentation jobs {sorted(job_ids)} were taken over by another "
                         "worker after their lease expired")
        self.job_ids = job_ids


def _message_ids(raw: object) -> tuple[int, ...]:
    """A job's ``message_ids`` column (a JSON list of message row ids).

    Raises:
        ValueError: not a non-empty JSON list of integers (a corrupt row).
    """
    ids = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    if not isinstance(ids, list) or not ids or \
            not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"message_ids is not a list of message ids: {raw!r:.80}")
    return tuple(ids)


@dataclass(frozen=True)
class JobRow:
    """A claimed job. ``claim`` is the claim's token (``memori_augmentation_job.claimed_by``):
    unique per claim, so a worker that claims a job again holds a new lease."""

    id: int
    entity_id: int
    process_id: int | None
    conversation_id: int
    message_ids: tuple[int, ...]
    attempts: int
    claim: str = ""


@dataclass(frozen=True)
class NewMemory:
    """A memory to upsert: dedup on (entity, process, kind, normalized content).

    ``importance`` is in [0, 1] (0 = ordinary; values outside are clipped, NaN is 0); a memory
    said again keeps the higher of its stored and its new importance.
    """

    entity_id: int
    process_id: int | None
    kind: str
    content: str
    embedding: np.ndarray
    source_message_ids: tuple[int, ...]
    slot: str | None = None
    search_text: str | None = None  # what BM25 indexes, when not ``content``
    observed_at: datetime | None = None  # when its source was said (default: now)
    importance: float = 0.0


@dataclass(frozen=True)
class NewTriple:
    """A knowledge-graph triple to upsert, with the memory it was drawn from (or None)."""

    entity_id: int
    process_id: int | None
    subject: str
    predicate: str
    object: str
    fact_id: int | None = None


@dataclass(frozen=True)
class MemoryRow:
    """What a recall index holds of one memory."""

    id: int
    process_id: int | None
    kind: str
    superseded: bool
    text: str  # search_text, else content: what BM25 indexes
    embedding: bytes


@dataclass(frozen=True)
class LexicalCorpus:
    """What recall's candidate path needs to score a lexical pool with BM25
    (``Store.lexical_corpus``): statistics over every memory of one entity (the rows of its
    in-process BM25 index) and the indexed text of some.

    Attributes:
        rows: the entity's memories, every kind, process and supersession.
        chars: characters of their indexed text (``search_text``, else ``content``), summed;
            above ``LENGTH_SAMPLE`` memories, estimated from that many of them, every
            (rows // LENGTH_SAMPLE)-th by id (a sum over every text cost 7 ms at 10k on
            SQLite).
        df: term -> memories whose indexed text holds it, by the database's full-text index.
        texts: memory id -> its indexed text: the pool's, and every memory's when
            ``rows <= every_below``.
        messages: the entity's conversation messages (0 unless asked: ``replies``).
        message_chars: characters of their text, summed (the reply field's texts), estimated
            as ``chars`` is.
    """

    rows: int
    chars: int
    df: dict[str, int]
    texts: dict[int, str]
    messages: int = 0
    message_chars: int = 0


@dataclass(frozen=True)
class MemoryBlock:
    """Memories of one entity as columns (``Store.memory_block``): what a recall index holds,
    decoded from one read.

    Attributes:
        ids: row ids, int64 array, shape (n,), ascending.
        process_ids: process row ids, int64 array, shape (n,); -1 for no process.
        kinds: memory kinds, n strings.
        superseded: bool array, shape (n,): replaced by a newer memory on its slot.
        texts: what BM25 indexes (``search_text``, else ``content``), n strings.
        vectors: float32 array, shape (n, dim), row-aligned with ``ids``.
    """

    ids: np.ndarray
    process_ids: np.ndarray
    kinds: list[str]
    superseded: np.ndarray
    texts: list[str]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def slice(self, start: int, stop: int) -> MemoryBlock:
        """Rows ``start .. stop - 1`` (views, no copy of the vectors)."""
        return MemoryBlock(self.ids[start:stop], self.process_ids[start:stop],
                           self.kinds[start:stop], self.superseded[start:stop],
                           self.texts[start:stop], self.vectors[start:stop])

    @staticmethod
    def of_rows(rows: Sequence[MemoryRow]) -> MemoryBlock:
        """The block of ``MemoryRow`` values (one ``np.frombuffer`` over the joined vectors)."""
        vectors = np.frombuffer(b"".join(r.embedding for r in rows), dtype="<f4")
        return MemoryBlock(
            np.asarray([r.id for r in rows], dtype=np.int64),
            np.asarray([-1 if r.process_id is None else r.process_id for r in rows],
                       dtype=np.int64),
            [r.kind for r in rows], np.asarray([r.superseded for r in rows], dtype=np.bool_),
            [r.text for r in rows],
            vectors.reshape(len(rows), -1) if rows else vectors.reshape(0, 0))


def _decode_vectors(blobs: Sequence[bytes], n: int) -> np.ndarray:
    """float32 array, shape (n, dim), of n little-endian float32 blobs of one length: one
    ``np.frombuffer`` over the joined bytes (no per-row array)."""
    flat = np.frombuffer(b"".join(blobs), dtype="<f4")
    return flat.reshape(n, -1) if n else flat.reshape(0, 0)


# Statements of the capture path, built once: values go as parameters, so SQLAlchemy compiles
# each once and the per-turn cost is the database's (capture p50 measured 1.31 -> 0.43 ms on
# SQLite, 2.42 -> 1.67 ms on PostgreSQL, one user + one assistant message).
_INSERT_MESSAGES = insert(s.conversation_message).returning(
    s.conversation_message.c.id, sort_by_parameter_order=True)
_INSERT_JOB = insert(s.augmentation_job).returning(s.augmentation_job.c.id)
_INSERT_CONVERSATION = insert(s.conversation).returning(s.conversation.c.id)
_LAST_CONVERSATION = (select(s.conversation.c.id, s.conversation.c.last_activity_at)
                      .where(s.conversation.c.session_id == bindparam("session"))
                      .order_by(s.conversation.c.id.desc()).limit(1))
_TOUCH_CONVERSATION = (update(s.conversation).where(s.conversation.c.id == bindparam("conv"))
                       .values(last_activity_at=bindparam("at")))
# PostgreSQL: capture in one statement. The session's newest conversation is touched when
# active since :cutoff, else a new one is made; the messages go in in order (an INSERT ...
# SELECT ... ORDER BY takes serial ids in that order, as SQLAlchemy's insertmanyvalues relies
# on) and the job lists their ids.
_CAPTURE_POSTGRESQL = text("""
WITH touched AS (
    UPDATE memori_conversation SET last_activity_at = GREATEST(last_activity_at, :turn_at)
    WHERE id = (SELECT max(id) FROM memori_conversation WHERE session_id = :session)
      AND last_activity_at >= :cutoff
    RETURNING id),
created AS (
    INSERT INTO memori_conversation (session_id, entity_id, process_id, created_at,
                                     last_activity_at)
    SELECT :session, :entity, CAST(:process AS bigint), :turn_at, :turn_at
    WHERE NOT EXISTS (SELECT 1 FROM touched)
    RETURNING id),
conv AS (SELECT id FROM touched UNION ALL SELECT id FROM created),
msg AS (
    INSERT INTO memori_conversation_message (conversation_id, session_id, entity_id,
        process_id, role, name, content, content_json, extra_json, created_at)
    SELECT conv.id, :session, :entity, CAST(:process AS bigint), m.role, m.name, m.content,
           m.content_json, m.extra_json, m.created_at
    FROM conv, unnest(CAST(:roles AS text[]), CAST(:names AS text[]),
                      CAST(:contents AS text[]), CAST(:content_jsons AS text[]),
                      CAST(:extra_jsons AS text[]), CAST(:created AS timestamp[]))
         WITH ORDINALITY AS m(role, name, content, content_json, extra_json, created_at, n)
    ORDER BY m.n
    RETURNING id),
job AS (
    INSERT INTO memori_augmentation_job (entity_id, process_id, conversation_id, message_ids,
                                         status, attempts, created_at, run_after)
    SELECT :entity, CAST(:process AS bigint), conv.id,
           (SELECT json_agg(id ORDER BY id)::text FROM msg), 'queued', 0, :now, :now
    FROM conv
    RETURNING id)
SELECT (SELECT json_agg(id ORDER BY id)::text FROM msg) AS ids, (SELECT id FROM job) AS job
""")
# a memory said again: one more mention, and the higher of its stored and its new importance
_BUMP_MEMORY = update(s.entity_fact).where(s.entity_fact.c.id == bindparam("fid")).values(
    mention_count=s.entity_fact.c.mention_count + bindparam("n"),
    importance=case((s.entity_fact.c.importance < bindparam("imp", type_=Double()),
                     bindparam("imp", type_=Double())), else_=s.entity_fact.c.importance))
#: PostgreSQL binary COPY type of a column, by its SQLAlchemy type (``Store._rows`` with ``copy``)
_COPY_TYPES = {"BigInteger": "int8", "Integer": "int4", "SmallInteger": "int2",
               "LargeBinary": "bytea"}
# recall's reads, built once (SQLAlchemy then compiles each once, not per recall)
_MEMORY_VERSION = select(s.entity.c.memory_version).where(s.entity.c.id == bindparam("entity"))
# what a recall index holds of an entity's memories above an id, in one read
_MEMORY_BLOCK = (select(s.entity_fact.c.id, s.entity_fact.c.process_id, s.entity_fact.c.kind,
                        s.entity_fact.c.superseded_by,
                        func.coalesce(s.entity_fact.c.search_text, s.entity_fact.c.content),
                        s.entity_fact.c.embedding)
                 .where(s.entity_fact.c.entity_id == bindparam("entity"),
                        s.entity_fact.c.id > bindparam("after"))
                 .order_by(s.entity_fact.c.id))
# what ``memory_details`` returns of a memory, for any WHERE
_DETAILS = (
    select(s.entity_fact.c.id, s.entity_fact.c.content, s.entity_fact.c.kind,
           s.entity_fact.c.created_at, s.entity_fact.c.last_seen_at, s.entity_fact.c.mention_count,
           s.entity_fact.c.superseded_by, s.entity_fact.c.importance,
           s.process.c.external_id.label("process"))
    .select_from(s.entity_fact.outerjoin(s.process, s.process.c.id == s.entity_fact.c.process_id)))
# PostgreSQL: the sources as an array beside the details, one round trip instead of two
_SOURCES_ARRAY = (select(postgresql.array_agg(aggregate_order_by(s.fact_mention.c.message_id,
                                                                 s.fact_mention.c.message_id)))
                  .where(s.fact_mention.c.fact_id == s.entity_fact.c.id)
                  .scalar_subquery().label("sources"))
_MEMORY_DETAILS = _DETAILS.where(s.entity_fact.c.entity_id == bindparam("entity"),
                                 s.entity_fact.c.id.in_(bindparam("ids", expanding=True)))
_MEMORY_DETAILS_WITH_SOURCES = _MEMORY_DETAILS.add_columns(_SOURCES_ARRAY)
_MEMORY_SOURCES = (select(s.fact_mention.c.fact_id, s.fact_mention.c.message_id)
                   .where(s.fact_mention.c.fact_id.in_(bindparam("ids", expanding=True)))
                   .order_by(s.fact_mention.c.message_id))


#: a second reference to the message table (neighbours of a message in its conversation)
_M2 = s.conversation_message.alias("neighbour")
_M3 = s.conversation_message.alias("before")


class _StaleId(Exception):
    """A get-or-create left no row: the cached parent id it referenced is gone (MySQL's
    INSERT IGNORE turns the foreign-key error into a warning)."""


@dataclass
class _TxState:
    """Cache entries learned inside a transaction, published only after it commits."""

    pending: dict[tuple[str, str], int] = field(default_factory=dict)
    #: COMMIT was sent: a lost connection now leaves the outcome unknown (never retried)
    committing: bool = False


class Store:
    """Data access for one database.

    Args:
        engine: the Engine every ``conn=`` form was turned into.
        owned: dispose the engine on ``close``.
    """

    def __init__(self, engine: Engine, owned: bool, *, pgvector: bool = False) -> None:
        self.engine = engine
        self.owned = owned
        #: ``Config.recall_pgvector``: ``build`` installs pgvector push-down where it can
        self.pgvector = pgvector
        self.dialect = engine.dialect.name
        self._sqlite_lock = threading.RLock() if self.dialect == "sqlite" else None
        self._ids: dict[tuple[str, str], int] = {}
        self._ids_lock = threading.Lock()
        self._local = threading.local()  # the thread's open ``read`` connection, if any
        # PostgreSQL reads run in autocommit: under READ COMMITTED every statement takes its own
        # snapshot anyway, so a read transaction only added a BEGIN and a ROLLBACK round trip
        # (psycopg sets the mode on the client; nothing is sent to switch it)
        self._reader = (engine.execution_options(isolation_level="AUTOCOMMIT")
                        if self.dialect == "postgresql" else engine)
        self._built = False
        #: (``fulltext_missing``'s answer,) once checked
        self._fulltext: tuple[str | None] | None = None
        #: (dim, ``pgvector_missing``'s answer) once settled; the background install, if any
        self._vector: tuple[int, str | None] | None = None
        self._vector_install: threading.Thread | None = None
        self._vector_lock = threading.Lock()

    # ---- lifecycle ------------------------------------------------------------------------
    def build(self) -> None:
        """Create or migrate the schema (idempotent, safe across processes), then check it.

        Raises:
            StorageError: the schema is newer than this memori-core, or a table or column
                memori needs is missing (changed outside memori).
        """
        migrations.apply(self.engine)
        self._built = False
        self._fulltext = None
        if not self.is_built():
            raise StorageError("the memori schema is incomplete after building it")
        if self.pgvector and self.dialect == "postgresql":
            dim = self._model_dim()
            if dim is not None:  # else on the first cold recall, once a model is recorded
                reason = self.install_pgvector(dim)
                if reason is not None:
                    _log.warning("recall_pgvector: %s; cold recall takes its dense "
                                 "candidates from the packed vectors", reason)

    def is_built(self) -> bool:
        """Whether the schema is this memori-core's, checked once per instance: its version,
        and every table and column memori reads.

        Raises:
            StorageError: the database is unreachable; the schema is newer than this
                memori-core ("upgrade memori-core"); or a table or column is missing.
        """
        if self._built:
            return True
        try:
            with self.engine.connect() as conn:
                version = migrations.current_version(conn)
                latest = len(migrations.MIGRATIONS)
                if version > latest:
                    raise StorageError(
                        f"the database schema is at version {version}, newer than this "
                        f"memori-core ({latest}); upgrade memori-core")
                if version < latest:
                    return False
                self._check_columns(conn)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot reach the database: {exc}") from exc
        self._built = True
        return True

    @staticmethod
    def _check_columns(conn: Connection) -> None:
        """Raises: StorageError naming each memori table or column the database lacks."""
        inspector = sa_inspect(conn)
        present = set(inspector.get_table_names())
        problems = []
        for table in s.metadata.sorted_tables:
            if table.name not in present:
                problems.append(f"table {table.name}")
                continue
            have = {c["name"] for c in inspector.get_columns(table.name)}
            problems += [f"{table.name}.{c.name}" for c in table.columns if c.name not in have]
        if problems:
            raise StorageError(
                f"the memori schema was changed outside memori: missing {', '.join(problems)}; "
                "restore it from a backup (memori only adds tables and columns through its "
                "numbered migrations)")

    def close(self) -> None:
        """Dispose the engine when owned, after a background pgvector install finishes
        (``pgvector_missing``)."""
        install = self._vector_install
        if install is not None:
            install.join()
        if self.owned:
            self.engine.dispose()

    # ---- transactions ---------------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads. A ``read`` inside another one on the same thread gets the
        outer one's connection, so a caller can make several store reads share one checkout
        (``Recaller.recall`` does: version check, index load and details in one).

        Raises:
            StorageError: the database failed.
        """
        outer = getattr(self._local, "read", None)
        if outer is not None:
            try:
                yield outer
            except SQLAlchemyError as exc:
                raise StorageError(f"database read failed: {exc}") from exc
            return
        try:
            with self._reader.connect() as conn:
                self._local.read = conn
                try:
                    yield conn
                finally:
                    self._local.read = None
        except SQLAlchemyError as exc:
            raise StorageError(f"database read failed: {exc}") from exc

    def write(self, fn: Callable[[Connection, _TxState], T]) -> T:
        """Run ``fn`` in one write transaction; retried as a whole on deadlock or
        serialization failure, so ``fn`` must only touch the database.

        A foreign-key or unique violation is retried once with the id cache cleared: a cached
        entity or session row may have been deleted by ``forget`` (in any process) and is then
        created again. A connection found dead before COMMIT (the server restarted since the
        pool last used it: ``connect.PING_AFTER_IDLE_S``) is retried on a new one; one lost
        during COMMIT is not, since the transaction may have gone through.

        Raises:
            StorageError: when the transaction fails for any other reason (nothing is kept).
        """
        cleared = False
        for attempt in range(WRITE_RETRIES):
            state = _TxState()
            try:
                if self._sqlite_lock is not None:
                    with self._sqlite_lock, self.engine.connect() as conn:
                        conn = conn.execution_options(memori_write=True)
                        with conn.begin():
                            result = fn(conn, state)
                else:
                    with self.engine.connect() as conn:
                        transaction = conn.begin()
                        result = fn(conn, state)
                        state.committing = True
                        transaction.commit()
            except (IntegrityError, _StaleId) as exc:
                if not cleared and self._ids:
                    cleared = True
                    self.drop_cached_ids()
                    continue
                raise StorageError(f"database write failed: {exc}") from exc
            except DBAPIError as exc:
                if (exc.connection_invalidated and not state.committing
                        and attempt < WRITE_RETRIES - 1):
                    continue  # the pool was renewed: run the transaction again at once
                if _is_retryable(exc) and attempt < WRITE_RETRIES - 1:
                    time.sleep(min(0.01 * 2**attempt, 0.5))  # backoff between retries
                    continue
                raise StorageError(f"database write failed: {exc}") from exc
            except SQLAlchemyError as exc:
                raise StorageError(f"database write failed: {exc}") from exc
            with self._ids_lock:
                self._ids.update(state.pending)
            return result
        raise AssertionError("unreachable")

    # ---- dialect helpers ------------------------------------------------------------------
    def _insert_ignore_stmt(self, table: Any) -> Any:
        """INSERT that skips rows whose unique key exists, without values: the values go as
        parameters, so SQLAlchemy compiles it once per table and reuses it (a ``.values(...)``
        statement is a new cache key per row, measured at half of augmentation's time)."""
        if self.dialect == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        if self.dialect == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        if self.dialect in ("mysql", "mariadb"):
            return mysql.insert(table).prefix_with("IGNORE")
        raise StorageError(f"unsupported database dialect {self.dialect}")  # pragma: no cover

    def _insert_ignore(self, conn: Connection, table: Any, values: dict[str, Any]) -> int:
        """Insert one row unless its unique key exists. Returns 1 if inserted, else 0
        (counted from RETURNING: psycopg reports rowcount -1 for a parameter-bound insert)."""
        stmt = self._insert_ignore_stmt(table).returning(list(table.primary_key.columns)[0])
        return len(conn.execute(stmt, values).all())

    def _insert_ignore_many(self, conn: Connection, table: Any,
                            rows: list[dict[str, Any]]) -> None:
        """Insert-or-ignore several rows with one executemany."""
        conn.execute(self._insert_ignore_stmt(table), rows)

    def _get_or_create(self, conn: Connection, state: _TxState, table: Any, key: str,
                       values: dict[str, Any]) -> int:
        cache_key = (table.name, key)
        cached = self._ids.get(cache_key) or state.pending.get(cache_key)
        if cached is not None:
            return cached
        q = select(table.c.id).where(table.c.external_key == key)
        found = conn.execute(q).scalar()
        if found is None:
            self._insert_ignore(conn, table, {"external_key": key, "created_at": utcnow(), **values})
            found = conn.execute(q).scalar()
        if found is None:  # a cached parent row (entity of a session) was deleted: forget
            raise _StaleId(f"could not create a {table.name} row")
        state.pending[cache_key] = int(found)
        return int(found)

    def entity_pk(self, conn: Connection, state: _TxState, external_id: str) -> int:
        return self._get_or_create(conn, state, s.entity, sha("entity", external_id),
                                   {"external_id": external_id})

    def process_pk(self, conn: Connection, state: _TxState, external_id: str | None) -> int | None:
        if external_id is None:
            return None
        return self._get_or_create(conn, state, s.process, sha("process", external_id),
                                   {"external_id": external_id})

    def drop_cached_ids(self, entity_pk: int | None = None) -> None:
        """Forget cached row ids: all (entity, process, session), or only the entity row
        ``entity_pk``. After ``forget`` deleted rows, or when a cached row turned out gone."""
        with self._ids_lock:
            if entity_pk is None:
                self._ids.clear()
            else:
                for key in [k for k, v in self._ids.items()
                            if k[0] == s.entity.name and v == entity_pk]:
                    del self._ids[key]

    def for_entity(self, external_id: str, fn: Callable[[int], T], empty: T) -> T:
        """``fn(entity row id)`` for an external entity id, or ``empty`` for an unknown one.
        A cached id whose row another process forgot (and maybe made again under a new id)
        finds nothing, so only an empty result costs a check of the id (one primary-key
        read) and, when it was stale, a second call with the fresh one. Recall does the same
        through its version check."""
        pk = self.find_pk("entity", external_id)
        if pk is None:
            return empty
        result = fn(pk)
        if result:
            return result
        try:
            self.memory_version(pk)
            return result
        except EntityGone:  # stale: its cached id is dropped
            fresh = self.find_pk("entity", external_id)
        return empty if fresh is None else fn(fresh)

    def find_pk(self, kind: str, external_id: str) -> int | None:
        """Look up an entity or process row id without creating it."""
        table = s.entity if kind == "entity" else s.process
        key = sha(kind, external_id)
        cached = self._ids.get((table.name, key))
        if cached is not None:
            return cached
        with self.read() as conn:
            found = conn.execute(select(table.c.id).where(table.c.external_key == key)).scalar()
        if found is not None:
            with self._ids_lock:
                self._ids[(table.name, key)] = int(found)
        return None if found is None else int(found)

    def purge(self, vacuum: bool) -> None:
        """After an erasure, remove what the database still keeps of deleted rows where it
        can: SQLite (``secure_delete`` zeroes deleted content already) merges its FTS5 index
        when recall made one (the tokens of deleted rows go), checkpoints its WAL into the file
        and truncates it; with ``vacuum``, PostgreSQL runs ``VACUUM FULL`` and
        MariaDB ``OPTIMIZE TABLE`` on memori's tables: both rewrite them without the deleted
        rows (a plain ``VACUUM`` only marks their space free, their bytes stay until reused),
        holding each table's lock while it is rewritten.

        Raises:
            StorageError: the database failed.
        """
        tables = [t.name for t in s.metadata.sorted_tables]
        try:
            if self.dialect == "sqlite":
                def optimize(conn: Connection, _state: _TxState) -> None:
                    # merge the FTS5 index's segments (if made): deleted rows' tokens go
                    if sa_inspect(conn).has_table(migrations.FTS_TABLE):
                        conn.exec_driver_sql(f"INSERT INTO {migrations.FTS_TABLE} "
                                             f"({migrations.FTS_TABLE}) VALUES ('optimize')")

                self.write(optimize)
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            elif vacuum and self.dialect == "postgresql":
                with self.engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT") as conn:
                    if conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"),
                                    {"t": pgvector.TABLE}).scalar():
                        tables.append(pgvector.TABLE)  # the vectors of recall_pgvector
                    conn.exec_driver_sql("VACUUM FULL " + ", ".join(tables))
            elif vacuum:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("OPTIMIZE TABLE " + ", ".join(tables)).all()
        except SQLAlchemyError as exc:
            raise StorageError(f"purging deleted rows failed: {exc}") from exc

    def external_ids(self, kind: str, limit: int = 100_000) -> list[str]:
        """External ids of entities or processes (``kind``), at most ``limit``: what the CLI
        offers when an id given to it does not exist."""
        table = s.entity if kind == "entity" else s.process
        with self.read() as conn:
            return list(conn.execute(select(table.c.external_id).limit(limit)).scalars())

    # ---- capture --------------------------------------------------------------------------
    def capture(self, *, entity_id: str, process_id: str | None, session_id: str,
                messages: Sequence[CapturedMessage], session_timeout: timedelta
                ) -> tuple[list[int], int]:
        """Store one turn and queue its augmentation job in one transaction.

        Returns:
            (message row ids in order, job id).
        """

        def tx(conn: Connection, state: _TxState) -> tuple[list[int], int]:
            now = utcnow()
            e = self.entity_pk(conn, state, entity_id)
            p = self.process_pk(conn, state, process_id)
            sess = self._get_or_create(
                conn, state, s.session, sha("session", e, session_id),
                {"entity_id": e, "process_id": p, "external_id": session_id})
            # imported history (messages with created_at) is split into conversations by its
            # own clock
            turn_at = messages[0].created_at or now
            if self.dialect == "postgresql":
                return self._capture_postgresql(conn, sess, e, p, turn_at, now,
                                                session_timeout, messages)
            conv = self._conversation(conn, sess, e, p, turn_at, session_timeout)
            rows = [dict(conversation_id=conv, session_id=sess, entity_id=e, process_id=p,
                         role=m.role, name=m.name, content=m.content,
                         content_json=m.content_json, extra_json=m.extra_json,
                         created_at=m.created_at or now) for m in messages]
            # one statement for the turn (RETURNING in parameter order: the ids, in order)
            ids = [int(i) for i in conn.execute(_INSERT_MESSAGES, rows).scalars()]
            job = conn.execute(_INSERT_JOB, dict(
                entity_id=e, process_id=p, conversation_id=conv, message_ids=json.dumps(ids),
                status="queued", attempts=0, created_at=now, run_after=now)).scalar_one()
            return ids, int(job)

        return self.write(tx)

    def _capture_postgresql(self, conn: Connection, session_pk: int, entity_pk: int,
                            process_pk: int | None, turn_at: datetime, now: datetime,
                            timeout: timedelta, messages: Sequence[CapturedMessage]
                            ) -> tuple[list[int], int]:
        """``capture``'s conversation, messages and job in one statement (data-modifying
        CTEs): one round trip instead of four, the same rows as the portable path."""
        row = conn.execute(_CAPTURE_POSTGRESQL, {
            "session": session_pk, "entity": entity_pk, "process": process_pk,
            "turn_at": turn_at, "cutoff": turn_at - timeout, "now": now,
            "roles": [m.role for m in messages], "names": [m.name for m in messages],
            "contents": [m.content for m in messages],
            "content_jsons": [m.content_json for m in messages],
            "extra_jsons": [m.extra_json for m in messages],
            "created": [m.created_at or now for m in messages]}).one()
        ids = [int(i) for i in json.loads(row.ids)]
        if len(ids) != len(messages):  # pragma: no cover - the statement inserts one per message
            raise StorageError(f"capture stored {len(ids)} of {len(messages)} messages")
        return ids, int(row.job)

    def _conversation(self, conn: Connection, session_pk: int, entity_pk: int,
                      process_pk: int | None, now: datetime, timeout: timedelta) -> int:
        """The session's conversation for a turn at ``now``: its newest one, touched (never
        moved back), when that was active within ``timeout``; else a new one. (PostgreSQL
        does this inside ``_CAPTURE_POSTGRESQL``.)"""
        row = conn.execute(_LAST_CONVERSATION, {"session": session_pk}).first()
        if row is not None and now - row.last_activity_at <= timeout:
            if now > row.last_activity_at:
                conn.execute(_TOUCH_CONVERSATION, {"conv": row.id, "at": now})
            return int(row.id)
        return int(conn.execute(_INSERT_CONVERSATION, dict(
            session_id=session_pk, entity_id=entity_pk, process_id=process_pk,
            created_at=now, last_activity_at=now)).scalar_one())

    def session_messages(self, entity_id: str, session_id: str) -> list[dict[str, Any]]:
        """The messages of one session of one entity, oldest first."""
        return self.for_entity(entity_id, lambda e: self._session_messages(e, session_id), [])

    def _session_messages(self, e: int, session_id: str) -> list[dict[str, Any]]:
        m, ss = s.conversation_message.c, s.session.c
        with self.read() as conn:
            sess = conn.execute(select(ss.id).where(
                ss.external_key == sha("session", e, session_id))).scalar()
            if sess is None:
                return []
            rows = conn.execute(select(m.id, m.role, m.name, m.content, m.content_json,
                                       m.extra_json, m.created_at)
                                .where(m.session_id == sess, m.entity_id == e)
                                .order_by(m.id)).all()
        return [_message_dict(r) for r in rows]

    def message_texts(self, entity_id: str, ids: Sequence[int]) -> dict[int, str]:
        """Text of stored messages of one entity, by id (ids of other entities' messages are
        not returned): what the context pipeline compares with a visible history."""
        m = s.conversation_message.c

        def read(e: int) -> dict[int, str]:
            out: dict[int, str] = {}
            with self.read() as conn:
                for start in range(0, len(ids), 500):
                    out.update((int(i), str(t)) for i, t in conn.execute(
                        select(m.id, m.content).where(m.entity_id == e,
                                                      m.id.in_(list(ids[start:start + 500])))))
            return out

        return self.for_entity(entity_id, read, {}) if ids else {}

    def message_origins(self, entity_pk: int, ids: Sequence[int]
                        ) -> dict[int, tuple[int, str | None]]:
        """Conversation row id and speaker ``name`` of stored messages of one entity, by id
        (other entities' messages are not returned): what recall's conversation prior and
        named-participant bonus read. One statement per 500 ids."""
        m = s.conversation_message.c
        out: dict[int, tuple[int, str | None]] = {}
        with self.read() as conn:
            for start in range(0, len(ids), 500):
                out.update((int(i), (int(c), n)) for i, c, n in conn.execute(
                    select(m.id, m.conversation_id, m.name).where(
                        m.entity_id == entity_pk, m.id.in_(list(ids[start:start + 500])))))
        return out

    def turn_stored(self, entity_id: str, session_id: str,
                    messages: Sequence[CapturedMessage]) -> bool:
        """Whether every message of a turn (role, content and ``created_at`` each) is in the
        session already: a capture can raise although its COMMIT went through (the server
        went away before replying), and a retry of it must not store the turn twice. False
        for messages without ``created_at``."""
        return self.stored_turn(entity_id, session_id, messages) is not None

    def stored_turn(self, entity_id: str, session_id: str,
                    messages: Sequence[CapturedMessage]) -> list[int] | None:
        """The ids of a turn's messages (in order) when every one of them (role, content and
        ``created_at``) is in the session already, else None (also for messages without
        ``created_at``): ``turn_stored``, and what ``POST /v1/turns`` answers a turn sent
        again."""
        times = {m.created_at for m in messages}
        if not times or None in times:
            return None
        return self.for_entity(
            entity_id, lambda e: self._stored_turn(e, session_id, messages, times), None)

    def _stored_turn(self, e: int, session_id: str, messages: Sequence[CapturedMessage],
                     times: set[datetime | None]) -> list[int] | None:
        m, ss = s.conversation_message.c, s.session.c
        with self.read() as conn:
            sess = conn.execute(select(ss.id).where(
                ss.external_key == sha("session", e, session_id))).scalar()
            if sess is None:
                return None
            rows = conn.execute(select(m.id, m.role, m.content, m.created_at).where(
                m.session_id == sess, m.entity_id == e, m.created_at.in_(list(times)))
                .order_by(m.id)).all()
        have: dict[tuple[Any, ...], list[int]] = {}
        for r in rows:
            have.setdefault((r.role, r.content, r.created_at), []).append(int(r.id))
        ids = []
        for x in messages:
            found = have.get((x.role, x.content, x.created_at))
            if not found:
                return None
            ids.append(found.pop(0))
        return ids

    # ---- the augmentation queue -------------------------------------------------------------
    def claim_jobs(self, worker: str, limit: int, lease: timedelta) -> list[JobRow]:
        """Claim up to ``limit`` runnable jobs (queued and due, or running with an expired
        lease) under the claim token ``worker`` (at most 64 characters, unique per claim).
        PostgreSQL and MariaDB use ``FOR UPDATE SKIP LOCKED``; SQLite has one writer."""
        j = s.augmentation_job.c

        def tx(conn: Connection, _state: _TxState) -> list[JobRow]:
            now = utcnow()
            q = (select(j.id, j.entity_id, j.process_id, j.conversation_id, j.message_ids,
                        j.attempts)
                 .where(or_(and_(j.status == "queued", j.run_after <= now),
                            and_(j.status == "running", j.claimed_at < now - lease)))
                 .order_by(j.id).limit(limit))
            if self.dialect != "sqlite":
                q = q.with_for_update(skip_locked=True)
            rows = conn.execute(q).all()
            if not rows:
                return []
            jobs, unreadable = [], {}
            for r in rows:
                try:
                    jobs.append(JobRow(int(r.id), int(r.entity_id), _opt_int(r.process_id),
                                       int(r.conversation_id), _message_ids(r.message_ids),
                                       int(r.attempts) + 1, worker))
                except (TypeError, ValueError) as exc:  # json.JSONDecodeError included
                    unreadable[int(r.id)] = f"unreadable job row: {type(exc).__name__}: {exc}"
            for job_id, error in unreadable.items():
                # a poison row fails at once, with its error, and the queue goes on
                _log.error("augmentation job %d cannot be read and is marked failed: %s",
                           job_id, error)
                conn.execute(update(s.augmentation_job).where(j.id == job_id)
                             .values(status="failed", error=error, finished_at=now,
                                     attempts=j.attempts + 1))
            if jobs:
                conn.execute(update(s.augmentation_job)
                             .where(j.id.in_([job.id for job in jobs]))
                             .values(status="running", claimed_at=now, claimed_by=worker,
                                     attempts=j.attempts + 1))
            return jobs

        return self.write(tx)

    def renew_jobs(self, claim: str) -> int:
        """Extend the lease of the jobs still held by ``claim`` (their ``claimed_at`` becomes
        now). Returns how many it still holds."""
        j = s.augmentation_job.c

        def tx(conn: Connection, _state: _TxState) -> int:
            return int(conn.execute(update(s.augmentation_job)
                                    .where(j.claimed_by == claim, j.status == "running")
                                    .values(claimed_at=utcnow())).rowcount or 0)

        return self.write(tx)

    def hold_jobs(self, conn: Connection, job_ids: Sequence[int], claim: str) -> None:
        """Lock the jobs' rows for the transaction writing their results and check that
        ``claim`` still holds each of them (fencing).

        Raises:
            JobsGone: some of the jobs no longer exist (forgotten).
            LeaseLost: some are no longer held by ``claim``.
        """
        j = s.augmentation_job.c
        q = select(j.id, j.claimed_by, j.status).where(j.id.in_(list(job_ids)))
        if self.dialect != "sqlite":
            q = q.with_for_update()
        rows = conn.execute(q).all()
        missing = set(job_ids) - {int(r.id) for r in rows}
        if missing:
            raise JobsGone(missing)
        lost = {int(r.id) for r in rows if r.claimed_by != claim or r.status != "running"}
        if lost:
            raise LeaseLost(lost)

    def load_turns(self, jobs: Sequence[JobRow]) -> dict[int, tuple[
            str, str | None, list[dict[str, Any]], dict[str, Any] | None]]:
        """For each job: (external entity id, external process id or None, its messages
        oldest first, the message just before its turn in the same conversation and process
        or None: context for extraction and search; a persona's memories never hold another
        persona's words, so ``forget(process_id=...)`` leaves none behind)."""
        loaded = self._load_jobs(jobs)
        m = s.conversation_message.c
        firsts = {job.id: loaded[job.id][2][0]["id"] for job in jobs if loaded[job.id][2]}
        # one statement for the batch: IN (one indexed MAX subquery per job)
        wanted = [select(func.max(m.id)).where(
            m.conversation_id == job.conversation_id, m.entity_id == job.entity_id,
            m.process_id.is_(None) if job.process_id is None else m.process_id == job.process_id,
            m.id < firsts[job.id]).scalar_subquery() for job in jobs if job.id in firsts]
        before: list[Any] = []
        if wanted:
            with self.read() as conn:
                before = list(conn.execute(
                    select(m.id, m.conversation_id, m.entity_id, m.process_id, m.role, m.name,
                           m.content, m.content_json, m.extra_json, m.created_at)
                    .where(m.id.in_(wanted)).order_by(m.id)).all())
        by_conv: dict[tuple[int, int, int | None], list[Any]] = {}
        for r in before:  # in id order
            by_conv.setdefault((int(r.conversation_id), int(r.entity_id),
                                _opt_int(r.process_id)), []).append(r)
        out = {}
        for job in jobs:
            entity_id, process_id, messages = loaded[job.id]
            previous = None
            for r in reversed(by_conv.get((job.conversation_id, job.entity_id,
                                           job.process_id), [])):
                if job.id in firsts and int(r.id) < firsts[job.id]:
                    previous = _message_dict(r)
                    break
            out[job.id] = (entity_id, process_id, messages, previous)
        return out

    def _load_jobs(self, jobs: Sequence[JobRow]) -> dict[int, tuple[str, str | None,
                                                                   list[dict[str, Any]]]]:
        e, p, m = s.entity.c, s.process.c, s.conversation_message.c
        wanted = {mid: job for job in jobs for mid in job.message_ids}
        with self.read() as conn:
            ents: dict[int, str] = dict(conn.execute(select(e.id, e.external_id).where(
                e.id.in_({j.entity_id for j in jobs}))).all())
            procs: dict[int, str] = dict(conn.execute(select(p.id, p.external_id).where(
                p.id.in_({j.process_id for j in jobs if j.process_id is not None}))).all())
            rows = conn.execute(select(m.id, m.entity_id, m.role, m.name, m.content,
                                       m.content_json, m.extra_json, m.created_at)
                                .where(m.id.in_(list(wanted))).order_by(m.id)).all()
        messages: dict[int, list[dict[str, Any]]] = {job.id: [] for job in jobs}
        for r in rows:
            job = wanted[int(r.id)]
            if int(r.entity_id) == job.entity_id:  # a job only ever reads its own entity's rows
                messages[job.id].append(_message_dict(r))
        # an entity forgotten since the claim: no messages, and finish_jobs drops the job
        return {job.id: (ents.get(job.entity_id, ""),
                         None if job.process_id is None else procs.get(job.process_id),
                         messages[job.id]) for job in jobs}

    def finish_jobs(self, conn: Connection, job_ids: Sequence[int], worker: str,
                    errors: dict[int, str] | None = None) -> None:
        """Mark claimed jobs done, or ``failed`` with their error for those in ``errors``;
        only jobs still claimed by ``worker`` (a job whose lease expired and was taken over is
        left to its new owner). Called last in the transaction that writes the jobs' results:
        a job deleted meanwhile (``forget``) rolls it back.

        Raises:
            JobsGone: some of the jobs no longer exist.
        """
        j = s.augmentation_job.c
        present = {int(i) for i in conn.execute(
            select(j.id).where(j.id.in_(list(job_ids)))).scalars()}
        if len(present) < len(set(job_ids)):
            raise JobsGone(set(job_ids) - present)
        errors = errors or {}
        now = utcnow()
        done = [i for i in job_ids if i not in errors]
        if done:
            conn.execute(update(s.augmentation_job)
                         .where(j.id.in_(done), j.claimed_by == worker, j.status == "running")
                         .values(status="done", finished_at=now, error=None))
        for job_id, error in errors.items():
            conn.execute(update(s.augmentation_job)
                         .where(j.id == job_id, j.claimed_by == worker, j.status == "running")
                         .values(status="failed", finished_at=now, error=error))

    def release_jobs(self, job_ids: Sequence[int], worker: str) -> None:
        """Put claimed jobs back in the queue untouched (the attempt does not count): the
        worker, not the job, was at fault."""
        j = s.augmentation_job.c

        def tx(conn: Connection, _state: _TxState) -> None:
            conn.execute(update(s.augmentation_job)
                         .where(j.id.in_(list(job_ids)), j.claimed_by == worker,
                                j.status == "running")
                         .values(status="queued", claimed_by=None, claimed_at=None,
                                 attempts=j.attempts - 1))

        self.write(tx)

    def fail_job(self, job: JobRow, worker: str, error: str, max_attempts: int,
                 backoff_factor: float) -> str:
        """Record a failed attempt: back to ``queued`` with an exponential delay, or ``failed``
        after ``max_attempts``. Returns the new status."""
        j = s.augmentation_job.c
        final = job.attempts >= max_attempts
        status = "failed" if final else "queued"
        delay = timedelta(seconds=backoff_factor * 2 ** (job.attempts - 1))

        def tx(conn: Connection, _state: _TxState) -> None:
            conn.execute(update(s.augmentation_job)
                         .where(j.id == job.id, j.claimed_by == worker, j.status == "running")
                         .values(status=status, error=error, run_after=utcnow() + delay,
                                 finished_at=utcnow() if final else None))

        self.write(tx)
        return status

    def missing_jobs(self, job_ids: Sequence[int]) -> set[int]:
        """The ids among ``job_ids`` with no job row (deleted by ``forget``)."""
        j = s.augmentation_job.c
        with self.read() as conn:
            present = {int(i) for i in conn.execute(
                select(j.id).where(j.id.in_(list(job_ids)))).scalars()}
        return set(job_ids) - present

    def max_job_id(self) -> int:
        with self.read() as conn:
            return int(conn.execute(select(func.max(s.augmentation_job.c.id))).scalar() or 0)

    def unfinished_jobs(self, up_to: int) -> int:
        j = s.augmentation_job.c
        with self.read() as conn:
            return int(conn.execute(select(func.count()).select_from(s.augmentation_job)
                                    .where(j.id <= up_to, j.status.in_(("queued", "running"))))
                       .scalar() or 0)

    def failed_jobs(self) -> list[dict[str, Any]]:
        """Failed jobs with the external entity and process ids."""
        j, e, p = s.augmentation_job.c, s.entity.c, s.process.c
        with self.read() as conn:
            rows = conn.execute(
                select(j.id, e.external_id.label("entity_id"),
                       p.external_id.label("process_id"), j.message_ids, j.attempts, j.error,
                       j.finished_at)
                .select_from(s.augmentation_job.join(s.entity, e.id == j.entity_id)
                             .outerjoin(s.process, p.id == j.process_id))
                .where(j.status == "failed").order_by(j.id)).all()
        out = []
        for r in rows:
            try:
                ids: Any = list(_message_ids(r.message_ids))
            except (TypeError, ValueError):
                ids = r.message_ids  # a corrupt row is listed as it is stored
            out.append({**r._mapping, "message_ids": ids})
        return out

    # ---- memories ---------------------------------------------------------------------------
    def upsert_memories(self, conn: Connection, memories: Sequence[NewMemory], model: str
                        ) -> list[int]:
        """Insert memories, or bump ``mention_count`` of the same (entity, process, kind,
        normalized text) and raise its ``importance`` to the new one when that is higher;
        provenance rows to every source message. A handful of statements per batch, whatever
        its size. Returns the row ids, in input order."""
        if not memories:
            return []
        now = utcnow()
        keys = [sha("fact", m.entity_id, m.process_id or "", m.kind, normalize_text(m.content))
                for m in memories]
        existing = self._fact_ids(conn, keys)
        fresh: dict[str, dict[str, Any]] = {}
        seen: dict[str, int] = {}  # mentions per key in this batch
        top: dict[str, float] = {}  # the highest importance per key in this batch
        for key, mem in zip(keys, memories, strict=True):
            seen[key] = seen.get(key, 0) + 1
            top[key] = max(top.get(key, 0.0), clip_importance(mem.importance))
            if key in existing or key in fresh:
                continue
            vec = np.ascontiguousarray(mem.embedding, dtype="<f4")
            fresh[key] = dict(entity_id=mem.entity_id, process_id=mem.process_id, kind=mem.kind,
                              content=mem.content, dedup_key=key, slot=mem.slot,
                              search_text=mem.search_text,
                              embedding=vec.tobytes(), embedding_model=model,
                              embedding_dim=int(vec.shape[0]), mention_count=1,
                              created_at=mem.observed_at or now,
                              last_seen_at=mem.observed_at or now)
        lost: set[str] = set()
        for key, row in fresh.items():
            row["importance"] = top[key]
            # one row per statement: its rowcount says whether a concurrent worker inserted
            # the same memory first, in which case ours is one more mention of it
            if self._insert_ignore(conn, s.entity_fact, row) == 0:
                lost.add(key)
        grown = sorted({row["entity_id"] for key, row in fresh.items() if key not in lost})
        if grown:
            self._bump_version(conn, grown)
        new_ids = self._fact_ids(conn, list(fresh)) if fresh else {}
        if len(new_ids) < len(fresh):  # MySQL's INSERT IGNORE skipped a row whose entity is gone
            raise _StaleId("memories were not stored: their entity row no longer exists")
        bumps = [{"fid": existing[k], "n": n, "imp": top[k]} for k, n in seen.items()
                 if k in existing]
        bumps += [{"fid": new_ids[k], "n": n if k in lost else n - 1, "imp": top[k]}
                  for k, n in seen.items() if k in new_ids and (n > 1 or k in lost)]
        if bumps:
            conn.execute(_BUMP_MEMORY.values(last_seen_at=now), bumps)
        ids = [existing.get(k) or new_ids[k] for k in keys]
        mentions = {(fid, mid) for fid, mem in zip(ids, memories, strict=True)
                    for mid in mem.source_message_ids}
        if mentions:
            self._insert_ignore_many(conn, s.fact_mention, [
                {"fact_id": fid, "message_id": mid, "created_at": now}
                for fid, mid in sorted(mentions)])
        self._supersede(conn, [(fid, m) for fid, m in zip(ids, memories, strict=True) if m.slot])
        if grown:  # after the version bump, which locked the entity rows
            dims = {int(row["embedding_dim"]) for row in fresh.values()}
            written: dict[int, list[int]] = {}
            for key, row in fresh.items():
                if key not in lost:
                    written.setdefault(int(row["entity_id"]), []).append(new_ids[key])
            packed.pack(conn, grown, dims.pop() if len(dims) == 1 else 0, written=written)
        return ids

    def _supersede(self, conn: Connection, slotted: Sequence[tuple[int, NewMemory]]) -> None:
        """The latest memory on a slot (entity, process, slot) is current; the others on it get
        ``superseded_by`` = its id (kept as history). In input order, so within a batch the last
        statement wins; a value said again becomes current again."""
        f = s.entity_fact.c
        winners: dict[tuple[int, int | None, str], int] = {}
        for fid, m in slotted:
            assert m.slot is not None
            winners[(m.entity_id, m.process_id, m.slot)] = fid
        for (entity_pk, process_pk, slot), fid in winners.items():
            same_slot = and_(f.entity_id == entity_pk, f.slot == slot,
                             f.process_id.is_(None) if process_pk is None
                             else f.process_id == process_pk)
            changed = conn.execute(update(s.entity_fact).where(
                same_slot, f.id != fid,
                or_(f.superseded_by.is_(None), f.superseded_by != fid))
                .values(superseded_by=fid)).rowcount
            changed += conn.execute(update(s.entity_fact).where(
                f.id == fid, f.superseded_by.is_not(None)).values(superseded_by=None)).rowcount
            if changed:
                self._bump_version(conn, [entity_pk])

    def upsert_triples(self, conn: Connection, triples: Sequence[NewTriple]) -> None:
        """Insert knowledge-graph triples, or bump ``mention_count`` of the same (entity,
        process, normalized subject / predicate / object)."""
        self._upsert_counted(conn, s.knowledge_graph, [
            (sha("triple", t.entity_id, t.process_id or "", normalize_text(t.subject),
                 normalize_text(t.predicate), normalize_text(t.object)),
             dict(entity_id=t.entity_id, process_id=t.process_id, subject=t.subject[:255],
                  predicate=t.predicate[:255], object=t.object, fact_id=t.fact_id))
            for t in triples])

    def upsert_process_attributes(self, conn: Connection,
                                  rows: Sequence[tuple[int, int | None, str]]) -> None:
        """(process pk, entity pk or None, text): insert or bump ``mention_count``."""
        self._upsert_counted(conn, s.process_attribute, [
            (sha("process_attribute", p, e or "", normalize_text(text)),
             dict(process_id=p, entity_id=e, content=text)) for p, e, text in rows])

    def _upsert_counted(self, conn: Connection, table: Any,
                        rows: Sequence[tuple[str, dict[str, Any]]]) -> None:
        if not rows:
            return
        now = utcnow()
        counts: dict[str, int] = {}
        values: dict[str, dict[str, Any]] = {}
        for key, row in rows:
            counts[key] = counts.get(key, 0) + 1
            values.setdefault(key, row)
        for key, row in values.items():
            inserted = self._insert_ignore(conn, table, {
                **row, "dedup_key": key, "mention_count": 1, "created_at": now,
                "last_seen_at": now})
            extra = counts[key] - inserted
            if extra:
                conn.execute(update(table).where(table.c.dedup_key == key).values(
                    mention_count=table.c.mention_count + extra, last_seen_at=now))

    def set_summaries(self, conn: Connection, summaries: dict[int, str]) -> None:
        """Store extractor summaries on their conversations (the newest wins)."""
        c = s.conversation.c
        for conv, summary in summaries.items():
            conn.execute(update(s.conversation).where(c.id == conv).values(summary=summary))

    def _fact_ids(self, conn: Connection, keys: Sequence[str]) -> dict[str, int]:
        f = s.entity_fact.c
        out: dict[str, int] = {}
        for start in range(0, len(keys), 500):
            out.update((k, int(i)) for k, i in conn.execute(
                select(f.dedup_key, f.id).where(f.dedup_key.in_(keys[start:start + 500]))).all())
        return out

    def memory_version(self, entity_pk: int) -> int:
        """The entity's ``memory_version``: changes whenever its memory rows do, in any process
        (one primary-key read).

        Raises:
            EntityGone: the row is gone (forgotten); its cached id is dropped.
        """
        with self.read() as conn:
            version = conn.execute(_MEMORY_VERSION, {"entity": entity_pk}).scalar()
        if version is None:
            self.drop_cached_ids(entity_pk)
            raise EntityGone(f"entity row {entity_pk} no longer exists")
        return int(version)

    def memory_counts(self, entity_pk: int) -> tuple[int, int]:
        """(row count, highest id) of an entity's memories: what a cached index must match."""
        f = s.entity_fact.c
        with self.read() as conn:
            row = conn.execute(select(func.count(), func.max(f.id))
                               .where(f.entity_id == entity_pk)).one()
        return int(row[0]), int(row[1] or 0)

    def holds_more_than(self, entity_pk: int, n: int) -> bool:
        """Whether the entity holds more than ``n`` memories: at most n + 1 index entries read
        (a count of every row read 100,000 of them at 100k memories: 8 ms on SQLite).

        Raises:
            StorageError: the database failed.
        """
        f = s.entity_fact.c
        with self.read() as conn:
            return conn.execute(select(f.id).where(f.entity_id == entity_pk)
                                .order_by(f.id).offset(n).limit(1)).first() is not None

    def memory_embeddings(self, entity_pk: int, after_id: int, batch: int) -> Iterator[
            list[MemoryRow]]:
        """Batches of an entity's memories with id > after_id, in id order: what a recall
        index holds (process, kind, superseded flag, indexed text, embedding)."""
        f = s.entity_fact.c
        last = after_id
        while True:
            with self.read() as conn:
                rows = conn.execute(select(f.id, f.process_id, f.kind, f.superseded_by,
                                           func.coalesce(f.search_text, f.content).label("text"),
                                           f.embedding)
                                    .where(f.entity_id == entity_pk, f.id > last)
                                    .order_by(f.id).limit(batch)).all()
            if not rows:
                return
            yield [MemoryRow(int(r.id), _opt_int(r.process_id), r.kind,
                             r.superseded_by is not None, r.text, r.embedding) for r in rows]
            last = int(rows[-1].id)

    def memory_block(self, entity_pk: int, after_id: int) -> MemoryBlock:
        """The entity's memories with id > after_id, in id order, in one read: ids, process,
        kind, superseded flag, indexed text and every embedding, decoded as columns (one
        ``np.frombuffer`` for all the vectors), not row by row."""
        with self.read() as conn:
            rows = self._rows(conn, _MEMORY_BLOCK, {"entity": entity_pk, "after": after_id})
        if not rows:
            return MemoryBlock(np.empty(0, np.int64), np.empty(0, np.int64), [],
                               np.empty(0, np.bool_), [], np.empty((0, 0), np.float32))
        ids, procs, kinds, superseded, texts, blobs = zip(*rows, strict=True)
        return MemoryBlock(
            np.fromiter(ids, dtype=np.int64, count=len(rows)),
            np.fromiter((-1 if p is None else p for p in procs), dtype=np.int64,
                        count=len(rows)),
            list(kinds), np.fromiter((x is not None for x in superseded), dtype=np.bool_,
                                     count=len(rows)),
            list(texts), _decode_vectors(blobs, len(rows)))

    def _rows(self, conn: Connection, stmt: Any, params: dict[str, Any] | None = None,
              copy: bool = False) -> Sequence[Sequence[Any]]:
        """Every row of ``stmt`` as plain tuples. PostgreSQL on psycopg: over its binary
        protocol, so a bytea column arrives as its bytes (half the transfer, no hex decoding:
        the embeddings of a cold recall); with ``copy``, a large read whose columns are all
        integers or blobs, over ``COPY ... TO STDOUT (FORMAT BINARY)``, which streams the rows
        without building a result set first (the packed codes of 100k memories, 38 MB: 55 ms
        against 75 as a query). Another database or driver (psycopg2): a query as any."""
        if self.dialect != "postgresql" or conn.dialect.driver != "psycopg":
            return conn.execute(stmt, params or {}).all()
        types = [_COPY_TYPES.get(type(c.type).__name__) for c in stmt.selected_columns]
        compiled = stmt.compile(dialect=conn.dialect,
                                compile_kwargs={"render_postcompile": True})
        bound = {**compiled.params, **(params or {})}
        raw: Any = conn.connection.driver_connection
        try:
            if copy and None not in types:
                with raw.cursor() as cur, cur.copy(
                        f"COPY ({compiled}) TO STDOUT (FORMAT BINARY)", bound) as cp:
                    cp.set_types(types)
                    return list(cp.rows())
            with raw.cursor(binary=True) as cur:
                cur.execute(str(compiled), bound)
                return list(cur.fetchall())
        except raw.Error as exc:  # psycopg's root error: not wrapped by SQLAlchemy here
            raise StorageError(f"database read failed: {exc}") from exc

    def _by_id(self, columns: Sequence[Any], entity_pk: int, ids: Sequence[int] | np.ndarray,
               processes: Sequence[int | None] | None, kinds: Sequence[str] | None,
               include_superseded: bool) -> list[Sequence[Any]]:
        """``columns`` of those of ``ids`` that are the entity's memories the filter allows (as
        ``memory_vectors``'), in one checkout, ``_IDS_PER_READ`` ids per ``IN`` list (SQLite
        binds at most 32,766 parameters)."""
        f = s.entity_fact.c
        wanted = [int(i) for i in ids]
        rows: list[Sequence[Any]] = []
        with self.read() as conn:
            for at in range(0, len(wanted), _IDS_PER_READ):
                rows += self._rows(conn, select(*columns).where(
                    f.entity_id == entity_pk, f.id.in_(wanted[at:at + _IDS_PER_READ]),
                    *_filters(processes, kinds, include_superseded)))
        return rows

    def memory_vectors(self, entity_pk: int, processes: Sequence[int | None] | None,
                       kinds: Sequence[str] | None, include_superseded: bool,
                       after_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Every embedding of the entity's memories a recall may return with an id above
        ``after_id`` (default 0: all), in one read: (ids, int64 array, shape (n,); vectors,
        float32 array, shape (n, dim)). The filter is applied by the database (``processes``:
        row ids, None in it meaning "captured without a process"; None for all; ``kinds``:
        None for all)."""
        f = s.entity_fact.c
        q = select(f.id, f.embedding).where(f.entity_id == entity_pk, f.id > after_id,
                                            *_filters(processes, kinds, include_superseded))
        with self.read() as conn:
            rows = self._rows(conn, q)
        if not rows:
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        ids, blobs = zip(*rows, strict=True)
        return np.fromiter(ids, dtype=np.int64, count=len(rows)), _decode_vectors(blobs,
                                                                                   len(rows))

    def packed_vectors(self, entity_pk: int, dim: int) -> packed.Packed | str:
        """The entity's embeddings packed as 8-bit codes (``storage/packed.py``), with each
        memory's BM25 length, or why not ("no blocks", "blocks of another dimension").

        Raises:
            StorageError: the read failed.
        """
        with self.read() as conn:
            return packed.read(conn, entity_pk, dim, lambda c, q: self._rows(c, q, copy=True))

    def packed_postings(self, entity_pk: int, terms: Sequence[str]) -> packed.Postings | str:
        """The BM25 postings of ``terms`` in the entity's blocks, and the ids and lengths of
        the packed memories (``packed.postings``: the rows of the terms' buckets only), or
        why not ("no blocks", ...).

        Raises:
            StorageError: the read failed.
        """
        with self.read() as conn:
            return packed.postings(conn, entity_pk, terms, self._rows)

    def memory_texts(self, entity_pk: int, after_id: int, limit: int
                     ) -> list[tuple[int, str]]:
        """(id, indexed text: ``search_text``, else ``content``) of the entity's memories
        with an id above ``after_id``, ascending, ``limit`` at most: the memories past its
        packed blocks, which BM25 counts as the blocks' postings count theirs.

        Raises:
            StorageError: the read failed.
        """
        f = s.entity_fact.c
        with self.read() as conn:
            return [(int(i), str(x or "")) for i, x in conn.execute(
                select(f.id, func.coalesce(f.search_text, f.content))
                .where(f.entity_id == entity_pk, f.id > after_id).order_by(f.id)
                .limit(limit)).all()]

    def pack_vectors(self, entity_pk: int, dim: int) -> int:
        """Bring the entity's packed vectors up to date, in a write transaction holding its
        row lock: packed again whole when its blocks are of another dimension or lack BM25
        postings (packed before migration 8), else its memories past the last block packed
        once there are ``packed.MIN_PACK`` (what a write skipped: an import, a re-embed). Run
        by recall's background index build after a cold recall.

        Returns:
            memories packed (0: nothing to do, or the entity is gone).

        Raises:
            StorageError: the database failed.
        """
        e = s.entity.c

        def tx(conn: Connection, _state: _TxState) -> int:
            lock = select(e.id).where(e.id == entity_pk)
            if self.dialect != "sqlite":  # SQLite: the write transaction is exclusive already
                lock = lock.with_for_update()
            if conn.execute(lock).scalar() is None:
                return 0
            found = packed.read(conn, entity_pk, dim)
            if (isinstance(found, str) and found != "no blocks") or \
                    packed.lacks_postings(conn, entity_pk):
                return packed.rebuild(conn, entity_pk, dim)
            return packed.pack(conn, [entity_pk], dim)

        return self.write(tx)

    def fulltext_missing(self) -> str | None:
        """Why this database cannot give recall its lexical candidates (None: it can).
        PostgreSQL and MariaDB: the full-text index of migration 6 is missing (dropped).
        SQLite: its FTS5 index is made here on first use (``migrations.sqlite_fulltext``: one
        write transaction indexing every memory), unless this SQLite has no FTS5. Checked once
        per instance (again after ``build``).
        """
        if self._fulltext is not None:
            return self._fulltext[0]
        reason: str | None = None
        try:
            if self.dialect == "sqlite":
                reason = self.write(lambda conn, _state: migrations.sqlite_fulltext(conn))
            else:
                with self.read() as conn:
                    found: object
                    if self.dialect == "postgresql":
                        found = conn.execute(text(
                            "SELECT 1 FROM pg_indexes WHERE tablename = :t AND indexname = :i "
                            "AND schemaname = current_schema() AND indexdef LIKE :col"),
                            {"t": s.entity_fact.name, "i": migrations.FTS_INDEX,
                             "col": f"%({migrations.FTS_COLUMN})%"}).first()
                    else:
                        found = next((i for i in sa_inspect(conn).get_indexes(s.entity_fact.name)
                                      if i["name"] == migrations.FTS_INDEX
                                      and len(i["column_names"]) == 2), None)
                    if found is None:
                        reason = (f"{self.dialect} has no full-text index "
                                  f"{migrations.FTS_INDEX} (migration 6; dropped?)")
        except StorageError as exc:
            reason = f"the full-text index could not be checked: {exc}"
        self._fulltext = (reason,)
        return reason

    # ---- pgvector push-down (Config.recall_pgvector) ------------------------------------------
    def _model_dim(self) -> int | None:
        """The recorded embedding model's dimension (``check_embedding_model``), or None."""
        with self.read() as conn:
            raw = conn.execute(select(s.meta.c.value)
                               .where(s.meta.c.key == "embedding_model")).scalar()
        return None if raw is None else int(json.loads(raw)["dim"])

    def install_pgvector(self, dim: int) -> str | None:
        """Install pgvector push-down for ``dim``-d embeddings (``pgvector.ensure``: the
        extension, the vector table filled, its trigger, the HNSW index; idempotent, one
        process at a time), then measure its agreement with exact search
        (``pgvector.measure``) and record it in ``memori_meta`` (key ``PGVECTOR_META``: dim,
        agreement, vectors, when), where every process's recall reads it. Run by ``build``
        (``memori migrate``) and ``pgvector_missing``; again to measure again.

        Returns:
            None when push-down may answer (agreement >= ``pgvector.MIN_AGREEMENT``), else
            why not (not PostgreSQL; the extension not offered or too old; the agreement).

        Raises:
            StorageError: a statement failed.
        """
        if self.dialect != "postgresql":
            return f"pgvector needs PostgreSQL, not {self.dialect}"
        if not pgvector.available(self.engine):
            return ("the vector extension (pgvector >= 0.8) is not installed on this server, "
                    "or this role may not create it")
        pgvector.ensure(self.engine, dim)
        agreement, vectors = pgvector.measure(self.engine, dim)
        value = json.dumps({"dim": dim, "agreement": round(agreement, 4), "vectors": vectors,
                            "k": pgvector.MEASURE_K, "measured_at": utcnow().isoformat()})

        def tx(conn: Connection, _state: _TxState) -> None:
            if self._insert_ignore(conn, s.meta, {"key": PGVECTOR_META, "value": value}) == 0:
                conn.execute(update(s.meta).where(s.meta.c.key == PGVECTOR_META)
                             .values(value=value))

        self.write(tx)
        with self._vector_lock:
            self._vector = None  # read again by the next pgvector_missing
        return None if agreement >= pgvector.MIN_AGREEMENT else (
            f"pgvector's measured top-{pgvector.MEASURE_K} agreement with exact search is "
            f"{agreement:.3f} < {pgvector.MIN_AGREEMENT}")

    def pgvector_missing(self, dim: int) -> str | None:
        """Why a cold recall's dense candidates cannot come from pgvector (None: they can):
        not PostgreSQL; the extension is not offered; push-down is not installed for ``dim``
        (then it is installed on a thread of its own, ``install_pgvector``, and the answer is
        "being installed" until it is done); or its recorded agreement is under
        ``pgvector.MIN_AGREEMENT`` or was measured for another dimension. Settled answers are
        kept per instance (checked again after ``build`` or an install).

        Raises:
            StorageError: the database failed.
        """
        with self._vector_lock:
            if self._vector is not None and self._vector[0] == dim:
                return self._vector[1]
            if self._vector_install is not None:
                if self._vector_install.is_alive():
                    return "pgvector push-down is being installed in the background"
                self._vector_install = None
        reason: str | None
        if self.dialect != "postgresql":
            reason = f"pgvector needs PostgreSQL, not {self.dialect}"
        else:
            with self.read() as conn:
                ready = pgvector.installed(conn, dim)
                raw = conn.execute(select(s.meta.c.value)
                                   .where(s.meta.c.key == PGVECTOR_META)).scalar()
            measured = None if raw is None else json.loads(raw)
            if not ready or measured is None or int(measured["dim"]) != dim:
                if not pgvector.available(self.engine):
                    reason = ("the vector extension (pgvector >= 0.8) is not installed on "
                              "this server, or this role may not create it")
                else:
                    with self._vector_lock:
                        if self._vector_install is None:
                            self._vector_install = threading.Thread(
                                target=self._install_later, args=(dim,), daemon=True,
                                name="memori-pgvector-install")
                            self._vector_install.start()
                    return "pgvector push-down is being installed in the background"
            elif float(measured["agreement"]) < pgvector.MIN_AGREEMENT:
                reason = (f"pgvector's measured top-{measured.get('k', pgvector.MEASURE_K)} "
                          f"agreement with exact search is {float(measured['agreement']):.3f}"
                          f" < {pgvector.MIN_AGREEMENT} (measured again by memori migrate)")
            else:
                reason = None
        with self._vector_lock:
            self._vector = (dim, reason)
        return reason

    def _install_later(self, dim: int) -> None:
        try:
            reason = self.install_pgvector(dim)
        except StorageError as exc:
            reason = str(exc)
        if reason is not None:
            _log.warning("recall_pgvector: %s; cold recall takes its dense candidates from "
                         "the packed vectors", reason)
            with self._vector_lock:
                self._vector = (dim, reason)

    def nearest_memories(self, entity_pk: int, vector: np.ndarray, k: int,
                         filters: pgvector.Filters) -> list[tuple[int, float]]:
        """The entity's ``k`` memories nearest to ``vector`` (float32, shape (dim,), unit
        length) that ``filters`` allows, from pgvector's HNSW index re-scored exactly
        (``pgvector.nearest`` with ``max(k, pgvector.MIN_CANDIDATES)`` candidates: the
        settings ``pgvector.measure`` measured, so its top-10 is the one the gate read).
        Only where ``pgvector_missing(dim)`` is None.

        Returns:
            at most ``k`` (memory id, cosine similarity), best first (ties: higher id first).

        Raises:
            StorageError: the query failed.
        """
        with self.read() as conn:
            return pgvector.nearest(conn, entity_pk, vector, k, filters,
                                    candidates=max(k, pgvector.MIN_CANDIDATES))

    def memory_similarities(self, entity_pk: int, vector: np.ndarray,
                            ids: Sequence[int] | np.ndarray,
                            processes: Sequence[int | None] | None = None,
                            kinds: Sequence[str] | None = None,
                            include_superseded: bool = True) -> dict[int, float]:
        """Cosine similarity of ``vector`` to some of the entity's memories, by id (others'
        memories, other dimensions and those the filter excludes left out, as in
        ``memory_vectors``; default: no filter): for lexical candidates the dense list lacks,
        and the dense candidates ``recall.dense`` re-scores.

        Raises:
            StorageError: the read failed.
        """
        if not len(ids):
            return {}
        f = s.entity_fact.c
        rows = self._by_id((f.id, f.embedding), entity_pk, ids, processes, kinds,
                           include_superseded)
        q32 = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        rows = [r for r in rows if r[1] is not None and len(r[1]) == 4 * q32.shape[0]]
        if not rows:
            return {}
        sims = _decode_vectors([r[1] for r in rows], len(rows)) @ q32
        return {int(r[0]): float(x) for r, x in zip(rows, sims.tolist(), strict=True)}

    def allowed_memories(self, entity_pk: int, ids: Sequence[int],
                         processes: Sequence[int | None] | None, kinds: Sequence[str] | None,
                         include_superseded: bool) -> set[int]:
        """Which of ``ids`` are the entity's memories that the filter allows (as
        ``memory_vectors``'): one indexed read of their ids.

        Raises:
            StorageError: the read failed.
        """
        return {int(r[0]) for r in self._by_id((s.entity_fact.c.id,), entity_pk, ids,
                                                 processes, kinds, include_superseded)}

    def replied_by(self, entity_pk: int, ids: Sequence[int],
                   processes: Sequence[int | None] | None, kinds: Sequence[str] | None,
                   include_superseded: bool) -> list[tuple[int, int, str]]:
        """The reply field of recall's BM25 read backwards, for the candidate path: for each
        episodic memory of ``ids``, the episodic memory whose message came just before its
        (first) message in the conversation, said by another speaker: the memory that
        ``ids``'s message answers (``memori_core.recall.index`` indexes that message as its
        reply field). Same filter as ``memory_vectors`` on the memories returned.

        Returns:
            (memory of ``ids``, the memory it replies to, the text of the memory's message:
            the answered memory's reply field, as the in-process index holds it before its
            truncation) triples; at most one per id, by id.

        Raises:
            StorageError: the read failed.
        """
        if not ids:
            return []
        f, mn, m = s.entity_fact.c, s.fact_mention.c, s.conversation_message.c
        pf = s.entity_fact.alias("answered")
        pm = s.fact_mention.alias("answered_mention")
        prev_m = _M2
        first = (select(func.min(mn.message_id)).where(mn.fact_id == f.id).scalar_subquery())
        before = (select(func.max(_M3.c.id)).where(_M3.c.conversation_id == m.conversation_id,
                                                   _M3.c.id < m.id).scalar_subquery())
        q = (select(f.id, pf.c.id, m.content)
             .select_from(s.entity_fact.join(s.conversation_message, m.id == first)
                          .join(prev_m, prev_m.c.id == before)
                          .join(pm, pm.c.message_id == prev_m.c.id)
                          .join(pf, pf.c.id == pm.c.fact_id))
             .where(f.entity_id == entity_pk, f.kind == "episodic", f.id.in_(list(ids)),
                    pf.c.entity_id == entity_pk, pf.c.kind == "episodic",
                    func.coalesce(prev_m.c.name, prev_m.c.role)
                    != func.coalesce(m.name, m.role),
                    *_filters_on(pf, processes, kinds, include_superseded)))
        with self.read() as conn:
            rows = conn.execute(q).all()
        seen: dict[int, tuple[int, str]] = {}
        for c, answered, said in rows:
            seen.setdefault(int(c), (int(answered), str(said or "")))
        return [(c, *seen[c]) for c in sorted(seen)]

    def lexical_candidates(self, entity_pk: int, terms: Sequence[str],
                           processes: Sequence[int | None] | None,
                           kinds: Sequence[str] | None, include_superseded: bool, k: int,
                           stems: Sequence[str] | None = None,
                           df: dict[str, int] | None = None,
                           texts: dict[int, str] | None = None) -> list[tuple[int, float]]:
        """The entity's memories matching any of ``terms`` by the database's full-text index
        (migration 6), best first by the database's own relevance (SQLite FTS5 ``bm25``,
        PostgreSQL ``ts_rank``, MariaDB ``MATCH ... AGAINST``): at most ``k`` (id, score > 0).
        Same filter as ``memory_vectors``.

        Args:
            terms: query words (``\\w+`` tokens, stopwords removed), ORed.
            stems: the stem of each of ``terms`` (``recall.lexical.tokenize``), for MariaDB/MySQL,
                whose index does not stem: there a word matches the words starting with its
                common prefix with its stem (boolean mode). Default None: the words as they
                are (natural language mode).
            df: PostgreSQL, when candidates are found: filled with each word's document
                frequency over every memory of the entity (``lexical_corpus``'s ``df``), counted
                by the same pass. Default None.
            texts: filled with the indexed text (``search_text``, else ``content``) of each
                candidate returned, read by the same statement. Default None.

        Raises:
            StorageError: the database failed (or has no full-text index:
                ``fulltext_missing``).
        """
        words = [t for t in dict.fromkeys(terms) if t]
        if not words or k <= 0:
            return []
        f = s.entity_fact.c
        where = [f.entity_id == entity_pk, *_filters(processes, kinds, include_superseded)]
        if self.dialect == "sqlite":
            found = self._sqlite_lexical(words, where, k)
        elif self.dialect == "postgresql":
            found = self._pg_lexical(entity_pk, words, where[1:], k, df)
        else:
            match = mysql.match(f.content, f.search_text, against=bindparam("q"))
            score = match.in_natural_language_mode() if stems is None else \
                match.in_boolean_mode()
            q = (select(f.id, score.label("score"), func.coalesce(f.search_text, f.content))
                 .where(score > 0, *where).order_by(score.desc(), f.id).limit(k))
            query = " ".join(words) if stems is None else " ".join(dict.fromkeys(
                _prefix(w, t) for w, t in zip(terms, stems, strict=True) if w))
            with self.read() as conn:
                found = [tuple(r) for r in conn.execute(q, {"q": query}).all()]
        out = [(int(r[0]), float(r[1])) for r in found if r[1] is not None and float(r[1]) > 0]
        if texts is not None:
            texts.update((int(r[0]), str(r[2] or "")) for r in found)
        return out

    def _sqlite_lexical(self, words: Sequence[str], where: Sequence[Any], k: int
                        ) -> list[tuple[Any, ...]]:
        """SQLite's lexical candidates: FTS5's best ``k`` by its ``bm25`` (Okapi BM25 with
        k1 = 1.2, b = 0.75, as ``recall/lexical.py``; its IDF counts every entity's rows).
        Ranking every match by summed IDF in Python instead measured 10x slower
        at 10k memories: a speaker's name matches half of them."""
        f = s.entity_fact.c
        fts = sa_table(migrations.FTS_TABLE, sa_column("rowid"))
        rank = func.bm25(literal_column(migrations.FTS_TABLE))
        q = (select(f.id, -rank, func.coalesce(f.search_text, f.content))
             .select_from(fts.join(s.entity_fact, f.id == fts.c.rowid))
             .where(literal_column(migrations.FTS_TABLE).op("MATCH")(bindparam("q")), *where)
             .order_by(rank, f.id).limit(k))
        with self.read() as conn:
            return [tuple(r) for r in conn.execute(
                q, {"q": " OR ".join(f'"{w}"' for w in words)}).all()]

    def _pg_lexical(self, entity_pk: int, words: Sequence[str], allowed: Sequence[Any],
                    k: int, df: dict[str, int] | None) -> list[tuple[Any, ...]]:
        """PostgreSQL's lexical candidates, ranked in the database like BM25 over the entity: a
        matching row scores the summed IDF of the query words it holds
        (``log(1 + (n - df + 0.5) / (df + 0.5))``, df and n counted over every memory of the
        entity, as its in-process BM25 counts), and ``LEXICAL_POOL`` x ``k`` rows the filter
        allows with the best such sum then add a tenth of their ``ts_rank`` (``ts_rank`` alone
        has no inverse document frequency). One statement, one pass over the rows holding a
        word, which also counts each word's df (into ``df``, by word, when given: what
        ``lexical_corpus`` would count again); only the best ``k`` leave the server (a speaker's
        name matches half of a conversation's turns: returning every match cost more than
        ranking them)."""
        config: Any = literal_column(f"'{migrations.FTS_CONFIG}'::regconfig")
        tsv: Any = literal_column(f"{s.entity_fact.name}.{migrations.FTS_COLUMN}")
        every = func.websearch_to_tsquery(config, bindparam("q"))
        each = [func.websearch_to_tsquery(config, bindparam(f"w{i}")) for i in range(len(words))]
        f = s.entity_fact.c
        own = f.entity_id == entity_pk
        ok: Any = and_(*allowed) if allowed else literal_column("true")
        held = select(f.id, ok.label("ok"), tsv.label("tsv"),
                      func.coalesce(f.search_text, f.content).label("body"),
                      *[case((tsv.op("@@")(w), 1), else_=0).label(f"h{i}")
                        for i, w in enumerate(each)]
                      ).where(own, tsv.op("@@")(every)).cte("held")
        # n and each df once, in a one-row CTE joined to every row (each textual scalar
        # subquery is an InitPlan of its own: written into the IDF of every word, the
        # entity's rows were counted once per word)
        stats = select(select(func.count()).where(own).scalar_subquery().label("n"),
                       *[func.coalesce(func.sum(held.c[f"h{i}"]), 0).label(f"d{i}")
                         for i in range(len(words))]).select_from(held).cte("stats")
        counts = [stats.c[f"d{i}"] for i in range(len(words))]
        idf: Any = 0.0
        for i, d in enumerate(counts):
            idf = idf + held.c[f"h{i}"] * func.ln(1.0 + (stats.c.n - d + 0.5) / (d + 0.5))
        pool = (select(held.c.id, held.c.tsv, held.c.body, idf.label("idf"))
                .select_from(held.join(stats, literal_column("true"))).where(held.c.ok)
                .order_by(literal_column("idf").desc(), held.c.id).limit(LEXICAL_POOL * k)
                .subquery("pool"))
        # the pool's rows carry their tsvector and text: no join back to the table (planned
        # as a hash of every row of it)
        score = (pool.c.idf + func.ts_rank(pool.c.tsv, every) / 10).label("score")
        q = (select(pool.c.id, score, pool.c.body, *counts)
             .select_from(pool.join(stats, literal_column("true")))
             .order_by(score.desc(), pool.c.id).limit(k))
        params: dict[str, Any] = {"q": " or ".join(words),
                                  **{f"w{i}": w for i, w in enumerate(words)}}
        with self.read() as conn:
            found = conn.execute(q, params).all()
        if found and df is not None:
            df.update({w: int(n or 0) for w, n in zip(words, found[0][3:], strict=True)})
        return [tuple(r[:3]) for r in found]

    def lexical_corpus(self, entity_pk: int, words: dict[str, str], ids: Sequence[int],
                       every_below: int = 0, stem: bool = True, replies: bool = False,
                       count_df: bool = True,
                       packed_up_to: tuple[int, int, int] | None = None) -> LexicalCorpus:
        """BM25 statistics of the entity's memories and the indexed text of ``ids``, in one
        checkout, for recall's candidate path to score its lexical pool as the in-process
        index would (``memori_core.recall.lexical.score_texts``).

        Args:
            words: BM25 term (a stem) -> the query word it came from. Its document frequency
                is counted by the full-text index of migration 6 over every memory of the entity
                (no filter, as the in-process index counts): SQLite FTS5 and PostgreSQL match the
                word's own stem (Porter; Snowball English), an approximation where their
                stemmer or stopwords differ from ``tokenize``'s; MariaDB/MySQL, whose index
                does not stem, read the text of every memory holding a word that starts with
                the common prefix of the word and the term (boolean mode) and count those whose
                ``tokenize(text, stem)`` holds the term (exact; its cost grows with the
                matches).
            ids: memories whose indexed text to return (others' are left out).
            every_below: return every memory's text when the entity holds at most this many
                (the caller then measures its mean length exactly); default 0: never.
            stem: terms are stems (``Config.recall_stemming``); default True.
            replies: count the entity's messages and their characters too (the reply
                field's mean length); default False.
            count_df: PostgreSQL: False leaves ``df`` to the caller (``lexical_candidates``
                counts it with the pool, on another connection); default True.
            packed_up_to: (last id, memories, characters) of the entity's packed vectors, as
                read (``packed.Packed``): the memory count and the characters are
                theirs plus those of the memories above the last id (exact, and no pass over
                every row: the characters are otherwise sampled). Default None.

        Raises:
            StorageError: the read failed.
        """
        f = s.entity_fact.c
        own = f.entity_id == entity_pk
        body = func.coalesce(f.search_text, f.content)
        terms = list(words)
        counts: list[Any] = []
        params: dict[str, Any] = {}
        for i, term in enumerate(terms):
            word = words[term]
            if self.dialect == "sqlite":  # the matches first: joined, SQLite probes the
                # FTS5 index once per row of the entity (150 ms at 10k rows vs 0.5)
                fts = sa_table(migrations.FTS_TABLE, sa_column("rowid"))
                matches = select(fts.c.rowid).where(
                    literal_column(migrations.FTS_TABLE).op("MATCH")(bindparam(f"w{i}")))
                counts.append(select(func.count()).where(own, f.id.in_(matches))
                              .correlate(None).scalar_subquery())
                params[f"w{i}"] = f'"{word}"'
            elif self.dialect == "postgresql":  # counted below, in one pass
                counts.append(literal_column("0"))
            else:  # counted below: the rows holding a word of the prefix, tokenized here
                counts.append(literal_column("0"))
        length = packed.text_length(self.dialect)
        if packed_up_to is None:
            stats = select(func.count(), *counts).where(own)
        else:  # the memories past the packed ones, counted and measured
            stats = select(func.count(), *counts, func.coalesce(func.sum(length(body)), 0)
                           ).where(own, f.id > packed_up_to[0])
        with self.read() as conn:
            row = conn.execute(stats, params).one()
            if packed_up_to is None:
                rows = int(row[0])
                chars = _sampled_chars(conn, s.entity_fact, own, body, rows, length)
            else:
                rows = packed_up_to[1] + int(row[0])
                chars = packed_up_to[2] + int(row[-1] or 0)
            messages = self._message_stats(conn, entity_pk) if replies else (0, 0)
            fetch = select(f.id, body).where(own)
            if rows > every_below:
                fetch = fetch.where(f.id.in_(list(ids)))
            texts = ({int(i): str(t or "") for i, t in conn.execute(fetch)}
                     if ids or rows <= every_below else {})
            df = {t: int(n or 0) for t, n in zip(terms, row[1:1 + len(terms)], strict=True)}
            if self.dialect == "postgresql" and terms and count_df:
                df = dict(zip(terms, self._pg_df(conn, own, [words[t] for t in terms]),
                              strict=True))
            if self.dialect not in ("sqlite", "postgresql"):
                for term in terms:
                    held = conn.execute(select(body).where(own, mysql.match(
                        f.content, f.search_text, against=_prefix(words[term], term))
                        .in_boolean_mode())).scalars()
                    df[term] = sum(term in tokenize(str(t or ""), stem) for t in held)
        return LexicalCorpus(rows, chars, df, texts, *messages)

    def message_stats(self, entity_pk: int) -> tuple[int, int]:
        """(the entity's conversation messages, characters of their text summed, sampled as
        ``LexicalCorpus.chars`` is): the reply field's mean length.

        Raises:
            StorageError: the read failed.
        """
        with self.read() as conn:
            return self._message_stats(conn, entity_pk)

    def _message_stats(self, conn: Connection, entity_pk: int) -> tuple[int, int]:
        m = s.conversation_message.c
        said = int(conn.execute(select(func.count()).where(m.entity_id == entity_pk))
                   .scalar_one())
        return said, _sampled_chars(conn, s.conversation_message, m.entity_id == entity_pk,
                                    m.content, said, packed.text_length(self.dialect))

    @staticmethod
    def _pg_df(conn: Connection, own: Any, words: Sequence[str]) -> list[int]:
        """PostgreSQL: the rows matching ``own`` that hold each of ``words`` (its stem, by the
        ``tsvector`` of migration 6), counted in one pass over the rows holding any (the
        planner scans the entity's rows: one pass per word cost 9 ms each at 10k)."""
        config: Any = literal_column(f"'{migrations.FTS_CONFIG}'::regconfig")
        tsv: Any = literal_column(f"{s.entity_fact.name}.{migrations.FTS_COLUMN}")
        each = [func.plainto_tsquery(config, bindparam(f"w{i}")) for i in range(len(words))]
        every: Any = each[0]
        for q in each[1:]:
            every = every.op("||")(q)
        row = conn.execute(select(*[func.count().filter(tsv.op("@@")(q)) for q in each])
                           .where(own, tsv.op("@@")(every)),
                           {f"w{i}": w for i, w in enumerate(words)}).one()
        return [int(n or 0) for n in row]

    def neighbour_messages(self, entity_pk: int, memory_ids: Sequence[int]
                           ) -> dict[int, tuple[int, str, str, int | None,
                                            tuple[str, str] | None]]:
        """For episodic memories: their message and that message's neighbours in its
        conversation, for the reply field of recall's BM25 (``memori_core.recall.index``).

        Returns:
            memory id -> (its message id, its speaker, its text, the previous message's id or
            None, the next message as (speaker, text) or None), for each id that is an episodic memory
            of the entity (said twice: its first message). A speaker is the message's
            ``name``, else its role.
        """
        f, mn, m = s.entity_fact.c, s.fact_mention.c, s.conversation_message.c
        out: dict[int, tuple[int, str, str, int | None, tuple[str, str] | None]] = {}
        prev = (select(func.max(_M2.c.id)).where(_M2.c.conversation_id == m.conversation_id,
                                                 _M2.c.id < m.id).scalar_subquery())
        nxt = (select(func.min(_M2.c.id)).where(_M2.c.conversation_id == m.conversation_id,
                                                _M2.c.id > m.id).scalar_subquery())
        with self.read() as conn:
            for start in range(0, len(memory_ids), 500):
                rows = conn.execute(
                    select(f.id, m.id.label("message"), m.role, m.name, m.content,
                           prev.label("prev"),
                           nxt.label("next"))
                    .select_from(s.entity_fact.join(s.fact_mention, mn.fact_id == f.id)
                                 .join(s.conversation_message, m.id == mn.message_id))
                    .where(f.entity_id == entity_pk, f.kind == "episodic",
                           f.id.in_(list(memory_ids[start:start + 500])))
                    .order_by(f.id, m.id)).all()
                nexts = sorted({int(r.next) for r in rows if r.next is not None})
                said: dict[int, tuple[str, str]] = {}
                for i in range(0, len(nexts), 500):
                    said.update((int(r.id), (r.name or r.role, str(r.content))) for r in
                                conn.execute(select(m.id, m.role, m.name, m.content).where(
                                    m.id.in_(nexts[i:i + 500]))))
                for r in rows:
                    if int(r.id) not in out:  # the first message of a memory said twice
                        out[int(r.id)] = (int(r.message), r.name or r.role, str(r.content),
                                          _opt_int(r.prev),
                                          said.get(int(r.next)) if r.next is not None else None)
        return out

    def superseded_ids(self, entity_pk: int) -> list[int]:
        """Ids of the entity's memories that a newer one on their slot replaced."""
        f = s.entity_fact.c
        with self.read() as conn:
            return [int(i) for i in conn.execute(select(f.id).where(
                f.entity_id == entity_pk, f.superseded_by.is_not(None))).scalars()]

    def memory_details(self, entity_pk: int, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Details of memories, by id. Rows of other entities are never returned.

        Returns:
            id -> dict with ``id``, ``content``, ``kind``, ``created_at``, ``last_seen_at``
            (UTC, naive), ``mention_count``, ``superseded_by``, ``importance`` (float in
            [0, 1]), ``process`` (external process id or None) and ``source_message_ids``
            (tuple, oldest first).
        """
        if not ids:
            return {}
        params = {"entity": entity_pk, "ids": list(ids)}
        with self.read() as conn:
            rows = self._details(conn, _MEMORY_DETAILS, _MEMORY_DETAILS_WITH_SOURCES, params)
        return {row["id"]: row for row in rows}

    def essential_memories(self, entity_pk: int, processes: Sequence[int | None] | None,
                           limit: int) -> list[dict[str, Any]]:
        """The entity's essential memories: current (not superseded), not episodic, with
        importance > 0, most important first (then most mentioned, last seen latest, newest).

        Args:
            entity_pk: the entity's row id.
            processes: process row ids whose memories count, None meaning "captured without a
                process" (``scope_processes``); None for every process of the entity.
            limit: at most this many (0: none).

        Returns:
            dicts shaped like ``memory_details`` values (``id`` included), best first; one
            statement on PostgreSQL, two elsewhere (the details, then their sources).
        """
        if limit <= 0:
            return []
        f = s.entity_fact.c
        q = (_DETAILS.where(f.entity_id == entity_pk, f.superseded_by.is_(None),
                            f.kind != "episodic", f.importance > 0)
             .order_by(f.importance.desc(), f.mention_count.desc(), f.last_seen_at.desc(),
                       f.id.desc()).limit(limit))
        if processes is not None:
            q = q.where(_in_processes(processes))
        with self.read() as conn:
            return self._details(conn, q, q.add_columns(_SOURCES_ARRAY), {})

    def _details(self, conn: Connection, plain: Any, with_sources: Any,
                 params: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows of a ``_DETAILS`` statement with their ``source_message_ids``: on PostgreSQL
        from ``with_sources`` (the same statement plus ``_SOURCES_ARRAY``), elsewhere from
        ``plain`` and one read of the sources."""
        if self.dialect == "postgresql":
            rows = conn.execute(with_sources, params).all()
            sources = {int(r.id): r.sources or [] for r in rows}
        else:
            rows = conn.execute(plain, params).all()
            sources = _sources(conn, [int(r.id) for r in rows])
        out = []
        for r in rows:
            row = dict(r._mapping)
            row.pop("sources", None)
            row["id"] = int(r.id)
            row["source_message_ids"] = tuple(int(m) for m in sources.get(int(r.id), ()))
            out.append(row)
        return out

    def add_memories(self, entity_id: str, process_id: str | None,
                     memories: Sequence[tuple[str, str, str | None, np.ndarray, float]],
                     model: str) -> list[int]:
        """Store memories given directly (``Memori.remember``): (content, kind, slot,
        embedding, importance in [0, 1]) each, under an external entity / process created if
        needed. Same dedup, importance and supersession as augmentation. Returns row ids in
        input order."""

        def tx(conn: Connection, state: _TxState) -> list[int]:
            e = self.entity_pk(conn, state, entity_id)
            p = self.process_pk(conn, state, process_id)
            return self.upsert_memories(conn, [
                NewMemory(e, p, kind, content, vec, (), slot, importance=importance)
                for content, kind, slot, vec, importance in memories], model)

        return self.write(tx)

    def list_memories(self, entity_pk: int, processes: Sequence[int | None] | None,
                      kinds: Sequence[str] | None, include_superseded: bool,
                      limit: int | None) -> list[dict[str, Any]]:
        """An entity's memories, newest first, as dicts of ``Memory`` fields."""
        f, p = s.entity_fact.c, s.process.c
        q = (select(f.id, f.content, f.kind, f.created_at, f.last_seen_at, f.mention_count,
                    f.slot, f.superseded_by, f.importance, p.external_id.label("process_id"))
             .select_from(s.entity_fact.outerjoin(s.process, p.id == f.process_id))
             .where(f.entity_id == entity_pk).order_by(f.id.desc()))
        if processes is not None:
            q = q.where(_in_processes(processes))
        if kinds is not None:
            q = q.where(f.kind.in_(list(kinds)))
        if not include_superseded:
            q = q.where(f.superseded_by.is_(None))
        if limit is not None:
            q = q.limit(limit)
        with self.read() as conn:
            rows = conn.execute(q).all()
            sources = _sources(conn, [int(r.id) for r in rows])
        return [{**r._mapping, "id": int(r.id), "superseded_by": _opt_int(r.superseded_by),
                 "source_message_ids": tuple(sources.get(int(r.id), ()))} for r in rows]

    def delete_memories(self, entity_pk: int, ids: Sequence[int]) -> int:
        """Delete memories of one entity (ids of other entities are ignored) with their
        provenance and the triples drawn from them. Returns the number deleted."""
        f, mn, kg = s.entity_fact.c, s.fact_mention.c, s.knowledge_graph.c

        def tx(conn: Connection, _state: _TxState) -> int:
            mine = [int(i) for i in conn.execute(select(f.id).where(
                f.entity_id == entity_pk, f.id.in_(list(ids)))).scalars()]
            if not mine:
                return 0
            conn.execute(delete(s.fact_mention).where(mn.fact_id.in_(mine)))
            conn.execute(delete(s.knowledge_graph).where(kg.fact_id.in_(mine)))
            conn.execute(delete(s.entity_fact).where(f.id.in_(mine)))
            self._bump_version(conn, [entity_pk])
            packed.drop(conn, [entity_pk])  # packed again when next written or recalled
            return len(mine)

        return self.write(tx)

    def delete_session_messages(self, entity_pk: int, session_id: str) -> int:
        """Delete the messages and conversations of one session of one entity, their
        augmentation jobs and the provenance rows pointing at them (memories already
        extracted stay: they are the entity's long-term memory). Returns messages deleted."""
        m, c, j, mn = (s.conversation_message.c, s.conversation.c, s.augmentation_job.c,
                       s.fact_mention.c)

        def tx(conn: Connection, _state: _TxState) -> int:
            sess = conn.execute(select(s.session.c.id).where(
                s.session.c.external_key == sha("session", entity_pk, session_id))).scalar()
            if sess is None:
                return 0
            convs = select(c.id).where(c.session_id == sess, c.entity_id == entity_pk)
            msgs = select(m.id).where(m.session_id == sess, m.entity_id == entity_pk)
            conn.execute(delete(s.fact_mention).where(mn.message_id.in_(msgs)))
            conn.execute(delete(s.augmentation_job).where(j.conversation_id.in_(convs)))
            n = conn.execute(delete(s.conversation_message).where(
                m.session_id == sess, m.entity_id == entity_pk)).rowcount
            conn.execute(delete(s.conversation).where(c.session_id == sess,
                                                      c.entity_id == entity_pk))
            return int(n)

        return self.write(tx)

    def _bump_version(self, conn: Connection, entity_pks: Sequence[int]) -> None:
        e = s.entity.c
        conn.execute(update(s.entity).where(e.id.in_(sorted(set(entity_pks))))
                     .values(memory_version=e.memory_version + 1))

    def memories_to_reembed(self, after_id: int, batch: int) -> list[dict[str, Any]]:
        """Memories with id > after_id (every entity), with the first source message of
        episodic ones: what ``reembed`` needs to rebuild their embedded text."""
        f, mn, m = s.entity_fact.c, s.fact_mention.c, s.conversation_message.c
        with self.read() as conn:
            rows = conn.execute(select(f.id, f.entity_id, f.kind, f.content)
                                .where(f.id > after_id).order_by(f.id).limit(batch)).all()
            episodic = [int(r.id) for r in rows if r.kind == "episodic"]
            first: dict[int, int] = dict(conn.execute(
                select(mn.fact_id, func.min(mn.message_id)).where(mn.fact_id.in_(episodic))
                .group_by(mn.fact_id)).all()) if episodic else {}
            messages = {int(r.id): _message_dict(r) for r in conn.execute(
                select(m.id, m.role, m.name, m.content, m.content_json, m.extra_json,
                       m.created_at).where(m.id.in_(list(first.values())))).all()} \
                if first else {}
        return [{"id": int(r.id), "entity_id": int(r.entity_id), "kind": r.kind,
                 "content": r.content, "message": messages.get(first.get(int(r.id), -1))}
                for r in rows]

    def set_embeddings(self, rows: Sequence[tuple[int, int, np.ndarray]], model: str) -> None:
        """(memory id, entity pk, vector): replace embeddings, bump the entities' versions."""
        f = s.entity_fact.c

        def tx(conn: Connection, _state: _TxState) -> None:
            conn.execute(update(s.entity_fact).where(f.id == bindparam("fid")).values(
                embedding=bindparam("vec"), embedding_model=model,
                embedding_dim=bindparam("dim")), [
                {"fid": i, "vec": np.ascontiguousarray(v, dtype="<f4").tobytes(),
                 "dim": int(v.shape[0])} for i, _, v in rows])
            self._bump_version(conn, [e for _, e, _ in rows])
            packed.drop(conn, [e for _, e, _ in rows])  # their codes are of the old vectors

        self.write(tx)

    def set_embedding_model(self, name: str, dim: int) -> None:
        """Record ``name`` / ``dim`` as the database's embedding model (after a re-embed)."""
        value = json.dumps({"model": name, "dim": dim})

        def tx(conn: Connection, _state: _TxState) -> None:
            if self._insert_ignore(conn, s.meta, {"key": "embedding_model", "value": value}) == 0:
                conn.execute(update(s.meta).where(s.meta.c.key == "embedding_model")
                             .values(value=value))

        self.write(tx)

    # ---- metadata & stats --------------------------------------------------------------------
    def check_embedding_model(self, name: str, dim: int) -> None:
        """Record the embedding model of the database on first use; afterwards refuse another.

        Raises:
            ConfigurationError: when the database was embedded with a different model or dim.
        """
        want = json.dumps({"model": name, "dim": dim})

        def tx(conn: Connection, _state: _TxState) -> str:
            self._insert_ignore(conn, s.meta, {"key": "embedding_model", "value": want})
            return str(conn.execute(select(s.meta.c.value)
                                    .where(s.meta.c.key == "embedding_model")).scalar_one())

        have = json.loads(self.write(tx))
        if have["model"] != name or int(have["dim"]) != dim:
            raise ConfigurationError(
                f"this database was embedded with {have['model']} ({have['dim']}-d) but this "
                f"Memori uses {name} ({dim}-d); configure embeddings_model={have['model']!r} "
                "or re-embed the database with the new model",
                argument="embeddings_model")

    def stats(self) -> dict[str, int]:
        """Row count of every memori table."""
        with self.read() as conn:
            return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
                    for t in s.TABLES}


def _filters_on(table: Any, processes: Sequence[int | None] | None,
                kinds: Sequence[str] | None, include_superseded: bool) -> list[Any]:
    """``_filters`` on an alias of ``memori_entity_fact``."""
    c = table.c
    out: list[Any] = []
    if processes is not None:
        known = [x for x in processes if x is not None]
        conds: list[Any] = [c.process_id.in_(known)] if known else []
        if None in processes:
            conds.append(c.process_id.is_(None))
        out.append(or_(*conds) if conds else false())
    if kinds is not None:
        out.append(c.kind.in_(list(kinds)))
    if not include_superseded:
        out.append(c.superseded_by.is_(None))
    return out


def _sampled_chars(conn: Connection, table: Any, where: Any, body: Any, rows: int,
                  length: Any) -> int:
    """Characters of ``body`` summed over the ``rows`` rows of ``table`` matching ``where``;
    above ``LENGTH_SAMPLE`` rows, estimated from every (rows // LENGTH_SAMPLE)-th by id."""
    if rows <= 0:
        return 0
    step = rows // LENGTH_SAMPLE
    q = select(func.count(), func.coalesce(func.sum(length(body)), 0)).where(where)
    if step > 1:
        q = q.where(table.c.id % step == 0)
    n, chars = conn.execute(q).one()
    return round(int(chars or 0) * rows / int(n)) if n else 0


def _prefix(word: str, stem: str) -> str:
    """A MariaDB/MySQL boolean-mode term matching the words that start with the common prefix
    of ``word`` and its ``stem`` (``word`` itself when they share none): its index does not
    stem."""
    n = next((n for n, (a, b) in enumerate(zip(word, stem, strict=False)) if a != b),
             min(len(word), len(stem)))
    return f"{word[:n] or word}*"


def _filters(processes: Sequence[int | None] | None, kinds: Sequence[str] | None,
             include_superseded: bool) -> list[Any]:
    """WHERE clauses on ``memori_entity_fact`` of a recall ``Filter``."""
    f = s.entity_fact.c
    out: list[Any] = []
    if processes is not None:
        out.append(_in_processes(processes))
    if kinds is not None:
        out.append(f.kind.in_(list(kinds)))
    if not include_superseded:
        out.append(f.superseded_by.is_(None))
    return out


def _in_processes(processes: Sequence[int | None]) -> Any:
    """A memory's process is one of ``processes`` (row ids; None: captured without one)."""
    f = s.entity_fact.c
    known = [x for x in processes if x is not None]
    conds: list[Any] = [f.process_id.in_(known)] if known else []
    if None in processes:
        conds.append(f.process_id.is_(None))
    return or_(*conds) if conds else false()


def _sources(conn: Connection, ids: Sequence[int]) -> dict[int, list[int]]:
    """Source message ids of memories, oldest first, by memory id (500 ids per read)."""
    out: dict[int, list[int]] = {}
    for start in range(0, len(ids), 500):
        for fid, mid in conn.execute(_MEMORY_SOURCES,
                                     {"ids": list(ids[start:start + 500])}).all():
            out.setdefault(int(fid), []).append(int(mid))
    return out


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _message_dict(r: Any) -> dict[str, Any]:
    content: Any = json.loads(r.content_json) if r.content_json is not None else r.content
    out = {"id": int(r.id), "role": r.role, "content": content, "created_at": r.created_at}
    if r.name is not None:
        out["name"] = r.name
    if r.extra_json is not None:
        out.update(json.loads(r.extra_json))
    return out


def _is_retryable(exc: DBAPIError) -> bool:
    """Deadlocks, serialization failures, and SQLite busy beyond the busy timeout."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None)
    if code in ("40001", "40P01"):
        return True
    args = getattr(orig, "args", ())
    if args and args[0] in (1213, 1205):  # MySQL deadlock, lock wait timeout
        return True
    return isinstance(exc, OperationalError) and "database is locked" in str(orig)
