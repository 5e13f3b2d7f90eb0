"""Recall push-down to pgvector: nearest-neighbour candidates from an HNSW index in PostgreSQL.

Optional, applied where the ``vector`` extension is there (``available``), never a numbered
migration: ``ensure`` builds it and can run again at any time (idempotent; one process at a time
under an advisory lock, the others wait and then find it built).

What ``ensure(engine, dim)`` makes, beside memori's tables:

- ``memori_fact_vector``: one row per memory of ``memori_entity_fact`` whose ``embedding_dim``
  is ``dim`` (``fact_id`` primary key, ``ON DELETE CASCADE``, so a deleted or forgotten memory
  leaves no vector), with the columns recall filters on (entity, process, kind, current = not
  superseded) and ``embedding vector(dim)``, bit-for-bit the stored float32 values.
- a trigger on ``memori_entity_fact`` that keeps it current in the transaction that writes a
  memory (insert, re-embed, supersession, kind or process change): every writer, of any memori
  version, maintains it without knowing it is there. The stored float32 little-endian bytes are
  decoded in SQL (``memori_f32le_vector``; exact, subnormals and signed zeros included).
- an HNSW index on the vectors with inner-product ops (``vector_ip_ops``: embeddings are unit
  length, so inner product is cosine similarity), built ``CONCURRENTLY`` after the rows are in,
  so writers are never blocked while it builds.
- ``memori_fact_vector_nearest``: the scoped nearest-neighbour query as a function, so the HNSW
  settings it needs (``hnsw.ef_search``, ``hnsw.iterative_scan``) hold for that call only, one
  round trip, whatever the connection's transaction mode.

``nearest`` asks the index for candidates of one entity (never another's; superseded memories
only when asked) and re-scores them exactly in process from the stored float32 bytes.
``agreement`` measures its top-k against exact search over the entity's vectors: the design's
rule is that push-down is used only where that is at least ``MIN_AGREEMENT`` (0.99).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from memori_core.errors import ConfigurationError, StorageError

__all__ = ["EF_SEARCH", "INDEX", "MEASURE_K", "MIN_AGREEMENT", "MIN_VERSION", "TABLE",
           "agreement", "available", "ensure", "exact", "explain", "Filters", "installed",
           "measure", "nearest", "probe_queries", "similarities"]

#: the side table of vectors, keyed by ``memori_entity_fact.id``
TABLE = "memori_fact_vector"
#: its HNSW index
INDEX = "ix_memori_fact_vector_hnsw"
#: push-down takes over only at or above this measured top-k agreement with exact search
MIN_AGREEMENT = 0.99
#: the oldest pgvector with iterative index scans (``hnsw.iterative_scan``), which keep an
#: entity-filtered scan going past ``ef_search``
MIN_VERSION = (0, 8)
#: HNSW build parameters (pgvector's defaults)
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
#: candidates asked of the index per hit wanted, and at least this many, re-scored exactly
#: (benchmarks/pgvector_agreement.py, top-10 of 100k 384-d vectors: 40 candidates agreed
#: 0.95, 100 agreed 0.995)
CANDIDATE_FACTOR = 4
MIN_CANDIDATES = 100
#: the HNSW search list size ``nearest`` uses at least (pgvector's default: 40)
EF_SEARCH = 100
#: pgvector's upper bound of ``hnsw.ef_search``
_MAX_EF_SEARCH = 1000
#: rows per statement while filling the table in ``ensure``
_FILL_BATCH = 2000
#: session-level advisory lock ``ensure`` holds ("memvec"; migrations use "memori")
_LOCK_KEY = 0x6D656D766563
_DECODE_FN = "memori_f32le_vector"
_SYNC_FN = "memori_fact_vector_sync"
_NEAREST_FN = "memori_fact_vector_nearest"
_TRIGGER = "memori_fact_vector_sync"

# float32 little-endian bytes -> vector, exact: each word's sign, exponent and mantissa put back
# together in float8 (every float32 is a float8; subnormals when the exponent is 0)
_DECODE_SQL = f"""
CREATE OR REPLACE FUNCTION {_DECODE_FN}(b bytea) RETURNS vector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT array_agg(CASE WHEN x.e = 0 THEN x.m * 2.0::float8 ^ -149
                      ELSE (x.m + 8388608) * 2.0::float8 ^ (x.e - 150) END
                 * (1 - 2 * x.s) ORDER BY x.i)::real[]::vector
FROM (SELECT i, (w >> 31) & 1 AS s, (w >> 23) & 255 AS e, w & 8388607 AS m
      FROM (SELECT i, get_byte(b, 4 * i)::bigint | (get_byte(b, 4 * i + 1)::bigint << 8)
                      | (get_byte(b, 4 * i + 2)::bigint << 16)
                      | (get_byte(b, 4 * i + 3)::bigint << 24) AS w
            FROM generate_series(0, length(b) / 4 - 1) AS i) AS y) AS x
$$"""

# the trigger: a memory of another dimension (embedded by an earlier model, not re-embedded
# yet) or with a non-finite value has no vector row: a value pgvector rejects never fails the
# memory's own write
_SYNC_SQL = """
CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.embedding IS NOT DISTINCT FROM OLD.embedding
     AND NEW.embedding_dim = {dim} THEN
    UPDATE {table} SET entity_id = NEW.entity_id, process_id = NEW.process_id,
                       kind = NEW.kind, current = NEW.superseded_by IS NULL
    WHERE fact_id = NEW.id;
    IF FOUND THEN
      RETURN NULL;
    END IF;
  END IF;
  IF NEW.embedding_dim = {dim} AND length(NEW.embedding) = 4 * {dim} THEN
    BEGIN
      INSERT INTO {table} (fact_id, entity_id, process_id, kind, current, embedding)
      VALUES (NEW.id, NEW.entity_id, NEW.process_id, NEW.kind, NEW.superseded_by IS NULL,
              {decode}(NEW.embedding))
      ON CONFLICT (fact_id) DO UPDATE SET entity_id = EXCLUDED.entity_id,
        process_id = EXCLUDED.process_id, kind = EXCLUDED.kind, current = EXCLUDED.current,
        embedding = EXCLUDED.embedding;
      RETURN NULL;
    EXCEPTION WHEN data_exception THEN
      NULL;  -- NaN or infinity: no vector row, as for another dimension
    END;
  END IF;
  DELETE FROM {table} WHERE fact_id = NEW.id;
  RETURN NULL;
END $$"""

# candidates of one entity, nearest first, with the stored bytes for the exact re-score, read by
# primary key, one lookup per candidate (a join let the planner read all of the entity's rows
# into a hash table); NULL for a row not of the entity (dropped)
_CANDIDATES_SQL = f"""SELECT c.fact_id, (SELECT f.embedding FROM memori_entity_fact f
                                  WHERE f.id = c.fact_id AND f.entity_id = $1) FROM (
       SELECT v.fact_id, v.embedding <#> $2 AS d FROM {TABLE} v
       WHERE v.entity_id = $1 AND ($7 OR v.current)
         AND ($4 IS NULL OR v.process_id = ANY($4) OR ($5 AND v.process_id IS NULL))
         AND ($6 IS NULL OR v.kind = ANY($6))
       ORDER BY v.embedding <#> $2 LIMIT $3) c
     ORDER BY c.d"""
_PARAM_TYPES = "bigint, vector, integer, bigint[], boolean, text[], boolean"
#: the query function's arguments: _PARAM_TYPES and the HNSW search list size
_FN_ARGS = ("p_entity bigint, p_query vector, p_n integer, p_processes bigint[], "
            "p_no_process boolean, p_kinds text[], p_superseded boolean, p_ef integer")
# the query function: its SET clauses scope the HNSW settings to the call; iterative scans
# (pgvector >= 0.8) go on past ef_search while the filters reject rows. EXECUTE: planned with
# the call's values, so the planner may read a small entity through its btree index and sort it
# (exact) rather than scan the HNSW index
_NEAREST_SQL = f"""
CREATE OR REPLACE FUNCTION {_NEAREST_FN}({_FN_ARGS})
RETURNS TABLE (id bigint, embedding bytea) LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100
SET hnsw.iterative_scan = 'relaxed_order'
AS $fn$
BEGIN
  PERFORM set_config('hnsw.ef_search', least(greatest(p_ef, p_n), {_MAX_EF_SEARCH})::text,
                     true);
  RETURN QUERY EXECUTE {"$q$" + _CANDIDATES_SQL + "$q$"}
    USING p_entity, p_query, p_n, p_processes, p_no_process, p_kinds, p_superseded;
END $fn$"""


class Filters(Protocol):
    """Which memories may be candidates (``memori_core.recall.index.Filter`` is one).

    Attributes:
        processes: process row ids allowed (None in it: memories without a process); None
            allows all.
        kinds: memory kinds allowed; None allows all.
        include_superseded: also memories replaced by a newer one on their slot.
    """

    @property
    def processes(self) -> Sequence[int | None] | None: ...

    @property
    def kinds(self) -> Sequence[str] | None: ...

    @property
    def include_superseded(self) -> bool: ...


def available(engine: Engine) -> bool:
    """Whether push-down can be used on this database: PostgreSQL with the ``vector``
    extension (``MIN_VERSION`` or later) installed, or offered and creatable by this role (a
    superuser, or the extension is trusted). False on SQLite, MySQL and MariaDB without a
    query.

    Raises:
        StorageError: the database could not be reached.
    """
    if engine.dialect.name != "postgresql":
        return False
    try:
        with engine.connect() as conn:
            row = conn.execute(text(
                "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector'),"
                " (SELECT default_version FROM pg_available_extensions WHERE name = 'vector'),"
                " coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false),"
                " coalesce((SELECT bool_or(trusted) FROM pg_available_extension_versions"
                "           WHERE name = 'vector'), false)")).one()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot reach the database: {exc}") from exc
    present, offered, superuser, trusted = row
    if present is not None:
        return _recent(present)
    return offered is not None and _recent(offered) and bool(superuser or trusted)


def _recent(version: str) -> bool:
    """pgvector ``version`` has iterative index scans (0.8.0 and later)."""
    parts = [int(p) if p.isdigit() else 0 for p in str(version).split(".")[:2]]
    return tuple(parts + [0] * (2 - len(parts))) >= MIN_VERSION


def installed(conn: Connection, dim: int) -> bool:
    """Whether ``ensure(engine, dim)`` has completed on this database: the vector table of
    this dimension, its trigger and a valid HNSW index are there (one catalog read).
    False on other databases."""
    if conn.dialect.name != "postgresql":
        return False
    row = conn.execute(text(
        "SELECT (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        "         WHERE a.attrelid = to_regclass(:table) AND a.attname = 'embedding'),"
        " (SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(:index)),"
        " EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = :trigger"
        "         AND tgrelid = to_regclass('memori_entity_fact'))"),
        {"table": TABLE, "index": INDEX, "trigger": _TRIGGER}).one()
    return row[0] == f"vector({dim})" and bool(row[1]) and bool(row[2])


def ensure(engine: Engine, dim: int, *, m: int = HNSW_M,
           ef_construction: int = HNSW_EF_CONSTRUCTION, timeout: float = 3600) -> float:
    """Install push-down for ``dim``-dimensional embeddings: the extension, the vector table
    filled from every memory of that dimension, its trigger, the HNSW index and the query
    function. Idempotent and safe across processes (a session advisory lock; a second caller
    waits, then finds everything in place). A table of another dimension (the database was
    re-embedded with another model) is dropped and built again.

    Args:
        engine: a PostgreSQL engine whose memori schema is built.
        dim: the embedding dimension (``Embedder.dim``).
        m: HNSW links per node; ef_construction: HNSW build candidate list size.
        timeout: seconds to wait for another process's ``ensure`` (a build of millions of
            vectors takes minutes).

    Returns:
        seconds spent.

    Raises:
        ConfigurationError: not PostgreSQL, or ``dim`` is not positive.
        StorageError: the extension cannot be created (not installed on the server, or this
            role may not create it) or is older than ``MIN_VERSION``, a statement failed, or another process's ``ensure`` held
            the lock beyond ``timeout``.
    """
    if engine.dialect.name != "postgresql":
        raise ConfigurationError(f"pgvector push-down needs PostgreSQL, not "
                                 f"{engine.dialect.name}", argument="conn")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise ConfigurationError(f"dim must be a positive int, got {dim!r}", argument="dim")
    started = time.perf_counter()
    try:
        # the lock on a connection of its own, idle in autocommit while held; a waiter polls
        # between transactions: CREATE INDEX CONCURRENTLY waits for every older snapshot, so a
        # waiter blocked inside a statement (pg_advisory_lock) would deadlock with it
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
            _acquire(lock, timeout)
            try:
                with engine.connect() as conn:
                    _ensure_locked(conn, dim, m, ef_construction)
            finally:
                lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
    except SQLAlchemyError as exc:
        raise StorageError(f"installing pgvector push-down failed: {exc}") from exc
    return time.perf_counter() - started


def _acquire(lock: Connection, timeout: float) -> None:
    """Take ``ensure``'s advisory lock, polling with backoff.

    Raises:
        StorageError: another process held it longer than ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not lock.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_KEY}).scalar():
        if time.monotonic() >= deadline:
            raise StorageError(f"another process has been installing pgvector push-down for "
                               f"more than {timeout:g} s")
        time.sleep(delay)  # backoff between tries, outside any transaction
        delay = min(delay * 2, 0.5)


def _ensure_locked(conn: Connection, dim: int, m: int, ef_construction: int) -> None:
    # 1. extension, table, functions, trigger: short, one transaction (the trigger's lock on
    #    memori_entity_fact waits for writers in flight; later writers fill the table)
    conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    version = conn.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                                )).scalar_one()
    if not _recent(version):
        raise StorageError(f"pgvector {version} is installed; push-down needs "
                           f"{'.'.join(map(str, MIN_VERSION))} or later (iterative index "
                           "scans): ALTER EXTENSION vector UPDATE")
    have = conn.execute(text(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(:table) AND a.attname = 'embedding'"),
        {"table": TABLE}).scalar()
    if have is not None and have != f"vector({dim})":
        conn.execute(text(f"DROP TABLE {TABLE}"))  # with its index
    conn.execute(text(
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        " fact_id bigint PRIMARY KEY REFERENCES memori_entity_fact (id) ON DELETE CASCADE,"
        " entity_id bigint NOT NULL, process_id bigint, kind varchar(32) NOT NULL,"
        f" current boolean NOT NULL, embedding vector({dim}) NOT NULL)"))
    conn.execute(text(f"CREATE INDEX IF NOT EXISTS ix_memori_fact_vector_entity "
                      f"ON {TABLE} (entity_id)"))
    conn.execute(text(_DECODE_SQL))
    conn.execute(text(_SYNC_SQL.format(fn=_SYNC_FN, dim=dim, table=TABLE, decode=_DECODE_FN)))
    conn.execute(text(f"DROP TRIGGER IF EXISTS {_TRIGGER} ON memori_entity_fact"))
    conn.execute(text(
        f"CREATE TRIGGER {_TRIGGER} AFTER INSERT OR UPDATE OF embedding,"
        " embedding_dim, superseded_by, entity_id, process_id, kind ON memori_entity_fact"
        f" FOR EACH ROW EXECUTE FUNCTION {_SYNC_FN}()"))
    conn.execute(text(_NEAREST_SQL))
    conn.commit()
    # 2. the memories written before the trigger, in batches (decoded here: numpy is ~100x
    #    faster than the SQL decoder for a bulk fill); a row the trigger wrote meanwhile wins
    _fill(conn, dim)
    # 3. the HNSW index, CONCURRENTLY: writers go on while it builds
    valid = conn.execute(text("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                              "to_regclass(:index)"), {"index": INDEX}).scalar()
    conn.commit()
    if valid is None or not valid:
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        if valid is not None:  # an earlier concurrent build was interrupted
            auto.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}"))
        auto.execute(text(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON {TABLE} "
            f"USING hnsw (embedding vector_ip_ops) WITH (m = {int(m)}, "
            f"ef_construction = {int(ef_construction)})"))
        auto.execute(text(f"ANALYZE {TABLE}"))


def _fill(conn: Connection, dim: int) -> None:
    last = 0
    while True:
        rows = conn.execute(text(
            "SELECT f.id, f.entity_id, f.process_id, f.kind, f.superseded_by IS NULL AS current,"
            f" f.embedding FROM memori_entity_fact f WHERE f.id > :last"
            f" AND f.embedding_dim = :dim AND NOT EXISTS (SELECT 1 FROM {TABLE} v"
            "   WHERE v.fact_id = f.id) ORDER BY f.id LIMIT :n"),
            {"last": last, "dim": dim, "n": _FILL_BATCH}).all()
        if not rows:
            conn.commit()
            return
        batch = []
        for r in rows:
            raw = bytes(r.embedding)
            if len(raw) != 4 * dim:
                continue
            vec = np.frombuffer(raw, dtype="<f4")
            if not np.isfinite(vec).all():
                continue
            batch.append({"id": int(r.id), "e": int(r.entity_id), "p": r.process_id,
                          "k": r.kind, "c": bool(r.current), "v": _literal(vec)})
        if batch:
            conn.execute(text(
                f"INSERT INTO {TABLE} (fact_id, entity_id, process_id, kind, current, embedding)"
                " VALUES (:id, :e, :p, :k, :c, CAST(:v AS vector)) ON CONFLICT (fact_id) "
                "DO NOTHING"), batch)
        conn.commit()
        last = int(rows[-1].id)


def _literal(vec: np.ndarray) -> str:
    """A vector's text form, exact: nine significant digits round-trip a float32."""
    return "[" + ",".join(f"{x:.9g}" for x in np.asarray(vec, dtype=np.float32).tolist()) + "]"


def nearest(conn: Connection, entity_pk: int, query_vec: np.ndarray, k: int,
            filters: Filters | None = None, candidates: int | None = None,
            ef_search: int | None = None) -> list[tuple[int, float]]:
    """The entity's memories nearest to the query: candidates from the HNSW index, re-scored
    exactly in process from their stored float32 bytes.

    Args:
        conn: a connection to a database where ``ensure`` has run (any transaction mode).
        entity_pk: the entity's row id; no other entity's memory is ever returned.
        query_vec: float32 array, shape (dim,), unit length.
        k: hits wanted.
        filters: which memories may be returned; None: current (not superseded) memories of
            every process and kind.
        candidates: asked of the index before the re-score (default
            max(``CANDIDATE_FACTOR`` * k, ``MIN_CANDIDATES``)).
        ef_search: the HNSW search list size (``hnsw.ef_search``, for this call only; default
            max(``EF_SEARCH``, 2 * candidates), at most 1000): larger finds more of the true
            neighbours and costs more.

    Returns:
        at most ``k`` (memory id, cosine similarity), best first (ties: higher id first).
        When the index yields fewer than the candidates asked for (an entity with fewer
        allowed memories, or one the index scan gave up on), the answer is ``exact``'s.

    Raises:
        StorageError: the query failed (e.g. ``ensure`` has not run).
    """
    if k <= 0:
        return []
    q = np.ascontiguousarray(query_vec, dtype=np.float32).reshape(-1)
    n = candidates if candidates is not None else max(CANDIDATE_FACTOR * k, MIN_CANDIDATES)
    try:
        rows = conn.execute(text(
            f"SELECT id, embedding FROM {_NEAREST_FN}(:e, CAST(:q AS vector), :n,"
            " CAST(:procs AS bigint[]), :noproc, CAST(:kinds AS text[]), :sup, :ef)"),
            {**_params(entity_pk, q, max(n, k), filters),
             "ef": ef_search if ef_search is not None else max(EF_SEARCH, 2 * n)}).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"pgvector nearest-neighbour query failed: {exc}") from exc
    if len(rows) < max(n, k):
        # fewer candidates than asked: the entity has no more such memories, or the index
        # scan stopped (``hnsw.max_scan_tuples``: a small entity among many rows, or a narrow
        # filter) before finding them. Either way the entity's allowed rows are few or the
        # index cannot tell: exact search over them answers
        try:
            return exact(conn, entity_pk, q, k, filters)
        except SQLAlchemyError as exc:
            raise StorageError(f"pgvector exact fallback failed: {exc}") from exc
    ids = np.asarray([int(r.id) for r in rows], dtype=np.int64)
    raws = [b"" if r.embedding is None else bytes(r.embedding) for r in rows]
    keep = [i for i, raw in enumerate(raws) if len(raw) == 4 * q.shape[0]]
    if not keep:
        return []
    vectors = np.frombuffer(b"".join(raws[i] for i in keep), dtype="<f4").reshape(len(keep), -1)
    return _top(ids[keep], vectors @ q, k)


def _params(entity_pk: int, q: np.ndarray, n: int, filters: Filters | None
            ) -> dict[str, object]:
    processes = None if filters is None else filters.processes
    return {"e": int(entity_pk), "q": _literal(q), "n": int(n),
            "procs": None if processes is None else [int(p) for p in processes
                                                     if p is not None],
            "noproc": processes is not None and None in processes,
            "kinds": None if filters is None or filters.kinds is None else list(filters.kinds),
            "sup": filters is not None and filters.include_superseded}


def explain(conn: Connection, entity_pk: int, query_vec: np.ndarray, n: int,
            filters: Filters | None = None) -> str:
    """The plan PostgreSQL makes for ``nearest``'s candidate query with these values (the
    statement the query function runs, planned as it plans it: with the values): whether
    the HNSW index or the entity's btree (an exact scan of a small entity) serves it.

    Raises:
        StorageError: the statement failed.
    """
    import psycopg  # the PostgreSQL driver memori uses (the postgres extra)

    q = np.ascontiguousarray(query_vec, dtype=np.float32).reshape(-1)
    p = _params(entity_pk, q, n, filters)
    name = "memori_pgvector_explain"
    raw = conn.connection.dbapi_connection
    assert isinstance(raw, psycopg.Connection)
    try:
        # PREPARE through libpq's simple protocol (the extended one takes its $n for its
        # own), EXPLAIN EXECUTE with the values inlined client-side (it takes no bound ones)
        done = raw.pgconn.exec_(f"PREPARE {name} ({_PARAM_TYPES}) AS {_CANDIDATES_SQL}"
                                .encode())
        if done.error_message:
            raise StorageError(f"explaining the pgvector query failed: "
                               f"{done.error_message.decode(errors='replace')}")
        try:
            with psycopg.ClientCursor(raw) as cur:
                cur.execute(f"EXPLAIN EXECUTE {name}(%s, CAST(%s AS vector), %s, "
                            "CAST(%s AS bigint[]), %s, CAST(%s AS text[]), %s)",
                            [p["e"], p["q"], p["n"], p["procs"], p["noproc"], p["kinds"],
                             p["sup"]])
                return "\n".join(str(r[0]) for r in cur.fetchall())
        finally:
            raw.pgconn.exec_(f"DEALLOCATE {name}".encode())
    except psycopg.Error as exc:
        raise StorageError(f"explaining the pgvector query failed: {exc}") from exc


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` best (id, score), best first; ties: higher id first, as recall orders them
    (FAISS's flat index, ``Recaller._from_database``)."""
    order = np.lexsort((-ids, -scores))[:k]
    return [(int(ids[i]), float(scores[i])) for i in order]


def _entity_vectors(conn: Connection, entity_pk: int, dim: int, filters: Filters | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 array of shape (n, dim)) of the entity's memories ``filters`` allows,
    from the stored bytes: what exact search scans."""
    where = ["entity_id = :e", "embedding_dim = :dim"]
    params: dict[str, object] = {"e": int(entity_pk), "dim": dim}
    if filters is None or not filters.include_superseded:
        where.append("superseded_by IS NULL")
    if filters is not None and filters.processes is not None:
        known = [int(p) for p in filters.processes if p is not None]
        either = ["process_id = ANY(CAST(:procs AS bigint[]))"]
        if None in filters.processes:
            either.append("process_id IS NULL")
        where.append("(" + " OR ".join(either) + ")")
        params["procs"] = known
    if filters is not None and filters.kinds is not None:
        where.append("kind = ANY(CAST(:kinds AS text[]))")
        params["kinds"] = list(filters.kinds)
    rows = conn.execute(text("SELECT id, embedding FROM memori_entity_fact WHERE "
                             + " AND ".join(where) + " ORDER BY id"), params).all()
    ids = np.asarray([int(r.id) for r in rows], dtype=np.int64)
    vectors = np.frombuffer(b"".join(bytes(r.embedding) for r in rows), dtype="<f4")
    return ids, vectors.reshape(len(rows), dim)


def exact(conn: Connection, entity_pk: int, query_vec: np.ndarray, k: int,
          filters: Filters | None = None) -> list[tuple[int, float]]:
    """Exact search, in process, over every memory of the entity ``filters`` allows (the
    reference ``agreement`` measures against). Same arguments and result as ``nearest``."""
    q = np.ascontiguousarray(query_vec, dtype=np.float32).reshape(-1)
    ids, vectors = _entity_vectors(conn, entity_pk, q.shape[0], filters)
    return _top(ids, vectors @ q, k) if len(ids) else []


def similarities(conn: Connection, entity_pk: int, query_vec: np.ndarray, ids: Sequence[int]
                 ) -> dict[int, float]:
    """Exact cosine similarity of the query to some of the entity's memories (from their
    stored float32 bytes, by primary key): what recall needs of lexical candidates that
    ``nearest`` did not return. Ids of other entities' memories, or of another dimension, are
    left out.

    Raises:
        StorageError: the read failed.
    """
    if not ids:
        return {}
    q = np.ascontiguousarray(query_vec, dtype=np.float32).reshape(-1)
    try:
        rows = conn.execute(text(
            "SELECT id, embedding FROM memori_entity_fact WHERE entity_id = :e"
            " AND id = ANY(CAST(:ids AS bigint[])) AND embedding_dim = :dim"),
            {"e": int(entity_pk), "ids": [int(i) for i in ids], "dim": q.shape[0]}).all()
    except SQLAlchemyError as exc:
        raise StorageError(f"reading embeddings failed: {exc}") from exc
    if not rows:
        return {}
    vectors = np.frombuffer(b"".join(bytes(r.embedding) for r in rows), dtype="<f4")
    sims = vectors.reshape(len(rows), -1) @ q
    return {int(r.id): float(x) for r, x in zip(rows, sims.tolist(), strict=True)}


def probe_queries(vectors: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Queries like real ones for an agreement measurement: mixtures of two stored vectors
    plus noise, unit length (as ``memori_core.recall.index`` probes its approximate index).

    Args:
        vectors: float32 array, shape (rows, dim), rows >= 1.
        n: queries wanted.

    Returns:
        float32 array, shape (n, dim).
    """
    rng = np.random.default_rng(seed)
    rows, dim = vectors.shape
    pick = rng.integers(0, rows, size=(n, 2))
    probes = vectors[pick[:, 0]] + vectors[pick[:, 1]] + rng.standard_normal(
        (n, dim)).astype(np.float32) / np.float32(np.sqrt(dim))
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    return probes.astype(np.float32)


def agreement(engine: Engine, entity_pk: int, sample_queries: np.ndarray | int, k: int = 10,
              filters: Filters | None = None, candidates: int | None = None,
              ef_search: int | None = None) -> float:
    """Top-``k`` agreement of push-down (HNSW candidates, exact re-score) with exact search
    over the entity's vectors: the mean, over the queries, of the share of exact search's
    top-k that ``nearest`` returned. Use push-down for the entity only when this is at least
    ``MIN_AGREEMENT``.

    Args:
        engine: a PostgreSQL engine where ``ensure`` has run.
        entity_pk: the entity's row id.
        sample_queries: float32 array, shape (n, dim), unit rows; or a number of probe
            queries to draw from the entity's own vectors (``probe_queries``).
        k: hits compared per query.
        filters: as for ``nearest`` (default: current memories).
        candidates, ef_search: ``nearest``'s settings measured (default: its defaults).

    Returns:
        agreement in [0, 1]; 1.0 for an entity with no memories.

    Raises:
        StorageError: a query failed.
    """
    try:
        with engine.connect() as conn:
            if isinstance(sample_queries, int):
                dim = conn.execute(text(
                    "SELECT embedding_dim FROM memori_entity_fact WHERE entity_id = :e "
                    "ORDER BY id DESC LIMIT 1"), {"e": int(entity_pk)}).scalar()
                if dim is None:
                    return 1.0
                ids, vectors = _entity_vectors(conn, entity_pk, int(dim), filters)
                if not len(ids):
                    return 1.0
                queries = probe_queries(vectors, sample_queries, seed=int(entity_pk))
            else:
                queries = np.asarray(sample_queries, dtype=np.float32)
                ids, vectors = _entity_vectors(conn, entity_pk, queries.shape[1], filters)
            if not len(ids) or not len(queries):
                return 1.0
            want = min(k, len(ids))
            shares = []
            for q in queries:
                truth = {i for i, _ in _top(ids, vectors @ q, want)}
                got = {i for i, _ in nearest(conn, entity_pk, q, want, filters, candidates,
                                             ef_search)}
                shares.append(len(truth & got) / want)
            conn.rollback()
    except SQLAlchemyError as exc:
        raise StorageError(f"measuring pgvector agreement failed: {exc}") from exc
    return float(np.mean(shares))


#: hits compared per probe query by ``measure`` (as ``memori_core.recall.index`` measures its
#: approximate index: top-10)
MEASURE_K = 10


def measure(engine: Engine, dim: int, entities: int = 3, queries: int = 20,
            k: int = MEASURE_K) -> tuple[float, int]:
    """The agreement recall's gate reads: ``agreement`` (``nearest``'s default settings for
    ``k`` hits, at least ``MIN_CANDIDATES`` candidates) on the ``entities`` largest entities
    of the vector table, ``queries`` probe queries each (``probe_queries``, from the entity's
    own vectors); the lowest of them. An entity of fewer rows than the candidates is answered
    exactly by ``nearest`` (agreement 1), so the largest are the ones that can fail.

    Args:
        engine: a PostgreSQL engine where ``ensure(engine, dim)`` has run.
        dim: the embedding dimension.
        entities, queries, k: the sample (defaults: 3 entities, 20 queries, top-10).

    Returns:
        (lowest agreement in [0, 1] (1.0 with no vectors), vectors in the table).

    Raises:
        StorageError: a query failed.
    """
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                f"SELECT entity_id, count(*) FROM {TABLE} WHERE current GROUP BY entity_id"
                " ORDER BY count(*) DESC, entity_id LIMIT :n"), {"n": int(entities)}).all()
            total = int(conn.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar() or 0)
            conn.rollback()
    except SQLAlchemyError as exc:
        raise StorageError(f"measuring pgvector agreement failed: {exc}") from exc
    shares = [agreement(engine, int(e), queries, k) for e, _ in rows]
    return (min(shares) if shares else 1.0), total
